//! LiteLLM's `allowed_routes` on a virtual key: the routes it may call, each entry a path (which
//! also allows the paths under it), a `/prefix*` pattern, or the name of a route group
//! (`llm_api_routes`, `info_routes`, `management_routes`, ...; `key_type` picks one of the
//! first three). An empty list allows every route; the master key and the dashboard session
//! are never restricted. The groups list this gateway's routes under LiteLLM's names.

use crate::auth::Principal;
use crate::error::ProxyError;

const OPENAI: &[&str] = &[
    "/chat/completions",
    "/v1/chat/completions",
    "/engines/{model}/chat/completions",
    "/openai/deployments/{model}/chat/completions",
    "/completions",
    "/v1/completions",
    "/engines/{model}/completions",
    "/openai/deployments/{model}/completions",
    "/embeddings",
    "/v1/embeddings",
    "/engines/{model}/embeddings",
    "/openai/deployments/{model}/embeddings",
    "/audio/transcriptions",
    "/v1/audio/transcriptions",
    "/audio/speech",
    "/v1/audio/speech",
    "/moderations",
    "/v1/moderations",
    "/responses",
    "/v1/responses",
    "/responses/*",
    "/v1/responses/*",
    "/openai/v1/responses",
    "/openai/v1/responses/*",
    "/rerank",
    "/v1/rerank",
    "/v2/rerank",
    "/models",
    "/v1/models",
    "/models/*",
    "/v1/models/*",
    "/utils/token_counter",
    "/utils/model_info",
];

const ANTHROPIC: &[&str] = &["/v1/messages", "/v1/messages/count_tokens"];

/// The providers' own APIs, relayed as they are.
const PASS_THROUGH: &[&str] = &[
    "/openai/*",
    "/anthropic/*",
    "/gemini/*",
    "/vllm/*",
    "/ollama/*",
];

const MODEL_INFO: &[&str] = &[
    "/model/info",
    "/v1/model/info",
    "/v2/model/info",
    "/model_group/info",
];

const INFO: &[&str] = &[
    "/key/info",
    "/v2/key/info",
    "/key/health",
    "/key/list",
    "/team/info",
    "/team/list",
    "/v2/team/list",
    "/organization/list",
    "/user/info",
    "/v2/user/info",
    "/model/info",
    "/v1/model/info",
    "/v2/model/info",
    "/model_group/info",
    "/health",
    "/health/services",
    "/models",
    "/v1/models",
    "/models/*",
    "/v1/models/*",
];

const SPEND: &[&str] = &["/spend/*", "/global/spend", "/global/spend/*"];

const GLOBAL_SPEND: &[&str] = &["/global/spend", "/global/spend/*"];

const KEY_MANAGEMENT: &[&str] = &[
    "/key/*",
    "/v2/key/info",
    "/spend/logs",
    "/spend/logs/v2",
    "/team/daily/activity",
    "/team/daily/activity/aggregated",
];

const MANAGEMENT: &[&str] = &[
    "/key/*",
    "/v2/key/info",
    "/team/*",
    "/v2/team/list",
    "/user/*",
    "/v2/user/info",
    "/organization/*",
    "/customer/*",
    "/end_user/*",
    "/model/*",
    "/tag/*",
    "/spend/*",
    "/global/spend",
    "/global/spend/*",
];

/// The route groups by LiteLLM's names.
const GROUPS: &[(&str, &[&[&str]])] = &[
    (
        "llm_api_routes",
        &[OPENAI, ANTHROPIC, PASS_THROUGH, MODEL_INFO],
    ),
    ("openai_routes", &[OPENAI]),
    ("anthropic_routes", &[ANTHROPIC]),
    ("mapped_pass_through_routes", &[PASS_THROUGH]),
    ("info_routes", &[INFO]),
    ("spend_tracking_routes", &[SPEND]),
    ("global_spend_tracking_routes", &[GLOBAL_SPEND]),
    ("key_management_routes", &[KEY_MANAGEMENT]),
    ("management_routes", &[MANAGEMENT]),
];

/// Whether `pattern` (a path with `{name}` segments, or ending in `*`) matches `path`.
fn pattern_matches(pattern: &str, path: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        return path.starts_with(prefix);
    }
    if !pattern.contains('{') {
        return pattern == path;
    }
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {}
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

fn group(name: &str) -> Option<&'static [&'static [&'static str]]> {
    GROUPS.iter().find(|(n, _)| *n == name).map(|(_, g)| *g)
}

/// Whether one `allowed_routes` entry lets a key call `path`.
fn entry_allows(entry: &str, path: &str) -> bool {
    if let Some(lists) = group(entry) {
        return lists
            .iter()
            .flat_map(|l| l.iter())
            .any(|p| pattern_matches(p, path));
    }
    path == entry
        || path
            .strip_prefix(entry)
            .is_some_and(|rest| rest.starts_with('/'))
        || pattern_matches(entry, path)
}

/// Whether a key with these `allowed_routes` may call `path` (empty: every route).
pub(crate) fn allows(allowed: &[String], path: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|e| entry_allows(e, path))
}

/// The caller may call `path`; else LiteLLM's 403.
pub(crate) fn check(p: &Principal, path: &str) -> Result<(), ProxyError> {
    let vk = match p {
        Principal::VirtualKey(vk) => vk,
        // LiteLLM's words for a JWT admin, raised as its generic auth error (401).
        Principal::JwtAdmin(a) if !allows_or_none(&a.allowed_routes, path) => {
            return Err(jwt_refusal(
                401,
                "Authentication Error, Admin",
                &a.allowed_routes,
                path,
            ));
        }
        _ => return Ok(()),
    };
    if vk.via_jwt {
        // A token naming only a user is held to that user's role, as the user's keys are.
        return if vk.team_id.is_none() || allows_or_none(&vk.allowed_routes, path) {
            Ok(())
        } else {
            Err(jwt_refusal(403, "Team", &vk.allowed_routes, path))
        };
    }
    if allows(&vk.allowed_routes, path) {
        return Ok(());
    }
    Err(ProxyError::Custom {
        status: 403,
        kind: "auth_error".to_string(),
        message: format!(
            "Virtual key is not allowed to call this route. Only allowed to call routes: {}. Tried to call route: {path}",
            idlehands_routing::python_list(&vk.allowed_routes)
        ),
        param: None,
        headers: Vec::new(),
    })
}

/// A JWT's routes: an empty list (`[]` configured) allows nothing, as LiteLLM's.
fn allows_or_none(allowed: &[String], path: &str) -> bool {
    allowed.iter().any(|e| entry_allows(e, path))
}

fn jwt_refusal(status: u16, who: &str, allowed: &[String], path: &str) -> ProxyError {
    ProxyError::Custom {
        status,
        kind: "auth_error".to_string(),
        message: format!(
            "{who} not allowed to access this route. Route={path}, Allowed Routes={}",
            idlehands_routing::python_list(allowed)
        ),
        param: None,
        headers: Vec::new(),
    }
}

/// The first entry that can never match here: not a path, a `*` pattern or a group this
/// gateway knows (LiteLLM's other groups name routes it does not serve).
pub(crate) fn unknown_entry(routes: &[String]) -> Option<&str> {
    routes
        .iter()
        .map(String::as_str)
        .find(|r| !r.starts_with('/') && group(r).is_none())
}

/// The group names, for messages.
pub(crate) fn group_names() -> Vec<&'static str> {
    GROUPS.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn paths_prefixes_patterns_and_groups() {
        assert!(allows(&[], "/key/generate"));
        let exact = routes(&["/chat/completions"]);
        assert!(allows(&exact, "/chat/completions"));
        assert!(!allows(&exact, "/v1/chat/completions"));
        // A path allows what is under it, not a longer name.
        let prefix = routes(&["/openai"]);
        assert!(allows(&prefix, "/openai/v1/chat/completions"));
        assert!(!allows(&prefix, "/openaix"));
        let star = routes(&["/spend/*"]);
        assert!(allows(&star, "/spend/logs/v2"));
        assert!(!allows(&star, "/global/spend"));
        let llm = routes(&["llm_api_routes"]);
        for p in [
            "/v1/chat/completions",
            "/openai/deployments/gpt-4o/chat/completions",
            "/v1/messages",
            "/gemini/v1beta/models/x:generateContent",
            "/v1/models/openai/gpt-4o",
            "/model/info",
        ] {
            assert!(allows(&llm, p), "{p}");
        }
        for p in ["/key/info", "/key/generate", "/spend/logs", "/team/new"] {
            assert!(!allows(&llm, p), "{p}");
        }
        // A template segment is one non-empty segment.
        assert!(!allows(&llm, "/openai-x/deployments//chat/completions"));
        let info = routes(&["info_routes"]);
        assert!(allows(&info, "/key/info") && allows(&info, "/health"));
        assert!(!allows(&info, "/key/generate") && !allows(&info, "/chat/completions"));
        let global = routes(&["global_spend_tracking_routes"]);
        assert!(allows(&global, "/global/spend/report") && !allows(&global, "/spend/logs"));
        let mgmt = routes(&["management_routes"]);
        assert!(allows(&mgmt, "/key/generate") && allows(&mgmt, "/global/spend/report"));
        assert!(!allows(&mgmt, "/chat/completions"));
    }

    #[test]
    fn jwt_callers_are_held_to_their_role_s_routes() {
        use std::sync::Arc;
        let team = |team_id: Option<&str>, r: &[&str]| {
            Principal::VirtualKey(Arc::new(crate::auth::VirtualKey {
                team_id: team_id.map(str::to_owned),
                allowed_routes: routes(r),
                via_jwt: true,
                ..crate::auth::VirtualKey::default()
            }))
        };
        let t = team(Some("t"), &["openai_routes", "info_routes"]);
        assert!(check(&t, "/v1/chat/completions").is_ok());
        let refused = check(&t, "/key/generate").err().map(|e| e.to_string());
        assert!(
            refused.as_deref().is_some_and(|m| m.starts_with(
                "Team not allowed to access this route. Route=/key/generate, Allowed Routes=['openai_routes', 'info_routes']"
            )),
            "{refused:?}"
        );
        // `[]` configured allows a team nothing; a user's token has no team list to check.
        assert!(check(&team(Some("t"), &[]), "/v1/models").is_err());
        assert!(check(&team(None, &[]), "/key/generate").is_ok());
        let admin = Principal::JwtAdmin(Arc::new(crate::auth::JwtAdmin {
            user_id: None,
            allowed_routes: routes(&["management_routes"]),
        }));
        assert!(check(&admin, "/team/new").is_ok());
        assert!(check(&admin, "/chat/completions").is_err());
    }

    #[test]
    fn unknown_group_names_are_found() {
        assert_eq!(unknown_entry(&routes(&["/x", "info_routes"])), None);
        assert_eq!(
            unknown_entry(&routes(&["info_routes", "scim_routes"])),
            Some("scim_routes")
        );
    }
}
