//! Incremental Server-Sent Events decoding and encoding.
//!
//! Providers differ in small ways (`data:` with or without a space, CRLF line ends, comments
//! used as keep-alives), so the decoder accepts all of them and never allocates per byte.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// The OpenAI stream terminator.
    pub fn is_done(&self) -> bool {
        self.data.trim() == "[DONE]"
    }
}

/// Feed it bytes as they arrive; it hands back every complete event.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    event: Option<String>,
    data: Option<String>,
    /// Comment lines seen, when asked for ([`SseDecoder::keeping_comments`]).
    comments: Option<Vec<String>>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that also keeps comment lines (`: text`), for [`SseDecoder::take_comments`].
    pub fn keeping_comments() -> Self {
        Self {
            comments: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// The comment lines seen since the last call, without their leading `:` and one space.
    pub fn take_comments(&mut self) -> Vec<String> {
        self.comments
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = memchr::memchr(b'\n', &self.buf) {
            let line = self.buf.split_to(pos + 1);
            let mut line = &line[..pos];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            self.line(line, &mut out);
        }
        out
    }

    /// Flush an event left without its closing blank line (a stream cut short).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buf.is_empty() {
            let rest = self.buf.split();
            let mut out = Vec::new();
            self.line(&rest, &mut out);
            if let Some(ev) = out.pop() {
                return Some(ev);
            }
        }
        self.take()
    }

    /// Bytes received but not yet part of a complete line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self) -> Option<SseEvent> {
        let data = self.data.take()?;
        Some(SseEvent {
            event: self.event.take(),
            data,
        })
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if let Some(ev) = self.take() {
                out.push(ev);
            }
            self.event = None;
            return;
        }
        if line[0] == b':' {
            if let Some(comments) = &mut self.comments {
                let text = &line[1..];
                let text = text.strip_prefix(b" ").unwrap_or(text);
                comments.push(String::from_utf8_lossy(text).into_owned());
            }
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                let v = v.strip_prefix(b" ").unwrap_or(v);
                (&line[..i], v)
            }
            None => (line, &b""[..]),
        };
        // Valid UTF-8 is the rule; `from_utf8` checks it much faster than the lossy decoder.
        let value = match std::str::from_utf8(value) {
            Ok(v) => std::borrow::Cow::Borrowed(v),
            Err(_) => String::from_utf8_lossy(value),
        };
        match field {
            b"data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&value);
                }
                None => self.data = Some(value.into_owned()),
            },
            b"event" => self.event = Some(value.into_owned()),
            _ => {}
        }
    }
}

/// `data: <payload>\n\n`
pub fn encode_data(payload: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 8);
    b.extend_from_slice(b"data: ");
    b.extend_from_slice(payload.as_bytes());
    b.extend_from_slice(b"\n\n");
    b.freeze()
}

/// `event: <name>\ndata: <payload>\n\n` (Anthropic-style named events).
pub fn encode_event(event: &str, payload: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + event.len() + 16);
    b.extend_from_slice(b"event: ");
    b.extend_from_slice(event.as_bytes());
    b.extend_from_slice(b"\ndata: ");
    b.extend_from_slice(payload.as_bytes());
    b.extend_from_slice(b"\n\n");
    b.freeze()
}

pub const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_skipped_unless_kept() {
        let bytes = b": keep-alive\r\ndata: {}\n\n:x-cost: 1\n\n";
        let mut plain = SseDecoder::new();
        assert_eq!(plain.push(bytes).len(), 1);
        assert!(plain.take_comments().is_empty());
        let mut keeping = SseDecoder::keeping_comments();
        assert_eq!(keeping.push(bytes).len(), 1);
        assert_eq!(keeping.take_comments(), ["keep-alive", "x-cost: 1"]);
        assert!(keeping.take_comments().is_empty());
    }

    #[test]
    fn decodes_events_split_across_chunks_with_and_without_space() {
        let mut d = SseDecoder::new();
        assert!(d.push(b"data: {\"a\"").is_empty());
        let evs = d.push(b":1}\n\ndata:{\"b\":2}\r\n\r\n: keepalive\n\nevent: ping\ndata: x\n\n");
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].data, "{\"b\":2}");
        assert_eq!(evs[2].event.as_deref(), Some("ping"));
        assert_eq!(evs[2].data, "x");
    }

    #[test]
    fn multi_line_data_is_joined_and_done_detected() {
        let mut d = SseDecoder::new();
        let evs = d.push(b"data: a\ndata: b\n\ndata: [DONE]\n\n");
        assert_eq!(evs[0].data, "a\nb");
        assert!(evs[1].is_done());
    }

    #[test]
    fn finish_returns_unterminated_event() {
        let mut d = SseDecoder::new();
        assert!(d.push(b"data: tail").is_empty());
        assert_eq!(d.finish().map(|e| e.data), Some("tail".to_string()));
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn encoders_round_trip() {
        let mut d = SseDecoder::new();
        let mut bytes = encode_data("{}").to_vec();
        bytes.extend_from_slice(&encode_event("message_stop", "{\"type\":\"message_stop\"}"));
        bytes.extend_from_slice(DONE);
        let evs = d.push(&bytes);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[1].event.as_deref(), Some("message_stop"));
        assert!(evs[2].is_done());
    }
}
