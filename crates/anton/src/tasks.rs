//! Task documents: markdown checklists and JSON task files.
//!
//! A task remembers where it came from (a line number, or an index into the JSON list) so that
//! marking it done rewrites only that entry, re-reading the file first because the agent may have
//! edited other parts of it in the meantime.

use std::path::{Path, PathBuf};

use crate::error::AntonError;
use crate::ojson::OJson;

/// Where a pending task lives in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskLocation {
    /// 1-based line number in a markdown checklist, with the line's leading whitespace.
    Markdown { line: usize, indent: String },
    /// A JSON task file. `None` is shape A (the root object is the one task); `Some(i)` is the
    /// i-th element of the task list (shape B `{tasks:[…]}` or shape C `[…]`).
    Json { index: Option<usize> },
}

/// One unchecked item of a task document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub text: String,
    /// JSON tasks only: `details`, with pending subtasks folded in.
    pub details: Option<String>,
    pub location: TaskLocation,
}

impl Task {
    /// The text handed to the agent: the task, plus its details when it has any.
    pub fn prompt_text(&self) -> String {
        match self.details.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() => format!("{}\nDetails: {d}", self.text),
            _ => self.text.clone(),
        }
    }
}

/// True when the path names a JSON task file (decided by extension, like the original).
pub fn is_json_task_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Reads a task file and returns its pending tasks in file order.
pub fn load_pending_tasks(path: &Path) -> Result<Vec<Task>, AntonError> {
    let raw = std::fs::read_to_string(path).map_err(|source| AntonError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if is_json_task_file(path) {
        parse_json_tasks(&raw, path)
    } else {
        Ok(parse_markdown_tasks(&raw))
    }
}

/// Marks one task done in its file, re-reading the file so concurrent edits survive.
pub fn mark_task_done(path: &Path, task: &Task) -> Result<(), AntonError> {
    let io = |source| AntonError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read_to_string(path).map_err(io)?;
    let updated = match &task.location {
        TaskLocation::Markdown { line, .. } => mark_markdown_done(&raw, *line),
        TaskLocation::Json { index } => mark_json_done(&raw, path, *index)?,
    };
    std::fs::write(path, updated).map_err(io)
}

// ─── Markdown ───────────────────────────────────────────────────────────────

fn split_lines(raw: &str) -> Vec<&str> {
    raw.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

/// Matches `^(\s*)- \[ \] (.+)$`: returns (indent, text).
fn match_unchecked(line: &str) -> Option<(&str, &str)> {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let rest = body.strip_prefix("- [ ] ")?;
    if rest.is_empty() {
        return None;
    }
    Some((indent, rest))
}

/// Every `- [ ] text` line is a pending task; nesting is not interpreted.
pub fn parse_markdown_tasks(raw: &str) -> Vec<Task> {
    split_lines(raw)
        .into_iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let (indent, text) = match_unchecked(line)?;
            Some(Task {
                text: text.trim().to_string(),
                details: None,
                location: TaskLocation::Markdown {
                    line: i + 1,
                    indent: indent.to_string(),
                },
            })
        })
        .collect()
}

/// Replaces `- [ ] ` with `- [x] ` on the given 1-based line; the document is rejoined with `\n`
/// and ends with exactly one `\n`.
pub fn mark_markdown_done(raw: &str, line_no: usize) -> String {
    let mut lines: Vec<String> = split_lines(raw).into_iter().map(String::from).collect();
    if line_no == 0 || line_no > lines.len() {
        return raw.to_string();
    }
    let idx = line_no - 1;
    if let Some((indent, _)) = match_unchecked(&lines[idx]) {
        let indent = indent.to_string();
        let rest = &lines[idx][indent.len() + "- [ ] ".len()..];
        lines[idx] = format!("{indent}- [x] {rest}");
    }
    // The original appended "\n" after joining, which grew the file by one blank line per
    // completed task when it already ended in a newline; a single trailing newline is kept.
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    format!("{}\n", lines.join("\n"))
}

// ─── JSON ───────────────────────────────────────────────────────────────────

fn invalid_json(path: &Path, msg: impl std::fmt::Display) -> AntonError {
    AntonError::InvalidJsonTaskFile {
        path: path.to_path_buf(),
        message: msg.to_string(),
    }
}

fn parse_json_root(raw: &str, path: &Path) -> Result<OJson, AntonError> {
    serde_json::from_str::<OJson>(raw).map_err(|e| invalid_json(path, e))
}

fn str_field<'a>(obj: &'a OJson, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| obj.get(n).and_then(OJson::as_str))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn is_complete(obj: &OJson) -> bool {
    if matches!(obj.get("done"), Some(OJson::Bool(true))) {
        return true;
    }
    obj.get("status")
        .and_then(OJson::as_str)
        .is_some_and(|s| matches!(s, "complete" | "completed" | "done"))
}

fn task_name(obj: &OJson) -> Option<&str> {
    str_field(obj, &["name", "title", "task"])
}

fn json_task(obj: &OJson, index: Option<usize>) -> Option<Task> {
    if !matches!(obj, OJson::Object(_)) || is_complete(obj) {
        return None;
    }
    let name = task_name(obj)?;
    let mut details = str_field(obj, &["details", "description"]).map(String::from);
    if let Some(OJson::Array(subs)) = obj.get("subtasks") {
        let lines: Vec<String> = subs
            .iter()
            .filter(|s| !is_complete(s))
            .filter_map(|s| {
                let n = task_name(s)?;
                Some(match str_field(s, &["details", "description"]) {
                    Some(d) => format!("- {n}: {d}"),
                    None => format!("- {n}"),
                })
            })
            .collect();
        if !lines.is_empty() {
            let folded = format!("Subtasks:\n{}", lines.join("\n"));
            details = Some(match details {
                Some(d) => format!("{d}\n{folded}"),
                None => folded,
            });
        }
    }
    Some(Task {
        text: name.to_string(),
        details,
        location: TaskLocation::Json { index },
    })
}

fn task_list(root: &OJson) -> Option<&[OJson]> {
    match root {
        OJson::Array(items) => Some(items),
        OJson::Object(_) => match root.get("tasks") {
            Some(OJson::Array(items)) => Some(items),
            _ => None,
        },
        _ => None,
    }
}

/// Shapes: A `{name, details, subtasks}` (one task), B `{tasks:[…]}`, C `[…]`.
pub fn parse_json_tasks(raw: &str, path: &Path) -> Result<Vec<Task>, AntonError> {
    let root = parse_json_root(raw, path)?;
    if let Some(items) = task_list(&root) {
        return Ok(items
            .iter()
            .enumerate()
            .filter_map(|(i, t)| json_task(t, Some(i)))
            .collect());
    }
    match root {
        OJson::Object(_) => Ok(json_task(&root, None).into_iter().collect()),
        _ => Err(invalid_json(
            path,
            "expected an object or an array of tasks",
        )),
    }
}

/// Sets `done: true, status: "complete"` on the task and re-serializes with 2-space indents,
/// keeping the file's key order.
pub fn mark_json_done(raw: &str, path: &Path, index: Option<usize>) -> Result<String, AntonError> {
    let mut root = parse_json_root(raw, path)?;
    let target = match index {
        None => Some(&mut root),
        Some(i) => match &mut root {
            OJson::Array(items) => items.get_mut(i),
            obj @ OJson::Object(_) => match obj.get_mut("tasks") {
                Some(OJson::Array(items)) => items.get_mut(i),
                _ => None,
            },
            _ => None,
        },
    };
    if let Some(task) = target {
        task.set("done", OJson::Bool(true));
        task.set("status", OJson::String("complete".into()));
    }
    let text = serde_json::to_string_pretty(&root).map_err(|e| invalid_json(path, e))?;
    Ok(format!("{text}\n"))
}

/// The file name for messages (`📄 Task file: \`name\``).
pub(crate) fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Absolute form of a path without touching the filesystem.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn markdown_only_dash_unchecked_boxes_count() {
        let doc = "# Plan\n- [ ] first\n  - [ ] nested  \n- [x] done\n* [ ] star\n1. [ ] numbered\n- [ ]\n-  [ ] two spaces\n\t- [ ] tabbed\n";
        let tasks = parse_markdown_tasks(doc);
        let got: Vec<(&str, usize, &str)> = tasks
            .iter()
            .map(|t| match &t.location {
                TaskLocation::Markdown { line, indent } => {
                    (t.text.as_str(), *line, indent.as_str())
                }
                TaskLocation::Json { .. } => panic!("a markdown file gave a JSON task"),
            })
            .collect();
        assert_eq!(
            got,
            vec![("first", 2, ""), ("nested", 3, "  "), ("tabbed", 9, "\t")]
        );
    }

    #[test]
    fn markdown_crlf_lines_are_parsed() {
        let tasks = parse_markdown_tasks("- [ ] a\r\n- [ ] b\r\n");
        assert_eq!(
            tasks.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }

    #[test]
    fn mark_done_rewrites_only_that_line() {
        let doc = "intro\n  - [ ] one\n- [ ] two\n";
        assert_eq!(
            mark_markdown_done(doc, 2),
            "intro\n  - [x] one\n- [ ] two\n"
        );
        assert_eq!(
            mark_markdown_done(doc, 3),
            "intro\n  - [ ] one\n- [x] two\n"
        );
        // No trailing newline in, one out.
        assert_eq!(mark_markdown_done("- [ ] x", 1), "- [x] x\n");
        // A line that is no longer unchecked is left alone.
        assert_eq!(mark_markdown_done("- [x] x\n", 1), "- [x] x\n");
    }

    #[test]
    fn prompt_text_adds_details_line() {
        let mut t = Task {
            text: "Add a flag".into(),
            details: None,
            location: TaskLocation::Json { index: Some(0) },
        };
        assert_eq!(t.prompt_text(), "Add a flag");
        t.details = Some("Use clap".into());
        assert_eq!(t.prompt_text(), "Add a flag\nDetails: Use clap");
    }

    #[test]
    fn json_shape_a_single_task_with_subtasks_folded() {
        let raw = r#"{"name":"Ship it","details":"Carefully","subtasks":[
            {"name":"a","details":"alpha"},{"name":"b","done":true},{"name":"c","status":"pending"}]}"#;
        let tasks = parse_json_tasks(raw, Path::new("t.json")).unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].text, "Ship it");
        assert_eq!(
            tasks[0].details.as_deref(),
            Some("Carefully\nSubtasks:\n- a: alpha\n- c")
        );
        assert_eq!(tasks[0].location, TaskLocation::Json { index: None });
    }

    #[test]
    fn json_shapes_b_and_c_skip_complete_tasks() {
        let list = r#"[{"name":"one"},{"name":"two","done":true},{"name":"three","status":"completed"},
            {"name":"four","status":"done"},{"name":"five","status":"complete"},{"name":"six","status":"todo"}]"#;
        let c = parse_json_tasks(list, Path::new("t.json")).unwrap();
        let b = parse_json_tasks(&format!(r#"{{"tasks":{list}}}"#), Path::new("t.json")).unwrap();
        for tasks in [c, b] {
            let names: Vec<_> = tasks.iter().map(|t| t.text.as_str()).collect();
            assert_eq!(names, ["one", "six"]);
            assert_eq!(tasks[1].location, TaskLocation::Json { index: Some(5) });
        }
    }

    #[test]
    fn json_mark_done_keeps_key_order_and_uses_two_spaces() {
        let raw = r#"{"tasks":[{"name":"x","zeta":1,"alpha":[1,2]}],"title":"T"}"#;
        let out = mark_json_done(raw, Path::new("t.json"), Some(0)).unwrap();
        assert_eq!(
            out,
            "{\n  \"tasks\": [\n    {\n      \"name\": \"x\",\n      \"zeta\": 1,\n      \"alpha\": [\n        1,\n        2\n      ],\n      \"done\": true,\n      \"status\": \"complete\"\n    }\n  ],\n  \"title\": \"T\"\n}\n"
        );
    }

    #[test]
    fn invalid_json_message_names_the_file() {
        let err = parse_json_tasks("{nope", Path::new("/x/tasks.json")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("Invalid JSON task file: /x/tasks.json (key must be a string"),
            "{msg}"
        );
        assert!(msg.ends_with(')'), "{msg}");
    }
}
