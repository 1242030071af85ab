//! The AWS event-stream binary framing that ConverseStream answers in.
//!
//! Each message: total length (u32), headers length (u32), CRC32 of those 8 bytes, headers,
//! payload, CRC32 of everything before it. All integers big-endian; CRC32 is the IEEE one
//! (as in zlib).

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

    /// Encode (used by tests and fakes; the gateway only decodes).
    pub fn encode(&self) -> Vec<u8> {
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            headers.push(name.len() as u8);
            headers.extend_from_slice(name.as_bytes());
            match value {
                HeaderValue::Bool(true) => headers.push(0),
                HeaderValue::Bool(false) => headers.push(1),
                HeaderValue::Byte(b) => {
                    headers.push(2);
                    headers.extend_from_slice(&b.to_be_bytes());
                }
                HeaderValue::Short(s) => {
                    headers.push(3);
                    headers.extend_from_slice(&s.to_be_bytes());
                }
                HeaderValue::Int(i) => {
                    headers.push(4);
                    headers.extend_from_slice(&i.to_be_bytes());
                }
                HeaderValue::Long(l) => {
                    headers.push(5);
                    headers.extend_from_slice(&l.to_be_bytes());
                }
                HeaderValue::Bytes(b) => {
                    headers.push(6);
                    headers.extend_from_slice(&(b.len() as u16).to_be_bytes());
                    headers.extend_from_slice(b);
                }
                HeaderValue::String(s) => {
                    headers.push(7);
                    headers.extend_from_slice(&(s.len() as u16).to_be_bytes());
                    headers.extend_from_slice(s.as_bytes());
                }
                HeaderValue::Timestamp(t) => {
                    headers.push(8);
                    headers.extend_from_slice(&t.to_be_bytes());
                }
                HeaderValue::Uuid(u) => {
                    headers.push(9);
                    headers.extend_from_slice(u);
                }
            }
        }
        let total = PRELUDE + headers.len() + self.payload.len() + 4;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let prelude_crc = crc32(&out);
        out.extend_from_slice(&prelude_crc.to_be_bytes());
        out.extend_from_slice(&headers);
        out.extend_from_slice(&self.payload);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }
}

/// Feed it bytes as they arrive; it returns every complete message.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    buf: Vec<u8>,
}

impl EventStreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<EventMessage>, TranslateError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while self.buf.len() >= PRELUDE {
            let total = be_u32(&self.buf[0..4]) as usize;
            if !(PRELUDE + 4..=MAX_MESSAGE).contains(&total) {
                return Err(self.corrupt("impossible message length"));
            }
            if crc32(&self.buf[0..8]) != be_u32(&self.buf[8..12]) {
                return Err(self.corrupt("prelude checksum mismatch"));
            }
            if self.buf.len() < total {
                break;
            }
            let msg: Vec<u8> = self.buf.drain(..total).collect();
            out.push(decode_message(&msg)?);
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

fn decode_message(msg: &[u8]) -> Result<EventMessage, TranslateError> {
    let bad = |why: &str| {
        TranslateError::untranslatable(
            format!("event stream: {why}"),
            &String::from_utf8_lossy(msg),
        )
    };
    let total = msg.len();
    if crc32(&msg[..total - 4]) != be_u32(&msg[total - 4..]) {
        return Err(bad("message checksum mismatch"));
    }
    let headers_len = be_u32(&msg[4..8]) as usize;
    let headers_end = PRELUDE
        .checked_add(headers_len)
        .filter(|e| *e <= total - 4)
        .ok_or_else(|| bad("headers overrun the message"))?;
    let headers =
        decode_headers(&msg[PRELUDE..headers_end]).ok_or_else(|| bad("malformed headers"))?;
    Ok(EventMessage {
        headers,
        payload: msg[headers_end..total - 4].to_vec(),
    })
}

/// A cursor over header bytes; `None` on any overrun.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Some(a)
    }

    fn sized(&mut self) -> Option<&'a [u8]> {
        let n = u16::from_be_bytes(self.array()?) as usize;
        self.take(n)
    }
}

fn decode_headers(bytes: &[u8]) -> Option<Vec<(String, HeaderValue)>> {
    let mut r = Reader(bytes);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let name_len = r.take(1)?[0] as usize;
        let name = String::from_utf8(r.take(name_len)?.to_vec()).ok()?;
        let value = match r.take(1)?[0] {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(r.array()?)),
            3 => HeaderValue::Short(i16::from_be_bytes(r.array()?)),
            4 => HeaderValue::Int(i32::from_be_bytes(r.array()?)),
            5 => HeaderValue::Long(i64::from_be_bytes(r.array()?)),
            6 => HeaderValue::Bytes(r.sized()?.to_vec()),
            7 => HeaderValue::String(String::from_utf8(r.sized()?.to_vec()).ok()?),
            8 => HeaderValue::Timestamp(i64::from_be_bytes(r.array()?)),
            9 => HeaderValue::Uuid(r.array()?),
            _ => return None,
        };
        out.push((name, value));
    }
    Some(out)
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bit by bit: event messages are
/// small, so a table buys nothing worth its lines.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
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

    #[test]
    fn crc32_check_value() {
        // The standard check value for "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
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
        assert!(EventStreamDecoder::new().push(&bytes).is_err());
        let mut bytes = event("x", "{}").encode();
        bytes[9] ^= 1;
        assert!(EventStreamDecoder::new().push(&bytes).is_err());
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
