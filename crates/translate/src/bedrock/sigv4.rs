//! AWS Signature Version 4 for a single request, as a pure function: the caller supplies the
//! time and credentials, so the same inputs always give the same signature. The signing
//! itself is AWS's reference implementation (`aws-sigv4`, the signer of the AWS SDK for
//! Rust): security-sensitive code we do not maintain a second copy of. Checked against AWS's
//! published test vectors (`tests/fixtures/sigv4/`).

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};

use crate::TranslateError;

/// Credentials for signing. `Debug` never shows the secret or the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl AwsCredentials {
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optional `AWS_SESSION_TOKEN`, read
    /// through `lookup` so callers (and tests) decide where variables come from.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let non_empty = |k: &str| lookup(k).filter(|v| !v.is_empty());
        Some(Self {
            access_key_id: non_empty("AWS_ACCESS_KEY_ID")?,
            secret_access_key: non_empty("AWS_SECRET_ACCESS_KEY")?,
            session_token: non_empty("AWS_SESSION_TOKEN"),
        })
    }

    /// From the process environment.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

/// The request to sign.
#[derive(Debug, Clone, Copy)]
pub struct SigningRequest<'a> {
    pub method: &'a str,
    /// Absolute URL, path already percent-encoded as it will be sent.
    pub url: &'a str,
    /// Headers that will be sent (all of them are signed); `host` is derived from the URL.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub region: &'a str,
    /// `bedrock` for Bedrock runtime.
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, see [`amz_date`].
    pub amz_date: &'a str,
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time.
pub fn amz_date(unix_secs: i64) -> String {
    chrono::DateTime::from_timestamp(unix_secs, 0)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// The headers to add to the request: `x-amz-date`, `x-amz-security-token` when the
/// credentials carry one, and `authorization`. Every header given is signed except the ones
/// AWS's SDKs leave out because proxies change them (`user-agent`, `x-amzn-trace-id`,
/// `transfer-encoding`); the path is encoded once more and normalized, as for every service
/// but S3; the body is hashed into the signature (no `x-amz-content-sha256` header).
pub fn sign(
    req: &SigningRequest<'_>,
    creds: &AwsCredentials,
) -> Result<Vec<(String, String)>, TranslateError> {
    let time = signing_time(req.amz_date)
        .ok_or_else(|| TranslateError::invalid("amz_date must look like 20240102T030405Z"))?;
    if !req.url.contains("://") {
        return Err(TranslateError::invalid(format!(
            "not an absolute URL: {}",
            req.url
        )));
    }
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "idlehands",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(req.region)
        .name(req.service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| TranslateError::invalid(format!("cannot sign the AWS request: {e}")))?
        .into();
    let signable = SignableRequest::new(
        req.method,
        req.url,
        req.headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
            .map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(req.body),
    )
    .map_err(|e| TranslateError::invalid(format!("cannot sign the AWS request: {e}")))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| TranslateError::invalid(format!("cannot sign the AWS request: {e}")))?
        .into_parts();
    let (headers, _query) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect())
}

/// `YYYYMMDDTHHMMSSZ` as the time it names.
fn signing_time(amz_date: &str) -> Option<SystemTime> {
    let t = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ").ok()?;
    let secs = u64::try_from(t.and_utc().timestamp()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published example credentials.
    fn example_creds(token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
        }
    }

    /// The "get-vanilla" case of AWS's SigV4 test suite; the signature was also recomputed
    /// independently with Python's hmac/hashlib.
    #[test]
    fn get_vanilla_vector() {
        let req = SigningRequest {
            method: "GET",
            url: "https://example.amazonaws.com/",
            headers: &[],
            body: b"",
            region: "us-east-1",
            service: "service",
            amz_date: "20150830T123600Z",
        };
        let headers = sign(&req, &example_creds(None)).unwrap_or_default();
        assert_eq!(
            headers,
            vec![
                ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
                (
                    "authorization".to_string(),
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31".to_string()
                ),
            ]
        );
    }

    /// A Bedrock-shaped POST: encoded model id in the path, JSON body, session token. The
    /// expected value was computed with Python's hmac/hashlib from the SigV4 rules.
    #[test]
    fn bedrock_post_with_session_token() {
        let req = SigningRequest {
            method: "POST",
            url: "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
            headers: &[("Content-Type".to_string(), "application/json".to_string())],
            body: br#"{"messages":[]}"#,
            region: "us-west-2",
            service: "bedrock",
            amz_date: "20240102T030405Z",
        };
        let headers = sign(&req, &example_creds(Some("TOKEN"))).unwrap_or_default();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        assert_eq!(header("x-amz-security-token"), "TOKEN");
        assert_eq!(header("x-amz-date"), "20240102T030405Z");
        assert!(
            header("authorization").ends_with(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=f038292a877a47d3c3699d0f15799a7ec261ea12ac67262fc53624f320a642bf"
            ),
            "{headers:?}"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(
            signing_time("20150830T123600Z"),
            SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(1_440_938_160))
        );
        assert_eq!(signing_time("2015-08-30"), None);
        let creds = AwsCredentials::from_lookup(|k| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKID".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("SECRET".into()),
            _ => None,
        });
        let shown = format!("{creds:?}");
        assert!(
            shown.contains("AKID") && !shown.contains("SECRET"),
            "{shown}"
        );
        assert!(
            sign(
                &SigningRequest {
                    method: "GET",
                    url: "nope",
                    headers: &[],
                    body: b"",
                    region: "r",
                    service: "s",
                    amz_date: "20150830T123600Z"
                },
                &example_creds(None)
            )
            .is_err()
        );
    }
}
