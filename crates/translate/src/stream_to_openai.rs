//! What every provider's stream translation shares, whatever the provider: the chunk ids, the
//! token counts and finish reason gathered on the way, the provider block -> OpenAI tool-call
//! index map, the trailing usage chunk, the "cut short" check, and reading a raw body through
//! the provider's framing. A provider supplies only its [`ProviderStream`]: how one of its
//! frames becomes chunks.

use std::collections::HashMap;

use idlehands_wire::{SseDecoder, SseEvent};
use serde_json::{Value, json};

use crate::TranslateError;
use crate::anthropic::MappedError;
use crate::bedrock::{EventMessage, EventStreamDecoder};
use crate::openai::{self, TokenCounts};

/// How a provider's streamed body is cut into frames.
pub trait FrameDecoder: Default {
    type Frame;
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<Self::Frame>, TranslateError>;
    /// A frame left unterminated when the body ended, where the format lets one count.
    fn finish(&mut self) -> Option<Self::Frame>;
}

impl FrameDecoder for SseDecoder {
    type Frame = SseEvent;

    fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, TranslateError> {
        Ok(SseDecoder::push(self, bytes))
    }

    fn finish(&mut self) -> Option<SseEvent> {
        SseDecoder::finish(self)
    }
}

impl FrameDecoder for EventStreamDecoder {
    type Frame = EventMessage;

    fn push(&mut self, bytes: &[u8]) -> Result<Vec<EventMessage>, TranslateError> {
        EventStreamDecoder::push(self, bytes)
    }

    /// Every message carries its own length and checksum, so a partial one is never read.
    fn finish(&mut self) -> Option<EventMessage> {
        None
    }
}

/// One provider's part of a stream translation: its frames in, OpenAI chunks out.
pub trait ProviderStream {
    type Decoder: FrameDecoder;
    /// Why [`StreamToOpenAi::finish`] refuses a body that ended before the provider's end
    /// marker.
    const CUT_SHORT: &'static str;

    /// Chunks for one frame; an error the provider reports inside the stream is
    /// [`TranslateError::Upstream`].
    fn frame(
        &mut self,
        frame: &<Self::Decoder as FrameDecoder>::Frame,
        out: &mut Chunks,
    ) -> Result<Vec<Value>, TranslateError>;

    /// Whether the provider's end marker arrived; most providers end with a finish reason.
    fn is_complete(&self, out: &Chunks) -> bool {
        out.finish.is_some()
    }
}

/// What a stream has gathered so far, and the chunks stamped with its id, model and time.
#[derive(Debug, Clone)]
pub struct Chunks {
    model: String,
    created: u64,
    pub(crate) id: String,
    pub(crate) counts: TokenCounts,
    /// The provider reported token counts: a stream that never does gets no usage chunk, so
    /// the gateway counts the call itself instead of charging zero tokens.
    reported: bool,
    finish: Option<&'static str>,
    /// Provider content block index -> OpenAI tool call index: providers number blocks across
    /// text, reasoning and tool use, OpenAI numbers tool calls alone.
    tool_calls: HashMap<u64, usize>,
}

impl Chunks {
    fn new(model: &str, id: &str, created: u64) -> Self {
        Self {
            model: model.to_string(),
            created,
            id: id.to_string(),
            counts: TokenCounts::default(),
            reported: false,
            finish: None,
            tool_calls: HashMap::new(),
        }
    }

    /// The provider's token counts (they replace any earlier ones).
    pub(crate) fn report(&mut self, counts: TokenCounts) {
        self.counts = counts;
        self.reported = true;
    }

    pub(crate) fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        openai::chunk(&self.id, &self.model, self.created, delta, finish)
    }

    /// The opening chunk OpenAI streams start with.
    pub(crate) fn role(&self) -> Value {
        self.chunk(json!({"role": "assistant", "content": ""}), None)
    }

    /// Record the finish reason; its chunk.
    pub(crate) fn finished(&mut self, reason: &'static str) -> Value {
        self.finish = Some(reason);
        self.chunk(json!({}), Some(reason))
    }

    /// A tool call starts in provider block `block`: its OpenAI index.
    pub(crate) fn open_tool_call(&mut self, block: u64) -> usize {
        let n = self.tool_calls.len();
        self.tool_calls.insert(block, n);
        n
    }

    /// The OpenAI index of the tool call in provider block `block`, if one started there.
    pub(crate) fn tool_call(&self, block: u64) -> Option<usize> {
        self.tool_calls.get(&block).copied()
    }

    pub(crate) fn has_tool_calls(&self) -> bool {
        !self.tool_calls.is_empty()
    }
}

/// A provider's streamed answer translated frame by frame into OpenAI
/// `chat.completion.chunk`s; each provider's module names its instance
/// (`AnthropicStreamToOpenAi`, ...) and gives it a constructor and a `push` in its own terms.
#[derive(Debug, Clone)]
pub struct StreamToOpenAi<P> {
    chunks: Chunks,
    provider: P,
}

impl<P: ProviderStream> StreamToOpenAi<P> {
    pub(crate) fn with(provider: P, model: &str, id: &str, created: u64) -> Self {
        Self {
            chunks: Chunks::new(model, id, created),
            provider,
        }
    }

    /// One frame as the provider's decoder yields it.
    pub fn push_frame(
        &mut self,
        frame: &<P::Decoder as FrameDecoder>::Frame,
    ) -> Result<Vec<Value>, TranslateError> {
        self.provider.frame(frame, &mut self.chunks)
    }

    /// Whether the provider's end marker arrived: a stream that ends without it was cut short.
    pub fn is_complete(&self) -> bool {
        self.provider.is_complete(&self.chunks)
    }

    pub fn finish_reason(&self) -> Option<&'static str> {
        self.chunks.finish
    }

    /// Usage so far (final once the stream is complete), OpenAI-shaped; `None` while the
    /// provider has reported none.
    pub fn usage(&self) -> Option<Value> {
        self.chunks.reported.then(|| self.chunks.counts.to_usage())
    }

    /// Call when the upstream body ends: the trailing usage chunk (send it when the client
    /// asked for `stream_options.include_usage`), `None` when the provider never reported
    /// usage (nothing to relay: zeros would charge the call nothing), or an error for a
    /// stream cut short.
    pub fn finish(&self) -> Result<Option<Value>, TranslateError> {
        if !self.is_complete() {
            return Err(TranslateError::untranslatable(P::CUT_SHORT, ""));
        }
        let c = &self.chunks;
        Ok(self
            .usage()
            .map(|u| openai::usage_chunk(&c.id, &c.model, c.created, u)))
    }
}

/// A [`StreamToOpenAi`] fed the raw upstream body: bytes in as they arrive, chunks out.
#[derive(Debug)]
pub struct BodyToOpenAi<P: ProviderStream> {
    decoder: P::Decoder,
    machine: StreamToOpenAi<P>,
}

impl<P: ProviderStream> BodyToOpenAi<P> {
    pub fn new(machine: StreamToOpenAi<P>) -> Self {
        Self {
            decoder: P::Decoder::default(),
            machine,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Value>, TranslateError> {
        let mut out = Vec::new();
        for frame in self.decoder.push(bytes)? {
            out.extend(self.machine.push_frame(&frame)?);
        }
        Ok(out)
    }

    /// The body ended: the trailing usage chunk (`None`: the provider reported no usage), or
    /// an error for a stream cut short.
    pub fn finish(&mut self) -> Result<Option<Value>, TranslateError> {
        if let Some(frame) = self.decoder.finish() {
            // A last frame without its terminator still counts: its chunks are lost to the
            // client but its usage and stop are kept.
            self.machine.push_frame(&frame)?;
        }
        self.machine.finish()
    }

    pub fn machine(&self) -> &StreamToOpenAi<P> {
        &self.machine
    }
}

/// An error the provider reported inside the stream, as mapped by its `map_error`.
pub(crate) fn reported(m: MappedError) -> TranslateError {
    TranslateError::Upstream {
        status: m.status,
        message: m.message,
    }
}
