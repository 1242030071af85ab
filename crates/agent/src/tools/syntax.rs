//! A cheap parse check after `edit` and `write`, so an edit that breaks the file is reported
//! at once instead of by a confusing test failure several calls later.
//!
//! What is checked, by file extension:
//! - `.py`: `python3` parses the new text with `ast.parse` (no bytecode is written);
//! - `.js`, `.mjs`, `.cjs`: `node --check` on the new text (read from stdin);
//! - `.rs`: in-process, brackets `()[]{}` balanced, skipping comments, strings and char
//!   literals. This catches the usual broken edit (a lost or extra brace), not type errors.
//!
//! A missing interpreter means no check (nothing is claimed). When the new text fails, the old
//! text is checked too, so the model learns whether its edit broke the file or it was broken
//! already.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// How long an interpreter may take to parse one file.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

const PY_CHECK: &str = "import ast,sys\ntry:\n    ast.parse(sys.stdin.read())\nexcept SyntaxError as e:\n    print(f'line {e.lineno}: {e.msg}' + (f': {e.text.strip()}' if e.text else ''))\n    sys.exit(1)\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Python,
    JavaScript { module: bool },
    Rust,
}

fn lang_of(path: &Path, text: &str) -> Option<Lang> {
    match path.extension()?.to_str()? {
        "py" => Some(Lang::Python),
        "mjs" => Some(Lang::JavaScript { module: true }),
        "cjs" => Some(Lang::JavaScript { module: false }),
        "js" => Some(Lang::JavaScript {
            module: text
                .lines()
                .any(|l| l.starts_with("import ") || l.starts_with("export ")),
        }),
        "rs" => Some(Lang::Rust),
        _ => None,
    }
}

/// The note to add to an `edit`/`write` result when `new` does not parse; `None` when it does
/// or no check applies.
pub async fn check_change(path: &Path, old: Option<&str>, new: &str) -> Option<String> {
    let lang = lang_of(path, new)?;
    let (how, problem) = check(lang, new).await?;
    let before = match old {
        Some(old) => match check(lang, old).await {
            Some(_) => " The file already failed this check before this change.",
            None => " The file parsed before this change, so this change broke it.",
        },
        None => "",
    };
    Some(format!(
        "\n\nWARNING: syntax check failed after this change ({how}): {problem}.{before} Fix it before running the tests."
    ))
}

/// `(what was checked, the problem)` when `text` does not parse.
async fn check(lang: Lang, text: &str) -> Option<(&'static str, String)> {
    match lang {
        Lang::Python => run("python3", &["-c", PY_CHECK], text)
            .await
            .map(|p| ("python3 ast.parse", p)),
        Lang::JavaScript { module } => {
            let mut args = vec!["--check"];
            if module {
                args.push("--input-type=module");
            }
            args.push("-");
            run("node", &args, text)
                .await
                .map(|p| ("node --check", node_message(&p)))
        }
        Lang::Rust => rust_brackets(text).map(|p| ("bracket balance", p)),
    }
}

/// Run an interpreter with `text` on stdin; `Some(output)` when it exits non-zero.
async fn run(program: &str, args: &[&str], text: &str) -> Option<String> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A parser that stops reading early closes the pipe; its exit status still says.
        let _ = stdin.write_all(text.as_bytes()).await;
    }
    let out = tokio::time::timeout(CHECK_TIMEOUT, child.wait_with_output())
        .await
        .ok()?
        .ok()?;
    if out.status.success() {
        return None;
    }
    let mut msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if msg.is_empty() {
        msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    }
    Some(msg)
}

/// node prints `[stdin]:LINE`, the source line, a caret, then `SyntaxError: ...` and a stack.
fn node_message(raw: &str) -> String {
    let line = raw
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|n| n.trim().parse::<u64>().ok());
    let err = raw
        .lines()
        .find(|l| l.contains("Error:"))
        .unwrap_or("syntax error")
        .trim();
    match line {
        Some(n) => format!("line {n}: {err}"),
        None => err.to_string(),
    }
}

/// The first unbalanced bracket in Rust source, skipping `//` and nested `/* */` comments,
/// string literals (raw ones included) and char literals (told apart from lifetimes).
fn rust_brackets(src: &str) -> Option<String> {
    let c: Vec<char> = src.chars().collect();
    let mut stack: Vec<(char, usize)> = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        match ch {
            '\n' => line += 1,
            '/' if next == Some('/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if next == Some('*') => {
                let mut depth = 1;
                i += 2;
                while i < c.len() && depth > 0 {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 1;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 1;
                    }
                    i += 1;
                }
                continue;
            }
            'r' if matches!(next, Some('"') | Some('#'))
                && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while c.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if c.get(j) == Some(&'"') {
                    j += 1;
                    let start_line = line;
                    loop {
                        match c.get(j) {
                            None => {
                                return Some(format!(
                                    "string starting on line {start_line} is never closed"
                                ));
                            }
                            Some('\n') => line += 1,
                            Some('"') if (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) => {
                                j += hashes;
                                break;
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    i = j + 1;
                    continue;
                }
            }
            '"' => {
                let start_line = line;
                let mut j = i + 1;
                loop {
                    match c.get(j) {
                        None => {
                            return Some(format!(
                                "string starting on line {start_line} is never closed"
                            ));
                        }
                        Some('\\') => j += 1,
                        Some('\n') => line += 1,
                        Some('"') => break,
                        _ => {}
                    }
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            '\'' => {
                // 'x' or '\n' / '\u{..}' is a char; 'a without a closing quote is a lifetime.
                if next == Some('\\') {
                    let mut j = i + 2;
                    while j < c.len() && c[j] != '\'' && c[j] != '\n' {
                        j += 1;
                    }
                    i = j + 1;
                    continue;
                }
                if c.get(i + 2) == Some(&'\'') {
                    i += 3;
                    continue;
                }
            }
            '(' | '[' | '{' => stack.push((ch, line)),
            ')' | ']' | '}' => {
                let want = match ch {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match stack.pop() {
                    Some((open, _)) if open == want => {}
                    Some((open, at)) => {
                        return Some(format!(
                            "line {line}: `{ch}` closes the `{open}` opened on line {at}"
                        ));
                    }
                    None => return Some(format!("line {line}: `{ch}` has no opening bracket")),
                }
            }
            _ => {}
        }
        i += 1;
    }
    stack
        .last()
        .map(|(open, at)| format!("line {at}: `{open}` is never closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_balance_ignores_comments_strings_chars_and_lifetimes() {
        let ok = "fn f<'a>(x: &'a str) -> char {\n    // } not code\n    /* { /* nested } */ */\n    let s = \"}\\\"{\";\n    let r = r#\"}\"#;\n    let c = '}';\n    let e = '\\'';\n    if x.is_empty() { '{' } else { c }\n}\n";
        assert_eq!(rust_brackets(ok), None);
        assert_eq!(
            rust_brackets("fn f() {\n    if x {\n        y();\n}\n"),
            Some("line 1: `{` is never closed".into())
        );
        assert_eq!(
            rust_brackets("fn f() {\n    g(1];\n}\n"),
            Some("line 2: `]` closes the `(` opened on line 2".into())
        );
        assert_eq!(
            rust_brackets("fn f() {}\n}\n"),
            Some("line 2: `}` has no opening bracket".into())
        );
    }

    #[test]
    fn node_messages_keep_the_line_and_the_error() {
        let raw = "[stdin]:2\n\n\n\nSyntaxError: Unexpected end of input\n    at wrapSafe (node:internal)\n";
        assert_eq!(
            node_message(raw),
            "line 2: SyntaxError: Unexpected end of input"
        );
    }

    #[test]
    fn languages_by_extension() {
        assert_eq!(lang_of(Path::new("a.py"), ""), Some(Lang::Python));
        assert_eq!(
            lang_of(Path::new("a.js"), "export const x = 1;\n"),
            Some(Lang::JavaScript { module: true })
        );
        assert_eq!(
            lang_of(Path::new("a.js"), "module.exports = 1;\n"),
            Some(Lang::JavaScript { module: false })
        );
        assert_eq!(lang_of(Path::new("a.txt"), ""), None);
        assert_eq!(lang_of(Path::new("Makefile"), ""), None);
    }

    /// Runs only where python3 is installed (the check itself claims nothing without it).
    #[tokio::test]
    async fn python_breakage_is_reported_with_what_it_was_before() {
        if std::process::Command::new("python3")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("python3 not installed: skipped");
            return;
        }
        let p = Path::new("calc.py");
        assert_eq!(
            check_change(p, Some("x = 1\n"), "def f():\n    return 1\n").await,
            None
        );
        let note = check_change(p, Some("x = 1\n"), "def f(:\n    return 1\n")
            .await
            .unwrap_or_default();
        assert!(note.contains("python3 ast.parse"), "{note}");
        assert!(note.contains("line 1"), "{note}");
        assert!(note.contains("this change broke it"), "{note}");
        let note = check_change(p, Some("def (\n"), "def f(:\n")
            .await
            .unwrap_or_default();
        assert!(note.contains("already failed"), "{note}");
    }

    #[tokio::test]
    async fn javascript_breakage_is_reported() {
        if std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("node not installed: skipped");
            return;
        }
        let note = check_change(
            Path::new("sum.js"),
            None,
            "function sum(a, b) {\n  return a + b;\n",
        )
        .await
        .unwrap_or_default();
        assert!(note.contains("node --check"), "{note}");
        assert!(note.contains("SyntaxError"), "{note}");
        assert_eq!(
            check_change(
                Path::new("sum.mjs"),
                None,
                "export function sum(a, b) {\n  return a + b;\n}\n"
            )
            .await,
            None
        );
    }
}
