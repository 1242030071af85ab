//! Fitting a request into the model's context window: tool output cut to the room that is
//! left (head and tail kept, since the start names what ran and the end holds the errors
//! and the summary), and the output allowance sized to what the prompt leaves free. The
//! overflow-compact-retry loop stays as the last resort for estimates that were too low.

/// Characters per token assumed when turning a token budget into characters. Code and logs
/// tokenize denser than prose, so this is lower than the 4 used for estimating.
pub const CHARS_PER_TOKEN: u64 = 3;
/// A tool result is never cut below this many characters.
pub const MIN_RESULT_CHARS: usize = 2_000;
/// The output allowance is never sized below this many tokens.
pub const MIN_OUTPUT_TOKENS: u64 = 256;

/// `text` with its middle replaced by a marker when it is over `max_chars` bytes; cuts fall
/// on character boundaries.
pub fn cut_middle(text: &str, max_chars: usize) -> String {
    if text.len() <= max_chars {
        return text.to_string();
    }
    let keep = max_chars.saturating_sub(120);
    let head_len = floor_boundary(text, keep * 2 / 3);
    let tail_start = ceil_boundary(text, text.len() - (keep - keep * 2 / 3));
    let dropped = tail_start - head_len;
    format!(
        "{}\n\n[... {dropped} of {} characters cut here to fit the model's context window ...]\n\n{}",
        &text[..head_len],
        text.len(),
        &text[tail_start..]
    )
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Characters a new tool result may take: the window less what the context already holds
/// and the output the model needs to answer.
pub fn result_room_chars(window: u64, context_tokens: u64, reserve_output: u64) -> usize {
    let room = window
        .saturating_sub(context_tokens)
        .saturating_sub(reserve_output);
    usize::try_from(room.saturating_mul(CHARS_PER_TOKEN))
        .unwrap_or(usize::MAX)
        .max(MIN_RESULT_CHARS)
}

/// Output tokens the next request may ask for: what the window leaves after the prompt.
pub fn output_room(window: u64, prompt_tokens: u64) -> u64 {
    window.saturating_sub(prompt_tokens).max(MIN_OUTPUT_TOKENS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_keeps_head_and_tail_and_says_how_much_went() {
        let text: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        let out = cut_middle(&text, 6_000);
        assert!(out.len() <= 6_000 + 40, "{}", out.len());
        assert!(out.starts_with("line 0\nline 1\n"));
        assert!(out.ends_with("line 49999\n"));
        let marker = out
            .lines()
            .find(|l| l.starts_with("[... "))
            .unwrap_or_default();
        let dropped: usize = marker
            .trim_start_matches("[... ")
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        assert_eq!(dropped, text.len() - (out.len() - marker.len() - 4));
        assert!(marker.contains(&format!("of {} characters", text.len())));
    }

    #[test]
    fn short_output_and_multibyte_text_are_safe() {
        assert_eq!(cut_middle("short", 100), "short");
        let text = "é".repeat(10_000);
        let out = cut_middle(&text, 2_000);
        assert!(out.contains("characters cut here"));
    }

    #[test]
    fn rooms_shrink_with_the_context_and_have_floors() {
        assert_eq!(
            result_room_chars(32_768, 10_000, 4_096),
            (32_768 - 14_096) * 3
        );
        assert_eq!(result_room_chars(32_768, 40_000, 4_096), MIN_RESULT_CHARS);
        assert_eq!(output_room(32_768, 30_000), 2_768);
        assert_eq!(output_room(32_768, 33_000), MIN_OUTPUT_TOKENS);
    }
}
