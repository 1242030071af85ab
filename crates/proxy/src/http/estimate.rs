//! A fallback token count for upstreams that report no usage (some OpenAI-compatible servers
//! ignore `stream_options.include_usage`): about four characters a token, read without parsing
//! the JSON, so that spend is never silently zero.

use idlehands_wire::Usage;

const TEXT_FIELDS: [&str; 3] = [
    "\"content\":\"",
    "\"arguments\":\"",
    "\"reasoning_content\":\"",
];

/// Characters of generated text in one chunk or body: the string values of `content`,
/// `reasoning_content` and tool-call `arguments`.
pub(crate) fn generated_chars(json: &str) -> usize {
    let mut total = 0;
    for field in TEXT_FIELDS {
        let mut rest = json;
        while let Some(i) = rest.find(field) {
            rest = &rest[i + field.len()..];
            let mut n = 0;
            let mut escaped = false;
            let mut end = rest.len();
            for (j, c) in rest.char_indices() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                    continue;
                } else if c == '"' {
                    end = j;
                    break;
                }
                n += 1;
            }
            total += n;
            rest = &rest[end..];
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
