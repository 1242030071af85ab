//! LiteLLM's JWT auth (`general_settings.enable_jwt_auth`): a bearer token of three dotted
//! parts is verified against the identity provider's keys (`JWT_PUBLIC_KEY_URL`), then its
//! claims say who calls: the admin scope (`admin_jwt_scope`) makes a proxy admin held to
//! `admin_allowed_routes`; otherwise a team (`team_id_jwt_field`, else `team_id_default`),
//! a user (`user_id_jwt_field`) and an end user (`end_user_id_jwt_field`), whose rows,
//! budgets and limits then hold the call as they hold a key's (see `StoreSeams::resolve_jwt`).

mod jwks;
pub mod settings;

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use crate::error::ProxyError;
pub use settings::JwtSettings;

/// The asymmetric algorithms LiteLLM accepts (a symmetric one would let anyone holding the
/// public key sign). ES512 and P-521 keys are not verified by the ring this gateway builds on.
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Who a verified token says is calling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The token's scopes hold `admin_jwt_scope`.
    pub admin: bool,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    /// `user_email_jwt_field`'s claim: the user's id when the token names none, and the
    /// email a created user gets.
    pub user_email: Option<String>,
    pub end_user_id: Option<String>,
}

pub struct JwtAuth {
    settings: JwtSettings,
    jwks: jwks::Jwks,
    /// The user `user_id_upsert` creates (`default_internal_user_params` applied); `None`
    /// without `user_id_upsert`.
    new_user: Option<idlehands_store::users::NewUserRequest>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("key_urls", &self.settings.key_urls)
            .finish_non_exhaustive()
    }
}

/// LiteLLM's test: three dot-separated parts.
pub fn looks_like_jwt(key: &str) -> bool {
    key.split('.').count() == 3
}

impl JwtAuth {
    pub(crate) fn new(
        settings: JwtSettings,
        client: reqwest::Client,
        user_defaults: &crate::user_defaults::UserDefaults,
    ) -> Arc<JwtAuth> {
        let jwks = jwks::Jwks::new(
            settings.key_urls.clone(),
            settings.key_ttl,
            settings.stale_ttl,
            client,
        );
        let new_user = settings.user_upsert.then(|| {
            let mut body = serde_json::Map::new();
            user_defaults.apply(&mut body);
            serde_json::from_value(Value::Object(body))
                .inspect_err(|e| tracing::warn!(error = %e, "JWT user upsert: default_internal_user_params do not make a user; users are created without them"))
                .unwrap_or_default()
        });
        Arc::new(JwtAuth {
            settings,
            jwks,
            new_user,
        })
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// The user a token names but the store lacks, as `user_id_upsert` creates it (LiteLLM
    /// applies `default_internal_user_params`); `None` without `user_id_upsert`.
    pub fn user_upsert(&self) -> Option<&idlehands_store::users::NewUserRequest> {
        self.new_user.as_ref()
    }

    /// Verifies `token` and reads who it names. A token naming no admin scope, team, user or
    /// end user is refused: its calls would belong to nobody.
    pub async fn identify(&self, token: &str) -> Result<JwtIdentity, ProxyError> {
        let claims = self.verify(token).await?;
        let s = &self.settings;
        let admin = scopes(&claims).any(|sc| sc == s.admin_scope);
        let user_email = s
            .email_field
            .as_deref()
            .and_then(|f| claim_text(&claims, f, false));
        let identity = JwtIdentity {
            admin,
            team_id: s
                .team_field
                .as_deref()
                .and_then(|f| claim_text(&claims, f, true))
                .or_else(|| s.team_default.clone()),
            user_id: s
                .user_field
                .as_deref()
                .and_then(|f| claim_text(&claims, f, false))
                .or_else(|| user_email.clone()),
            user_email,
            end_user_id: s
                .end_user_field
                .as_deref()
                .and_then(|f| claim_text(&claims, f, false)),
        };
        if let Some(domain) = &s.email_domain
            && !identity.admin
            && identity
                .user_email
                .as_deref()
                .is_none_or(|e| e.rsplit('@').next() != Some(domain.as_str()))
        {
            return Err(ProxyError::Custom {
                status: 403,
                kind: "auth_error".to_owned(),
                message: format!(
                    "Email domain not allowed. User email: {}. Allowed domain: {domain}",
                    identity.user_email.as_deref().unwrap_or("None")
                ),
                param: Some("user_email".to_owned()),
                headers: Vec::new(),
            });
        }
        if !identity.admin
            && identity.team_id.is_none()
            && identity.user_id.is_none()
            && identity.end_user_id.is_none()
        {
            return Err(refusal(
                403,
                "auth_error",
                format!(
                    "Unmatched token passed in. Token must belong to a proxy admin (scope `{}`), team ({}), user ({}) or end user ({}).",
                    s.admin_scope,
                    field_name(s.team_field.as_deref()),
                    field_name(s.user_field.as_deref()),
                    field_name(s.end_user_field.as_deref()),
                ),
            ));
        }
        Ok(identity)
    }

    async fn verify(&self, token: &str) -> Result<serde_json::Map<String, Value>, ProxyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| unauthorized(format!("Validation fails: {e}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(unauthorized(format!(
                "Validation fails: the algorithm {:?} is not accepted (only asymmetric signatures: RS*, PS*, ES256, ES384, EdDSA)",
                header.alg
            )));
        }
        let key = self
            .jwks
            .key(header.kid.as_deref())
            .await
            .map_err(|e| match e {
                jwks::KeyError::NoMatch => unauthorized(format!(
                    "No matching public key found. keys={}, kid={}",
                    idlehands_routing::python_list(self.jwks.urls()),
                    header.kid.as_deref().unwrap_or("None")
                )),
                jwks::KeyError::Unreachable(why) => refusal(
                    503,
                    "auth_provider_unavailable",
                    format!(
                        "Service Unavailable, the identity provider's JWKS endpoint is temporarily unreachable, so the JWT signature could not be verified. Please retry shortly. Error: {why}"
                    ),
                ),
            })?;
        let mut v = Validation::new(header.alg);
        // PyJWT's checks: `exp` and `nbf` when present, no claim required.
        v.required_spec_claims = HashSet::new();
        v.leeway = 0;
        v.validate_nbf = true;
        match &self.settings.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.settings.issuer {
            v.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    refusal(401, "expired_key", "Token Expired".to_owned())
                }
                _ => unauthorized(format!("Validation fails: {e}")),
            })?;
        Ok(data.claims)
    }
}

fn refusal(status: u16, kind: &str, message: String) -> ProxyError {
    ProxyError::Custom {
        status,
        kind: kind.to_owned(),
        message,
        param: None,
        headers: Vec::new(),
    }
}

/// LiteLLM's generic auth failure: 401, its message prefixed.
fn unauthorized(message: String) -> ProxyError {
    refusal(
        401,
        "auth_error",
        format!("Authentication Error, {message}"),
    )
}

fn field_name(f: Option<&str>) -> String {
    f.map_or_else(
        || "no claim configured".to_owned(),
        |f| format!("claim `{f}`"),
    )
}

/// The `scope` claim: space-separated text or a list (LiteLLM's `get_scopes`).
fn scopes(claims: &serde_json::Map<String, Value>) -> Box<dyn Iterator<Item = &str> + '_> {
    match claims.get("scope") {
        Some(Value::String(s)) => Box::new(s.split_whitespace()),
        Some(Value::Array(a)) => Box::new(a.iter().filter_map(Value::as_str)),
        _ => Box::new(std::iter::empty()),
    }
}

/// The claim at a dotted path (`realm.team`); text or a number as its text, and, where
/// `first_of_list`, a list's first element (LiteLLM's team claim).
fn claim_text(
    claims: &serde_json::Map<String, Value>,
    path: &str,
    first_of_list: bool,
) -> Option<String> {
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    if first_of_list && let Value::Array(a) = v {
        v = a.first()?;
    }
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_by_dotted_path_and_scopes_in_either_shape() {
        let Ok(Value::Object(c)) = serde_json::from_str::<Value>(
            r#"{"sub":"u1","realm":{"groups":["team-a","team-b"],"n":7},"scope":"openid litellm_proxy_admin","blank":" "}"#,
        ) else {
            panic!("claims");
        };
        assert_eq!(claim_text(&c, "sub", false).as_deref(), Some("u1"));
        assert_eq!(
            claim_text(&c, "realm.groups", true).as_deref(),
            Some("team-a")
        );
        assert_eq!(claim_text(&c, "realm.groups", false), None);
        assert_eq!(claim_text(&c, "realm.n", false).as_deref(), Some("7"));
        assert_eq!(claim_text(&c, "realm.missing", false), None);
        assert_eq!(claim_text(&c, "blank", false), None);
        assert!(scopes(&c).any(|s| s == "litellm_proxy_admin"));
        let Ok(Value::Object(l)) = serde_json::from_str::<Value>(r#"{"scope":["a","b"]}"#) else {
            panic!("claims");
        };
        assert_eq!(scopes(&l).collect::<Vec<_>>(), ["a", "b"]);
        assert!(looks_like_jwt("a.b.c") && !looks_like_jwt("sk-1234") && !looks_like_jwt("a.b"));
    }
}
