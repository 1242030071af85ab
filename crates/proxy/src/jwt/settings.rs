//! `general_settings.enable_jwt_auth` and `litellm_jwtauth`, with the environment LiteLLM reads
//! for them (`JWT_PUBLIC_KEY_URL`, `JWT_AUDIENCE`, `JWT_ISSUER`), checked once at start-up:
//! a field of the wrong type stops start-up naming it, and every `litellm_jwtauth` field this
//! gateway does not act on is named.

use std::time::Duration;

use serde_json::Value;

use crate::config::{ConfigError, ProxyConfig};

/// LiteLLM's defaults (`LiteLLM_JWTAuth`).
const ADMIN_SCOPE: &str = "litellm_proxy_admin";
const ADMIN_ROUTES: [&str; 4] = [
    "management_routes",
    "spend_tracking_routes",
    "global_spend_tracking_routes",
    "info_routes",
];
const TEAM_ROUTES: [&str; 3] = ["openai_routes", "info_routes", "anthropic_routes"];
const PUBLIC_KEY_TTL: f64 = 600.0;
const PUBLIC_KEY_STALE_TTL: f64 = 3600.0;

/// The `litellm_jwtauth` fields read here; any other is named at start-up.
const READ: [&str; 13] = [
    "admin_jwt_scope",
    "admin_allowed_routes",
    "team_id_jwt_field",
    "team_id_default",
    "team_allowed_routes",
    "user_id_jwt_field",
    "user_id_upsert",
    "user_email_jwt_field",
    "user_allowed_email_domain",
    "end_user_id_jwt_field",
    "public_key_ttl",
    "public_key_stale_ttl",
    "enforce_rbac",
];

#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `JWT_PUBLIC_KEY_URL`, split at commas: JWKS documents or OIDC discovery documents.
    pub key_urls: Vec<String>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub admin_scope: String,
    pub admin_routes: Vec<String>,
    pub team_field: Option<String>,
    pub team_default: Option<String>,
    pub team_routes: Vec<String>,
    pub user_field: Option<String>,
    pub user_upsert: bool,
    pub email_field: Option<String>,
    /// Only tokens whose email is in this domain are let in (LiteLLM's
    /// `user_allowed_email_domain`).
    pub email_domain: Option<String>,
    pub end_user_field: Option<String>,
    pub key_ttl: Duration,
    pub stale_ttl: Duration,
}

impl JwtSettings {
    /// The route lists by their setting's name, for the start-up check of their entries.
    pub fn route_lists(&self) -> [(&'static str, &[String]); 2] {
        [
            ("litellm_jwtauth.admin_allowed_routes", &self.admin_routes),
            ("litellm_jwtauth.team_allowed_routes", &self.team_routes),
        ]
    }

    /// `None` unless `general_settings.enable_jwt_auth` is true.
    pub fn from_config(cfg: &ProxyConfig) -> Result<Option<JwtSettings>, ConfigError> {
        let gs = &cfg.file.general_settings.extra;
        let bad = |field: &str, what: &str| {
            crate::config::invalid(cfg, &format!("general_settings.{field}"), what.to_owned())
        };
        let enabled = match gs.get("enable_jwt_auth") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(_) => return Err(bad("enable_jwt_auth", "expected true or false")),
        };
        if !enabled {
            if gs.get("litellm_jwtauth").is_some_and(|v| !v.is_null()) {
                tracing::warn!(
                    "{}: general_settings.litellm_jwtauth is not read: general_settings.enable_jwt_auth is not true",
                    cfg.source
                );
            }
            return Ok(None);
        }
        let empty = serde_json::Map::new();
        let auth = match gs.get("litellm_jwtauth") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(bad("litellm_jwtauth", "expected a mapping")),
        };
        let field = |name: &str| format!("litellm_jwtauth.{name}");
        let text = |name: &str| -> Result<Option<String>, ConfigError> {
            match auth.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(bad(&field(name), "expected a string")),
            }
        };
        let routes = |name: &str, default: &[&str]| -> Result<Vec<String>, ConfigError> {
            let list = match auth.get(name) {
                None | Some(Value::Null) => {
                    return Ok(default.iter().map(|r| (*r).to_owned()).collect());
                }
                Some(Value::Array(a)) => a,
                Some(_) => return Err(bad(&field(name), "expected a list of routes")),
            };
            let mut out = Vec::with_capacity(list.len());
            for r in list {
                let Some(r) = r.as_str() else {
                    return Err(bad(&field(name), "expected a list of routes"));
                };
                out.push(r.to_owned());
            }
            Ok(out)
        };
        let flag = |name: &str| -> Result<bool, ConfigError> {
            match auth.get(name) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(bad(&field(name), "expected true or false")),
            }
        };
        let seconds = |name: &str, default: f64| -> Result<Duration, ConfigError> {
            match auth.get(name) {
                None | Some(Value::Null) => Ok(Duration::from_secs_f64(default)),
                Some(v) => v
                    .as_f64()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| bad(&field(name), "expected a number of seconds, 0 or more")),
            }
        };
        for name in auth.keys() {
            if !READ.contains(&name.as_str()) {
                tracing::warn!(
                    "{}: general_settings.litellm_jwtauth.{name} is not acted on: JWT auth here reads {}",
                    cfg.source,
                    READ.join(", ")
                );
            }
        }
        if flag("enforce_rbac")? {
            tracing::info!(
                "{}: general_settings.litellm_jwtauth.enforce_rbac: a token that names no admin scope, team, user or end user is always refused here",
                cfg.source
            );
        }
        let env = |name: &str| cfg.jwt_env.get(name).cloned();
        let key_urls: Vec<String> = env("JWT_PUBLIC_KEY_URL")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if key_urls.is_empty() {
            return Err(ConfigError::Startup(format!(
                "{}: general_settings.enable_jwt_auth is true but JWT_PUBLIC_KEY_URL is not set: name the identity provider's JWKS (or OIDC discovery) URL, several separated by commas",
                cfg.source
            )));
        }
        for u in &key_urls {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(ConfigError::Startup(format!(
                    "{}: JWT_PUBLIC_KEY_URL: `{u}` is not an http(s) URL",
                    cfg.source
                )));
            }
        }
        let audience = env("JWT_AUDIENCE").filter(|a| !a.trim().is_empty());
        let issuer = env("JWT_ISSUER").filter(|i| !i.trim().is_empty());
        if audience.is_none() && issuer.is_none() {
            tracing::warn!(
                "JWT auth is on but neither JWT_AUDIENCE nor JWT_ISSUER is set: a token any application of the identity provider was issued is accepted"
            );
        }
        Ok(Some(JwtSettings {
            key_urls,
            audience,
            issuer,
            admin_scope: text("admin_jwt_scope")?.unwrap_or_else(|| ADMIN_SCOPE.to_owned()),
            admin_routes: routes("admin_allowed_routes", &ADMIN_ROUTES)?,
            team_field: text("team_id_jwt_field")?,
            team_default: text("team_id_default")?,
            team_routes: routes("team_allowed_routes", &TEAM_ROUTES)?,
            user_field: text("user_id_jwt_field")?,
            user_upsert: flag("user_id_upsert")?,
            email_field: text("user_email_jwt_field")?,
            email_domain: text("user_allowed_email_domain")?,
            end_user_field: text("end_user_id_jwt_field")?,
            key_ttl: seconds("public_key_ttl", PUBLIC_KEY_TTL)?,
            stale_ttl: seconds("public_key_stale_ttl", PUBLIC_KEY_STALE_TTL)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Option<JwtSettings>, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = move |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let cfg = ProxyConfig::from_yaml(yaml, "config.yaml", &lookup)?;
        JwtSettings::from_config(&cfg)
    }

    #[test]
    fn off_unless_enabled_and_litellm_defaults_when_on() {
        let off = load("general_settings: {master_key: sk-unit-1}\n", &[]);
        assert!(matches!(off, Ok(None)), "{off:?}");
        let on = load(
            "general_settings: {enable_jwt_auth: true}\n",
            &[("JWT_PUBLIC_KEY_URL", " https://idp/a/jwks , http://idp/b ")],
        );
        let Ok(Some(s)) = on else {
            panic!("{on:?}");
        };
        assert_eq!(s.key_urls, ["https://idp/a/jwks", "http://idp/b"]);
        assert_eq!(s.admin_scope, "litellm_proxy_admin");
        assert_eq!(s.admin_routes.len(), 4);
        assert_eq!(s.team_routes, TEAM_ROUTES);
        assert_eq!(s.key_ttl, Duration::from_secs(600));
        assert!(s.team_field.is_none() && !s.user_upsert);
    }

    #[test]
    fn wrong_types_and_a_missing_key_url_name_the_setting() {
        let no_url = load("general_settings: {enable_jwt_auth: true}\n", &[]);
        let msg = no_url.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("JWT_PUBLIC_KEY_URL"), "{msg}");
        let url = [("JWT_PUBLIC_KEY_URL", "https://idp/jwks")];
        for (yaml, field) in [
            (
                "general_settings: {enable_jwt_auth: true, litellm_jwtauth: {team_id_jwt_field: [a]}}\n",
                "litellm_jwtauth.team_id_jwt_field",
            ),
            (
                "general_settings: {enable_jwt_auth: true, litellm_jwtauth: {public_key_ttl: -1}}\n",
                "litellm_jwtauth.public_key_ttl",
            ),
            (
                "general_settings: {enable_jwt_auth: true, litellm_jwtauth: {team_allowed_routes: openai_routes}}\n",
                "litellm_jwtauth.team_allowed_routes",
            ),
            (
                "general_settings: {enable_jwt_auth: 3}\n",
                "enable_jwt_auth",
            ),
        ] {
            let msg = load(yaml, &url)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(field), "{yaml}: {msg}");
        }
        let bad_url = load(
            "general_settings: {enable_jwt_auth: true}\n",
            &[("JWT_PUBLIC_KEY_URL", "idp/jwks")],
        );
        assert!(bad_url.is_err());
    }
}
