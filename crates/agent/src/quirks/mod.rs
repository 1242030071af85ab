//! What local models do that hosted APIs do not, and how the agent copes: reasoning inline in
//! `content` ([`think`]), tool calls written as text ([`text_tools`]), and a model calling the
//! same tool over and over ([`repeat`]), or ending a turn without running the tests after a
//! change ([`verify`]). Pure functions over text and JSON, unit-tested on
//! captured server output.

pub mod repeat;
pub mod text_tools;
pub mod think;
pub mod verify;

use crate::client::ToolSpec;
use crate::message::{AssistantMessage, ContentBlock, StopReason};

/// Turn a reply whose tool calls were written as text into one with real tool calls. Only
/// when the reply has no structured calls and tools were offered; returns whether it did.
pub fn promote_text_tool_calls(msg: &mut AssistantMessage, tools: &[ToolSpec]) -> bool {
    if tools.is_empty() || !msg.tool_calls().is_empty() {
        return false;
    }
    let Some(found) = text_tools::extract(&msg.text(), tools) else {
        return false;
    };
    msg.content
        .retain(|b| !matches!(b, ContentBlock::Text { .. }));
    if !found.text.is_empty() {
        msg.content.push(ContentBlock::Text { text: found.text });
    }
    for c in found.calls {
        msg.content.push(ContentBlock::ToolCall {
            id: format!("call_{}", uuid::Uuid::new_v4().simple()),
            name: c.name,
            arguments: c.arguments,
        });
    }
    msg.stop_reason = StopReason::ToolUse;
    true
}
