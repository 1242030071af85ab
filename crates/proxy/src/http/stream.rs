//! The client side of a streamed chat: upstream SSE bytes pass through frame by frame. The
//! gateway reads only what it needs: the first chunk's id, and chunks that mention `usage`.
//! The usage-only chunk (`choices: []`) is dropped unless the client asked for it; `[DONE]`
//! is kept; an upstream failure becomes a final `data: {"error":...}` frame, and so does an
//! upstream stream that ends without `[DONE]` (truncated). Failures before the first byte never
//! get here: the attempt loop retries them (`attempts.rs`).

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use futures_util::stream::{BoxStream, StreamExt};
use idlehands_routing::Pick;
use idlehands_wire::{SseDecoder, SseEvent, Usage};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::trace::Trace;
use crate::error::ProxyError;

/// Built once: every streamed chunk is checked for a usage object.
static USAGE: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new("\"usage\""));

/// At most this much is gathered into one write.
const COALESCE_MAX: usize = 64 * 1024;

#[derive(Deserialize)]
struct ChunkPeek {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<Usage>,
}

pub(crate) struct ClientStream {
    upstream: BoxStream<'static, Result<Bytes, ProxyError>>,
    decoder: SseDecoder,
    keep_usage_chunk: bool,
    trace: Trace,
    usage: Option<Usage>,
    response_id: Option<String>,
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
}

impl ClientStream {
    pub fn new(
        upstream: BoxStream<'static, Result<Bytes, ProxyError>>,
        keep_usage_chunk: bool,
        trace: Trace,
    ) -> Self {
        Self {
            upstream,
            decoder: SseDecoder::new(),
            keep_usage_chunk,
            trace,
            usage: None,
            response_id: None,
            first_byte: None,
            ended: false,
            generated_chars: 0,
            first: None,
            pick: None,
            saw_done: false,
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

    fn forward(&mut self, events: Vec<SseEvent>, out: &mut BytesMut) {
        for ev in events {
            if ev.is_done() {
                self.saw_done = true;
                out.extend_from_slice(idlehands_wire::sse::DONE);
                continue;
            }
            if let Some(c) = self.trace.capture.as_mut() {
                c.stream_chunk(&ev.data);
            }
            if self.usage.is_none() {
                self.generated_chars += super::estimate::generated_chars(&ev.data);
            }
            let needs_peek = self.response_id.is_none() || USAGE.find(ev.data.as_bytes()).is_some();
            if needs_peek && let Ok(p) = serde_json::from_str::<ChunkPeek>(&ev.data) {
                if self.response_id.is_none() {
                    self.response_id = p.id;
                }
                if self.trace.response_model.is_none() {
                    self.trace.response_model = p.model;
                }
                if let Some(u) = p.usage {
                    let usage_only = p.choices.as_ref().is_some_and(Vec::is_empty);
                    let cost = self.trace.cost(Some(&u));
                    self.usage = Some(u);
                    if usage_only && !self.keep_usage_chunk {
                        continue;
                    }
                    // The client cannot get a stream's cost as a header: `usage.cost`.
                    if let Some(data) = crate::ledger::usage_cost::with_usage_cost(&ev.data, cost) {
                        out.extend_from_slice(b"data: ");
                        out.extend_from_slice(data.as_bytes());
                        out.extend_from_slice(b"\n\n");
                        continue;
                    }
                }
            }
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(ev.data.as_bytes());
            out.extend_from_slice(b"\n\n");
        }
    }

    /// The upstream's usage, or the fallback estimate when it sent none.
    fn final_usage(&mut self) -> Option<Usage> {
        if self.usage.is_none() && (self.generated_chars > 0 || self.first_byte.is_some()) {
            self.usage = Some(super::estimate::usage(
                self.trace.prompt_estimate,
                self.generated_chars,
            ));
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
                    let events = this.decoder.push(&bytes);
                    this.forward(events, &mut out);
                    if out.len() >= COALESCE_MAX {
                        return Poll::Ready(Some(Ok(out.freeze())));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    if let Some(ev) = this.decoder.finish() {
                        this.forward(vec![ev], &mut out);
                    }
                    out.extend_from_slice(&e.sse_frame());
                    this.end(Some(&e));
                    return ready(out);
                }
                Poll::Ready(None) => {
                    if let Some(ev) = this.decoder.finish() {
                        this.forward(vec![ev], &mut out);
                    }
                    if this.saw_done {
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
        if !self.ended {
            // The client went away mid-stream: record what was used so far.
            self.final_usage();
            let id = self.response_id.take();
            self.trace.finish_with(
                self.usage.as_ref(),
                id,
                self.first_byte,
                Some("client disconnected before the stream ended".to_string()),
                200,
            );
        }
    }
}
