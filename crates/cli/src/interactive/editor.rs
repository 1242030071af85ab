//! The prompt's line editor: a buffer with a cursor, word and line kills, and history recall
//! (Up/Down), persisted one entry per line in `<stateDir>/history`.

use std::io::Write;
use std::path::PathBuf;

/// Entries kept in the history file.
const HISTORY_MAX: usize = 1000;

#[derive(Debug, Default)]
pub struct Editor {
    buf: Vec<char>,
    cursor: usize,
    history: Vec<String>,
    /// Position while browsing history; `None` when editing a fresh line.
    browsing: Option<usize>,
    /// The fresh line, kept while browsing.
    draft: Vec<char>,
    file: Option<PathBuf>,
}

impl Editor {
    /// An editor whose history lives in `file` (read now, appended on each submit).
    pub fn with_history_file(file: PathBuf) -> Self {
        let history = std::fs::read_to_string(&file)
            .map(|t| {
                t.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(unescape)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            history,
            file: Some(file),
            ..Self::default()
        }
    }

    pub fn text(&self) -> String {
        self.buf.iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn chars(&self) -> &[char] {
        &self.buf
    }

    pub fn insert(&mut self, s: &str) {
        for c in s.chars().filter(|c| *c != '\r') {
            self.buf.insert(self.cursor, c);
            self.cursor += 1;
        }
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.buf.remove(self.cursor);
        }
    }

    pub fn delete(&mut self) {
        if self.cursor < self.buf.len() {
            self.buf.remove(self.cursor);
        }
    }

    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.buf.len());
    }

    pub fn home(&mut self) {
        self.cursor = 0;
    }

    pub fn end(&mut self) {
        self.cursor = self.buf.len();
    }

    pub fn kill_to_start(&mut self) {
        self.buf.drain(..self.cursor);
        self.cursor = 0;
    }

    pub fn kill_to_end(&mut self) {
        self.buf.truncate(self.cursor);
    }

    pub fn kill_word_back(&mut self) {
        let mut i = self.cursor;
        while i > 0 && self.buf[i - 1].is_whitespace() {
            i -= 1;
        }
        while i > 0 && !self.buf[i - 1].is_whitespace() {
            i -= 1;
        }
        self.buf.drain(i..self.cursor);
        self.cursor = i;
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.cursor = 0;
        self.browsing = None;
    }

    /// Older history entry (Up).
    pub fn up(&mut self) {
        let next = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.buf.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.browsing = Some(next);
        self.set(self.history[next].chars().collect());
    }

    /// Newer history entry, then back to the draft (Down).
    pub fn down(&mut self) {
        match self.browsing {
            None => {}
            Some(i) if i + 1 < self.history.len() => {
                self.browsing = Some(i + 1);
                self.set(self.history[i + 1].chars().collect());
            }
            Some(_) => {
                self.browsing = None;
                let d = std::mem::take(&mut self.draft);
                self.set(d);
            }
        }
    }

    fn set(&mut self, buf: Vec<char>) {
        self.cursor = buf.len();
        self.buf = buf;
    }

    /// Take the line, record it in the history (not twice in a row) and the history file.
    pub fn submit(&mut self) -> String {
        let line = self.text();
        self.clear();
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            self.history.push(line.clone());
            if let Some(f) = &self.file {
                append_history(f, &line, self.history.len() > HISTORY_MAX * 2);
                if self.history.len() > HISTORY_MAX * 2 {
                    self.history.drain(..self.history.len() - HISTORY_MAX);
                }
            }
        }
        line
    }
}

/// Appends one entry; rewrites the file down to the newest entries when it has grown long.
fn append_history(file: &std::path::Path, line: &str, trim: bool) {
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if trim && let Ok(t) = std::fs::read_to_string(file) {
        let lines: Vec<&str> = t.lines().collect();
        let keep = &lines[lines.len().saturating_sub(HISTORY_MAX)..];
        let _ = std::fs::write(file, format!("{}\n", keep.join("\n")));
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file);
    if let Ok(mut f) = f {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600));
        }
        let _ = writeln!(f, "{}", escape(line));
    }
}

/// One entry per line: backslashes and newlines escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn editing_keys() {
        let mut e = Editor::default();
        e.insert("hello world");
        e.kill_word_back();
        assert_eq!(e.text(), "hello ");
        e.home();
        e.delete();
        e.insert("J");
        assert_eq!(e.text(), "Jello ");
        e.end();
        e.backspace();
        e.left();
        e.kill_to_end();
        assert_eq!(e.text(), "Jell");
        e.kill_to_start();
        assert!(e.is_empty());
    }

    #[test]
    fn history_recall_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("history");
        let mut e = Editor::with_history_file(f.clone());
        e.insert("first");
        e.submit();
        e.insert("two\nlines \\ here");
        e.submit();
        e.insert("same");
        e.submit();
        e.insert("same");
        e.submit();
        e.insert("draft");
        e.up();
        assert_eq!(e.text(), "same");
        e.up();
        assert_eq!(e.text(), "two\nlines \\ here");
        e.up();
        e.up();
        assert_eq!(e.text(), "first");
        e.down();
        e.down();
        e.down();
        assert_eq!(e.text(), "draft");

        let mut again = Editor::with_history_file(f);
        again.up();
        again.up();
        assert_eq!(again.text(), "two\nlines \\ here");
    }
}
