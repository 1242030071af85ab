//! `apply_patch {input}`: the patch format OpenAI's models are trained on (Codex's):
//!
//! ```text
//! *** Begin Patch
//! *** Add File: path          followed by `+` lines
//! *** Delete File: path
//! *** Update File: path
//! *** Move to: new/path       (optional)
//! @@ optional line to find first
//!  context line
//! -removed line
//! +added line
//! *** End of File             (optional: the chunk ends at the end of the file)
//! *** End Patch
//! ```
//!
//! Every file is checked against the policy as `write` is, and every change is worked out
//! before the first file is touched, so a patch that does not apply changes nothing.

use std::path::PathBuf;

use serde_json::Value;

use super::{ToolOutput, arg_str};
use crate::tools::policy::Policy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hunk {
    Add {
        path: String,
        contents: String,
    },
    Delete {
        path: String,
    },
    Update {
        path: String,
        move_to: Option<String>,
        chunks: Vec<Chunk>,
    },
}

/// One `@@` section of an update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunk {
    /// The text after `@@`: a line to find before matching `old`.
    pub anchor: Option<String>,
    pub old: Vec<String>,
    pub new: Vec<String>,
    pub end_of_file: bool,
}

fn err(line: usize, msg: impl std::fmt::Display) -> String {
    format!("invalid patch at line {line}: {msg}")
}

/// Parses a whole patch.
pub fn parse(input: &str) -> Result<Vec<Hunk>, String> {
    let text = input.trim();
    let lines: Vec<&str> = text.lines().collect();
    if lines.first().map(|l| l.trim()) != Some("*** Begin Patch") {
        return Err("the patch must start with \"*** Begin Patch\"".into());
    }
    if lines.last().map(|l| l.trim()) != Some("*** End Patch") {
        return Err("the patch must end with \"*** End Patch\"".into());
    }
    let body = &lines[1..lines.len() - 1];
    let mut hunks = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let n = i + 2;
        let line = body[i];
        if let Some(p) = line.strip_prefix("*** Add File: ") {
            let mut contents = String::new();
            i += 1;
            while i < body.len() && !body[i].starts_with("*** ") {
                match body[i].strip_prefix('+') {
                    Some(l) => {
                        contents.push_str(l);
                        contents.push('\n');
                    }
                    None => return Err(err(i + 2, "lines of an added file start with '+'")),
                }
                i += 1;
            }
            hunks.push(Hunk::Add {
                path: p.trim().to_string(),
                contents,
            });
        } else if let Some(p) = line.strip_prefix("*** Delete File: ") {
            hunks.push(Hunk::Delete {
                path: p.trim().to_string(),
            });
            i += 1;
        } else if let Some(p) = line.strip_prefix("*** Update File: ") {
            i += 1;
            let mut move_to = None;
            if let Some(m) = body.get(i).and_then(|l| l.strip_prefix("*** Move to: ")) {
                move_to = Some(m.trim().to_string());
                i += 1;
            }
            let mut chunks: Vec<Chunk> = Vec::new();
            while i < body.len() {
                let l = body[i];
                if l.trim() == "*** End of File" {
                    match chunks.last_mut() {
                        Some(c) => c.end_of_file = true,
                        None => return Err(err(i + 2, "\"*** End of File\" before any change")),
                    }
                    i += 1;
                    continue;
                }
                if l.starts_with("*** ") {
                    break;
                }
                if let Some(a) = l.strip_prefix("@@") {
                    let a = a.trim();
                    chunks.push(Chunk {
                        anchor: (!a.is_empty()).then(|| a.to_string()),
                        ..Chunk::default()
                    });
                    i += 1;
                    continue;
                }
                if chunks.is_empty() || chunks.last().is_some_and(|c| c.end_of_file) {
                    // The first chunk may leave out its `@@` line.
                    chunks.push(Chunk::default());
                }
                let Some(c) = chunks.last_mut() else {
                    return Err(err(i + 2, "a change outside a chunk"));
                };
                match l.chars().next() {
                    Some('+') => c.new.push(l[1..].to_string()),
                    Some('-') => c.old.push(l[1..].to_string()),
                    Some(' ') => {
                        c.old.push(l[1..].to_string());
                        c.new.push(l[1..].to_string());
                    }
                    // An empty line is an empty context line (editors strip the space).
                    None => {
                        c.old.push(String::new());
                        c.new.push(String::new());
                    }
                    Some(_) => {
                        return Err(err(
                            i + 2,
                            format!(
                                "expected a line starting with ' ', '-', '+' or \"@@\", got: {l}"
                            ),
                        ));
                    }
                }
                i += 1;
            }
            if chunks.iter().all(|c| c.old.is_empty() && c.new.is_empty()) && move_to.is_none() {
                return Err(err(
                    n,
                    format!("the update of {} changes nothing", p.trim()),
                ));
            }
            hunks.push(Hunk::Update {
                path: p.trim().to_string(),
                move_to,
                chunks,
            });
        } else if line.trim().is_empty() {
            i += 1;
        } else {
            return Err(err(
                n,
                format!(
                    "expected \"*** Add File: \", \"*** Delete File: \" or \"*** Update File: \", got: {line}"
                ),
            ));
        }
    }
    if hunks.is_empty() {
        return Err("the patch holds no file operations".into());
    }
    Ok(hunks)
}

/// Where `pattern` occurs in `lines` at or after `from`: exact first, then ignoring trailing
/// whitespace, then ignoring surrounding whitespace (models often get indentation of blank
/// lines wrong).
fn seek(lines: &[String], pattern: &[String], from: usize, at_end: bool) -> Option<usize> {
    if pattern.is_empty() {
        return Some(if at_end { lines.len() } else { from });
    }
    if pattern.len() > lines.len() {
        return None;
    }
    let last_start = lines.len() - pattern.len();
    let starts: Vec<usize> = if at_end {
        vec![last_start]
    } else {
        (from..=last_start).collect()
    };
    let cmps: [fn(&str, &str) -> bool; 3] = [
        |a, b| a == b,
        |a, b| a.trim_end() == b.trim_end(),
        |a, b| a.trim() == b.trim(),
    ];
    for eq in cmps {
        for &s in &starts {
            if s < from {
                continue;
            }
            if pattern
                .iter()
                .enumerate()
                .all(|(k, p)| eq(&lines[s + k], p))
            {
                return Some(s);
            }
        }
    }
    None
}

/// The file's new text after `chunks`.
pub fn apply_chunks(original: &str, chunks: &[Chunk], path: &str) -> Result<String, String> {
    let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
    let mut cursor = 0;
    for c in chunks {
        if let Some(a) = &c.anchor {
            let found = seek(&lines, std::slice::from_ref(a), cursor, false)
                .ok_or_else(|| format!("{path}: cannot find the line \"{a}\" named after @@"))?;
            cursor = found + 1;
        }
        let at = seek(&lines, &c.old, cursor, c.end_of_file)
            .or_else(|| {
                // A trailing empty context line stands for the end of the file.
                let trimmed: Vec<String> = match c.old.last() {
                    Some(l) if l.is_empty() => c.old[..c.old.len() - 1].to_vec(),
                    _ => return None,
                };
                seek(&lines, &trimmed, cursor, c.end_of_file)
            })
            .ok_or_else(|| {
                format!(
                    "{path}: cannot find these lines to replace:\n{}",
                    c.old.join("\n")
                )
            })?;
        let take = c.old.len().min(lines.len() - at);
        let new = c.new.clone();
        let n = new.len();
        lines.splice(at..at + take, new);
        cursor = at + n;
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

/// One worked-out change, ready to write.
enum Change {
    Write {
        path: PathBuf,
        text: String,
        tag: char,
    },
    Remove {
        path: PathBuf,
    },
}

/// Checks a path as `write` does; with `workspace_only` a path outside is refused outright.
async fn check(policy: &Policy, raw: &str, workspace_only: bool) -> Result<PathBuf, String> {
    let p = policy.resolve(raw);
    if workspace_only && !policy.in_workspace(&p) {
        return Err(format!(
            "Refused: {} is outside the workspace {} (tools.exec.applyPatch.workspaceOnly)",
            p.display(),
            policy.workspace.display()
        ));
    }
    policy.check_write("apply_patch", raw).await
}

pub async fn apply_patch(policy: &Policy, args: &Value, workspace_only: bool) -> ToolOutput {
    let Some(input) = arg_str(args, &["input", "patch"]) else {
        return ToolOutput::error("missing required argument \"input\"");
    };
    let hunks = match parse(&input) {
        Ok(h) => h,
        Err(e) => return ToolOutput::error(e),
    };
    let mut changes = Vec::new();
    let mut report = Vec::new();
    for h in &hunks {
        let planned: Result<(), String> = async {
            match h {
                Hunk::Add { path, contents } => {
                    let p = check(policy, path, workspace_only).await?;
                    report.push(format!("A {path}"));
                    changes.push(Change::Write {
                        path: p,
                        text: contents.clone(),
                        tag: 'A',
                    });
                }
                Hunk::Delete { path } => {
                    let p = check(policy, path, workspace_only).await?;
                    if !p.is_file() {
                        return Err(format!("{path}: no such file to delete"));
                    }
                    report.push(format!("D {path}"));
                    changes.push(Change::Remove { path: p });
                }
                Hunk::Update {
                    path,
                    move_to,
                    chunks,
                } => {
                    let p = check(policy, path, workspace_only).await?;
                    let original = tokio::fs::read_to_string(&p)
                        .await
                        .map_err(|e| format!("{path}: cannot read: {e}"))?;
                    let text = apply_chunks(&original, chunks, path)?;
                    match move_to {
                        Some(dest) => {
                            let d = check(policy, dest, workspace_only).await?;
                            report.push(format!("M {dest}"));
                            changes.push(Change::Write {
                                path: d,
                                text,
                                tag: 'M',
                            });
                            changes.push(Change::Remove { path: p });
                        }
                        None => {
                            report.push(format!("M {path}"));
                            changes.push(Change::Write {
                                path: p,
                                text,
                                tag: 'M',
                            });
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = planned {
            return ToolOutput::error(format!("{e}\nNo file was changed."));
        }
    }
    let (mut added, mut modified, mut deleted) = (0, 0, 0);
    for c in changes {
        let done = match &c {
            Change::Write { path, text, tag } => {
                if *tag == 'A' {
                    added += 1;
                } else {
                    modified += 1;
                }
                let dir_ok = match path.parent() {
                    Some(d) => tokio::fs::create_dir_all(d).await,
                    None => Ok(()),
                };
                match dir_ok {
                    Ok(()) => tokio::fs::write(path, text.as_bytes()).await,
                    Err(e) => Err(e),
                }
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
            }
            Change::Remove { path } => {
                deleted += 1;
                tokio::fs::remove_file(path)
                    .await
                    .map_err(|e| format!("cannot delete {}: {e}", path.display()))
            }
        };
        if let Err(e) = done {
            return ToolOutput::error(e);
        }
    }
    ToolOutput::ok(
        format!(
            "Success. Updated the following files:\n{}",
            report.join("\n")
        ),
        format!("patched: {added} added, {modified} modified, {deleted} deleted"),
    )
}

/// Whether `provider/model` is an OpenAI-family model, the only ones upstream offers
/// `apply_patch` to: an `openai`/`openai-codex` provider, or (through a gateway such as
/// LiteLLM) a GPT, o-series or Codex model id.
pub fn is_openai_family(provider: &str, model: &str) -> bool {
    if matches!(
        provider,
        "openai" | "openai-codex" | "azure" | "azure-openai"
    ) {
        return true;
    }
    let id = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    id.starts_with("gpt-")
        || id.contains("codex")
        || ["o1", "o3", "o4"]
            .iter()
            .any(|o| id == *o || id.starts_with(&format!("{o}-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCH: &str = "*** Begin Patch
*** Add File: new/hello.txt
+hello
+world
*** Update File: src/lib.rs
@@ fn two() {
-    2
+    22
*** Delete File: old.txt
*** End Patch";

    #[test]
    fn parses_the_three_operations() {
        let h = parse(PATCH).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.len(), 3);
        assert_eq!(
            h[0],
            Hunk::Add {
                path: "new/hello.txt".into(),
                contents: "hello\nworld\n".into()
            }
        );
        let Hunk::Update { chunks, .. } = &h[1] else {
            panic!("{h:?}")
        };
        assert_eq!(chunks[0].anchor.as_deref(), Some("fn two() {"));
        assert_eq!(chunks[0].old, ["    2"]);
        assert_eq!(chunks[0].new, ["    22"]);
        assert_eq!(
            h[2],
            Hunk::Delete {
                path: "old.txt".into()
            }
        );
        assert!(parse("*** Update File: x\n").is_err());
        assert!(
            parse("*** Begin Patch\n*** Frobnicate: x\n*** End Patch")
                .err()
                .unwrap_or_default()
                .contains("line 2")
        );
    }

    #[test]
    fn chunks_apply_after_their_anchor_and_at_the_end() {
        let src = "fn one() {\n    2\n}\nfn two() {\n    2\n}\n";
        let h = parse(PATCH).unwrap_or_else(|e| panic!("{e}"));
        let Hunk::Update { chunks, .. } = &h[1] else {
            panic!()
        };
        assert_eq!(
            apply_chunks(src, chunks, "x").unwrap_or_else(|e| panic!("{e}")),
            "fn one() {\n    2\n}\nfn two() {\n    22\n}\n"
        );
        let eof = [Chunk {
            old: vec!["}".into()],
            new: vec!["}".into(), "// end".into()],
            end_of_file: true,
            ..Chunk::default()
        }];
        assert_eq!(
            apply_chunks(src, &eof, "x").unwrap_or_else(|e| panic!("{e}")),
            "fn one() {\n    2\n}\nfn two() {\n    2\n}\n// end\n"
        );
        let missing = [Chunk {
            old: vec!["nope".into()],
            new: vec![],
            ..Chunk::default()
        }];
        assert!(apply_chunks(src, &missing, "x").is_err());
    }

    #[test]
    fn openai_family() {
        assert!(is_openai_family("openai", "anything"));
        assert!(is_openai_family("litellm", "gpt-4o"));
        assert!(is_openai_family("litellm", "openai/gpt-5-codex"));
        assert!(is_openai_family("litellm", "o3-mini"));
        assert!(!is_openai_family("litellm", "claude-opus-4-6"));
        assert!(!is_openai_family("ollama", "qwen2.5-coder:7b"));
    }
}
