//! `grep` (regex or literal search over files) and `glob` (find files by pattern), walking the
//! tree with std and skipping VCS and build directories.

use std::path::{Path, PathBuf};

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::{ToolOutput, arg_bool, arg_str, arg_u64};
use crate::tools::policy::Policy;

const SKIP_DIRS: &[&str] = &[
    ".git",
    "node_modules",
    "target",
    ".hg",
    ".svn",
    "__pycache__",
    ".venv",
];
const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;
const MAX_LINE_CHARS: usize = 500;

/// Files under `root`, depth first, sorted, skipping the usual noise.
fn walk(root: &Path, out: &mut Vec<PathBuf>, limit: usize) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if out.len() >= limit {
            return;
        }
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name();
        if ft.is_dir() {
            if SKIP_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            walk(&e.path(), out, limit);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

/// A glob as a regex over `/`-separated relative paths: `**` spans directories, `*` and `?`
/// stay inside one, `[...]` and `{a,b}` work as in shells. A pattern without `/` matches the
/// file name at any depth.
pub fn glob_to_regex(pattern: &str) -> Result<Regex, String> {
    let pat = pattern.trim().trim_start_matches("./");
    let anywhere = !pat.contains('/');
    let mut re = String::from("^");
    if anywhere {
        re.push_str("(?:.*/)?");
    }
    let chars: Vec<char> = pat.chars().collect();
    let mut i = 0;
    let mut depth = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                if chars.get(i + 2) == Some(&'/') {
                    re.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    re.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let close = chars[i + 1..].iter().position(|c| *c == ']');
                match close {
                    Some(off) => {
                        let body: String = chars[i + 1..i + 1 + off].iter().collect();
                        let body = body
                            .strip_prefix('!')
                            .map(|b| format!("^{b}"))
                            .unwrap_or(body);
                        re.push('[');
                        re.push_str(&body.replace('\\', "\\\\"));
                        re.push(']');
                        i += off + 2;
                        continue;
                    }
                    None => re.push_str("\\["),
                }
            }
            '{' => {
                depth += 1;
                re.push_str("(?:");
            }
            '}' if depth > 0 => {
                depth -= 1;
                re.push(')');
            }
            ',' if depth > 0 => re.push('|'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("invalid glob \"{pattern}\": {e}"))
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

pub async fn glob(policy: &Policy, args: &Value) -> ToolOutput {
    let Some(pattern) = arg_str(args, &["pattern", "glob"]) else {
        return ToolOutput::error("missing required argument \"pattern\"");
    };
    let root = match arg_str(args, &["path", "cwd"]) {
        Some(p) => match policy.check_read("glob", &p).await {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(e),
        },
        None => policy.workspace.clone(),
    };
    let limit = arg_u64(args, &["limit"]).unwrap_or(200) as usize;
    let re = match glob_to_regex(&pattern) {
        Ok(r) => r,
        Err(e) => return ToolOutput::error(e),
    };
    let found = tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        walk(&root, &mut files, 100_000);
        let mut hits: Vec<String> = files
            .iter()
            .map(|f| rel(&root, f))
            .filter(|r| re.is_match(r))
            .collect();
        hits.sort();
        let total = hits.len();
        hits.truncate(limit);
        (hits, total)
    })
    .await
    .unwrap_or_default();
    let (hits, total) = found;
    if hits.is_empty() {
        return ToolOutput::ok("No files found.", format!("glob {pattern}: 0 files"));
    }
    let mut text = hits.join("\n");
    if total > hits.len() {
        text.push_str(&format!("\n[{} more not shown]", total - hits.len()));
    }
    ToolOutput::ok(text, format!("glob {pattern}: {total} files"))
}

pub async fn grep(policy: &Policy, args: &Value) -> ToolOutput {
    let Some(pattern) = arg_str(args, &["pattern", "query"]) else {
        return ToolOutput::error("missing required argument \"pattern\"");
    };
    let root = match arg_str(args, &["path"]) {
        Some(p) => match policy.check_read("grep", &p).await {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(e),
        },
        None => policy.workspace.clone(),
    };
    let literal = arg_bool(args, &["literal", "fixed_strings"]).unwrap_or(false);
    let ignore_case = arg_bool(args, &["ignoreCase", "ignore_case", "-i"]).unwrap_or(false);
    let context = arg_u64(args, &["context"]).unwrap_or(0) as usize;
    let limit = arg_u64(args, &["limit"]).unwrap_or(100) as usize;
    let source = if literal {
        regex::escape(&pattern)
    } else {
        pattern.clone()
    };
    let re = match RegexBuilder::new(&source)
        .case_insensitive(ignore_case)
        .build()
    {
        Ok(r) => r,
        Err(e) => return ToolOutput::error(format!("invalid regex \"{pattern}\": {e}")),
    };
    let filter = match arg_str(args, &["glob", "include"]) {
        Some(g) => match glob_to_regex(&g) {
            Ok(r) => Some(r),
            Err(e) => return ToolOutput::error(e),
        },
        None => None,
    };
    let (lines, files_hit, truncated) = tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        if root.is_file() {
            files.push(root.clone());
        } else {
            walk(&root, &mut files, 100_000);
        }
        let base = if root.is_file() {
            root.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            root.clone()
        };
        let mut out: Vec<String> = Vec::new();
        let mut files_hit = 0;
        let mut truncated = false;
        'files: for f in files {
            let r = rel(&base, &f);
            if filter.as_ref().is_some_and(|g| !g.is_match(&r)) {
                continue;
            }
            if std::fs::metadata(&f)
                .map(|m| m.len() > MAX_FILE_BYTES)
                .unwrap_or(true)
            {
                continue;
            }
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            if bytes.contains(&0) {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let mut hit = false;
            let mut last_shown: Option<usize> = None;
            for (i, line) in all.iter().enumerate() {
                if !re.is_match(line) {
                    continue;
                }
                hit = true;
                let from = i.saturating_sub(context);
                let to = (i + context).min(all.len().saturating_sub(1));
                for (j, l) in all.iter().enumerate().take(to + 1).skip(from) {
                    if last_shown.is_some_and(|s| j <= s) {
                        continue;
                    }
                    let sep = if j == i { ':' } else { '-' };
                    let l: String = l.chars().take(MAX_LINE_CHARS).collect();
                    out.push(format!("{r}{sep}{}{sep}{l}", j + 1));
                    last_shown = Some(j);
                }
                if out.len() >= limit {
                    truncated = true;
                    files_hit += 1;
                    break 'files;
                }
            }
            if hit {
                files_hit += 1;
            }
        }
        (out, files_hit, truncated)
    })
    .await
    .unwrap_or_default();
    if lines.is_empty() {
        return ToolOutput::ok("No matches found.", format!("grep {pattern}: 0 matches"));
    }
    let mut text = lines.join("\n");
    if truncated {
        text.push_str(&format!(
            "\n[Stopped at {limit} lines; narrow the pattern or raise limit.]"
        ));
    }
    ToolOutput::ok(
        text,
        format!("grep {pattern}: {} lines in {files_hit} files", lines.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shells() {
        let m = |p: &str, path: &str| glob_to_regex(p).map(|r| r.is_match(path)).unwrap_or(false);
        assert!(m("*.rs", "src/lib.rs"));
        assert!(m("src/**/*.rs", "src/a/b/c.rs"));
        assert!(m("src/**/*.rs", "src/c.rs"));
        assert!(!m("src/*.rs", "src/a/c.rs"));
        assert!(m("**/*.{js,ts}", "a/b.ts"));
        assert!(m("file?.[ch]", "x/file1.c"));
        assert!(!m("file?.[!ch]", "file1.c"));
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "axb"));
    }
}
