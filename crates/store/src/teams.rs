//! Teams (`/team/*`) with LiteLLM's field names: a team's models bound its keys, its budget
//! and limits bound their calls together, and a member may have a budget of their own within
//! the team (`max_budget_in_team`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::budgets::{Budget, BudgetPatch};
use crate::types::{JsonMap, Patch, iso, patch};

/// `members_with_roles` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamMember {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_email: Option<String>,
    #[serde(default = "member_role")]
    pub role: String,
}

fn member_role() -> String {
    "user".to_string()
}

impl TeamMember {
    /// The member's id in budget names: the user id, else the e-mail.
    pub fn id(&self) -> Option<&str> {
        self.user_id.as_deref().or(self.user_email.as_deref())
    }

    pub(crate) fn same_as(&self, user_id: Option<&str>, user_email: Option<&str>) -> bool {
        (user_id.is_some() && self.user_id.as_deref() == user_id)
            || (user_email.is_some() && self.user_email.as_deref() == user_email)
    }
}

/// A team row as LiteLLM shows it (`LiteLLM_TeamTable`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamRecord {
    pub team_id: String,
    pub team_alias: Option<String>,
    pub organization_id: Option<String>,
    /// The user ids of admins and of all members, derived from `members_with_roles`.
    pub admins: Vec<String>,
    pub members: Vec<String>,
    pub members_with_roles: Vec<TeamMember>,
    pub models: Vec<String>,
    pub metadata: JsonMap,
    pub blocked: bool,
    #[serde(flatten)]
    pub budget: Budget,
    #[serde(serialize_with = "iso")]
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    #[serde(serialize_with = "iso")]
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

impl TeamRecord {
    /// Recomputes `admins` and `members` from `members_with_roles`.
    pub(crate) fn derive_member_lists(&mut self) {
        self.admins = self
            .members_with_roles
            .iter()
            .filter(|m| m.role == "admin")
            .filter_map(|m| m.id().map(str::to_owned))
            .collect();
        self.members = self
            .members_with_roles
            .iter()
            .filter_map(|m| m.id().map(str::to_owned))
            .collect();
    }
}

/// `POST /team/new`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewTeamRequest {
    pub team_id: Option<String>,
    pub team_alias: Option<String>,
    pub organization_id: Option<String>,
    pub models: Option<Vec<String>>,
    pub metadata: Option<JsonMap>,
    pub members_with_roles: Option<Vec<TeamMember>>,
    pub blocked: Option<bool>,
    #[serde(flatten)]
    pub budget: BudgetPatch,
}

/// `POST /team/update`: `team_id` names the team; other fields present change.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateTeamRequest {
    pub team_id: String,
    #[serde(default, deserialize_with = "patch")]
    pub team_alias: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub organization_id: Patch<String>,
    pub models: Option<Vec<String>>,
    pub metadata: Option<JsonMap>,
    pub blocked: Option<bool>,
    #[serde(flatten)]
    pub budget: BudgetPatch,
}

/// `POST /team/delete`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeleteTeamRequest {
    pub team_ids: Vec<String>,
}

/// `POST /team/block` and `/team/unblock`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BlockTeamRequest {
    pub team_id: String,
}

/// One member or a list, as LiteLLM's `member` field takes either.
#[derive(Debug, Clone)]
pub struct OneOrMany(pub Vec<TeamMember>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            One(TeamMember),
            Many(Vec<TeamMember>),
        }
        Ok(OneOrMany(match Either::deserialize(d)? {
            Either::One(m) => vec![m],
            Either::Many(v) => v,
        }))
    }
}

/// `POST /team/member_add`.
#[derive(Debug, Clone, Deserialize)]
pub struct TeamMemberAddRequest {
    pub team_id: String,
    pub member: OneOrMany,
    pub max_budget_in_team: Option<f64>,
    pub budget_duration: Option<String>,
}

/// `POST /team/member_delete`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TeamMemberDeleteRequest {
    pub team_id: String,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
}

/// `POST /team/member_update`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TeamMemberUpdateRequest {
    pub team_id: String,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    pub role: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    pub max_budget_in_team: Patch<f64>,
    #[serde(default, deserialize_with = "patch")]
    pub budget_duration: Patch<String>,
    #[serde(default, deserialize_with = "patch")]
    pub tpm_limit: Patch<i64>,
    #[serde(default, deserialize_with = "patch")]
    pub rpm_limit: Patch<i64>,
}

/// `POST /team/model/add` and `/team/model/delete`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TeamModelsRequest {
    pub team_id: String,
    pub models: Vec<String>,
}

/// `GET /team/list` query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TeamListQuery {
    pub user_id: Option<String>,
    pub organization_id: Option<String>,
}

/// A member's budget within a team, as `/team/info`'s `team_memberships` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamMembership {
    pub team_id: String,
    pub user_id: String,
    #[serde(serialize_with = "crate::money::ser_usd")]
    pub spend: i64,
    pub litellm_budget_table: Budget,
}

/// `GET /team/info` answer.
#[derive(Debug, Clone, Serialize)]
pub struct TeamInfoResponse {
    pub team_id: String,
    pub team_info: TeamInfo,
    /// The team's keys, as `/key/list?return_full_object=true` shows them.
    pub keys: Vec<crate::types::KeyObject>,
    pub team_memberships: Vec<TeamMembership>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TeamInfo {
    #[serde(flatten)]
    pub record: TeamRecord,
    /// USD held by calls in progress against the team's budget; not a LiteLLM field.
    #[serde(serialize_with = "crate::money::ser_usd")]
    pub reserved_spend: i64,
}

/// `/team/member_add` answer: the team after the change.
#[derive(Debug, Clone, Serialize)]
pub struct TeamMemberAddResponse {
    #[serde(flatten)]
    pub team: TeamRecord,
    pub updated_team_memberships: Vec<TeamMembership>,
}

/// `/team/member_update` answer.
#[derive(Debug, Clone, Serialize)]
pub struct TeamMemberUpdateResponse {
    pub team_id: String,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    #[serde(serialize_with = "crate::money::ser_usd_opt")]
    pub max_budget_in_team: Option<i64>,
    pub budget_duration: Option<String>,
    pub tpm_limit: Option<i64>,
    pub rpm_limit: Option<i64>,
}

/// `/team/delete` answer.
#[derive(Debug, Clone, Serialize)]
pub struct DeleteTeamResponse {
    pub deleted_teams: Vec<String>,
    /// Hashes of the keys deleted with the teams.
    pub deleted_keys: Vec<String>,
}

/// A team as the request path needs it: its record and the budgets of members that have one.
#[derive(Debug, Clone)]
pub struct TeamView {
    pub record: TeamRecord,
    pub member_budgets: std::collections::HashMap<String, Budget>,
}
