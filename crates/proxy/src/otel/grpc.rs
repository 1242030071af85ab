//! OTLP over gRPC: the same export request, framed as a unary gRPC call to
//! `opentelemetry.proto.collector.trace.v1.TraceService/Export` over HTTP/2 (cleartext
//! `http://` or TLS `https://`), its outcome read from the `grpc-status` trailer.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

pub(crate) struct GrpcClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
}

impl GrpcClient {
    /// A client for the collector at `endpoint` (`http://host:4317`); a path on it is
    /// replaced by the service's.
    pub fn new(endpoint: &str) -> Result<Self, String> {
        let base: Uri = endpoint
            .trim()
            .parse()
            .map_err(|_| "the OTLP endpoint is not a URL".to_string())?;
        let (Some(scheme), Some(authority)) = (base.scheme(), base.authority()) else {
            return Err(
                "the OTLP endpoint needs a scheme and host, e.g. http://127.0.0.1:4317".to_string(),
            );
        };
        let uri = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query(PATH)
            .build()
            .map_err(|_| "the OTLP endpoint is not a URL".to_string())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Ok(Self { client, uri })
    }

    /// One unary call; `Err` names what failed.
    pub async fn export(
        &self,
        message: Vec<u8>,
        headers: &[(HeaderName, HeaderValue)],
        timeout: Duration,
    ) -> Result<(), String> {
        // gRPC message framing: uncompressed flag, big-endian length, the message.
        let len = u32::try_from(message.len()).map_err(|_| "export too large".to_string())?;
        let mut framed = Vec::with_capacity(5 + message.len());
        framed.push(0);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&message);
        let mut req = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        for (k, v) in headers {
            req = req.header(k.clone(), v.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(framed)))
            .map_err(|_| "the export request could not be built".to_string())?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|_| "the collector could not be reached".to_string())?;
            if !resp.status().is_success() {
                return Err(format!(
                    "the collector answered HTTP {}",
                    resp.status().as_u16()
                ));
            }
            // A trailers-only answer carries the status in its headers.
            if let Some(status) = resp.headers().get("grpc-status") {
                return grpc_status(status, resp.headers().get("grpc-message"));
            }
            let collected = resp
                .into_body()
                .collect()
                .await
                .map_err(|_| "the collector's answer was cut off".to_string())?;
            let trailers = collected
                .trailers()
                .ok_or("the collector's answer has no grpc-status")?;
            let status = trailers
                .get("grpc-status")
                .ok_or("the collector's answer has no grpc-status")?;
            grpc_status(status, trailers.get("grpc-message"))
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| "the collector did not answer in time".to_string())?
    }
}

fn grpc_status(status: &HeaderValue, message: Option<&HeaderValue>) -> Result<(), String> {
    if status.as_bytes() == b"0" {
        return Ok(());
    }
    Err(format!(
        "the collector answered gRPC status {} {}",
        status.to_str().unwrap_or("?"),
        message.and_then(|m| m.to_str().ok()).unwrap_or("")
    ))
}
