//! The AWS event-stream binary framing that ConverseStream answers in, over AWS's reference
//! implementation (`aws-smithy-eventstream`, the AWS SDK for Rust's own decoder).
//!
//! Each message: total length (u32), headers length (u32), CRC32 of those 8 bytes, headers,
//! payload, CRC32 of everything before it. All integers big-endian; CRC32 is the IEEE one
//! (as in zlib).

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, write_message_to};
use aws_smithy_types::DateTime;
use aws_smithy_types::event_stream::{Header, HeaderValue as AwsValue, Message};
use bytes::{Bytes, BytesMut};

use crate::TranslateError;

/// Messages larger than this are treated as corruption rather than buffered (AWS caps event
/// messages far below it).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
const PRELUDE: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMessage {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Vec<u8>,
}

impl EventMessage {
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(k, v)| match v {
            HeaderValue::String(s) if k == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// `:message-type`: `event`, `exception` or `error`.
    pub fn message_type(&self) -> Option<&str> {
        self.header_str(":message-type")
    }

    /// `:event-type` for events, `:exception-type` for exceptions, `:error-code` for errors.
    pub fn kind(&self) -> Option<&str> {
        self.header_str(":event-type")
            .or_else(|| self.header_str(":exception-type"))
            .or_else(|| self.header_str(":error-code"))
    }

    /// Encode (used by tests and fakes; the gateway only decodes). A message the format
    /// cannot carry (a header name over 255 bytes, a value over 32 KiB) encodes as nothing.
    pub fn encode(&self) -> Vec<u8> {
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    HeaderValue::Bool(b) => AwsValue::Bool(*b),
                    HeaderValue::Byte(b) => AwsValue::Byte(*b),
                    HeaderValue::Short(v) => AwsValue::Int16(*v),
                    HeaderValue::Int(v) => AwsValue::Int32(*v),
                    HeaderValue::Long(v) => AwsValue::Int64(*v),
                    HeaderValue::Bytes(b) => AwsValue::ByteArray(Bytes::from(b.clone())),
                    HeaderValue::String(s) => AwsValue::String(s.clone().into()),
                    HeaderValue::Timestamp(ms) => AwsValue::Timestamp(DateTime::from_millis(*ms)),
                    HeaderValue::Uuid(u) => AwsValue::Uuid(u128::from_be_bytes(*u)),
                };
                Header::new(name.clone(), value)
            })
            .collect();
        let message = Message::new_from_parts(headers, Bytes::from(self.payload.clone()));
        let mut out = Vec::new();
        match write_message_to(&message, &mut out) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }

    fn from_aws(m: &Message) -> Option<Self> {
        let headers = m
            .headers()
            .iter()
            .map(|h| {
                let value = match h.value() {
                    AwsValue::Bool(b) => HeaderValue::Bool(*b),
                    AwsValue::Byte(b) => HeaderValue::Byte(*b),
                    AwsValue::Int16(v) => HeaderValue::Short(*v),
                    AwsValue::Int32(v) => HeaderValue::Int(*v),
                    AwsValue::Int64(v) => HeaderValue::Long(*v),
                    AwsValue::ByteArray(b) => HeaderValue::Bytes(b.to_vec()),
                    AwsValue::String(s) => HeaderValue::String(s.as_str().to_owned()),
                    AwsValue::Timestamp(t) => HeaderValue::Timestamp(t.to_millis().ok()?),
                    AwsValue::Uuid(u) => HeaderValue::Uuid(u.to_be_bytes()),
                    _ => return None,
                };
                Some((h.name().as_str().to_owned(), value))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            headers,
            payload: m.payload().to_vec(),
        })
    }
}

/// Feed it bytes as they arrive; it returns every complete message.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    /// Bytes of messages not yet complete.
    buf: BytesMut,
    frames: MessageFrameDecoder,
}

impl EventStreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Each message is handed to the reference decoder only once it is whole and both its
    /// checksums hold, so a corrupt one is named as AWS's test vectors name it (prelude or
    /// message checksum mismatch) and a prelude claiming a huge length is refused at once.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<EventMessage>, TranslateError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while self.buf.len() >= PRELUDE {
            let total = be_u32(&self.buf[0..4]) as usize;
            if !(PRELUDE + 4..=MAX_MESSAGE).contains(&total) {
                return Err(self.corrupt("impossible message length"));
            }
            if crc32fast::hash(&self.buf[0..8]) != be_u32(&self.buf[8..12]) {
                return Err(self.corrupt("prelude checksum mismatch"));
            }
            if self.buf.len() < total {
                break;
            }
            if crc32fast::hash(&self.buf[..total - 4]) != be_u32(&self.buf[total - 4..total]) {
                return Err(self.corrupt("message checksum mismatch"));
            }
            match self.frames.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Complete(m)) => out.push(
                    EventMessage::from_aws(&m)
                        .ok_or_else(|| self.corrupt("unreadable header value"))?,
                ),
                Ok(DecodedFrame::Incomplete) => {
                    return Err(self.corrupt("a whole message read as incomplete"));
                }
                Err(e) => return Err(self.corrupt(&e.to_string())),
            }
        }
        Ok(out)
    }

    /// Bytes of an unfinished message: non-zero when the stream ends means it was cut short.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    fn corrupt(&self, why: &str) -> TranslateError {
        let shown = String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)]).into_owned();
        TranslateError::untranslatable(format!("event stream: {why}"), &shown)
    }
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, payload: &str) -> EventMessage {
        EventMessage {
            headers: vec![
                (":event-type".into(), HeaderValue::String(kind.into())),
                (
                    ":content-type".into(),
                    HeaderValue::String("application/json".into()),
                ),
                (":message-type".into(), HeaderValue::String("event".into())),
            ],
            payload: payload.as_bytes().to_vec(),
        }
    }

    /// One messageStop event, written out by hand from the format's description and checked
    /// with Python's `zlib.crc32`: total 89 = 0x59, headers 48 = 0x30, prelude CRC
    /// 0x76f8427f; headers `:message-type` = "event" and `:event-type` = "messageStop" (name
    /// length, name, type 7 = string, u16 length, value); the JSON payload; message CRC
    /// 0xef4f02c7.
    const MESSAGE_STOP: &[u8] = &[
        0x00, 0x00, 0x00, 0x59, 0x00, 0x00, 0x00, 0x30, 0x76, 0xf8, 0x42, 0x7f, // prelude
        0x0d, b':', b'm', b'e', b's', b's', b'a', b'g', b'e', b'-', b't', b'y', b'p', b'e', 0x07,
        0x00, 0x05, b'e', b'v', b'e', b'n', b't', // :message-type: event
        0x0b, b':', b'e', b'v', b'e', b'n', b't', b'-', b't', b'y', b'p', b'e', 0x07, 0x00, 0x0b,
        b'm', b'e', b's', b's', b'a', b'g', b'e', b'S', b't', b'o', b'p', // :event-type
        b'{', b'"', b's', b't', b'o', b'p', b'R', b'e', b'a', b's', b'o', b'n', b'"', b':', b'"',
        b'e', b'n', b'd', b'_', b't', b'u', b'r', b'n', b'"', b'}', // payload
        0xef, 0x4f, 0x02, 0xc7, // message CRC
    ];

    #[test]
    fn decodes_hand_checked_bytes_and_encodes_them_back() {
        assert_eq!(MESSAGE_STOP.len(), 89);
        let mut dec = EventStreamDecoder::new();
        let got = dec.push(MESSAGE_STOP).unwrap_or_default();
        let want = EventMessage {
            headers: vec![
                (":message-type".into(), HeaderValue::String("event".into())),
                (
                    ":event-type".into(),
                    HeaderValue::String("messageStop".into()),
                ),
            ],
            payload: br#"{"stopReason":"end_turn"}"#.to_vec(),
        };
        assert_eq!(got, vec![want.clone()]);
        assert_eq!(dec.pending(), 0);
        assert_eq!(want.encode(), MESSAGE_STOP);
        // Twice in one read, then a third cut after its prelude.
        let mut bytes = MESSAGE_STOP.repeat(3);
        bytes.truncate(2 * 89 + 15);
        let mut dec = EventStreamDecoder::new();
        assert_eq!(dec.push(&bytes).unwrap_or_default().len(), 2);
        assert_eq!(dec.pending(), 15);
        assert_eq!(
            dec.push(&MESSAGE_STOP[15..]).unwrap_or_default(),
            vec![want]
        );
        assert_eq!(dec.pending(), 0);
    }

    #[test]
    fn a_prelude_claiming_a_huge_message_is_refused_at_once() {
        let mut prelude = vec![0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0];
        let crc = crc32fast::hash(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        let err = EventStreamDecoder::new()
            .push(&prelude)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("impossible message length"), "{err:?}");
    }

    #[test]
    fn decodes_messages_split_at_every_byte() {
        let a = event("messageStart", r#"{"role":"assistant"}"#);
        let b = EventMessage {
            headers: vec![
                ("flag".into(), HeaderValue::Bool(false)),
                ("n".into(), HeaderValue::Long(-5)),
                ("id".into(), HeaderValue::Uuid([7; 16])),
                ("raw".into(), HeaderValue::Bytes(vec![1, 2])),
                ("at".into(), HeaderValue::Timestamp(1_700_000_000_123)),
                ("b".into(), HeaderValue::Byte(-2)),
                ("s".into(), HeaderValue::Short(300)),
                ("i".into(), HeaderValue::Int(-70_000)),
            ],
            payload: Vec::new(),
        };
        let mut bytes = a.encode();
        bytes.extend(b.encode());
        let mut dec = EventStreamDecoder::new();
        let mut got = Vec::new();
        for byte in &bytes {
            got.extend(dec.push(std::slice::from_ref(byte)).unwrap_or_default());
        }
        assert_eq!(got, vec![a.clone(), b]);
        assert_eq!(dec.pending(), 0);
        assert_eq!(got[0].kind(), Some("messageStart"));
        assert_eq!(got[0].message_type(), Some("event"));
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let mut bytes = event("x", "{}").encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        let err = EventStreamDecoder::new()
            .push(&bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("message checksum"), "{err:?}");
        let mut bytes = event("x", "{}").encode();
        bytes[9] ^= 1;
        let err = EventStreamDecoder::new()
            .push(&bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("prelude checksum mismatch"), "{err:?}");
        assert!(
            EventStreamDecoder::new()
                .push(b"HTTP/1.1 500 oops, not an event stream")
                .is_err()
        );
        let mut dec = EventStreamDecoder::new();
        let bytes = event("x", "{}").encode();
        assert!(dec.push(&bytes[..20]).unwrap_or_default().is_empty());
        assert_eq!(dec.pending(), 20);
    }
}
