//! `/organization/*`: organizations on the store. Changes need a proxy admin; a proxy admin
//! viewer reads them.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Uri};
use idlehands_store::organizations::{
    DeleteOrgRequest, NewOrgRequest, OrgMemberAddRequest, OrgMemberDeleteRequest,
    OrgMemberUpdateRequest, UpdateOrgRequest,
};

use super::keys::{Mgmt, Shared, admin, body, query, reply, reply_noting, tri};
use super::roles::require_reader;
use crate::ledger::seams::store_error;

pub(crate) fn routes(state: Arc<Mgmt>) -> Router {
    Router::new()
        .route("/organization/new", post(new))
        .route("/organization/info", get(info).post(info_of_many))
        .route("/organization/update", post(update).patch(update))
        .route(
            "/v2/organization/{organization_id}",
            axum::routing::patch(update_v2),
        )
        .route("/organization/delete", post(delete).delete(delete))
        .route("/organization/list", get(list))
        .route("/organization/member_add", post(member_add))
        .route(
            "/organization/member_delete",
            post(member_delete).delete(member_delete),
        )
        .route(
            "/organization/member_update",
            axum::routing::patch(member_update).post(member_update),
        )
        .with_state(state)
}

const ORG_FIELDS_ACTED: [&str; 12] = [
    "organization_id",
    "budget_id",
    "organization_alias",
    "models",
    "metadata",
    "max_budget",
    "budget_duration",
    "tpm_limit",
    "rpm_limit",
    "max_parallel_requests",
    "organization_ids",
    "member",
];

pub(super) const FIELDS: super::keys::FieldRules = super::keys::FieldRules {
    entity: "organization",
    acted: &ORG_FIELDS_ACTED,
    inert: &[(
        "soft_budget",
        "stored and shown; no alert is sent when it is crossed",
    )],
};

fn ignored(route: &str, bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    super::keys::ignored_fields(&FIELDS, route, bytes)
}

async fn new(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    let by = tri!(admin(&m, &headers, "/organization/new").await);
    let req: NewOrgRequest = tri!(body(&bytes));
    reply_noting(
        m.ledger.new_org(req, by.as_deref()).await,
        ignored("/organization/new", &bytes),
    )
}

#[derive(serde::Deserialize)]
struct InfoQuery {
    organization_id: Option<String>,
}

async fn info(State(m): Shared, headers: HeaderMap, uri: Uri) -> Response {
    tri!(require_reader(&m, &headers, "/organization/info").await);
    let q: InfoQuery = tri!(query(&uri));
    let Some(id) = q.organization_id.filter(|u| !u.trim().is_empty()) else {
        let e = idlehands_store::StoreError::bad_request(
            "Malformed request. No organization_id passed in.",
            "organization_id",
        );
        return store_error(&e).into_response();
    };
    reply(m.ledger.org_info(&id).await)
}

#[derive(serde::Deserialize)]
struct InfoOfMany {
    #[serde(default)]
    organizations: Vec<String>,
}

/// `POST /organization/info` `{"organizations": [...]}` (LiteLLM's older form): those that
/// exist, without their teams.
async fn info_of_many(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(require_reader(&m, &headers, "/organization/info").await);
    let ask: InfoOfMany = tri!(body(&bytes));
    if ask.organizations.is_empty() {
        let e = idlehands_store::StoreError::bad_request(
            "Specify list of organization id's to query. Passed in=[]",
            "organizations",
        );
        return store_error(&e).into_response();
    }
    reply(m.ledger.orgs_named(&ask.organizations).await)
}

const MEMBER_UPDATE_FIELDS: super::keys::FieldRules = super::keys::FieldRules {
    entity: "organization member",
    acted: &["organization_id", "user_id", "user_email", "role"],
    inert: &[(
        "max_budget_in_organization",
        "not kept: members have no budget of their own in an organization here",
    )],
};

/// `PATCH /organization/member_update`: a member's `role`; the member as it is now.
async fn member_update(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/organization/member_update").await);
    let req: OrgMemberUpdateRequest = tri!(body(&bytes));
    let org = req.organization_id.clone();
    let ignored =
        super::keys::ignored_fields(&MEMBER_UPDATE_FIELDS, "/organization/member_update", &bytes);
    reply_noting(
        m.ledger.org_member_update(req).await.map(|mm| {
            serde_json::json!({
                "organization_id": org,
                "user_id": mm.user_id,
                "user_email": mm.user_email,
                "user_role": mm.user_role,
            })
        }),
        ignored,
    )
}

async fn update(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/organization/update").await);
    let req: UpdateOrgRequest = tri!(body(&bytes));
    reply_noting(
        m.ledger.update_org(req).await,
        ignored("/organization/update", &bytes),
    )
}

/// LiteLLM's `PATCH /v2/organization/{organization_id}`: `/organization/update` of the
/// organization the path names (a body `organization_id` must be the same); a sent field is
/// written, `null` clears it, except the alias, which cannot be cleared (422).
async fn update_v2(
    State(m): Shared,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    bytes: Bytes,
) -> Response {
    let route = "/v2/organization/{organization_id}";
    tri!(admin(&m, &headers, route).await);
    let fields = tri!(super::keys::body_for_path(&bytes, "organization_id", &id));
    if fields
        .get("organization_alias")
        .is_some_and(serde_json::Value::is_null)
    {
        return crate::error::ProxyError::Custom {
            status: 422,
            kind: "invalid_request_error".to_string(),
            message: "organization_alias cannot be cleared".to_string(),
            param: Some("organization_alias".to_string()),
            headers: Vec::new(),
        }
        .into_response();
    }
    let merged = serde_json::Value::Object(fields).to_string();
    let req: UpdateOrgRequest = tri!(body(merged.as_bytes()));
    reply_noting(
        m.ledger.update_org(req).await,
        ignored(route, merged.as_bytes()),
    )
}

async fn delete(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/organization/delete").await);
    let req: DeleteOrgRequest = tri!(body(&bytes));
    reply(
        m.ledger
            .delete_orgs(req)
            .await
            .map(|ids| serde_json::json!({"deleted_organizations": ids})),
    )
}

async fn list(State(m): Shared, headers: HeaderMap) -> Response {
    tri!(require_reader(&m, &headers, "/organization/list").await);
    reply(m.ledger.list_orgs().await)
}

async fn member_add(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/organization/member_add").await);
    let req: OrgMemberAddRequest = tri!(body(&bytes));
    reply(m.ledger.org_member_add(req).await)
}

async fn member_delete(State(m): Shared, headers: HeaderMap, bytes: Bytes) -> Response {
    tri!(admin(&m, &headers, "/organization/member_delete").await);
    let req: OrgMemberDeleteRequest = tri!(body(&bytes));
    reply(m.ledger.org_member_delete(req).await)
}
