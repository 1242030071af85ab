//! Inline terminal output in raw mode: text written so far stays in the scrollback; only the
//! current line (the prompt, or the spinner) is ever redrawn.

use std::io::Write;

use serde_json::Value;

pub const DIM: &str = "\x1b[2m";
pub const BOLD: &str = "\x1b[1m";
pub const RED: &str = "\x1b[31m";
pub const GREEN: &str = "\x1b[32m";
pub const CYAN: &str = "\x1b[36m";
pub const RESET: &str = "\x1b[0m";
const CLEAR_LINE: &str = "\r\x1b[2K";

pub const PROMPT: &str = "› ";
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Where the cursor is, so that messages arriving at any time land on a line of their own.
#[derive(Debug, Default)]
pub struct Screen {
    /// Text has been written on the current line (a streamed answer not yet ended).
    line_open: bool,
    /// The current line holds the spinner or the prompt, to be cleared before printing.
    transient: bool,
    spinner_frame: usize,
}

impl Screen {
    /// Raw mode does not turn `\n` into a new line at column 0; every write goes through here.
    fn raw(&self, s: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.replace('\n', "\r\n").as_bytes());
        let _ = out.flush();
    }

    fn clear_transient(&mut self) {
        if self.transient {
            self.raw(CLEAR_LINE);
            self.transient = false;
        }
    }

    /// Streamed text, continuing the current line.
    pub fn stream(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        self.clear_transient();
        self.raw(s);
        self.line_open = !s.ends_with('\n');
    }

    /// Ends an open line.
    pub fn end_line(&mut self) {
        self.clear_transient();
        if self.line_open {
            self.raw("\n");
            self.line_open = false;
        }
    }

    /// A whole message on lines of its own.
    pub fn line(&mut self, s: &str) {
        self.end_line();
        self.raw(s);
        self.raw("\n");
    }

    pub fn dim_line(&mut self, s: &str) {
        self.line(&format!("{DIM}{s}{RESET}"));
    }

    pub fn error_line(&mut self, s: &str) {
        self.line(&format!("{RED}{s}{RESET}"));
    }

    /// The spinner on its own line while waiting for the model or a tool.
    pub fn spinner(&mut self, label: &str, secs: u64) {
        if self.line_open {
            return;
        }
        self.spinner_frame = (self.spinner_frame + 1) % SPINNER.len();
        let frame = SPINNER[self.spinner_frame];
        self.raw(&format!(
            "{CLEAR_LINE}{CYAN}{frame}{RESET} {DIM}{label} {secs}s  (Ctrl-C to stop){RESET}"
        ));
        self.transient = true;
    }

    /// Keeps the prompt line as drawn (a submitted line stays in the scrollback).
    pub fn commit_prompt(&mut self) {
        self.transient = false;
        self.line_open = false;
        self.raw("\n");
    }

    /// The prompt with the editor's line, scrolled so the cursor stays visible.
    pub fn prompt(&mut self, chars: &[char], cursor: usize) {
        self.end_line();
        let width = crossterm::terminal::size()
            .map(|(w, _)| usize::from(w))
            .unwrap_or(80)
            .max(10);
        let room = width - PROMPT.chars().count() - 1;
        let start = cursor.saturating_sub(room);
        let shown: String = chars
            .iter()
            .skip(start)
            .take(room)
            .map(|c| if *c == '\n' { '↵' } else { *c })
            .collect();
        let col = PROMPT.chars().count() + cursor - start;
        self.raw(&format!("{CLEAR_LINE}{BOLD}{PROMPT}{RESET}{shown}\r"));
        if col > 0 {
            self.raw(&format!("\x1b[{col}C"));
        }
        self.transient = true;
    }
}

/// `name(args)` for a tool call line: the interesting argument first, strings cut short.
pub fn tool_call_summary(name: &str, args: &Value) -> String {
    const MAX: usize = 100;
    let s = match args {
        Value::Object(m) => {
            let primary = ["command", "path", "file_path", "pattern", "action"];
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by_key(|k| primary.iter().position(|p| p == k).unwrap_or(primary.len()));
            keys.iter()
                .enumerate()
                .map(|(i, k)| {
                    // The leading argument (the command, the path) gets the most room.
                    let room = if i == 0 { 90 } else { 48 };
                    format!("{k}={}", short_value(&m[k.as_str()], room))
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        Value::Null => String::new(),
        other => short_value(other, 90),
    };
    format!("{name}({})", truncate(&s, MAX))
}

fn short_value(v: &Value, room: usize) -> String {
    match v {
        Value::String(s) => {
            let one_line = s.replace('\n', "↵");
            format!("\"{}\"", truncate(&one_line, room))
        }
        other => truncate(&other.to_string(), room),
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_calls_read_in_one_line() {
        assert_eq!(
            tool_call_summary("write", &json!({"content": "a\nb", "path": "notes/x.txt"})),
            "write(path=\"notes/x.txt\", content=\"a↵b\")"
        );
        let long = tool_call_summary("exec", &json!({"command": "x".repeat(300)}));
        assert!(long.chars().count() <= 110, "{long}");
        assert!(long.contains("xxx…"), "{long}");
    }
}
