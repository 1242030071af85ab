//! Paced streams for `bench/streams.sh`: a chat completion streamed as one content chunk every
//! `every` for `count` chunks, the way a model decodes, each chunk carrying its sequence number
//! and the wall-clock time it was scheduled to leave (`#<seq>@<unix µs>;`), so a client can
//! tell how late it arrived and whether any went missing. The schedule is absolute (chunk k at
//! start + k * every): a late chunk does not push the ones after it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::time::Instant;

/// How a paced stream is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paced {
    pub every: Duration,
    pub count: u32,
}

impl Paced {
    /// `every_ms` between chunks for `secs` seconds (at least one chunk).
    pub fn new(every_ms: u64, secs: u64) -> Self {
        let every = Duration::from_millis(every_ms.max(1));
        let count = (secs.saturating_mul(1000) / every_ms.max(1)).max(1);
        Self {
            every,
            count: u32::try_from(count).unwrap_or(u32::MAX),
        }
    }
}

/// The marker a paced chunk's content carries.
pub fn marker(seq: u32, scheduled_us: u64) -> String {
    format!("#{seq}@{scheduled_us};")
}

/// Every `#<seq>@<µs>;` marker in `text`, in order (a frame may hold several events).
pub fn markers(text: &str) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('#') {
        rest = &rest[i + 1..];
        let Some(at) = rest.find('@') else { break };
        let Some(end) = rest[at..].find(';').map(|e| at + e) else {
            break;
        };
        if let (Ok(seq), Ok(us)) = (rest[..at].parse(), rest[at + 1..end].parse()) {
            out.push((seq, us));
        }
        rest = &rest[end..];
    }
    out
}

pub fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn chunk(id: &str, model: &str, delta: serde_json::Value, finish: Option<&str>) -> Bytes {
    crate::frame::data(
        &json!({
            "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
        .to_string(),
    )
}

/// The SSE body: the role chunk at once, `count` content chunks on the schedule, then the
/// finish chunk, the usage chunk when asked for, and `[DONE]` right after the last one.
pub fn body(
    paced: Paced,
    id: String,
    model: String,
    include_usage: bool,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let start = Instant::now();
    let start_us = unix_us(SystemTime::now());
    let every_us = u64::try_from(paced.every.as_micros()).unwrap_or(u64::MAX);
    stream::unfold(0u32, move |k| {
        let (id, model) = (id.clone(), model.clone());
        async move {
            let count = paced.count;
            let frame = if k == 0 {
                chunk(
                    &id,
                    &model,
                    json!({"role": "assistant", "content": ""}),
                    None,
                )
            } else if k <= count {
                tokio::time::sleep_until(start + paced.every * k).await;
                let at = start_us + every_us * u64::from(k);
                chunk(&id, &model, json!({"content": marker(k, at)}), None)
            } else if k == count + 1 {
                let mut out = chunk(&id, &model, json!({}), Some("stop")).to_vec();
                if include_usage {
                    let usage = json!({
                        "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64,
                        "model": model, "choices": [],
                        "usage": {"prompt_tokens": 8, "completion_tokens": count,
                                  "total_tokens": u64::from(count) + 8},
                    });
                    out.extend_from_slice(&crate::frame::data(&usage.to_string()));
                }
                out.extend_from_slice(&crate::frame::data("[DONE]"));
                Bytes::from(out)
            } else {
                return None;
            };
            Some((frame, k + 1))
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn markers_are_read_back_from_a_frame_with_several_events() {
        let text = format!(
            "data: {{\"c\":\"{}\"}}\n\ndata: {{\"c\":\"{}\"}}\n\n",
            marker(1, 100),
            marker(2, 200)
        );
        assert_eq!(markers(&text), vec![(1, 100), (2, 200)]);
        assert_eq!(markers("data: [DONE]\n\n"), vec![]);
    }

    #[test]
    fn a_pace_counts_its_chunks_from_the_interval_and_length() {
        assert_eq!(Paced::new(100, 30).count, 300);
        assert_eq!(Paced::new(100, 0).count, 1);
    }

    #[tokio::test]
    async fn a_paced_stream_sends_every_chunk_in_order_then_usage_and_done() {
        let pace = Paced {
            every: Duration::from_millis(1),
            count: 10,
        };
        let frames: Vec<Bytes> = body(pace, "id-1".into(), "m".into(), true).collect().await;
        let text: String = frames
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        let seqs: Vec<u32> = markers(&text).into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        let stamps: Vec<u64> = markers(&text).into_iter().map(|(_, t)| t).collect();
        assert!(
            stamps.windows(2).all(|w| w[1] - w[0] == 1_000),
            "{stamps:?}"
        );
        assert!(text.contains("\"completion_tokens\":10"), "{text}");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }
}
