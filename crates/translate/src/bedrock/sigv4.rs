//! AWS Signature Version 4 for a single request, as a pure function: the caller supplies the
//! time and credentials, so the same inputs always give the same signature.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::TranslateError;

type HmacSha256 = Hmac<Sha256>;

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
/// credentials carry one, and `authorization`.
pub fn sign(
    req: &SigningRequest<'_>,
    creds: &AwsCredentials,
) -> Result<Vec<(String, String)>, TranslateError> {
    let date = req
        .amz_date
        .get(..8)
        .filter(|_| req.amz_date.len() == 16)
        .ok_or_else(|| TranslateError::invalid("amz_date must look like 20240102T030405Z"))?;
    let (host, path, query) = split_url(req.url)?;

    let mut added = vec![("x-amz-date".to_string(), req.amz_date.to_string())];
    if let Some(t) = &creds.session_token {
        added.push(("x-amz-security-token".to_string(), t.clone()));
    }
    let mut signed: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("host") && !k.eq_ignore_ascii_case("authorization")
        })
        .chain(added.iter())
        // Canonical values are trimmed with inner runs of spaces folded to one.
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .chain(std::iter::once(("host".to_string(), host.to_string())))
        .collect();
    signed.sort();
    let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed_names = signed
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");

    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_path(path),
        canonical_query(query),
        canonical_headers,
        signed_names,
        hex::encode(Sha256::digest(req.body)),
    );
    let scope = format!("{date}/{}/{}/aws4_request", req.region, req.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        req.amz_date,
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{}", creds.secret_access_key).as_bytes(), date)?;
    for part in [req.region, req.service, "aws4_request"] {
        key = hmac(&key, part)?;
    }
    let signature = hex::encode(hmac(&key, &string_to_sign)?);
    added.push((
        "authorization".to_string(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    Ok(added)
}

fn hmac(key: &[u8], data: &str) -> Result<Vec<u8>, TranslateError> {
    let mut mac = HmacSha256::new_from_slice(key)
        .map_err(|_| TranslateError::invalid("unusable AWS signing key"))?;
    mac.update(data.as_bytes());
    Ok(mac.finalize().into_bytes().to_vec())
}

/// (host[:port], path, query) of an absolute URL.
fn split_url(url: &str) -> Result<(&str, &str, &str), TranslateError> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| TranslateError::invalid(format!("not an absolute URL: {url}")))?;
    let rest = rest.split('#').next().unwrap_or(rest);
    let (authority, path_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    Ok((authority, path, query))
}

/// Every path segment is encoded once more, as SigV4 wants for services other than S3: a
/// model id sent as `v1%3A0` is signed as `v1%253A0`.
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    path.split('/')
        .map(crate::azure::encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

/// Parameters sorted by name then value, each side encoded.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode_once(k), encode_once(v))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Query parts arrive already encoded; `%XX` stays as it is, the rest is encoded.
fn encode_once(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            out.push_str(&s[i..i + 3].to_ascii_uppercase());
            i += 3;
            continue;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
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
        assert_eq!(
            headers[1],
            ("x-amz-security-token".to_string(), "TOKEN".to_string())
        );
        assert!(
            headers[2].1.ends_with(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=f038292a877a47d3c3699d0f15799a7ec261ea12ac67262fc53624f320a642bf"
            ),
            "{}",
            headers[2].1
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(canonical_query("b=2&a=x%2fy&a=1"), "a=1&a=x%2Fy&b=2");
        assert_eq!(
            canonical_path("/model/a%3Ab/converse"),
            "/model/a%253Ab/converse"
        );
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
