//! Internal users (`/user/*`) with LiteLLM's field names: a role that decides what they may do
//! on the admin routes, a budget and limits over all their keys, and the models their keys
//! without a team may call.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::budgets::{Budget, BudgetPatch};
use crate::types::{JsonMap, KeyObject, Patch, iso, patch};

/// LiteLLM's user roles, most powerful first.
pub const USER_ROLES: [&str; 4] = [
    "proxy_admin",
    "proxy_admin_viewer",
    "internal_user",
    "internal_user_viewer",
];

/// A user row as LiteLLM shows it (`LiteLLM_UserTable`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserRecord {
    pub user_id: String,
    pub user_email: Option<String>,
    pub user_alias: Option<String>,
    pub user_role: String,
    pub models: Vec<String>,
    pub metadata: JsonMap,
    /// The teams the user is a member of.
    pub teams: Vec<String>,
    #[serde(flatten)]
    pub budget: Budget,
    #[serde(serialize_with = "iso")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "iso")]
    pub updated_at: DateTime<Utc>,
}

/// `POST /user/new`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewUserRequest {
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    pub user_alias: Option<String>,
    pub user_role: Option<String>,
    pub models: Option<Vec<String>>,
    pub metadata: Option<JsonMap>,
    /// Teams to add the user to (as `user`).
    pub teams: Option<Vec<String>>,
    /// Default true, as in LiteLLM: the answer carries a new key of the user.
    pub auto_create_key: Option<bool>,
    pub key_alias: Option<String>,
    #[serde(flatten)]
    pub budget: BudgetPatch,
}

/// `POST /user/update`: `user_id` (or `user_email`) names the user.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateUserRequest {
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    pub user_alias: Patch<String>,
    pub user_role: Option<String>,
    pub models: Option<Vec<String>>,
    pub metadata: Option<JsonMap>,
    #[serde(flatten)]
    pub budget: BudgetPatch,
}

/// `POST /user/delete`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeleteUserRequest {
    pub user_ids: Vec<String>,
}

/// `GET /user/list` query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserListQuery {
    pub role: Option<String>,
    /// Comma-separated ids.
    pub user_ids: Option<String>,
    pub page: Option<u32>,
    pub page_size: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserListResponse {
    pub users: Vec<UserRecord>,
    pub total: u64,
    pub page: u32,
    pub page_size: u32,
    pub total_pages: u64,
}

/// `/user/new` answer: the user, and the key made for them (unless `auto_create_key: false`).
#[derive(Debug, Clone, Serialize)]
pub struct NewUserResponse {
    pub key: Option<String>,
    pub token_id: Option<String>,
    #[serde(flatten)]
    pub user: UserRecord,
}

/// `GET /user/info` answer.
#[derive(Debug, Clone, Serialize)]
pub struct UserInfoResponse {
    pub user_id: String,
    pub user_info: UserRecord,
    pub keys: Vec<KeyObject>,
    pub teams: Vec<crate::teams::TeamRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeleteUserResponse {
    pub deleted_users: Vec<String>,
    /// Hashes of the keys deleted with the users.
    pub deleted_keys: Vec<String>,
}
