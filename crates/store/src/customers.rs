//! End users (`/customer/*`, LiteLLM's customers): the request's `user` field. Each may have a
//! budget and limits of their own, or fall under `litellm_settings.max_end_user_budget`; their
//! spend grows with every call that names them, whether or not they were created first.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::budgets::{Budget, BudgetPatch};
use crate::types::{JsonMap, Patch, iso, patch};

/// An end user as LiteLLM shows one (`LiteLLM_EndUserTable`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerRecord {
    pub user_id: String,
    pub alias: Option<String>,
    pub blocked: bool,
    pub metadata: JsonMap,
    #[serde(serialize_with = "crate::money::ser_usd")]
    pub spend: i64,
    pub litellm_budget_table: Budget,
    /// The named budget (`/budget/*`) whose limits they follow, if any.
    pub budget_id: Option<String>,
    #[serde(serialize_with = "iso")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "iso")]
    pub updated_at: DateTime<Utc>,
}

/// `POST /customer/new`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewCustomerRequest {
    pub user_id: String,
    pub alias: Option<String>,
    /// Follow this named budget's limits.
    pub budget_id: Option<String>,
    pub blocked: Option<bool>,
    pub metadata: Option<JsonMap>,
    #[serde(flatten)]
    pub budget: BudgetPatch,
}

/// `POST /customer/update`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateCustomerRequest {
    pub user_id: String,
    #[serde(default, deserialize_with = "patch")]
    pub alias: Patch<String>,
    /// Follow another named budget; `null` stops following (the limits stay as they were).
    #[serde(default, deserialize_with = "patch")]
    pub budget_id: Patch<String>,
    pub blocked: Option<bool>,
    pub metadata: Option<JsonMap>,
    #[serde(flatten)]
    pub budget: BudgetPatch,
}

/// `POST /customer/delete`, `/customer/block`, `/customer/unblock`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CustomerIdsRequest {
    pub user_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CustomerIdsResponse {
    pub user_ids: Vec<String>,
}

/// An end user as the request path sees one: the row if created, and the budget that applies
/// (their own, or `max_end_user_budget` over the spend recorded for them).
#[derive(Debug, Clone)]
pub struct EndUserView {
    pub record: Option<CustomerRecord>,
    pub budget: Option<Budget>,
}
