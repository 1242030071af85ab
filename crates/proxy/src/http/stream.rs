//! The client side of a streamed chat: upstream SSE bytes pass through frame by frame. Each
//! chunk is read as JSON once, for its id, its usage and (while the upstream has sent no usage)
//! the generated text the fallback estimate counts. Usage reaches the client exactly as
//! `stream_options.include_usage` asks: when asked, in one final chunk with `choices: []`
//! (the upstream's, or one built from usage found elsewhere or estimated); when not, nowhere.
//! `[DONE]` is kept; an upstream failure becomes a final `data: {"error":...}` frame, and so
//! do an upstream stream that ends without `[DONE]` (truncated), a chunk that is not JSON (502,
//! naming the provider, with an excerpt) and the end of the shutdown drain (503). A stream
//! that got as far as `[DONE]` is a success even if the client hangs up before its end is
//! read; one the client leaves earlier is a `failure` row whose error starts with
//! `client_disconnected`, charged for what was streamed (the upstream's usage if it came,
//! else the estimate over the text sent). Failures before the first byte never get here: the
//! attempt loop retries them (`attempts.rs`).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use futures_util::stream::{BoxStream, StreamExt};
use idlehands_routing::Pick;
use idlehands_wire::{SseDecoder, SseEvent, Usage};
use serde::Deserialize;
use serde_json::Value;

use super::estimate::Choices;
use super::trace::Trace;
use crate::error::ProxyError;

/// At most this much is gathered into one write.
const COALESCE_MAX: usize = 64 * 1024;

/// Strings are borrowed from the chunk: it is read on every event, and only the first id and
/// model are kept.
#[derive(Deserialize)]
struct ChunkPeek<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    created: Option<serde_json::Number>,
    #[serde(default)]
    choices: Option<Choices>,
    #[serde(default)]
    usage: Option<Usage>,
    /// An in-stream error (`data: {"error": {...}}`), as OpenAI, vLLM and others send when a
    /// generation fails after the stream began.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

pub(crate) struct ClientStream {
    upstream: BoxStream<'static, Result<Bytes, ProxyError>>,
    decoder: SseDecoder,
    /// The client asked for usage (or `always_include_stream_usage`).
    keep_usage_chunk: bool,
    /// A usage chunk already went to the client.
    usage_sent: bool,
    trace: Trace,
    usage: Option<Usage>,
    response_id: Option<String>,
    /// The stream's `model` and `created`, for a usage chunk built here.
    model: Option<String>,
    created: Option<u64>,
    first_byte: Option<DateTime<Utc>>,
    ended: bool,
    /// Generated text seen, for the fallback count when the upstream sends no usage.
    generated_chars: usize,
    /// Read ahead by the attempt loop to know the stream started; sent first.
    first: Option<Bytes>,
    /// The routing pick this stream answers for, reported when it ends (holding it keeps the
    /// deployment counted as busy), and when its attempt started.
    pick: Option<(Pick, Instant)>,
    saw_done: bool,
    /// The upstream's bytes, kept in the response cache if the stream completes.
    recorder: Option<super::cache::Recorder>,
    /// The deployment's `max_parallel_requests` slot, given back when the stream ends.
    slot: Option<crate::providers::slots::SlotGuard>,
    /// Ready when the shutdown drain is over: the stream then ends with an error event.
    cut: Pin<Box<dyn Future<Output = ()> + Send>>,
}

fn put(out: &mut BytesMut, data: &[u8]) {
    // One allocation (or none) for the frame: growing by each piece reallocated a chunk's
    // buffer up to three times.
    out.reserve(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// The chunk without its `usage` field (usage riding on a chunk that also has choices).
fn without_usage(data: &str) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_str(data).ok()?;
    v.as_object_mut()?.remove("usage");
    serde_json::to_vec(&v).ok()
}

impl ClientStream {
    pub fn new(
        upstream: BoxStream<'static, Result<Bytes, ProxyError>>,
        keep_usage_chunk: bool,
        trace: Trace,
    ) -> Self {
        let cut = Box::pin(trace.app.cut_signal());
        Self {
            cut,
            upstream,
            decoder: SseDecoder::new(),
            keep_usage_chunk,
            usage_sent: false,
            trace,
            usage: None,
            response_id: None,
            model: None,
            created: None,
            first_byte: None,
            ended: false,
            generated_chars: 0,
            first: None,
            pick: None,
            saw_done: false,
            recorder: None,
            slot: None,
        }
    }

    /// Bytes already taken from `upstream`, to be sent before the rest of it.
    pub fn with_first(mut self, first: Option<Bytes>) -> Self {
        self.first = first;
        self
    }

    /// Report the stream's outcome on this pick when it ends.
    pub fn with_pick(mut self, pick: Pick, started: Instant) -> Self {
        self.pick = Some((pick, started));
        self
    }

    /// Hold the deployment's slot until the stream ends.
    pub fn with_slot(mut self, slot: Option<crate::providers::slots::SlotGuard>) -> Self {
        self.slot = slot;
        self
    }

    /// Keep the stream in the response cache when it completes.
    pub fn with_recorder(mut self, recorder: Option<super::cache::Recorder>) -> Self {
        self.recorder = recorder;
        self
    }

    /// Passes `events` on; a chunk that is not JSON stops it with the error that ends the
    /// stream.
    fn forward(&mut self, events: Vec<SseEvent>, out: &mut BytesMut) -> Option<ProxyError> {
        for ev in events {
            if ev.is_done() {
                if !self.saw_done {
                    self.saw_done = true;
                    self.usage_chunk(out);
                    self.cost_comment(out);
                }
                out.extend_from_slice(idlehands_wire::sse::DONE);
                continue;
            }
            if let Some(c) = self.trace.capture.as_mut() {
                c.stream_chunk(&ev.data);
            }
            if ev.data.trim().is_empty() {
                // Nothing to parse or to pass on (a keep-alive some servers send).
                continue;
            }
            let p = match serde_json::from_str::<ChunkPeek>(&ev.data) {
                Ok(p) => p,
                Err(e) => return Some(self.not_json(&ev.data, &e)),
            };
            if p.error.as_ref().is_some_and(|e| !e.is_null()) {
                return Some(self.in_stream_error(p.error.as_ref(), &ev.data));
            }
            if self.response_id.is_none() {
                self.response_id = p.id.map(Cow::into_owned);
            }
            if self.model.is_none() {
                self.model = p.model.map(Cow::into_owned);
                // The answered model prices the call when the config does not.
                if self.trace.response_model.is_none() {
                    self.trace.response_model = self.model.clone();
                }
            }
            if self.created.is_none() {
                self.created = p.created.and_then(|n| n.as_u64());
            }
            if self.usage.is_none()
                && let Some(choices) = &p.choices
            {
                self.generated_chars += choices.chars;
            }
            let Some(u) = p.usage else {
                put(out, ev.data.as_bytes());
                continue;
            };
            self.usage = Some(u);
            if p.choices.is_none_or(|c| c.count == 0) {
                // The usage chunk itself: the client's only if it asked.
                if self.keep_usage_chunk && !self.usage_sent {
                    self.usage_sent = true;
                    put(out, ev.data.as_bytes());
                }
                continue;
            }
            // Usage on a chunk with choices: the choices go on, the usage (if asked for)
            // follows in a chunk of its own before `[DONE]`.
            match without_usage(&ev.data) {
                Some(data) => put(out, &data),
                None => put(out, ev.data.as_bytes()),
            }
        }
        None
    }

    /// The upstream's own error frame ends the stream with its words and status (as the
    /// OpenAI SDK under LiteLLM raises on a chunk carrying `error`), not as a cut stream.
    fn in_stream_error(&self, error: Option<&serde_json::Value>, data: &str) -> ProxyError {
        let code = error.and_then(|e| e.get("code")).and_then(|c| match c {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        });
        let status = code
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..=599).contains(c))
            .unwrap_or(500);
        let label = &self.trace.deployment.provider;
        crate::providers::upstream_error(label, status, data.as_bytes(), None)
    }

    /// A chunk no client could parse: as the OpenAI SDK that LiteLLM streams through, the
    /// stream fails there (a 502 naming the provider, with an excerpt) rather than passing on
    /// what would break the client's parser.
    fn not_json(&self, data: &str, e: &serde_json::Error) -> ProxyError {
        let label = &self.trace.deployment.provider;
        ProxyError::Upstream {
            status: 502,
            message: idlehands_translate::TranslateError::untranslatable(
                format!("{label} sent a stream chunk that is not JSON ({e})"),
                data,
            )
            .to_string(),
            kind: None,
            retry_after: None,
        }
    }

    /// Before `[DONE]`: the final usage chunk, when the client asked and none went out yet.
    fn usage_chunk(&mut self, out: &mut BytesMut) {
        if !self.keep_usage_chunk || self.usage_sent {
            return;
        }
        let Some(usage) = self.final_usage() else {
            return;
        };
        let chunk = idlehands_translate::openai::usage_chunk(
            self.response_id.as_deref().unwrap_or(&self.trace.call_id),
            self.model
                .as_deref()
                .unwrap_or(&self.trace.deployment.upstream_model),
            self.created
                .unwrap_or_else(|| self.trace.start_time.timestamp().unsigned_abs()),
            serde_json::to_value(&usage).unwrap_or(Value::Null),
        );
        if let Ok(data) = serde_json::to_vec(&chunk) {
            self.usage_sent = true;
            put(out, &data);
        }
    }

    /// The upstream's usage, or the fallback estimate when it sent none.
    /// Before `[DONE]`: the call's cost as an SSE comment (`: x-litellm-response-cost: 0.0012`).
    /// A stream's headers leave before its cost is known and OpenAI objects get no extra fields;
    /// every SSE client skips comments, and the IdleHands agent reads this one.
    fn cost_comment(&mut self, out: &mut BytesMut) {
        let usage = self.final_usage();
        let cost = self.trace.cost(usage.as_ref());
        out.extend_from_slice(b": x-litellm-response-cost: ");
        out.extend_from_slice(crate::pricing::nanos_to_usd_string(cost).as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn final_usage(&mut self) -> Option<Usage> {
        if self.usage.is_none() && (self.generated_chars > 0 || self.first_byte.is_some()) {
            self.usage = Some(super::estimate::usage(
                self.trace.prompt_estimate,
                self.generated_chars,
            ));
            self.trace.usage_estimated = true;
        }
        self.usage.clone()
    }

    fn end(&mut self, error: Option<&ProxyError>) {
        self.ended = true;
        self.final_usage();
        if let Some((pick, started)) = self.pick.take() {
            match error {
                Some(e) => {
                    pick.failure(&super::attempts::failure_of(e));
                }
                None => pick.success(
                    started.elapsed(),
                    super::chat::token_usage(self.usage.as_ref()),
                ),
            }
        }
        let status = error.map(ProxyError::status).unwrap_or(200);
        self.slot = None;
        if let Some(r) = self.recorder.take()
            && error.is_none()
            && self.saw_done
        {
            r.finish();
        }
        let id = self.response_id.take();
        self.trace
            .finish(self.usage.as_ref(), id, self.first_byte, error, status);
    }
}

impl Stream for ClientStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // Everything the upstream has ready goes out as one write: fewer syscalls and
        // packets, and no added latency since nothing waits for more to arrive.
        let mut out = BytesMut::new();
        let ready = |out: BytesMut| {
            if out.is_empty() {
                Poll::Ready(None)
            } else {
                Poll::Ready(Some(Ok(out.freeze())))
            }
        };
        if !this.ended && this.cut.as_mut().poll(cx).is_ready() {
            let e = crate::state::App::cut_error();
            out.extend_from_slice(&e.sse_frame());
            this.end(Some(&e));
            return ready(out);
        }
        loop {
            if this.ended {
                return ready(out);
            }
            let next = match this.first.take() {
                Some(b) => Poll::Ready(Some(Ok(b))),
                None => this.upstream.poll_next_unpin(cx),
            };
            match next {
                Poll::Pending => {
                    return if out.is_empty() {
                        Poll::Pending
                    } else {
                        Poll::Ready(Some(Ok(out.freeze())))
                    };
                }
                Poll::Ready(Some(Ok(bytes))) => {
                    if this.first_byte.is_none() {
                        this.first_byte = Some(Utc::now());
                    }
                    if let Some(r) = this.recorder.as_mut() {
                        r.push(&bytes);
                    }
                    let events = this.decoder.push(&bytes);
                    if let Some(e) = this.forward(events, &mut out) {
                        out.extend_from_slice(&e.sse_frame());
                        this.end(Some(&e));
                        return ready(out);
                    }
                    if out.len() >= COALESCE_MAX {
                        return Poll::Ready(Some(Ok(out.freeze())));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    if let Some(ev) = this.decoder.finish() {
                        // Ends with `e` whatever the last event holds.
                        let _ = this.forward(vec![ev], &mut out);
                    }
                    out.extend_from_slice(&e.sse_frame());
                    this.end(Some(&e));
                    return ready(out);
                }
                Poll::Ready(None) => {
                    let last = this.decoder.finish().map(|ev| vec![ev]).unwrap_or_default();
                    if let Some(e) = this.forward(last, &mut out) {
                        out.extend_from_slice(&e.sse_frame());
                        this.end(Some(&e));
                    } else if this.saw_done {
                        this.end(None);
                    } else {
                        let e = ProxyError::UpstreamUnreachable {
                            label: this.trace.deployment.provider.clone(),
                            message: "the stream ended before it was complete".to_string(),
                        };
                        out.extend_from_slice(&e.sse_frame());
                        this.end(Some(&e));
                    }
                    return ready(out);
                }
            }
        }
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if self.saw_done {
            // The answer was complete: a client that hangs up right after `[DONE]` (as agents
            // do) does not make it a failure.
            self.end(None);
            return;
        }
        // The client went away mid-stream: record what was used so far.
        self.final_usage();
        let id = self.response_id.take();
        self.trace.finish_with(
            self.usage.as_ref(),
            id,
            self.first_byte,
            Some(format!(
                "client_disconnected: the client closed the connection before the stream ended; \
                 charged for the {} tokens streamed so far",
                self.usage.as_ref().map_or(0, |u| u.completion_tokens)
            )),
            200,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_riding_on_a_chunk_with_choices_is_taken_off_it() {
        let chunk = r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let out: Value = serde_json::from_slice(&without_usage(chunk).unwrap()).unwrap();
        assert!(out.get("usage").is_none());
        assert_eq!(out["choices"][0]["finish_reason"], "stop");
        assert_eq!(out["id"], "c");
        assert!(without_usage("not json").is_none());
    }
}
