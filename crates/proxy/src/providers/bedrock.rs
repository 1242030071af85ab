//! `bedrock/` deployments: the Converse and ConverseStream APIs, signed with SigV4 using
//! credentials read once at config load.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use idlehands_translate::bedrock::{
    self as tr, AwsCredentials, ConverseStreamToOpenAi, SigningRequest,
};
use idlehands_translate::stream_to_openai::BodyToOpenAi;

use super::upstream;
use super::{ChatCall, ChatReply, EmbeddingReply, Provider};
use crate::config::LitellmParams;
use crate::error::ProxyError;
use crate::providers::Deployment;

const LABEL: &str = "BedrockException";

pub struct Bedrock {
    api_base: Option<String>,
    region: Option<String>,
    /// `Debug` of these never shows the secret.
    credentials: Option<AwsCredentials>,
}

impl Bedrock {
    /// Region and credentials from the params, which config load filled from the `AWS_*`
    /// environment when the config named none.
    pub fn new(api_base: Option<&str>, p: &LitellmParams) -> Self {
        let credentials = match (&p.aws_access_key_id, &p.aws_secret_access_key) {
            (Some(id), Some(secret)) => Some(AwsCredentials {
                access_key_id: id.expose().to_string(),
                secret_access_key: secret.expose().to_string(),
                session_token: p.aws_session_token.as_ref().map(|t| t.expose().to_string()),
            }),
            _ => None,
        };
        Self {
            api_base: api_base.map(str::to_string),
            region: p.aws_region_name.clone().filter(|r| !r.is_empty()),
            credentials,
        }
    }
}

/// `bedrock/converse/<model id>` names the API explicitly; Converse is the only one here.
fn model_id(upstream_model: &str) -> &str {
    upstream_model
        .strip_prefix("converse/")
        .unwrap_or(upstream_model)
}

impl Provider for Bedrock {
    fn chat(
        &self,
        client: &reqwest::Client,
        d: &Arc<Deployment>,
        call: ChatCall,
    ) -> BoxFuture<'static, Result<ChatReply, ProxyError>> {
        let client = client.clone();
        let d = d.clone();
        let api_base = self.api_base.clone();
        let region = self.region.clone();
        let credentials = self.credentials.clone();
        Box::pin(async move {
            let creds = credentials.ok_or_else(|| {
                upstream::missing(
                    LABEL,
                    "Missing AWS credentials: set aws_access_key_id and aws_secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                )
            })?;
            let region = region.ok_or_else(|| {
                upstream::upstream(
                    400,
                    &format!("{LABEL} - Missing AWS region: set aws_region_name or AWS_REGION"),
                    None,
                )
            })?;
            let req = upstream::parse(LABEL, &call.body)
                .map_err(|_| upstream::upstream(400, "request body is not JSON", None))?;
            let model = model_id(&d.upstream_model);
            let mut body = tr::to_converse_request(&req, model)
                .map_err(|e| upstream::translate_error(LABEL, e))?;
            upstream::add_extra_body(&mut body, call.extra_body.as_deref());
            let body = upstream::to_bytes(&body);
            let url = tr::converse_url(api_base.as_deref(), &region, model, call.stream);
            let accept = if call.stream {
                "application/vnd.amazon.eventstream"
            } else {
                "application/json"
            };
            let headers = vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("accept".to_string(), accept.to_string()),
            ];
            let date = tr::amz_date(i64::try_from(upstream::now_secs()).unwrap_or_default());
            let signed = tr::sign(
                &SigningRequest {
                    method: "POST",
                    url: &url,
                    headers: &headers,
                    body: &body,
                    region: &region,
                    service: tr::SERVICE,
                    amz_date: &date,
                },
                &creds,
            )
            .map_err(|e| upstream::translate_error(LABEL, e))?;
            let mut request = client.post(&url).body(body);
            for (k, v) in headers.into_iter().chain(signed) {
                request = request.header(k, v);
            }
            // Unsigned: SigV4 covers only the headers it lists.
            let request = upstream::with_headers(request, &call.extra_headers);
            let resp = upstream::send(LABEL, &d, request, call.stream).await?;
            let status = resp.status().as_u16();
            if !resp.status().is_success() {
                let retry = upstream::retry_after(resp.headers());
                let kind = resp
                    .headers()
                    .get("x-amzn-errortype")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let text = upstream::body(LABEL, &d, resp).await?;
                let m = tr::map_error(status, kind.as_deref(), &String::from_utf8_lossy(&text));
                return Err(upstream::mapped(m, retry));
            }
            let headers = upstream::kept_headers(resp.headers());
            let id = resp
                .headers()
                .get("x-amzn-requestid")
                .and_then(|v| v.to_str().ok())
                .map(|r| format!("chatcmpl-{r}"))
                .unwrap_or_else(|| format!("chatcmpl-{}", uuid::Uuid::now_v7()));
            let created = upstream::now_secs();
            if call.stream {
                let source =
                    BodyToOpenAi::new(ConverseStreamToOpenAi::new(&d.upstream_model, &id, created));
                let frames = upstream::translated_stream(LABEL, &d, resp, source);
                return Ok(ChatReply::Stream { frames, headers });
            }
            let raw = upstream::body(LABEL, &d, resp).await?;
            let answer = upstream::parse(LABEL, &raw)?;
            let completion = tr::from_converse_response(&answer, &d.upstream_model, &id, created)
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
        let e = ProxyError::UnsupportedProvider {
            provider: format!("{} (embeddings)", d.provider),
            model: d.model.clone(),
        };
        Box::pin(async move { Err(e) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converse_prefix_is_dropped() {
        assert_eq!(
            model_id("converse/anthropic.claude-3-5-sonnet-20240620-v1:0"),
            "anthropic.claude-3-5-sonnet-20240620-v1:0"
        );
        assert_eq!(model_id("amazon.nova-pro-v1:0"), "amazon.nova-pro-v1:0");
    }
}
