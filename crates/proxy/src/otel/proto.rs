//! The OTLP trace export request (`opentelemetry.proto.collector.trace.v1`
//! `ExportTraceServiceRequest`) written as protobuf bytes. Only the fields the gateway sets
//! are written; field numbers are those of opentelemetry-proto's `trace.proto`,
//! `resource.proto` and `common.proto`.

use super::span::{SpanData, Value};

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn fixed64(&mut self, field: u32, v: u64) {
        self.tag(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn fixed32(&mut self, field: u32, v: u32) {
        self.tag(field, FIXED32);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.tag(field, VARINT);
            self.varint(v);
        }
    }

    fn message(&mut self, field: u32, f: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        f(&mut inner);
        self.bytes(field, &inner.0);
    }
}

/// `KeyValue { key = 1; AnyValue value = 2 }`, `AnyValue { string = 1; bool = 2; int = 3;
/// double = 4 }`.
fn key_value(w: &mut Writer, field: u32, key: &str, value: &Value) {
    w.message(field, |kv| {
        kv.string(1, key);
        kv.message(2, |any| match value {
            Value::Str(s) => any.bytes(1, s.as_bytes()),
            Value::Bool(b) => {
                any.tag(2, VARINT);
                any.varint(u64::from(*b));
            }
            Value::Int(i) => {
                any.tag(3, VARINT);
                // int64: two's complement as a 64-bit varint.
                any.varint(*i as u64);
            }
            Value::F64(f) => {
                any.tag(4, FIXED64);
                any.0.extend_from_slice(&f.to_le_bytes());
            }
        });
    });
}

/// One `Span`.
fn span(w: &mut Writer, s: &SpanData) {
    w.message(2, |m| {
        m.bytes(1, &s.trace_id);
        m.bytes(2, &s.span_id);
        if let Some(parent) = &s.parent_span_id {
            m.bytes(4, parent);
        }
        m.string(5, &s.name);
        m.uint(6, u64::from(s.kind as u32));
        m.fixed64(7, s.start_unix_nanos);
        m.fixed64(8, s.end_unix_nanos);
        for (k, v) in &s.attributes {
            key_value(m, 9, k, v);
        }
        // Status { message = 2; code = 3 }: unset, or error with its message.
        if let Some(message) = &s.error {
            m.message(15, |st| {
                st.string(2, message);
                st.uint(3, 2);
            });
        }
        // The W3C trace flags (sampled).
        m.fixed32(16, u32::from(s.flags));
    });
}

/// `ExportTraceServiceRequest` with one `ResourceSpans` (the service) and one `ScopeSpans`.
pub(crate) fn export_request(
    resource: &[(String, Value)],
    scope: &str,
    spans: &[SpanData],
) -> Vec<u8> {
    let mut w = Writer::default();
    w.message(1, |rs| {
        rs.message(1, |r| {
            for (k, v) in resource {
                key_value(r, 1, k, v);
            }
        });
        rs.message(2, |ss| {
            ss.message(1, |scope_msg| {
                scope_msg.string(1, scope);
                scope_msg.string(2, env!("CARGO_PKG_VERSION"));
            });
            for s in spans {
                span(ss, s);
            }
        });
    });
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_groups_of_seven_bits() {
        let mut w = Writer::default();
        w.varint(1);
        w.varint(300);
        w.varint(u64::MAX);
        assert_eq!(
            w.0,
            vec![
                1, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
    }

    #[test]
    fn a_negative_int_is_ten_bytes() {
        let mut w = Writer::default();
        key_value(&mut w, 1, "k", &Value::Int(-1));
        // tag, len, [key tag, len, 'k', any tag, len, [int tag, 10 bytes]]
        assert_eq!(w.0.len(), 2 + 3 + 2 + 1 + 10);
    }
}
