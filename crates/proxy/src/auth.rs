//! Who is calling. The key is read from the headers LiteLLM reads, in its order; the master key
//! is checked here without allocation; any other key goes to the [`KeyResolver`] in app state.
//!
//! SEAM (virtual keys): the store crate implements [`KeyResolver`] (sha256 lookup, cache) and
//! returns [`Principal::VirtualKey`]; install it with `GatewayBuilder::key_resolver`.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::HeaderMap;

use crate::error::ProxyError;
use crate::router::{ModelGroup, Router};

/// The caller, as known after auth.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The master key (proxy admin).
    Master { key_hash: Arc<str> },
    /// No master key configured and weak/unset keys explicitly permitted: no auth at all.
    Anonymous,
    /// A key from the store, or a JWT naming a team or user (`VirtualKey::via_jwt`).
    VirtualKey(Arc<VirtualKey>),
    /// A JWT carrying the admin scope (LiteLLM's `admin_jwt_scope`): a proxy admin on the
    /// routes of `admin_allowed_routes` only.
    JwtAdmin(Arc<JwtAdmin>),
}

/// A proxy admin by JWT.
#[derive(Debug, Clone)]
pub struct JwtAdmin {
    /// The token's user claim, the row's `user`.
    pub user_id: Option<String>,
    pub allowed_routes: Vec<String>,
}

/// A virtual key as the store resolves it. Limits are carried for the pre/post-call hooks.
#[derive(Debug, Clone, Default)]
pub struct VirtualKey {
    /// sha256 hex of the plaintext key (the store's primary key).
    pub token_hash: String,
    pub key_alias: Option<String>,
    /// `sk-...abcd`
    pub key_name: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    /// What the key may call (LiteLLM's `models`): model names, access groups, wildcards
    /// (`openai/*`), `*`, `all-proxy-models`, `all-team-models`; empty means all.
    pub models: Vec<String>,
    /// The models of the key's team, or for a key without a team those of its user (empty:
    /// all). A call must pass both lists; `all-team-models` in the key's list defers to this.
    pub team_models: Vec<String>,
    /// The models of the organization above the key's team (or of the key's own); empty: all.
    pub org_models: Vec<String>,
    /// The key's `aliases` (`{"gpt-4": "gpt-4o"}`): a request for a name here is sent to its
    /// target instead. Only string targets (LiteLLM's alias map drops any other).
    pub aliases: HashMap<String, String>,
    pub max_budget_nanos: Option<u64>,
    /// LiteLLM's `soft_budget`: crossing it raises a budget alert, nothing more.
    pub soft_budget_nanos: Option<u64>,
    pub spend_nanos: u64,
    pub tpm_limit: Option<u64>,
    pub rpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u32>,
    pub metadata: serde_json::Value,
    /// The key's team's `metadata.tags`: every call of the key is tagged with them.
    pub team_tags: Vec<String>,
    /// The routes the key may call (LiteLLM's `allowed_routes`; empty: all), checked by the
    /// gates before any handler runs.
    pub allowed_routes: Vec<String>,
    /// The response-cache controls the key's calls may send (LiteLLM's
    /// `allowed_cache_controls`; empty: any).
    pub allowed_cache_controls: Vec<String>,
    /// Made from a JWT's team and user claims, not a stored key: the call's row names no key,
    /// and `allowed_routes` are `team_allowed_routes`.
    pub via_jwt: bool,
    /// The end user the JWT names (`end_user_id_jwt_field`): signed, so it wins over the
    /// end user the request names.
    pub jwt_end_user: Option<String>,
}

impl Principal {
    pub fn key_hash(&self) -> Option<&str> {
        match self {
            Self::Master { key_hash } => Some(key_hash),
            Self::Anonymous | Self::JwtAdmin(_) => None,
            Self::VirtualKey(k) if k.via_jwt => None,
            Self::VirtualKey(k) => Some(&k.token_hash),
        }
    }

    /// The end user a JWT names, which the call is for whatever the request says.
    pub fn jwt_end_user(&self) -> Option<&str> {
        match self {
            Self::VirtualKey(k) => k.jwt_end_user.as_deref(),
            _ => None,
        }
    }

    /// The user a proxy-admin JWT names (its calls' rows name them).
    pub fn jwt_admin_user(&self) -> Option<&str> {
        match self {
            Self::JwtAdmin(a) => a.user_id.as_deref(),
            _ => None,
        }
    }

    /// The key's team: its requests reach the team's own deployments first.
    pub fn team_id(&self) -> Option<&str> {
        match self {
            Self::VirtualKey(k) => k.team_id.as_deref(),
            _ => None,
        }
    }

    /// The master key (or no auth at all): the proxy admin, who may call every team's
    /// deployments by their public names.
    pub fn is_master(&self) -> bool {
        !matches!(self, Self::VirtualKey(_))
    }

    pub fn key_alias(&self) -> Option<&str> {
        match self {
            Self::VirtualKey(k) => k.key_alias.as_deref(),
            _ => None,
        }
    }

    /// Where a request for `requested` goes for this caller: the key's alias target, if the
    /// key has an alias for it (LiteLLM's `_update_model_if_key_alias_exists`).
    pub fn alias_target(&self, requested: &str) -> Option<&str> {
        match self {
            Self::VirtualKey(k) => k.aliases.get(requested).map(String::as_str),
            _ => None,
        }
    }

    /// LiteLLM's key model check (`can_key_call_model`). `requested` is the name the client
    /// sent, `dispatched` the key alias target when one applied, `group` what the router
    /// serves the request with. Without a key alias the requested name and the router's
    /// alias target (the group's name) are both tried; with one, only its target.
    pub fn check_model(
        &self,
        requested: &str,
        dispatched: Option<&str>,
        group: Option<&ModelGroup>,
        router: &Router,
    ) -> Result<(), ProxyError> {
        let Self::VirtualKey(k) = self else {
            return Ok(());
        };
        let access_groups = group.map_or(&[][..], |g| g.access_groups.as_slice());
        let allowed = match dispatched {
            Some(target) => k.may_call(target, access_groups, router),
            None => {
                k.may_call(requested, access_groups, router)
                    || group.is_some_and(|g| {
                        g.name != requested && k.may_call(&g.name, access_groups, router)
                    })
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(ProxyError::ModelNotAllowed {
                model: requested.to_string(),
            })
        }
    }

    /// Whether `/v1/models` lists `group` (served under its own name) for this caller.
    pub fn allows_group(&self, group: &ModelGroup, router: &Router) -> bool {
        self.allows_name(&group.name, &group.access_groups, router)
    }

    /// Whether this caller may call `name`, served by deployments in `access_groups`.
    pub fn allows_name(&self, name: &str, access_groups: &[String], router: &Router) -> bool {
        match self {
            Self::VirtualKey(k) => k.may_call(name, access_groups, router),
            _ => true,
        }
    }
}

/// LiteLLM's special `models` entries that grant every model. `all-team-models` inherits the
/// key's team's list, which [`VirtualKey::may_call`] checks as well (and a key without a
/// team, as in LiteLLM, may call every model).
const ALL_MODELS: [&str; 3] = ["*", "all-proxy-models", "all-team-models"];

impl VirtualKey {
    /// LiteLLM's `check_model_access_helper` for one model name: an exact entry, an entry that
    /// is one of `access_groups` (those of the deployments serving the name), a wildcard
    /// entry matching the name or `<provider>/<name>` (LiteLLM's `get_llm_provider`: `gpt-4o`
    /// is `openai/gpt-4o` for `openai/*`), or an entry granting everything.
    pub fn may_call(&self, name: &str, access_groups: &[String], router: &Router) -> bool {
        list_allows(&self.models, name, access_groups, router)
            && list_allows(&self.team_models, name, access_groups, router)
            && list_allows(&self.org_models, name, access_groups, router)
    }
}

/// Whether one `models` list (a key's or a team's) allows `name`.
fn list_allows(models: &[String], name: &str, access_groups: &[String], router: &Router) -> bool {
    if models.is_empty() {
        return true;
    }
    let mut provider_name: Option<Option<String>> = None;
    models.iter().any(|m| {
        if m == name || ALL_MODELS.contains(&m.as_str()) || access_groups.contains(m) {
            return true;
        }
        if !m.contains('*') {
            return false;
        }
        if glob_match(m, name) {
            return true;
        }
        // A bare name of a known model, under its provider's prefix.
        let full = provider_name.get_or_insert_with(|| {
            // A prefixed name was matched as written; LiteLLM never prefixes it again.
            if name.contains('/') {
                return None;
            }
            router.provider_of_name(name).map(|p| format!("{p}/{name}"))
        });
        full.as_deref().is_some_and(|f| glob_match(m, f))
    })
}

/// `pattern` with each `*` standing for any run of characters (LiteLLM turns `*` into `.*`
/// and matches the whole name).
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*` at all: the whole name.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Resolves keys that are not the master key.
pub trait KeyResolver: Send + Sync {
    /// `key` is the plaintext as sent; `hash` its sha256 hex.
    fn resolve<'a>(
        &'a self,
        key: &'a str,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Principal, ProxyError>>;

    /// The store the keys live in, when there is one: model info reads the caller's user and
    /// teams from it.
    fn ledger(&self) -> Option<&idlehands_store::Ledger> {
        None
    }

    /// The caller a verified JWT names (team, user, end user; not the admin scope, which
    /// needs no store). Without a store there is no team or user to hold its calls.
    fn resolve_jwt<'a>(
        &'a self,
        _id: &'a crate::jwt::JwtIdentity,
        _jwt: &'a crate::jwt::JwtAuth,
    ) -> BoxFuture<'a, Result<Principal, ProxyError>> {
        Box::pin(async {
            Err(ProxyError::Custom {
                status: 401,
                kind: "auth_error".to_owned(),
                message: "Authentication Error, a JWT naming a team or user needs the gateway's store (database)".to_owned(),
                param: None,
                headers: Vec::new(),
            })
        })
    }
}

/// Without a store every non-master key is invalid.
#[derive(Debug, Default)]
pub struct NoVirtualKeys;

impl KeyResolver for NoVirtualKeys {
    fn resolve<'a>(
        &'a self,
        key: &'a str,
        hash: &'a str,
    ) -> BoxFuture<'a, Result<Principal, ProxyError>> {
        let err = invalid_key(key, hash);
        Box::pin(async move { Err(err) })
    }
}

pub fn invalid_key(key: &str, hash: &str) -> ProxyError {
    ProxyError::InvalidApiKey {
        shown: abbreviate_key(key),
        hash: hash.to_string(),
    }
}

/// `sk-...abcd`: what LiteLLM shows of a key in messages (one definition, the store's).
pub use idlehands_store::keygen::abbreviate as abbreviate_key;

pub use idlehands_store::keygen::hash_key;

/// Auth settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `None`: no auth (explicitly permitted).
    pub master_key: Option<String>,
    pub master_hash: Arc<str>,
    /// `general_settings.litellm_key_header_name`, lower-cased.
    pub custom_header: Option<http::HeaderName>,
    /// `general_settings.enable_jwt_auth`: bearer tokens that are JWTs are verified here.
    pub jwt: Option<Arc<crate::jwt::JwtAuth>>,
}

/// The key from the request, or why there is none usable.
pub fn extract_key<'h>(
    headers: &'h HeaderMap,
    custom: Option<&http::HeaderName>,
) -> Result<&'h str, ProxyError> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    if let Some(h) = custom
        && let Some(v) = headers.get(h).and_then(|v| v.to_str().ok())
    {
        return Ok(strip_bearer(v.trim()));
    }
    if let Some(v) = text("x-litellm-api-key") {
        return Ok(strip_bearer(v));
    }
    let mut malformed = false;
    if let Some(v) = text("authorization") {
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            let k = v[7..].trim();
            if !k.is_empty() {
                return Ok(k);
            }
        }
        malformed = true;
    }
    for name in [
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "ocp-apim-subscription-key",
    ] {
        if let Some(v) = text(name) {
            return Ok(v);
        }
    }
    Err(if malformed {
        ProxyError::MalformedApiKey
    } else {
        ProxyError::NoApiKey
    })
}

fn strip_bearer(v: &str) -> &str {
    if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
        v[7..].trim()
    } else {
        v
    }
}

/// Constant-time in the key's length, so a timing probe learns nothing about the master key.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The dashboard's session cookie as the master key, for management routes: only when the
/// request sends no key (an explicit key always decides) and `live` accepts the token.
pub fn session_as_master(
    cfg: &AuthConfig,
    headers: &HeaderMap,
    live: impl Fn(&str) -> bool,
) -> Option<Principal> {
    if extract_key(headers, cfg.custom_header.as_ref()).is_ok() {
        return None;
    }
    let token = idlehands_dashboard::session::from_headers(headers)?;
    live(token).then(|| Principal::Master {
        key_hash: cfg.master_hash.clone(),
    })
}

pub async fn authenticate(
    cfg: &AuthConfig,
    resolver: &dyn KeyResolver,
    headers: &HeaderMap,
) -> Result<Principal, ProxyError> {
    let Some(master) = &cfg.master_key else {
        return Ok(Principal::Anonymous);
    };
    let key = extract_key(headers, cfg.custom_header.as_ref())?;
    if same(key, master) {
        return Ok(Principal::Master {
            key_hash: cfg.master_hash.clone(),
        });
    }
    if let Some(jwt) = &cfg.jwt
        && crate::jwt::looks_like_jwt(key)
    {
        let id = jwt.identify(key).await?;
        if id.admin {
            return Ok(Principal::JwtAdmin(Arc::new(JwtAdmin {
                user_id: id.user_id,
                allowed_routes: jwt.settings().admin_routes.clone(),
            })));
        }
        return resolver.resolve_jwt(&id, jwt).await;
    }
    let hash = hash_key(key);
    resolver.resolve(key, &hash).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn header_order_and_errors() {
        let h = headers(&[
            ("x-litellm-api-key", "sk-a"),
            ("authorization", "Bearer sk-b"),
        ]);
        assert_eq!(extract_key(&h, None).ok(), Some("sk-a"));
        let h = headers(&[("authorization", "Bearer sk-b"), ("x-api-key", "sk-c")]);
        assert_eq!(extract_key(&h, None).ok(), Some("sk-b"));
        let h = headers(&[("x-api-key", "sk-c")]);
        assert_eq!(extract_key(&h, None).ok(), Some("sk-c"));
        let h = headers(&[("authorization", "sk-b")]);
        assert!(matches!(
            extract_key(&h, None),
            Err(ProxyError::MalformedApiKey)
        ));
        assert!(matches!(
            extract_key(&HeaderMap::new(), None),
            Err(ProxyError::NoApiKey)
        ));
        assert_eq!(abbreviate_key("sk-123456"), "sk-...3456");
    }

    #[test]
    fn glob_is_a_whole_name_match_with_star_for_any_run() {
        assert!(glob_match("openai/*", "openai/gpt-4o"));
        assert!(glob_match("openai/*", "openai/"));
        assert!(!glob_match("openai/*", "openaiz/gpt-4o"));
        assert!(!glob_match("openai/*", "azure/openai/x"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match(
            "bedrock/us.*",
            "bedrock/us.amazon.nova-micro-v1:0"
        ));
        assert!(glob_match("*-mini", "gpt-4o-mini"));
        assert!(!glob_match("*-mini", "gpt-4o-mini-x"));
        assert!(glob_match("a*b*ab", "aXbab"));
        assert!(!glob_match("a*ab*ab", "aab"));
    }

    fn router() -> Router {
        let cfg = crate::config::ProxyConfig::from_yaml(
            "model_list:
  - model_name: gpt-4o
    litellm_params: {model: azure/my-gpt4o, api_base: http://127.0.0.1:9}
  - model_name: house-llama
    litellm_params: {model: hosted_vllm/llama, api_base: http://127.0.0.1:9}
    model_info: {access_groups: [beta-group]}
  - model_name: openai/*
    litellm_params: {model: openai/*, api_key: sk-x}
    model_info: {access_groups: beta-group}
router_settings:
  model_group_alias: {gpt-4: gpt-4o}
general_settings: {master_key: sk-unit-master-1}
",
            "config.yaml",
            &|_| None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Router::build(
            &cfg,
            &crate::pricing::PriceTable::builtin(),
            Arc::new(idlehands_clock::SystemClock),
        )
    }

    fn key(models: &[&str], aliases: &[(&str, &str)]) -> Principal {
        Principal::VirtualKey(Arc::new(VirtualKey {
            models: models.iter().map(|m| m.to_string()).collect(),
            aliases: aliases
                .iter()
                .map(|(a, t)| (a.to_string(), t.to_string()))
                .collect(),
            ..VirtualKey::default()
        }))
    }

    /// The routing a chat request does, then the check.
    fn may(p: &Principal, r: &Router, requested: &str) -> bool {
        let dispatched = p.alias_target(requested);
        let group = r.group(dispatched.unwrap_or(requested));
        p.check_model(requested, dispatched, group.as_deref(), r)
            .is_ok()
    }

    #[test]
    fn wildcard_entries_match_the_requested_name_or_its_known_provider() {
        let r = router();
        let k = key(&["openai/*"], &[]);
        // Served by the `openai/*` route.
        assert!(may(&k, &r, "openai/gpt-4o-mini"));
        // A bare name the price table files under openai, whatever its deployment is.
        assert!(may(&k, &r, "gpt-4o"));
        // A custom group name has no provider to infer, even on an OpenAI-compatible server.
        assert!(!may(&k, &r, "house-llama"));
        let err = k
            .check_model("house-llama", None, r.group("house-llama").as_deref(), &r)
            .err();
        assert!(
            matches!(&err, Some(ProxyError::ModelNotAllowed { model }) if model == "house-llama"),
            "{err:?}"
        );
    }

    #[test]
    fn access_groups_grant_the_groups_that_declare_them() {
        let r = router();
        let k = key(&["beta-group"], &[]);
        assert!(may(&k, &r, "house-llama"));
        assert!(may(&k, &r, "openai/gpt-4o-mini"));
        assert!(!may(&k, &r, "gpt-4o"));
        assert!(r.is_access_group("beta-group"));
        assert!(!r.is_access_group("house-llama"));
    }

    #[test]
    fn special_entries_and_router_aliases() {
        let r = router();
        for all in ["*", "all-proxy-models", "all-team-models"] {
            assert!(may(&key(&[all], &[]), &r, "house-llama"), "{all}");
        }
        assert!(may(&key(&[], &[]), &r, "house-llama"));
        // A router alias: either its own name or its target grants it.
        assert!(may(&key(&["gpt-4"], &[]), &r, "gpt-4"));
        assert!(may(&key(&["gpt-4o"], &[]), &r, "gpt-4"));
        // An unserved name is refused for a limited key before any lookup.
        assert!(!may(&key(&["gpt-4o"], &[]), &r, "no-such-model"));
    }

    #[test]
    fn a_key_alias_is_checked_by_its_target_only() {
        let r = router();
        let k = key(&["gpt-4o"], &[("smart", "gpt-4o")]);
        assert_eq!(k.alias_target("smart"), Some("gpt-4o"));
        assert!(may(&k, &r, "smart"));
        // Listing the alias name does not grant what it points to.
        let k = key(&["smart"], &[("smart", "house-llama")]);
        assert!(!may(&k, &r, "smart"));
        // The master key has no aliases and may call anything.
        let master = Principal::Master {
            key_hash: Arc::from("h"),
        };
        assert_eq!(master.alias_target("smart"), None);
        assert!(may(&master, &r, "house-llama"));
    }
}
