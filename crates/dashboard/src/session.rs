//! Helpers for the proxy's side of the sign-in contract (see the crate docs), so the cookie
//! name and attributes and the accepted login bodies live next to the pages that rely on them.

use axum::http::{HeaderMap, header};

/// Name of the session cookie that `POST /ui/login` sets.
pub const COOKIE: &str = "idlehands_session";

/// `Set-Cookie` value for a new session. `secure` adds `Secure` (serve it when behind TLS).
pub fn set_cookie(token: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Max-Age={max_age_secs}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` value that removes the session cookie (sign-out).
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// The session token from the request's `Cookie` headers, if any (the first non-empty one).
pub fn from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find(|token| !token.is_empty())
}

/// A parsed `POST /ui/login` body.
pub struct LoginRequest {
    /// The submitted master key. Compare it in constant time; never log it.
    pub password: String,
    /// Sent by the plain HTML form (scripts off): answer `303` to `/ui/` instead of JSON.
    pub from_form: bool,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("password", &"<redacted>")
            .field("from_form", &self.from_form)
            .finish()
    }
}

/// Reads `{"password": "..."}` (JSON) or `password=...` (`application/x-www-form-urlencoded`).
/// `None` when the body has no usable password; answer that with 401 like a wrong key.
pub fn parse_login(content_type: Option<&str>, body: &[u8]) -> Option<LoginRequest> {
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    let (password, from_form) = if mime.as_deref() == Some("application/x-www-form-urlencoded") {
        let text = std::str::from_utf8(body).ok()?;
        let raw = text
            .split('&')
            .find_map(|pair| pair.strip_prefix("password="))?;
        (form_decode(raw)?, true)
    } else {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        (v.get("password")?.as_str()?.to_string(), false)
    };
    (!password.is_empty()).then_some(LoginRequest {
        password,
        from_form,
    })
}

fn form_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_and_form_bodies_yield_the_password() {
        let j = parse_login(Some("application/json"), br#"{"password":"sk-a+b"}"#).unwrap();
        assert_eq!((j.password.as_str(), j.from_form), ("sk-a+b", false));
        let f = parse_login(
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            b"user=x&password=sk-a%2Bb+c%C3%A9",
        )
        .unwrap();
        assert_eq!((f.password.as_str(), f.from_form), ("sk-a+b cé", true));
        // No content type: the page always sends JSON, so that is the default reading.
        assert!(parse_login(None, br#"{"password":"k"}"#).is_some());
    }

    #[test]
    fn missing_empty_or_malformed_passwords_are_rejected() {
        assert!(parse_login(Some("application/json"), br#"{"password":""}"#).is_none());
        assert!(parse_login(Some("application/json"), br#"{"key":"x"}"#).is_none());
        assert!(parse_login(Some("application/json"), b"not json").is_none());
        let form = Some("application/x-www-form-urlencoded");
        assert!(parse_login(form, b"password=%zz").is_none());
        assert!(parse_login(form, b"password=%4").is_none());
        assert!(parse_login(form, b"other=1").is_none());
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let r = parse_login(None, br#"{"password":"sk-secret"}"#).unwrap();
        assert!(!format!("{r:?}").contains("sk-secret"));
    }

    #[test]
    fn cookie_round_trip_and_attributes() {
        let set = set_cookie("tok123", 86_400, false);
        assert_eq!(
            set,
            "idlehands_session=tok123; Max-Age=86400; Path=/; HttpOnly; SameSite=Strict"
        );
        assert!(set_cookie("t", 1, true).ends_with("; Secure"));
        assert!(clear_cookie(false).starts_with("idlehands_session=; Max-Age=0;"));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; idlehands_sessionx=no"),
        );
        assert_eq!(from_headers(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("idlehands_session=; b=2"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("idlehands_session=tok123"),
        );
        assert_eq!(from_headers(&h), Some("tok123"));
    }
}
