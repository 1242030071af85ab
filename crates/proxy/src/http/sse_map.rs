//! The chat pipeline's OpenAI chunk stream rewritten into another API's events on the way out
//! (`/v1/messages` answers in Anthropic's, `/v1/responses` in the Responses API's). The frame
//! handling is shared; each front door says what a chunk, the end and a failure become.

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};
use idlehands_wire::{SseDecoder, SseEvent};
use serde_json::Value;

/// One front door's rewriting of the stream: each method returns the SSE text to send.
pub(crate) trait ChunkMap: Send + 'static {
    /// One parsed chat chunk; an error (status, message) ends the stream with [`Self::error`].
    fn chunk(&mut self, chunk: &Value) -> Result<String, (u16, String)>;
    /// `data: [DONE]`, or the end of a stream that never said it.
    fn done(&mut self) -> String;
    /// The stream failed (the pipeline's error frame, a chunk that is not JSON, a cut body).
    fn error(&mut self, status: u16, message: &str) -> String;
}

struct Mapping<M> {
    body: BoxStream<'static, Result<Bytes, axum::Error>>,
    sse: SseDecoder,
    map: M,
    ended: bool,
}

impl<M: ChunkMap> Mapping<M> {
    fn fail(&mut self, out: &mut BytesMut, status: u16, message: &str) {
        self.ended = true;
        out.extend_from_slice(self.map.error(status, message).as_bytes());
    }

    fn event(&mut self, out: &mut BytesMut, ev: SseEvent) {
        if self.ended {
            return;
        }
        if ev.is_done() {
            self.ended = true;
            out.extend_from_slice(self.map.done().as_bytes());
            return;
        }
        let chunk: Value = match serde_json::from_str(&ev.data) {
            Ok(c) => c,
            Err(_) => {
                let msg = format!(
                    "Upstream response could not be translated: invalid JSON chunk: {}",
                    idlehands_translate::error::excerpt(&ev.data)
                );
                return self.fail(out, 502, &msg);
            }
        };
        if let Some(err) = chunk.get("error") {
            // The pipeline's final error frame carries the status as `code`.
            let status = err
                .get("code")
                .and_then(|c| {
                    c.as_u64()
                        .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
                })
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(500);
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream error in stream")
                .to_string();
            return self.fail(out, status, &message);
        }
        match self.map.chunk(&chunk) {
            Ok(text) => out.extend_from_slice(text.as_bytes()),
            Err((status, message)) => self.fail(out, status, &message),
        }
    }
}

/// Whether an answer's headers say it is a stream of server-sent events.
pub(crate) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The chat pipeline's SSE body, rewritten by `map`.
pub(crate) fn map_stream<M: ChunkMap>(
    body: BoxStream<'static, Result<Bytes, axum::Error>>,
    map: M,
) -> BoxStream<'static, Result<Bytes, std::convert::Infallible>> {
    let state = Mapping {
        body,
        sse: SseDecoder::new(),
        map,
        ended: false,
    };
    stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        loop {
            let mut out = BytesMut::new();
            match s.body.next().await {
                Some(Ok(bytes)) => {
                    for ev in s.sse.push(&bytes) {
                        s.event(&mut out, ev);
                    }
                }
                Some(Err(e)) => {
                    s.fail(&mut out, 500, &format!("stream interrupted: {e}"));
                    return Some((Ok(out.freeze()), None));
                }
                None => {
                    if let Some(ev) = s.sse.finish() {
                        s.event(&mut out, ev);
                    }
                    if !s.ended {
                        s.ended = true;
                        out.extend_from_slice(s.map.done().as_bytes());
                    }
                    return (!out.is_empty()).then(|| (Ok(out.freeze()), None));
                }
            }
            if !out.is_empty() {
                return Some((Ok(out.freeze()), Some(s)));
            }
        }
    })
    .boxed()
}
