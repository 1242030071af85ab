//! `GET /metrics`: the Prometheus scrape (see `crate::metrics`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;

use crate::auth::Principal;
use crate::error::ProxyError;
use crate::state::App;

/// The master key (or a dashboard session) unless
/// `litellm_settings.require_auth_for_metrics_endpoint: false`.
pub(crate) async fn scrape(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.metrics_need_auth {
        match super::ui::authenticate_admin(&app, &headers).await {
            Ok(Principal::Master { .. } | Principal::Anonymous | Principal::JwtAdmin(_)) => {}
            Ok(Principal::VirtualKey(_)) => {
                return ProxyError::Custom {
                    status: 401,
                    kind: "auth_error".to_string(),
                    message: "/metrics needs the master key".to_string(),
                    param: None,
                    headers: Vec::new(),
                }
                .into_response();
            }
            Err(e) => return e.into_response(),
        }
    }
    (
        [(http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.metrics.render(),
    )
        .into_response()
}
