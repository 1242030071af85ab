//! GET /v1/models, /v1/models/{id}: the model groups this key may call.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Uri};
use serde_json::{Value, json};

use crate::auth;
use crate::error::ProxyError;
use crate::state::App;

/// LiteLLM's fixed `created` for every listed model.
const CREATED: u64 = 1_677_610_602;

fn card(id: &str, owned_by: &str) -> Value {
    json!({"id": id, "object": "model", "created": CREATED, "owned_by": owned_by})
}

#[derive(serde::Deserialize)]
struct ListQuery {
    return_wildcard_routes: Option<bool>,
    healthy_only: Option<bool>,
}

pub(crate) async fn list(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let rt = app.runtime.load_full();
    let principal = match auth::authenticate(&rt.auth, app.resolver.as_ref(), &headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let q = match axum::extract::Query::<ListQuery>::try_from_uri(&uri) {
        Ok(q) => q.0,
        Err(e) => {
            return ProxyError::Custom {
                status: 400,
                kind: "bad_request_error".to_string(),
                message: format!("Invalid query parameters: {}", e.body_text()),
                param: None,
                headers: Vec::new(),
            }
            .into_response();
        }
    };
    let router = &rt.router;
    let data: Vec<Value> = match rt.forced_model.as_deref().and_then(|m| router.group(m)) {
        // `--model` mode lists just that model.
        Some(g) => vec![card(&g.name, g.owned_by())],
        None => {
            let mut data: Vec<Value> = router
                .groups()
                .iter()
                .filter(|g| principal.allows_group(g, router))
                .map(|g| card(&g.name, g.owned_by()))
                .collect();
            let mut listed: HashSet<String> = data
                .iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect();
            let mut add = |data: &mut Vec<Value>, id: &str, owned_by: &str| {
                if listed.insert(id.to_string()) {
                    data.push(card(id, owned_by));
                }
            };
            // A team's own deployments, by the names its keys call them (every team's for the
            // proxy admin).
            let teams = match (&principal, principal.team_id()) {
                (_, Some(team)) => router.team_model_names(Some(team)),
                (p, None) if p.is_master() => router.team_model_names(None),
                _ => Vec::new(),
            };
            for name in teams {
                if let Some(g) = router.group_for(name, principal.team_id(), principal.is_master())
                    && principal.allows_group(&g, router)
                {
                    add(&mut data, name, g.owned_by());
                }
            }
            // A wildcard route stands for the price map's models of its provider, as LiteLLM
            // lists them; the route itself only with `return_wildcard_routes`.
            for e in rt
                .catalog
                .entries
                .iter()
                .filter(|e| e.wildcard && e.team.is_none())
            {
                if q.return_wildcard_routes == Some(true)
                    && principal.allows_name(&e.model_name, &e.access_groups, router)
                {
                    add(&mut data, &e.model_name, "openai");
                }
                for x in &e.listed_expansion {
                    if principal.allows_name(&x.model_name, &x.access_groups, router) {
                        add(&mut data, &x.model_name, "openai");
                    }
                }
            }
            // LiteLLM lists a key's aliases beside the models they stand for.
            let aliases: Vec<Value> = key_aliases(&principal)
                .filter_map(|alias| callable_alias(&principal, router, alias))
                .filter(|(alias, _)| !data.iter().any(|c| c["id"] == *alias))
                .map(|(alias, g)| card(alias, g.owned_by()))
                .collect();
            data.extend(aliases);
            data
        }
    };
    let hidden = super::health::hidden_unhealthy(&app, q.healthy_only);
    let data: Vec<Value> = if hidden.is_empty() {
        data
    } else {
        data.into_iter()
            .filter(|c| c["id"].as_str().is_none_or(|id| !hidden.contains(id)))
            .collect()
    };
    Json(json!({"object": "list", "data": data})).into_response()
}

/// The names of the key's aliases, sorted (a listing in a stable order).
fn key_aliases(p: &auth::Principal) -> impl Iterator<Item = &str> {
    let mut names: Vec<&str> = match p {
        auth::Principal::VirtualKey(k) => k.aliases.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    names.sort_unstable();
    names.into_iter()
}

/// The group a key alias reaches, when the proxy serves its target and the key may call it.
fn callable_alias<'a>(
    p: &auth::Principal,
    router: &crate::router::Router,
    alias: &'a str,
) -> Option<(&'a str, Arc<crate::router::ModelGroup>)> {
    let target = p.alias_target(alias)?;
    let group = router.group(target)?;
    p.check_model(alias, Some(target), Some(&group), router)
        .ok()
        .map(|()| (alias, group))
}

pub(crate) async fn one(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let rt = app.runtime.load_full();
    let principal = match auth::authenticate(&rt.auth, app.resolver.as_ref(), &headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // Hidden from the listing, so not found here either (as LiteLLM resolves the two alike).
    let asked = axum::extract::Query::<ListQuery>::try_from_uri(&uri)
        .ok()
        .and_then(|q| q.0.healthy_only);
    if super::health::hidden_unhealthy(&app, asked).contains(&id) {
        return ProxyError::ModelNotFound(id).into_response();
    }
    let router = &rt.router;
    if let Some((alias, g)) = callable_alias(&principal, router, &id) {
        return Json(card(alias, g.owned_by())).into_response();
    }
    match router.group_for(&id, principal.team_id(), principal.is_master()) {
        Some(g) if principal.check_model(&id, None, Some(&g), router).is_ok() => {
            Json(card(&g.name, g.owned_by())).into_response()
        }
        _ => ProxyError::ModelNotFound(id).into_response(),
    }
}
