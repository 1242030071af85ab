//! A fallback token count for upstreams that report no usage (some OpenAI-compatible servers
//! ignore `stream_options.include_usage`): about four characters a token, read without parsing
//! the JSON, so that spend is never silently zero.

use std::sync::LazyLock;

use idlehands_wire::Usage;
use memchr::memmem::Finder;

// Searchers built once: this runs on every streamed chunk.
static TEXT_FIELDS: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
    [
        Finder::new("\"content\":\""),
        Finder::new("\"arguments\":\""),
        Finder::new("\"reasoning_content\":\""),
    ]
});

/// Characters of generated text in one chunk or body: the string values of `content`,
/// `reasoning_content` and tool-call `arguments` (an escape sequence counts from the
/// character after its backslash).
pub(crate) fn generated_chars(json: &str) -> usize {
    let bytes = json.as_bytes();
    let mut total = 0;
    for field in TEXT_FIELDS.iter() {
        let mut at = 0;
        while let Some(i) = field.find(&bytes[at..]) {
            at += i + field.needle().len();
            let mut escaped = false;
            while let Some(&b) = bytes.get(at) {
                at += 1;
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                    continue;
                } else if b == b'"' {
                    break;
                }
                // One per character: UTF-8 continuation bytes are not counted.
                if b & 0xC0 != 0x80 {
                    total += 1;
                }
            }
        }
    }
    total
}

pub(crate) fn tokens_for_chars(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

pub(crate) fn usage(prompt_tokens: u64, completion_chars: usize) -> Usage {
    Usage::new(prompt_tokens, tokens_for_chars(completion_chars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_text_of_content_reasoning_and_arguments() {
        let chunk = r#"{"choices":[{"delta":{"content":"héllo \"x\""}}]}"#;
        assert_eq!(generated_chars(chunk), 9);
        let chunk = r#"{"delta":{"reasoning_content":"abcd","tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}"#;
        assert_eq!(generated_chars(chunk), 4 + 7);
        assert_eq!(generated_chars(r#"{"content":null}"#), 0);
        assert_eq!(tokens_for_chars(9), 3);
    }
}
