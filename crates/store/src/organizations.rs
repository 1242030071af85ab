//! Organizations (`/organization/*`) with LiteLLM's field names: their model list and budget
//! bound their teams (checked when a team joins or changes) and every call of those teams'
//! keys (and of keys set to the organization directly).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::budgets::{Budget, BudgetPatch};
use crate::types::{JsonMap, Patch, iso, patch};

/// LiteLLM's roles within an organization.
pub const ORG_ROLES: [&str; 3] = ["org_admin", "internal_user", "internal_user_viewer"];

/// An organization member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMember {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default = "org_role")]
    pub user_role: String,
}

fn org_role() -> String {
    "internal_user".to_string()
}

/// An organization as LiteLLM shows one (`LiteLLM_OrganizationTable`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrgRecord {
    pub organization_id: String,
    pub organization_alias: Option<String>,
    pub models: Vec<String>,
    pub metadata: JsonMap,
    pub members: Vec<OrgMember>,
    #[serde(serialize_with = "crate::money::ser_usd")]
    pub spend: i64,
    pub litellm_budget_table: Budget,
    /// The named budget (`/budget/*`) whose limits it follows, if any.
    pub budget_id: Option<String>,
    #[serde(serialize_with = "iso")]
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    #[serde(serialize_with = "iso")]
    pub updated_at: DateTime<Utc>,
}

/// `POST /organization/new`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewOrgRequest {
    pub organization_id: Option<String>,
    pub organization_alias: String,
    pub models: Option<Vec<String>>,
    pub metadata: Option<JsonMap>,
    /// Follow this named budget's limits.
    pub budget_id: Option<String>,
    #[serde(flatten)]
    pub budget: BudgetPatch,
}

/// `PATCH`/`POST /organization/update`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateOrgRequest {
    pub organization_id: String,
    #[serde(default, deserialize_with = "patch")]
    pub organization_alias: Patch<String>,
    pub models: Option<Vec<String>>,
    pub metadata: Option<JsonMap>,
    /// Follow another named budget; `null` stops following (the limits stay as they were).
    #[serde(default, deserialize_with = "patch")]
    pub budget_id: Patch<String>,
    #[serde(flatten)]
    pub budget: BudgetPatch,
}

/// `DELETE`/`POST /organization/delete`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeleteOrgRequest {
    pub organization_ids: Vec<String>,
}

/// One member or a list.
#[derive(Debug, Clone)]
pub struct OrgMembers(pub Vec<OrgMember>);

impl<'de> Deserialize<'de> for OrgMembers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            One(OrgMember),
            Many(Vec<OrgMember>),
        }
        Ok(OrgMembers(match Either::deserialize(d)? {
            Either::One(m) => vec![m],
            Either::Many(v) => v,
        }))
    }
}

/// `POST /organization/member_add`.
#[derive(Debug, Clone, Deserialize)]
pub struct OrgMemberAddRequest {
    pub organization_id: String,
    pub member: OrgMembers,
}

/// `DELETE`/`POST /organization/member_delete`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OrgMemberDeleteRequest {
    pub organization_id: String,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
}

/// `PATCH /organization/member_update`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OrgMemberUpdateRequest {
    pub organization_id: String,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    pub role: Option<String>,
}

/// `GET /organization/info` answer: the organization and its teams.
#[derive(Debug, Clone, Serialize)]
pub struct OrgInfoResponse {
    #[serde(flatten)]
    pub org: OrgRecord,
    pub teams: Vec<crate::teams::TeamRecord>,
}
