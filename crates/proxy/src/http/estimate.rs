//! Token counts for upstreams that report no usage (llama-cpp-python's server; OpenAI-compatible
//! servers that ignore `stream_options.include_usage`), so that spend is never silently low:
//! OpenAI's rule of thumb, about four characters a token, over everything the model reads
//! (system and other messages, tool definitions) and everything it writes (content, reasoning,
//! tool calls). Answers are read as JSON, whatever their spacing. A row built from these counts
//! says so (`usage_estimated`).

use std::fmt;

use idlehands_wire::Usage;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The request fields the model reads besides `messages` (which carries the system prompt).
pub(crate) const PROMPT_FIELDS: [&str; 3] = ["messages", "tools", "functions"];

/// Characters of a raw JSON value as the model would be shown it: its strings and
/// punctuation, without the whitespace between tokens (pretty-printed and compact requests
/// count the same).
pub(crate) fn json_chars(raw: &str) -> usize {
    let mut n = 0;
    let mut in_string = false;
    let mut escaped = false;
    for b in raw.bytes() {
        // One per character: UTF-8 continuation bytes are not counted.
        if b & 0xC0 == 0x80 {
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            n += 1;
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            in_string |= b == b'"';
            n += 1;
        }
    }
    n
}

pub(crate) fn tokens_for_chars(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

pub(crate) fn usage(prompt_tokens: u64, completion_chars: usize) -> Usage {
    Usage::new(prompt_tokens, tokens_for_chars(completion_chars))
}

/// The characters of a JSON string, or 0 for anything else (`null`, content-part arrays).
#[derive(Default, Clone, Copy)]
pub(crate) struct TextLen(pub usize);

impl<'de> Deserialize<'de> for TextLen {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TextLen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TextLen, E> {
                Ok(TextLen(s.chars().count()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TextLen, E> {
                Ok(TextLen(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<TextLen, E> {
                Ok(TextLen(0))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TextLen, E> {
                Ok(TextLen(0))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<TextLen, E> {
                Ok(TextLen(0))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<TextLen, E> {
                Ok(TextLen(0))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<TextLen, E> {
                Ok(TextLen(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<TextLen, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TextLen(0))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<TextLen, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TextLen(0))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default)]
struct Function {
    #[serde(default)]
    name: TextLen,
    #[serde(default)]
    arguments: TextLen,
}

#[derive(Deserialize, Default)]
struct ToolCall {
    #[serde(default)]
    function: Option<Function>,
}

/// A streamed `delta` or an answer's `message`.
#[derive(Deserialize, Default)]
struct Generated {
    #[serde(default)]
    content: TextLen,
    #[serde(default)]
    reasoning_content: TextLen,
    #[serde(default)]
    reasoning: TextLen,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

impl Generated {
    fn chars(&self) -> usize {
        let calls = self
            .tool_calls
            .iter()
            .flatten()
            .filter_map(|c| c.function.as_ref());
        self.content.0
            + self.reasoning_content.0
            + self.reasoning.0
            + calls.map(|f| f.name.0 + f.arguments.0).sum::<usize>()
    }
}

#[derive(Deserialize, Default)]
struct Choice {
    #[serde(default)]
    delta: Option<Generated>,
    #[serde(default)]
    message: Option<Generated>,
    /// Legacy text completions put the generated text here.
    #[serde(default)]
    text: TextLen,
}

impl Choice {
    fn chars(&self) -> usize {
        self.text.0
            + [&self.delta, &self.message]
                .into_iter()
                .flatten()
                .map(Generated::chars)
                .sum::<usize>()
    }
}

/// The `choices` of a chunk or of a whole answer, counted as they are read: how many there
/// are and the characters they generated. A streamed call reads every chunk's choices, and
/// keeping them in a vector cost an allocation a chunk.
#[derive(Default, Clone, Copy)]
pub(crate) struct Choices {
    pub count: usize,
    pub chars: usize,
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Choices;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Choices, A::Error> {
                let mut all = Choices::default();
                while let Some(c) = a.next_element::<Choice>()? {
                    all.count += 1;
                    all.chars += c.chars();
                }
                Ok(all)
            }
        }
        d.deserialize_seq(V)
    }
}

/// Generated characters of a whole `chat.completion` body (0 if it is not JSON).
pub(crate) fn answer_chars(body: &[u8]) -> usize {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        choices: Choices,
    }
    serde_json::from_slice::<Answer>(body).map_or(0, |a| a.choices.chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_chars(json: &str) -> usize {
        #[derive(Deserialize)]
        struct Chunk {
            choices: Choices,
        }
        serde_json::from_str::<Chunk>(json).unwrap().choices.chars
    }

    #[test]
    fn choices_are_counted_as_they_are_read() {
        let two: Choices =
            serde_json::from_str(r#"[{"delta":{"content":"ab"}},{"text":"cde"}]"#).unwrap();
        assert_eq!((two.count, two.chars), (2, 5));
        let none: Choices = serde_json::from_str("[]").unwrap();
        assert_eq!((none.count, none.chars), (0, 0));
        // Not a list: refused, as a vector of choices was.
        assert!(serde_json::from_str::<Choices>(r#"{"delta":{}}"#).is_err());
    }

    #[test]
    fn counts_text_of_content_reasoning_and_tool_calls_at_any_spacing() {
        let compact = r#"{"choices":[{"delta":{"content":"héllo \"x\""}}]}"#;
        assert_eq!(chunk_chars(compact), 9);
        // Python's json.dumps spacing (llama-cpp-python) reads the same.
        let spaced = r#"{"choices": [{"index": 0, "delta": {"content": "héllo \"x\""}}]}"#;
        assert_eq!(chunk_chars(spaced), 9);
        let tools = r#"{"choices":[{"delta":{"reasoning_content":"abcd","reasoning":"ef","tool_calls":[{"function":{"name":"go","arguments":"{\"a\":1}"}}]}}]}"#;
        assert_eq!(chunk_chars(tools), 4 + 2 + 2 + 7);
        assert_eq!(
            chunk_chars(r#"{"choices":[{"delta":{"content":null}}]}"#),
            0
        );
        let parts = r#"{"choices":[{"delta":{"content":[{"type":"text","text":"x"}]}}]}"#;
        assert_eq!(chunk_chars(parts), 0);
        let answer = br#"{"choices": [{"message": {"role": "assistant", "content": "four"}}]}"#;
        assert_eq!(answer_chars(answer), 4);
        assert_eq!(answer_chars(b"not json"), 0);
        assert_eq!(tokens_for_chars(9), 3);
    }

    #[test]
    fn prompt_characters_ignore_whitespace_between_tokens_only() {
        let compact = r#"[{"role":"user","content":"a b"}]"#;
        let pretty = "[\n  { \"role\": \"user\",\n    \"content\": \"a b\" }\n]";
        assert_eq!(json_chars(compact), compact.chars().count());
        assert_eq!(json_chars(pretty), json_chars(compact));
        assert_eq!(json_chars(r#""é\"""#), 5);
    }
}
