//! Compaction: when a session's context nears the model's window (or the provider refuses it
//! as too long, or the user types `/compact`), the older turns are summarised by the model into
//! a `compaction` transcript entry and the newest turns are kept verbatim. The transcript file
//! keeps every original message; only the context sent to the model shrinks.
//!
//! Defaults (`agents.defaults.compaction`):
//! * `reserveTokens` 16384, floored at `reserveTokensFloor` 20000, and never more than half the
//!   window: compaction starts once the context passes `contextWindow - reserve`;
//! * `maxHistoryShare` (unset): when set, the threshold is also at most that share of the window;
//! * `keepRecentTokens` 20000: about that much of the newest turns stays verbatim (at least the
//!   newest user turn does, unless it alone is over this, when the cut falls between its model
//!   rounds and at least the newest round stays);
//! * `identifierPolicy` `strict`: the summary must keep ids, paths and hashes verbatim.
//!
//! On a context-overflow error the turn compacts and retries, at most
//! [`MAX_OVERFLOW_COMPACTIONS`] times.

use serde_json::Value;

use crate::config::schema::CompactionConfig;
use crate::message::{AgentMessage, ContentBlock};

pub const DEFAULT_RESERVE_TOKENS: u64 = 16_384;
pub const DEFAULT_RESERVE_TOKENS_FLOOR: u64 = 20_000;
pub const DEFAULT_KEEP_RECENT_TOKENS: u64 = 20_000;
/// Compact-and-retry rounds after context-overflow errors within one turn.
pub const MAX_OVERFLOW_COMPACTIONS: usize = 3;
/// Tool results longer than this are cut in the text handed to the summariser.
const SUMMARY_TOOL_RESULT_CHARS: usize = 2_000;

/// Why a compaction ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionReason {
    Threshold,
    Overflow,
    Manual,
}

impl CompactionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Threshold => "threshold",
            Self::Overflow => "overflow",
            Self::Manual => "manual",
        }
    }
}

/// `agents.defaults.compaction` with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub auto: bool,
    pub reserve_tokens: u64,
    pub keep_recent_tokens: u64,
    pub max_history_share: Option<f64>,
    pub strict_identifiers: bool,
    pub identifier_instructions: Option<String>,
}

impl Settings {
    pub fn from_config(c: Option<&CompactionConfig>) -> Self {
        let floor = c
            .and_then(|c| c.reserve_tokens_floor)
            .unwrap_or(DEFAULT_RESERVE_TOKENS_FLOOR);
        let reserve = c
            .and_then(|c| c.reserve_tokens)
            .unwrap_or(DEFAULT_RESERVE_TOKENS)
            .max(floor);
        let policy = c.and_then(|c| c.identifier_policy.as_deref());
        Self {
            auto: c.and_then(|c| c.enabled) != Some(false),
            reserve_tokens: reserve,
            keep_recent_tokens: c
                .and_then(|c| c.keep_recent_tokens)
                .unwrap_or(DEFAULT_KEEP_RECENT_TOKENS),
            max_history_share: c
                .and_then(|c| c.max_history_share)
                .map(|s| s.clamp(0.01, 0.98)),
            strict_identifiers: policy != Some("off"),
            identifier_instructions: c
                .filter(|_| policy == Some("custom"))
                .and_then(|c| c.identifier_instructions.clone()),
        }
    }

    /// Context tokens past which the session compacts.
    pub fn threshold(&self, context_window: u64) -> u64 {
        let reserve = self.reserve_tokens.min(context_window / 2);
        let mut t = context_window.saturating_sub(reserve);
        if let Some(share) = self.max_history_share {
            t = t.min((context_window as f64 * share) as u64);
        }
        t
    }
}

/// A rough token count (4 characters a token; an image as 1200).
pub fn estimate_message(m: &AgentMessage) -> u64 {
    let blocks: &[ContentBlock] = match m {
        AgentMessage::User { content, .. } | AgentMessage::ToolResult { content, .. } => content,
        AgentMessage::Assistant(a) => &a.content,
    };
    let chars: usize = blocks
        .iter()
        .map(|b| match b {
            ContentBlock::Text { text } => text.len(),
            ContentBlock::Thinking { thinking, .. } => thinking.len(),
            ContentBlock::ToolCall {
                name, arguments, ..
            } => name.len() + arguments.to_string().len(),
            ContentBlock::Image { .. } => 4_800,
        })
        .sum();
    (chars as u64).div_ceil(4) + 4
}

/// Tokens the context holds now: the newest trustworthy reported usage plus an estimate of
/// what came after it, or an estimate of everything. Usage reported before the latest
/// compaction (`usage_valid_from`) described a longer context and is not used.
pub fn estimate_context(messages: &[AgentMessage], usage_valid_from: usize) -> u64 {
    let last_usage = messages
        .iter()
        .enumerate()
        .skip(usage_valid_from)
        .rev()
        .find_map(|(i, m)| match m {
            AgentMessage::Assistant(a) => {
                let u = a.usage;
                let t = u.input + u.output + u.cache_read + u.cache_write;
                (t > 0).then_some((i, t))
            }
            _ => None,
        });
    match last_usage {
        Some((i, t)) => t + messages[i + 1..].iter().map(estimate_message).sum::<u64>(),
        None => messages.iter().map(estimate_message).sum(),
    }
}

/// Where the kept part starts. Preferably a stored user message, so a turn stays whole: the
/// newest user turn is always kept, older ones while they fit in `keep_recent`. When the newest
/// turn alone is over `keep_recent` (a long run of tool calls), the cut may fall inside it, at
/// the start of a model round (an assistant message), so that a call and its results are never
/// split; the newest round is always kept. `None` when nothing stored would be summarised.
/// `is_stored(i)` tells whether message `i` is a transcript entry (not an earlier summary).
pub fn cut_point(
    messages: &[AgentMessage],
    keep_recent: u64,
    is_stored: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut suffix = vec![0u64; messages.len() + 1];
    for i in (0..messages.len()).rev() {
        suffix[i] = suffix[i + 1] + estimate_message(&messages[i]);
    }
    let newest_first = |pick: &dyn Fn(&AgentMessage) -> bool, floor: usize| {
        let mut chosen: Option<usize> = None;
        for i in (floor..messages.len()).rev() {
            if !pick(&messages[i]) || !is_stored(i) {
                continue;
            }
            match chosen {
                None => chosen = Some(i),
                Some(_) if suffix[i] <= keep_recent => chosen = Some(i),
                Some(_) => break,
            }
        }
        chosen.filter(|&c| (0..c).any(&is_stored))
    };
    let by_turn = newest_first(&|m| matches!(m, AgentMessage::User { .. }), 0);
    let newest_user = messages
        .iter()
        .rposition(|m| matches!(m, AgentMessage::User { .. }));
    if newest_user.is_some_and(|u| suffix[u] <= keep_recent) {
        return by_turn;
    }
    let floor = newest_user.map_or(0, |u| u + 1);
    let by_round = newest_first(&|m| matches!(m, AgentMessage::Assistant(_)), floor);
    by_round.or(by_turn)
}

/// The start of the newest turn, when something stored comes before it: what `/compact`
/// keeps when [`cut_point`] finds nothing to do.
pub fn newest_turn_cut(
    messages: &[AgentMessage],
    is_stored: impl Fn(usize) -> bool,
) -> Option<usize> {
    let c = (0..messages.len())
        .rev()
        .find(|&i| matches!(messages[i], AgentMessage::User { .. }) && is_stored(i))?;
    (0..c).any(is_stored).then_some(c)
}

/// The system prompt of the summarising call.
pub fn summary_system_prompt(s: &Settings) -> String {
    let mut p = String::from(
        "You summarise a conversation between a user and a coding agent so the agent can continue \
         the work from the summary and the newest messages alone. Write a concise, structured \
         summary: the user's goals and constraints, decisions made, files read and changed (with \
         paths), commands run and their outcomes, errors met and how they were resolved, and what \
         remains to be done. Do not continue the conversation and do not call tools; reply with \
         the summary only.",
    );
    if s.strict_identifiers {
        p.push_str(
            "\nKeep identifiers exactly as written: file paths, function and variable names, ids, \
             hashes, URLs and version numbers.",
        );
    }
    if let Some(extra) = &s.identifier_instructions {
        p.push('\n');
        p.push_str(extra);
    }
    p
}

/// The user message of the summarising call: the older messages as plain text (so no tool
/// call needs its result), cut to about `max_chars` keeping the start and the end.
pub fn summary_request_text(
    older: &[AgentMessage],
    instructions: Option<&str>,
    max_chars: usize,
) -> String {
    let mut t = String::new();
    for m in older {
        match m {
            AgentMessage::User { content, .. } => {
                t.push_str("[user]\n");
                push_blocks(&mut t, content, usize::MAX);
            }
            AgentMessage::Assistant(a) => {
                t.push_str("[assistant]\n");
                push_blocks(&mut t, &a.content, usize::MAX);
            }
            AgentMessage::ToolResult {
                tool_name,
                content,
                is_error,
                ..
            } => {
                t.push_str(&format!(
                    "[tool result: {tool_name}{}]\n",
                    if *is_error { ", error" } else { "" }
                ));
                push_blocks(&mut t, content, SUMMARY_TOOL_RESULT_CHARS);
            }
        }
        t.push('\n');
    }
    if t.len() > max_chars {
        let head = floor_char(&t, max_chars / 3);
        let tail = ceil_char(&t, t.len() - (max_chars - head));
        t = format!(
            "{}\n[... {} characters left out ...]\n{}",
            &t[..head],
            tail - head,
            &t[tail..]
        );
    }
    let mut out = format!("Summarise this conversation:\n\n<conversation>\n{t}</conversation>");
    if let Some(i) = instructions.map(str::trim).filter(|i| !i.is_empty()) {
        out.push_str(&format!("\n\nAdditional instructions for the summary: {i}"));
    }
    out
}

fn push_blocks(t: &mut String, blocks: &[ContentBlock], cap: usize) {
    for b in blocks {
        match b {
            ContentBlock::Text { text } => {
                if text.len() > cap {
                    let end = floor_char(text, cap);
                    t.push_str(&text[..end]);
                    t.push_str(&format!("\n[... {} more characters]", text.len() - end));
                } else {
                    t.push_str(text);
                }
                t.push('\n');
            }
            ContentBlock::Thinking { .. } => {}
            ContentBlock::Image { mime_type, .. } => t.push_str(&format!("[image {mime_type}]\n")),
            ContentBlock::ToolCall {
                name, arguments, ..
            } => {
                let args = match arguments {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                t.push_str(&format!("[tool call] {name}({args})\n"));
            }
        }
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::UserInput;

    fn user(t: &str) -> AgentMessage {
        UserInput::text(t).into_message()
    }

    #[test]
    fn threshold_keeps_a_reserve_and_honours_the_share() {
        let s = Settings::from_config(None);
        assert_eq!(s.threshold(200_000), 180_000);
        // Small windows keep at most half in reserve.
        assert_eq!(s.threshold(16_000), 8_000);
        let c = CompactionConfig {
            max_history_share: Some(0.5),
            reserve_tokens: Some(30_000),
            ..Default::default()
        };
        let s = Settings::from_config(Some(&c));
        assert_eq!(s.reserve_tokens, 30_000);
        assert_eq!(s.threshold(200_000), 100_000);
    }

    #[test]
    fn cut_points_fall_on_stored_user_messages() {
        let msgs = vec![user("a"), user("b"), user(&"c".repeat(400))];
        // Only the newest turn fits in 10 tokens.
        assert_eq!(cut_point(&msgs, 10, |_| true), Some(2));
        // Everything fits: nothing to summarise.
        assert_eq!(cut_point(&msgs, 100_000, |_| true), None);
        // Message 0 is an earlier summary: summarising only it is pointless.
        assert_eq!(cut_point(&msgs[..2], 0, |i| i > 0), None);
        assert_eq!(cut_point(&msgs[..1], 0, |_| true), None);
    }

    #[test]
    fn a_long_newest_turn_is_cut_between_rounds() {
        use crate::message::{AssistantMessage, StopReason, TokenUsage};
        let round = |n: usize| {
            let call = AgentMessage::Assistant(AssistantMessage {
                content: vec![ContentBlock::ToolCall {
                    id: format!("c{n}"),
                    name: "exec".into(),
                    arguments: serde_json::json!({"command": "ls"}),
                }],
                provider: "p".into(),
                model: "m".into(),
                usage: TokenUsage::default(),
                stop_reason: StopReason::ToolUse,
                error_message: None,
                timestamp: 0,
            });
            let result = AgentMessage::ToolResult {
                tool_call_id: format!("c{n}"),
                tool_name: "exec".into(),
                content: vec![ContentBlock::Text {
                    text: "x".repeat(400),
                }],
                is_error: false,
                timestamp: 0,
            };
            [call, result]
        };
        let mut msgs = vec![user("do it")];
        for n in 0..3 {
            msgs.extend(round(n));
        }
        // Only the newest round fits: cut at its assistant message (index 5).
        assert_eq!(cut_point(&msgs, 10, |_| true), Some(5));
        // Two rounds fit.
        assert_eq!(cut_point(&msgs, 250, |_| true), Some(3));
        // Everything fits: nothing to do.
        assert_eq!(cut_point(&msgs, 100_000, |_| true), None);
        // After a summary (index 0), the newest round alone is left: nothing more to cut.
        assert_eq!(cut_point(&msgs[4..], 10, |i| i > 0), None);
    }

    #[test]
    fn long_summary_input_is_cut_in_the_middle() {
        let msgs = vec![user(&"x".repeat(5_000)), user("the end")];
        let t = summary_request_text(&msgs, Some("focus on tests"), 1_000);
        assert!(t.contains("characters left out"));
        assert!(t.contains("the end"));
        assert!(t.ends_with("Additional instructions for the summary: focus on tests"));
    }
}
