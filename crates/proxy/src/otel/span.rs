//! Span data as the gateway builds it, and W3C trace context (`traceparent`).

use http::HeaderValue;
use rand::RngCore;

/// An attribute value (the OTLP `AnyValue` kinds used here).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    F64(f64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

/// OTLP `SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Server = 2,
    Client = 3,
}

#[derive(Debug, Clone)]
pub(crate) struct SpanData {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub flags: u8,
    pub name: String,
    pub kind: Kind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// Set for a failed call or attempt: the span's status is then an error with this text.
    pub error: Option<String>,
}

/// Where a call sits in a trace: the client's trace (from its `traceparent`) or a new one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TraceContext {
    pub trace_id: [u8; 16],
    /// The call's own span.
    pub span_id: [u8; 8],
    /// The client's span, when it sent a `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    pub flags: u8,
}

impl TraceContext {
    /// A context for a call: continuing the client's trace when its `traceparent` is valid
    /// (an invalid one is ignored, as the W3C spec asks), else a new sampled trace.
    pub fn for_call(traceparent: Option<&HeaderValue>) -> Self {
        match traceparent.and_then(|v| v.to_str().ok()).and_then(parse) {
            Some((trace_id, parent, flags)) => Self {
                trace_id,
                span_id: span_id(),
                parent_span_id: Some(parent),
                flags,
            },
            None => {
                let mut trace_id = [0u8; 16];
                while trace_id == [0u8; 16] {
                    rand::rng().fill_bytes(&mut trace_id);
                }
                Self {
                    trace_id,
                    span_id: span_id(),
                    parent_span_id: None,
                    flags: 1,
                }
            }
        }
    }

    /// The `traceparent` an upstream request carries: this trace, with `span` (the
    /// attempt's span) as the parent.
    pub fn traceparent_for(&self, span: [u8; 8]) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(span),
            self.flags
        ))
        .ok()
    }
}

/// A new non-zero span id.
pub(crate) fn span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    while id == [0u8; 8] {
        rand::rng().fill_bytes(&mut id);
    }
    id
}

/// `version-traceid-parentid-flags` (W3C Trace Context, level 1): lowercase hex, neither id
/// all zeros, version `ff` invalid; later versions may append fields after the flags.
fn parse(v: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let v = v.trim();
    let mut parts = v.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if version.len() != 2 || !lower_hex(version) || version == "ff" {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
        return None;
    }
    if !lower_hex(trace) || !lower_hex(parent) || !lower_hex(flags) {
        return None;
    }
    let mut t = [0u8; 16];
    let mut p = [0u8; 8];
    hex::decode_to_slice(trace, &mut t).ok()?;
    hex::decode_to_slice(parent, &mut p).ok()?;
    if t == [0u8; 16] || p == [0u8; 8] {
        return None;
    }
    let f = u8::from_str_radix(flags, 16).ok()?;
    Some((t, p, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_w3c_example_traceparent_is_continued() {
        // The example in the W3C Trace Context recommendation.
        let h = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let c = TraceContext::for_call(Some(&h));
        assert_eq!(hex::encode(c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            c.parent_span_id.map(hex::encode).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(c.flags, 1);
        assert_ne!(c.span_id, [0; 8]);
        let up = c.traceparent_for([1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(
            up,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let c = TraceContext::for_call(Some(&HeaderValue::from_static(bad)));
            assert_eq!(c.parent_span_id, None, "{bad}");
            assert_ne!(hex::encode(c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
        // A later version may carry more fields.
        let c = TraceContext::for_call(Some(&HeaderValue::from_static(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
        )));
        assert!(c.parent_span_id.is_some());
    }
}
