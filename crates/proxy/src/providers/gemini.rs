//! `gemini/` deployments (Google AI Studio): generateContent / streamGenerateContent for chat,
//! batchEmbedContents for embeddings.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use idlehands_translate::gemini::{self as tr, GeminiStreamToOpenAi};
use idlehands_translate::stream_to_openai::BodyToOpenAi;
use serde_json::Value;

use super::upstream;
use super::{ChatCall, ChatReply, EmbeddingReply, Provider};
use crate::config::Secret;
use crate::error::ProxyError;
use crate::providers::Deployment;

const LABEL: &str = "GeminiException";

pub struct Gemini {
    api_base: Option<String>,
}

impl Gemini {
    pub fn new(api_base: Option<&str>) -> Self {
        Self {
            api_base: api_base.map(str::to_string),
        }
    }
}

fn key(d: &Deployment) -> Result<&Secret, ProxyError> {
    d.api_key.as_ref().ok_or_else(|| {
        upstream::missing(
            LABEL,
            "Missing Gemini API Key: set litellm_params.api_key or GEMINI_API_KEY",
        )
    })
}

async fn call_gemini(
    client: reqwest::Client,
    d: &Deployment,
    url: String,
    body: &Value,
    stream: bool,
    extra_headers: &http::HeaderMap,
) -> Result<reqwest::Response, ProxyError> {
    let mut request = client.post(url).body(upstream::to_bytes(body));
    for (k, v) in tr::request_headers(key(d)?.expose()) {
        request = request.header(k, v);
    }
    let request = upstream::with_headers(request, extra_headers);
    let resp = upstream::send(LABEL, d, request, stream).await?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let retry = upstream::retry_after(resp.headers());
    let text = upstream::body(LABEL, d, resp).await?;
    Err(upstream::mapped(
        tr::map_error(status, &String::from_utf8_lossy(&text)),
        retry,
    ))
}

impl Provider for Gemini {
    fn chat(
        &self,
        client: &reqwest::Client,
        d: &Arc<Deployment>,
        call: ChatCall,
    ) -> BoxFuture<'static, Result<ChatReply, ProxyError>> {
        let client = client.clone();
        let d = d.clone();
        let url = tr::endpoint(self.api_base.as_deref(), &d.upstream_model, call.stream);
        Box::pin(async move {
            let req = upstream::parse(LABEL, &call.body)
                .map_err(|_| upstream::upstream(400, "request body is not JSON", None))?;
            let mut body = tr::to_generate_content_request(&req)
                .map_err(|e| upstream::translate_error(LABEL, e))?;
            upstream::add_extra_body(&mut body, call.extra_body.as_deref());
            let resp =
                call_gemini(client, &d, url, &body, call.stream, &call.extra_headers).await?;
            let headers = upstream::kept_headers(resp.headers());
            let created = upstream::now_secs();
            if call.stream {
                let source =
                    BodyToOpenAi::new(GeminiStreamToOpenAi::new(&d.upstream_model, created));
                let frames = upstream::translated_stream(LABEL, &d, resp, source);
                return Ok(ChatReply::Stream { frames, headers });
            }
            let raw = upstream::body(LABEL, &d, resp).await?;
            let answer = upstream::parse(LABEL, &raw)?;
            let completion =
                tr::from_generate_content_response(&answer, &d.upstream_model, created)
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
        client: &reqwest::Client,
        d: &Arc<Deployment>,
        body: Bytes,
    ) -> BoxFuture<'static, Result<EmbeddingReply, ProxyError>> {
        let client = client.clone();
        let d = d.clone();
        let url = tr::embeddings_endpoint(self.api_base.as_deref(), &d.upstream_model);
        Box::pin(async move {
            let req = upstream::parse(LABEL, &body)
                .map_err(|_| upstream::upstream(400, "request body is not JSON", None))?;
            let out = tr::to_batch_embed_request(&req, &d.upstream_model)
                .map_err(|e| upstream::translate_error(LABEL, e))?;
            let resp = call_gemini(client, &d, url, &out, false, &d.params.headers).await?;
            let headers = upstream::kept_headers(resp.headers());
            let raw = upstream::body(LABEL, &d, resp).await?;
            let answer = upstream::parse(LABEL, &raw)?;
            let list = tr::from_batch_embed_response(&answer, &req, &d.upstream_model)
                .map_err(|e| upstream::translate_error(LABEL, e))?;
            Ok(EmbeddingReply {
                body: upstream::to_bytes(&list),
                headers,
            })
        })
    }
}
