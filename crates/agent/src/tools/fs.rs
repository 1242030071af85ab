//! `read`, `write`, `edit`. Arguments use upstream's names (`path`, `oldText`, `newText`) and
//! accept the Claude-style aliases (`file_path`, `old_string`, `new_string`).

use base64::Engine;
use serde_json::Value;

use super::{ToolOutput, arg_str, arg_u64};
use crate::message::{ContentBlock, image_mime};
use crate::tools::policy::Policy;

/// The names each argument is accepted under, upstream's first.
pub const PATH_NAMES: &[&str] = &["path", "file_path", "filePath"];
pub const OLD_TEXT_NAMES: &[&str] = &["oldText", "old_string", "oldString"];
pub const NEW_TEXT_NAMES: &[&str] = &["newText", "new_string", "newString"];
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
            "\n[Showing lines {offset}-{last} of {total}. Use offset={} to continue.]",
            last + 1
        ));
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
    match tokio::fs::write(&path, content.as_bytes()).await {
        Ok(()) => ToolOutput::ok(
            format!(
                "Successfully wrote {} bytes to {}",
                content.len(),
                path.display()
            ),
            format!("wrote {} ({} bytes)", path.display(), content.len()),
        ),
        Err(e) => ToolOutput::error(format!("cannot write {}: {e}", path.display())),
    }
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
    let path = match policy.check_write("edit", &raw).await {
        Ok(p) => p,
        Err(e) => return ToolOutput::error(e),
    };
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => t,
        Err(e) => return ToolOutput::error(format!("cannot read {}: {e}", path.display())),
    };
    let count = text.matches(old.as_str()).count();
    if count == 0 {
        return ToolOutput::error(format!(
            "Could not find the exact text in {}. The old text must match exactly, including whitespace and newlines.",
            path.display()
        ));
    }
    if count > 1 {
        return ToolOutput::error(format!(
            "Found {count} occurrences of the text in {}. The text must be unique: include more context.",
            path.display()
        ));
    }
    let updated = text.replacen(old.as_str(), &new, 1);
    match tokio::fs::write(&path, updated).await {
        Ok(()) => ToolOutput::ok(
            format!("Successfully replaced text in {}.", path.display()),
            format!("edited {}", path.display()),
        ),
        Err(e) => ToolOutput::error(format!("cannot write {}: {e}", path.display())),
    }
}
