//! `read`, `write`, `edit`. Arguments use upstream's names (`path`, `oldText`, `newText`) and
//! accept the Claude-style aliases (`file_path`, `old_string`, `new_string`).

use base64::Engine;
use serde_json::Value;

use super::{ToolOutput, arg_bool, arg_str, arg_u64, feedback, syntax};
use crate::message::{ContentBlock, image_mime};
use crate::tools::policy::Policy;

/// The names each argument is accepted under, upstream's first.
pub const PATH_NAMES: &[&str] = &["path", "file_path", "filePath"];
pub const OLD_TEXT_NAMES: &[&str] = &["oldText", "old_string", "oldString"];
pub const NEW_TEXT_NAMES: &[&str] = &["newText", "new_string", "newString"];
pub const REPLACE_ALL_NAMES: &[&str] = &["replace_all", "replaceAll"];
pub const ARG_NAMES: &[&[&str]] = &[PATH_NAMES, OLD_TEXT_NAMES, NEW_TEXT_NAMES];

pub const MAX_READ_LINES: usize = 2000;
pub const MAX_READ_BYTES: usize = 50 * 1024;

fn path_arg(args: &Value) -> Result<String, String> {
    arg_str(args, PATH_NAMES).ok_or_else(|| "missing required argument \"path\"".to_string())
}

pub async fn read(policy: &Policy, args: &Value) -> ToolOutput {
    let raw = match path_arg(args) {
        Ok(p) => p,
        Err(e) => return ToolOutput::error(e),
    };
    let path = match policy.check_read("read", &raw).await {
        Ok(p) => p,
        Err(e) => return ToolOutput::error(e),
    };
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) => return ToolOutput::error(format!("cannot read {}: {e}", path.display())),
    };
    if let Some(mime) = image_mime(&path) {
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        return ToolOutput {
            ok: true,
            content: vec![
                ContentBlock::Text {
                    text: format!("Read image file [{mime}]"),
                },
                ContentBlock::Image {
                    data,
                    mime_type: mime.into(),
                },
            ],
            summary: format!("image {} ({} bytes)", path.display(), bytes.len()),
        };
    }
    if bytes.contains(&0) {
        return ToolOutput::error(format!(
            "{} is a binary file ({} bytes); not shown",
            path.display(),
            bytes.len()
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let total = lines.len();
    let offset = arg_u64(args, &["offset"]).unwrap_or(1).max(1) as usize;
    if offset > total.max(1) {
        return ToolOutput::error(format!(
            "offset {offset} is beyond the end of {} ({total} lines)",
            path.display()
        ));
    }
    let limit = arg_u64(args, &["limit"])
        .map(|l| l as usize)
        .unwrap_or(MAX_READ_LINES)
        .min(MAX_READ_LINES);
    let mut out = String::new();
    let mut shown = 0;
    for line in lines.iter().skip(offset - 1).take(limit) {
        if out.len() + line.len() + 1 > MAX_READ_BYTES {
            break;
        }
        out.push_str(line);
        out.push('\n');
        shown += 1;
    }
    let last = offset - 1 + shown;
    if last < total {
        out.push_str(&format!(
            "\n[Showing lines {offset}-{last} of {total}. More remains: call read with path \"{raw}\" and offset={} to see the next lines.]",
            last + 1
        ));
    } else if total == 0 {
        out.push_str("(the file is empty)");
    }
    ToolOutput::ok(out, format!("read {} ({shown} lines)", path.display()))
}

pub async fn write(policy: &Policy, args: &Value) -> ToolOutput {
    let raw = match path_arg(args) {
        Ok(p) => p,
        Err(e) => return ToolOutput::error(e),
    };
    let Some(content) = arg_str(args, &["content", "text"]) else {
        return ToolOutput::error("missing required argument \"content\"");
    };
    let path = match policy.check_write("write", &raw).await {
        Ok(p) => p,
        Err(e) => return ToolOutput::error(e),
    };
    if let Some(dir) = path.parent()
        && let Err(e) = tokio::fs::create_dir_all(dir).await
    {
        return ToolOutput::error(format!("cannot create {}: {e}", dir.display()));
    }
    let before = tokio::fs::read_to_string(&path).await.ok();
    if let Err(e) = tokio::fs::write(&path, content.as_bytes()).await {
        return ToolOutput::error(format!("cannot write {}: {e}", path.display()));
    }
    let mut body = format!(
        "Successfully wrote {} bytes ({} lines) to {}",
        content.len(),
        content.lines().count(),
        path.display()
    );
    if let Some(note) = syntax::check_change(&path, before.as_deref(), &content).await {
        body.push_str(&note);
    }
    ToolOutput::ok(
        body,
        format!("wrote {} ({} bytes)", path.display(), content.len()),
    )
}

pub async fn edit(policy: &Policy, args: &Value) -> ToolOutput {
    let raw = match path_arg(args) {
        Ok(p) => p,
        Err(e) => return ToolOutput::error(e),
    };
    let (Some(old), Some(new)) = (arg_str(args, OLD_TEXT_NAMES), arg_str(args, NEW_TEXT_NAMES))
    else {
        return ToolOutput::error("missing required arguments \"oldText\" and \"newText\"");
    };
    if old.is_empty() {
        return ToolOutput::error("\"oldText\" must not be empty");
    }
    if old == new {
        return ToolOutput::error(
            "oldText and newText are identical: this edit would change nothing, so nothing was done. Put the corrected text in newText.",
        );
    }
    let replace_all = arg_bool(args, REPLACE_ALL_NAMES).unwrap_or(false);
    let path = match policy.check_write("edit", &raw).await {
        Ok(p) => p,
        Err(e) => return ToolOutput::error(e),
    };
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => t,
        Err(e) => return ToolOutput::error(format!("cannot read {}: {e}", path.display())),
    };
    let shown = path.display().to_string();
    let starts: Vec<usize> = text.match_indices(old.as_str()).map(|(i, _)| i).collect();
    if starts.is_empty() {
        return ToolOutput::error(feedback::not_found(&shown, &text, &old));
    }
    if starts.len() > 1 && !replace_all {
        return ToolOutput::error(feedback::ambiguous(&shown, &text, &old));
    }
    // Where each replacement lands in the new text: earlier replacements shift later ones.
    let mut regions = Vec::with_capacity(starts.len());
    let mut updated = String::with_capacity(text.len());
    let mut from = 0;
    for &s in &starts {
        updated.push_str(&text[from..s]);
        let at = updated.len();
        updated.push_str(&new);
        regions.push((at, new.len()));
        from = s + old.len();
    }
    updated.push_str(&text[from..]);
    if let Err(e) = tokio::fs::write(&path, &updated).await {
        return ToolOutput::error(format!("cannot write {}: {e}", path.display()));
    }
    let lines: Vec<(usize, usize)> = regions
        .iter()
        .map(|&(at, len)| feedback::span(&updated, at, &updated[at..at + len]))
        .collect();
    let mut body = feedback::edited(&shown, &updated, &lines);
    if let Some(note) = syntax::check_change(&path, Some(&text), &updated).await {
        body.push_str(&note);
    }
    ToolOutput::ok(
        body,
        format!(
            "edited {}{}",
            path.display(),
            if starts.len() > 1 {
                format!(" ({} occurrences)", starts.len())
            } else {
                String::new()
            }
        ),
    )
}
