//! Routes. Handlers do protocol work only: everything they read was built at start-up.

mod activity_charts;
mod attempts;
mod audio;
mod body;
mod budgets;
mod cache;
mod chat;
mod cost_map;
mod credentials;
mod customers;
mod daily_activity;
pub(crate) mod direct;
mod embeddings;
pub(crate) mod end_user;
mod estimate;
mod global_spend;
pub(crate) mod guard;
pub(crate) mod health;
mod health_admin;
mod health_history;
mod health_services;
mod key_aliases;
mod key_bulk;
mod key_health;
mod key_spend;
mod keys;
mod messages;
mod metrics;
mod model_admin;
mod model_info;
mod model_lookup;
mod model_metrics;
mod models;
mod multi;
mod orgs;
mod passthrough;
mod provider_budgets;
mod responses;
mod responses_native;
mod roles;
mod service_account;
mod session;
mod spend;
mod spend_calculate;
mod spend_charts;
mod spend_log_pages;
mod spend_tables;
mod sse_map;
mod stream;
mod supported_params;
mod tag_admin;
mod tag_spend;
mod tags;
mod team_bulk;
mod team_list_v2;
mod team_member_me;
mod teams;
mod test_connection;
mod token_count;
mod trace;
pub(crate) mod ui;
mod usage_scan;
mod user_bulk;
mod user_info_v2;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::ProxyError;
use crate::state::App;

pub(crate) fn router(app: Arc<App>, extra: Option<Router>) -> Router {
    let (limit, admin_limit) = {
        let rt = app.runtime.load();
        (rt.body_limit, rt.admin_body_limit)
    };
    // Everything here needs a key: the gate checks it (and the declared size) before any
    // body byte is read.
    let keyed = Router::new()
        .route("/v1/chat/completions", post(chat::chat))
        .route("/chat/completions", post(chat::chat))
        .route(
            "/engines/{model}/chat/completions",
            post(chat::chat_with_path_model),
        )
        .route(
            "/openai/deployments/{model}/chat/completions",
            post(chat::chat_with_path_model),
        )
        .route("/v1/completions", post(chat::completions))
        .route("/completions", post(chat::completions))
        .route(
            "/engines/{model}/completions",
            post(chat::completions_with_path_model),
        )
        .route(
            "/openai/deployments/{model}/completions",
            post(chat::completions_with_path_model),
        )
        .route("/v1/rerank", embeddings::forward(embeddings::RERANK))
        .route("/v2/rerank", embeddings::forward(embeddings::RERANK))
        .route("/rerank", embeddings::forward(embeddings::RERANK))
        .route(
            "/v1/images/generations",
            embeddings::forward(embeddings::IMAGES),
        )
        .route(
            "/images/generations",
            embeddings::forward(embeddings::IMAGES),
        )
        .route(
            "/v1/moderations",
            embeddings::forward(embeddings::MODERATIONS),
        )
        .route("/moderations", embeddings::forward(embeddings::MODERATIONS))
        .route("/v1/audio/transcriptions", post(audio::transcriptions))
        .route("/audio/transcriptions", post(audio::transcriptions))
        .route("/v1/audio/speech", post(audio::speech))
        .route("/audio/speech", post(audio::speech))
        .route("/v1/responses", post(responses::responses))
        .route("/responses", post(responses::responses))
        .route("/openai/v1/responses", post(responses::responses))
        .route("/v1/responses/input_tokens", post(responses::input_tokens))
        .route("/responses/input_tokens", post(responses::input_tokens))
        .route(
            "/openai/v1/responses/input_tokens",
            post(responses::input_tokens),
        );
    // LiteLLM serves the stored-response routes under the same three prefixes.
    let keyed = ["/v1/responses", "/responses", "/openai/v1/responses"]
        .into_iter()
        .fold(keyed, |r, prefix| {
            r.route(
                &format!("{prefix}/{{id}}"),
                get(responses::get_response).delete(responses::delete_response),
            )
            .route(
                &format!("{prefix}/{{id}}/input_items"),
                get(responses::input_items_of),
            )
            .route(
                &format!("{prefix}/{{id}}/cancel"),
                post(responses::cancel_response),
            )
        });
    let keyed = keyed
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/utils/token_counter", post(token_count::counter))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/embeddings", post(embeddings::embeddings))
        .route(
            "/engines/{model}/embeddings",
            post(embeddings::embeddings_with_path_model),
        )
        .route(
            "/openai/deployments/{model}/embeddings",
            post(embeddings::embeddings_with_path_model),
        )
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/v1/models/{*id}", get(models::one))
        .route("/models/{*id}", get(models::one))
        .route("/health", get(health::health))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::model_gate,
        ));
    // Any valid key or the dashboard session; each answer is filtered by what the key may call.
    let model_info = Router::new()
        .route("/model/info", get(model_info::v1))
        .route("/v1/model/info", get(model_info::v1))
        .route("/v2/model/info", get(model_info::v2))
        .route("/model_group/info", get(model_info::groups))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::admin_gate,
        ));
    let routes = keyed
        .merge(model_info)
        .route("/health/liveliness", get(health::liveliness))
        .route("/health/liveness", get(health::liveliness))
        .route("/health/readiness", get(health::readiness))
        .route("/health/drain", get(health::drain))
        .route("/test", get(health::test_route))
        .merge(ui::routes().layer(DefaultBodyLimit::max(admin_limit)))
        // Their key may sit in the query string (Gemini's `?key=`): they check it themselves.
        .merge(passthrough::routes())
        .fallback(passthrough::fallback)
        .with_state(app);
    let routes = match extra {
        Some(extra) => routes.merge(extra),
        None => routes,
    };
    let routes = routes
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit));
    // The span and its closing line are info-level: under the default `warn` filter they
    // would be built and dropped unseen on every request (a few per cent of the hot path).
    if crate::logging::request_spans_enabled() {
        routes.layer(axum::middleware::from_fn(crate::logging::request_span))
    } else {
        routes
    }
}

/// `/key/*`, `/spend/logs`, `/global/spend/report` and `/model/new|update|delete` on the
/// store (see `crate::ledger`).
pub(crate) fn management_routes(
    app: Arc<App>,
    ledger: idlehands_store::Ledger,
    models: Option<Arc<crate::ledger::ModelSync>>,
) -> Router {
    let admin_limit = app.runtime.load().admin_body_limit;
    cost_map::follow_fleet(&app, &ledger);
    let state = Arc::new(keys::Mgmt {
        app: app.clone(),
        ledger,
        models: models.clone(),
    });
    let model_admin = Arc::new(model_admin::ModelAdmin {
        app: app.clone(),
        mgmt: state.clone(),
        sync: models,
    });
    keys::routes(state.clone())
        .merge(teams::routes(state.clone()))
        .merge(users::routes(state.clone()))
        .merge(customers::routes(state.clone()))
        .merge(orgs::routes(state.clone()))
        .merge(daily_activity::routes(state.clone()))
        .merge(tag_spend::routes(state.clone()))
        .merge(tag_admin::routes(state.clone()))
        .merge(key_spend::routes(state.clone()))
        .merge(key_aliases::routes(state.clone()))
        .merge(key_bulk::routes(state.clone()))
        .merge(key_health::routes(state.clone()))
        .merge(service_account::routes(state.clone()))
        .merge(global_spend::routes(state.clone()))
        .merge(spend_log_pages::routes(state.clone()))
        .merge(spend_charts::routes(state.clone()))
        .merge(spend_tables::routes(state.clone()))
        .merge(health_admin::routes(state.clone()))
        .merge(health_history::routes(state.clone()))
        .merge(health_services::routes(state.clone()))
        .merge(test_connection::routes(state.clone()))
        .merge(supported_params::routes(state.clone()))
        .merge(cost_map::routes(state.clone()))
        .merge(credentials::routes(state.clone()))
        .merge(cache::routes(state.clone()))
        .merge(budgets::routes(state.clone()))
        .merge(provider_budgets::routes(state.clone()))
        .merge(spend_calculate::routes(state.clone()))
        .merge(user_info_v2::routes(state.clone()))
        .merge(team_list_v2::routes(state.clone()))
        .merge(team_bulk::routes(state.clone()))
        .merge(team_member_me::routes(state.clone()))
        .merge(user_bulk::routes(state.clone()))
        .merge(model_lookup::routes(state.clone()))
        .merge(activity_charts::routes(state.clone()))
        .merge(model_metrics::routes(state.clone()))
        .merge(spend::routes(state))
        .merge(model_admin::routes(model_admin))
        .route_layer(axum::middleware::from_fn_with_state(app, guard::admin_gate))
        .layer(DefaultBodyLimit::max(admin_limit))
}

async fn method_not_allowed(method: http::Method, uri: http::Uri) -> Response {
    ProxyError::Custom {
        status: 405,
        kind: "invalid_request_error".to_string(),
        message: format!("Method {method} not allowed for {}", uri.path()),
        param: None,
        headers: Vec::new(),
    }
    .into_response()
}

fn not_found(uri: &http::Uri) -> Response {
    ProxyError::Custom {
        status: 404,
        kind: "not_found_error".to_string(),
        message: format!("Route not found: {}", uri.path()),
        param: None,
        headers: Vec::new(),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    /// A field both acted on and listed as inert is treated as acted, so its note never
    /// reaches the answer (soft_budget on teams, users, organizations and end users was).
    #[test]
    fn no_admin_field_is_both_acted_and_inert() {
        for rules in [
            &super::keys::KEY_FIELDS,
            &super::teams::FIELDS,
            &super::users::FIELDS,
            &super::orgs::FIELDS,
            &super::customers::FIELDS,
            &super::budgets::FIELDS,
        ] {
            for (name, _) in rules.inert {
                assert!(
                    !rules.acted.contains(name),
                    "{}: {name} is acted and inert",
                    rules.entity
                );
            }
        }
    }
}
