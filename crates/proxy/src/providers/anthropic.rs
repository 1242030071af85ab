//! `anthropic/` deployments: OpenAI chat in, the Messages API out, OpenAI chat back.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use idlehands_translate::anthropic::{self as tr, AnthropicStreamToOpenAi, MessagesOptions};
use idlehands_translate::stream_to_openai::BodyToOpenAi;

use super::upstream;
use super::{ChatCall, ChatReply, EmbeddingReply, Provider};
use crate::error::ProxyError;
use crate::providers::Deployment;

const LABEL: &str = "AnthropicException";

pub struct Anthropic {
    url: String,
}

impl Anthropic {
    pub fn new(api_base: Option<&str>) -> Self {
        Self {
            url: tr::endpoint(api_base),
        }
    }
}

impl Provider for Anthropic {
    fn chat(
        &self,
        client: &reqwest::Client,
        d: &Arc<Deployment>,
        call: ChatCall,
    ) -> BoxFuture<'static, Result<ChatReply, ProxyError>> {
        let client = client.clone();
        let d = d.clone();
        let url = self.url.clone();
        Box::pin(async move {
            let key = d.api_key.as_ref().ok_or_else(|| {
                upstream::missing(
                    LABEL,
                    "Missing Anthropic API Key: set litellm_params.api_key or ANTHROPIC_API_KEY",
                )
            })?;
            let req = upstream::parse(LABEL, &call.body)
                .map_err(|_| upstream::upstream(400, "request body is not JSON", None))?;
            let opts = MessagesOptions {
                default_max_tokens: d.price.as_ref().and_then(|p| p.max_output_tokens),
            };
            let mut body = tr::to_messages_request(&req, &d.upstream_model, &opts)
                .map_err(|e| upstream::translate_error(LABEL, e))?;
            upstream::add_extra_body(&mut body, call.extra_body.as_deref());
            let mut request = client.post(&url).body(upstream::to_bytes(&body));
            for (k, v) in tr::request_headers(key.expose(), &[]) {
                request = request.header(k, v);
            }
            let request = upstream::with_headers(request, &call.extra_headers);
            let resp = upstream::send(LABEL, &d, request, call.stream).await?;
            let status = resp.status().as_u16();
            let headers = upstream::kept_headers(resp.headers());
            if !resp.status().is_success() {
                let retry = upstream::retry_after(resp.headers());
                let text = upstream::body(LABEL, &d, resp).await?;
                let m = tr::map_error(status, &String::from_utf8_lossy(&text));
                return Err(upstream::mapped(m, retry));
            }
            let created = upstream::now_secs();
            if call.stream {
                let source =
                    BodyToOpenAi::new(AnthropicStreamToOpenAi::new(&d.upstream_model, created));
                let frames = upstream::translated_stream(LABEL, &d, resp, source);
                return Ok(ChatReply::Stream { frames, headers });
            }
            let raw = upstream::body(LABEL, &d, resp).await?;
            let answer = upstream::parse(LABEL, &raw)?;
            let completion = tr::from_messages_response(&answer, &d.upstream_model, created)
                .map_err(|e| upstream::translate_error(LABEL, e))?;
            Ok(ChatReply::Full {
                body: upstream::to_bytes(&completion),
                headers,
                peek: None,
            })
        })
    }

    fn embeddings(
        &self,
        _client: &reqwest::Client,
        d: &Arc<Deployment>,
        _body: Bytes,
    ) -> BoxFuture<'static, Result<EmbeddingReply, ProxyError>> {
        let e = upstream::upstream(
            400,
            &format!(
                "{LABEL} - Anthropic has no embeddings API (model={})",
                d.model
            ),
            None,
        );
        Box::pin(async move { Err(e) })
    }
}
