//! `/team/*` on the ledger: team changes go to the database in one transaction, then the
//! limiter takes the new limits and every instance drops its cached copy of the team.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;

use crate::budgets::Budget;
use crate::entities;
use crate::error::{AccessError, StoreError};
use crate::ledger::Ledger;
use crate::teams::{
    BlockTeamRequest, DeleteTeamRequest, DeleteTeamResponse, NewTeamRequest, TeamInfo,
    TeamInfoResponse, TeamListQuery, TeamMember, TeamMemberAddRequest, TeamMemberAddResponse,
    TeamMemberDeleteRequest, TeamMemberUpdateRequest, TeamMemberUpdateResponse, TeamMembership,
    TeamModelsRequest, TeamRecord, TeamView, UpdateTeamRequest,
};
use crate::teams_db::{TeamWrites, team_not_found};
use crate::types::{KeyListQuery, KeyObject};
use crate::validate::{models as check_models, money};

const ROLES: [&str; 2] = ["admin", "user"];

fn check_member(m: &TeamMember, i: usize) -> Result<(), StoreError> {
    if m.user_id.as_deref().is_none_or(|u| u.trim().is_empty())
        && m.user_email.as_deref().is_none_or(|e| e.trim().is_empty())
    {
        return Err(StoreError::bad_request(
            "Either `user_id` or `user_email` must be set for a team member",
            format!("member[{i}]"),
        ));
    }
    if !ROLES.contains(&m.role.as_str()) {
        return Err(StoreError::bad_request(
            format!(
                "Invalid team member role '{}': use 'admin' or 'user'",
                m.role
            ),
            format!("member[{i}].role"),
        ));
    }
    Ok(())
}

/// `/team/info`'s 404.
fn info_not_found(team_id: &str) -> StoreError {
    StoreError::NotFound {
        message: format!("Team not found, passed team id: {team_id}."),
        param: Some("team_id"),
    }
}

fn membership(team_id: &str, b: &Budget) -> Option<TeamMembership> {
    let user_id = b
        .entity
        .strip_prefix(&format!("member:{team_id}:"))?
        .to_owned();
    Some(TeamMembership {
        team_id: team_id.to_owned(),
        user_id,
        spend: b.spend,
        litellm_budget_table: b.clone(),
    })
}

/// The fields of `/team/update` present in `req`, applied to `t` (all or nothing).
fn apply_team_update(
    t: &mut TeamRecord,
    req: &UpdateTeamRequest,
    now: chrono::DateTime<Utc>,
    by: Option<&str>,
) -> Result<(), StoreError> {
    let mut next = t.clone();
    next.budget.apply(&req.budget, now)?;
    if let Some(v) = &req.team_alias {
        next.team_alias = v.clone();
    }
    if let Some(v) = &req.organization_id {
        next.organization_id = v.clone();
    }
    if let Some(v) = &req.models {
        next.models = v.clone();
    }
    if let Some(v) = &req.metadata {
        next.metadata = v.clone();
    }
    if let Some(v) = req.blocked {
        next.blocked = v;
    }
    next.updated_at = now;
    next.updated_by = by.map(str::to_owned);
    *t = next;
    Ok(())
}

impl Ledger {
    /// The team as the request path sees it: cached, re-read after the key cache's TTL (its
    /// limits then go to the limiter, so a change made on another instance takes effect).
    pub(crate) async fn team_view(
        &self,
        team_id: &str,
    ) -> Result<Option<Arc<TeamView>>, AccessError> {
        let cached = self.teams_cache().read().get(team_id).cloned();
        if let Some((at, view)) = &cached
            && at.elapsed() < self.config().cache_ttl
        {
            return Ok(view.clone());
        }
        match self.store().get_team_view(team_id).await {
            Ok(view) => {
                let view = view.map(Arc::new);
                if let Some(v) = &view {
                    self.limiter()
                        .reconfigure(&v.record.budget.key_limits(), false);
                    for b in v.member_budgets.values() {
                        self.limiter().reconfigure(&b.key_limits(), false);
                    }
                }
                let mut teams = self.teams_cache().write();
                if teams.len() > 100_000 {
                    teams.clear();
                }
                teams.insert(team_id.to_owned(), (Instant::now(), view.clone()));
                Ok(view)
            }
            Err(e) => {
                tracing::warn!(error = %e, "team lookup failed");
                match cached {
                    Some((_, view)) => Ok(view),
                    None => Err(AccessError::Unavailable),
                }
            }
        }
    }

    /// After a team change: the limiter takes the new limits and every instance re-reads it.
    fn after_team_change(&self, team: &TeamRecord, member_budgets: &[Budget]) {
        self.limiter().reconfigure(&team.budget.key_limits(), false);
        for b in member_budgets {
            self.limiter().reconfigure(&b.key_limits(), false);
        }
        self.invalidate_and_announce(&entities::team(&team.team_id));
    }

    /// `/team/new`.
    pub async fn new_team(
        &self,
        req: NewTeamRequest,
        by: Option<&str>,
    ) -> Result<TeamRecord, StoreError> {
        let now = self.config().clock.now();
        let team_id = match req.team_id.as_deref().map(str::trim) {
            Some("") | None => uuid::Uuid::new_v4().to_string(),
            Some(id) => id.to_owned(),
        };
        if team_id.contains(':') {
            return Err(StoreError::bad_request(
                format!("team_id '{team_id}' may not contain ':'"),
                "team_id",
            ));
        }
        let models = req.models.clone().unwrap_or_default();
        check_models(&models)?;
        let members = req.members_with_roles.clone().unwrap_or_default();
        for (i, m) in members.iter().enumerate() {
            check_member(m, i)?;
        }
        let mut budget = Budget::new(entities::team(&team_id));
        budget.apply(&req.budget, now)?;
        let mut team = TeamRecord {
            team_id,
            team_alias: req.team_alias.clone(),
            organization_id: req.organization_id.clone(),
            admins: Vec::new(),
            members: Vec::new(),
            members_with_roles: members,
            models,
            metadata: req.metadata.clone().unwrap_or_default(),
            blocked: req.blocked.unwrap_or(false),
            budget,
            created_at: now,
            created_by: by.map(str::to_owned),
            updated_at: now,
            updated_by: by.map(str::to_owned),
        };
        team.derive_member_lists();
        if let Some(org) = &team.organization_id {
            self.check_team_in_org(org, &team.budget, &team.models)
                .await?;
        }
        self.store()
            .insert_team(&team, &TeamWrites::default())
            .await?;
        self.after_team_change(&team, &[]);
        Ok(team)
    }

    /// `/team/info`: the team, its keys and its members' budgets; `spend` is what the
    /// enforcing limiter counts when it tracks the team, else the database's.
    pub async fn team_info(&self, team_id: &str) -> Result<TeamInfoResponse, StoreError> {
        let Some(view) = self.store().get_team_view(team_id).await? else {
            return Err(info_not_found(team_id));
        };
        let mut record = view.record;
        let mut reserved = 0;
        if let Some(live) = self.limiter().live(&record.budget.entity).await {
            record.budget.spend = live.spend;
            reserved = live.reserved;
        }
        let q = KeyListQuery {
            team_id: Some(team_id.to_owned()),
            ..KeyListQuery::default()
        };
        let (keys, _) = self.store().list_keys(&q, 1, 1000).await?;
        let keys = keys
            .into_iter()
            .map(|record| KeyObject {
                token: record.token.clone(),
                record,
            })
            .collect();
        let mut team_memberships = Vec::new();
        for b in view.member_budgets.values() {
            team_memberships.extend(self.live_membership(team_id, b.clone()).await);
        }
        team_memberships.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Ok(TeamInfoResponse {
            team_id: team_id.to_owned(),
            team_info: TeamInfo {
                record,
                reserved_spend: reserved,
            },
            keys,
            team_memberships,
        })
    }

    /// A member's budget in a team, spend as the enforcing limiter counts it.
    async fn live_membership(&self, team_id: &str, mut b: Budget) -> Option<TeamMembership> {
        if let Some(live) = self.limiter().live(&b.entity).await {
            b.spend = live.spend;
        }
        membership(team_id, &b)
    }

    /// `/team/{team_id}/members/me`: the team and one member's budget in it (`None`: no
    /// budget of their own there), without the team's keys and the other members' budgets.
    pub async fn team_and_member(
        &self,
        team_id: &str,
        member: &str,
    ) -> Result<(TeamRecord, Option<TeamMembership>), StoreError> {
        let Some(team) = self.store().get_team(team_id).await? else {
            return Err(info_not_found(team_id));
        };
        let budget = self
            .store()
            .get_budget(&entities::member(team_id, member))
            .await?;
        let membership = match budget {
            Some(b) => self.live_membership(team_id, b).await,
            None => None,
        };
        Ok((team, membership))
    }

    /// LiteLLM's `/team/{team_id}/member/{user_id}/reset_spend`: a member's spend in the team
    /// lowered to `reset_to` USD (at least 0, at most their spend and their budget in the
    /// team), after the spend already queued is committed; the limiter's counter (a fleet's
    /// shared one too) follows. The member's budget as it is now and the spend it had, nano-USD.
    pub async fn reset_team_member_spend(
        &self,
        team_id: &str,
        user_id: &str,
        reset_to: f64,
    ) -> Result<(Budget, i64), StoreError> {
        if !reset_to.is_finite() || reset_to < 0.0 {
            return Err(StoreError::bad_request(
                "reset_to must be a finite number >= 0",
                "reset_to",
            ));
        }
        let nanos = crate::money::usd_to_nanos(reset_to)
            .ok_or_else(|| StoreError::bad_request("reset_to must be a float", "reset_to"))?;
        let Some(team) = self.store().get_team(team_id).await? else {
            return Err(info_not_found(team_id));
        };
        if !team.members.iter().any(|m| m == user_id) {
            return Err(StoreError::NotFound {
                message: format!("User {user_id} is not a member of team {team_id}."),
                param: Some("user_id"),
            });
        }
        // Increments queued before the reset must not land on top of it.
        self.writer().flush().await?;
        let entity = entities::member(team_id, user_id);
        let (budget, previous) = self
            .store()
            .lower_budget_spend(&entity, nanos, reset_to)
            .await?;
        self.limiter().reconfigure(&budget.key_limits(), true);
        self.invalidate_and_announce(&entity);
        Ok((budget, previous))
    }

    /// `/team/list`: every team, or those of one organization or with one member.
    pub async fn list_teams(&self, q: &TeamListQuery) -> Result<Vec<TeamRecord>, StoreError> {
        let mut teams = self
            .store()
            .list_teams(q.organization_id.as_deref())
            .await?;
        if let Some(user) = &q.user_id {
            teams.retain(|t| t.members.iter().any(|m| m == user));
        }
        Ok(teams)
    }

    /// `/team/update`: only the fields present change. A team in an organization must stay
    /// within it (checked on the team as it would be after the change).
    pub async fn update_team(
        &self,
        req: UpdateTeamRequest,
        by: Option<&str>,
    ) -> Result<TeamRecord, StoreError> {
        let now = self.config().clock.now();
        if let Some(m) = &req.models {
            check_models(m)?;
        }
        let Some(mut next) = self.store().get_team(&req.team_id).await? else {
            return Err(team_not_found(&req.team_id));
        };
        apply_team_update(&mut next, &req, now, by)?;
        if let Some(org) = &next.organization_id {
            self.check_team_in_org(org, &next.budget, &next.models)
                .await?;
        }
        let team = self
            .store()
            .update_team_with(&req.team_id, |t| {
                apply_team_update(t, &req, now, by)?;
                Ok(TeamWrites::default())
            })
            .await?;
        self.after_team_change(&team, &[]);
        Ok(team)
    }

    /// `/team/block` (`blocked = true`) and `/team/unblock`.
    pub async fn set_team_blocked(
        &self,
        req: BlockTeamRequest,
        blocked: bool,
        by: Option<&str>,
    ) -> Result<TeamRecord, StoreError> {
        let now = self.config().clock.now();
        let team = self
            .store()
            .update_team_with(&req.team_id, |t| {
                t.blocked = blocked;
                t.updated_at = now;
                t.updated_by = by.map(str::to_owned);
                Ok(TeamWrites::default())
            })
            .await?;
        self.after_team_change(&team, &[]);
        Ok(team)
    }

    /// `/team/delete`: the teams and their keys, all or nothing (404 if one is missing).
    pub async fn delete_teams(
        &self,
        req: DeleteTeamRequest,
        by: Option<&str>,
    ) -> Result<DeleteTeamResponse, StoreError> {
        if req.team_ids.is_empty() {
            return Err(StoreError::bad_request(
                "`team_ids` must list at least one team",
                "team_ids",
            ));
        }
        let mut ids = req.team_ids.clone();
        crate::ledger::unique_in_order(&mut ids);
        // Spend queued for the teams' keys lands before their rows go.
        self.writer().flush().await?;
        let tokens = self.store().delete_teams(&ids, by).await?;
        self.forget_and_announce(&tokens);
        self.forget_and_announce(ids.iter().map(|id| entities::team(id)));
        Ok(DeleteTeamResponse {
            deleted_teams: ids,
            deleted_keys: tokens,
        })
    }

    /// `/team/member_add`: one member or several; 400 when every one is already in the team.
    pub async fn team_member_add(
        &self,
        req: TeamMemberAddRequest,
        by: Option<&str>,
    ) -> Result<TeamMemberAddResponse, StoreError> {
        let now = self.config().clock.now();
        let new = req.member.0.clone();
        if new.is_empty() {
            return Err(StoreError::bad_request(
                "`member` must name at least one member",
                "member",
            ));
        }
        for (i, m) in new.iter().enumerate() {
            check_member(m, i)?;
        }
        let max_budget = money(req.max_budget_in_team, "max_budget_in_team")?;
        let duration = match &req.budget_duration {
            Some(d) => Some(crate::duration::LlmDuration::parse_field(
                d,
                "budget_duration",
            )?),
            None => None,
        };
        let mut budgets = Vec::new();
        let team = self
            .store()
            .update_team_with(&req.team_id, |t| {
                let existing = serde_json::to_string(&t.members_with_roles).unwrap_or_default();
                let mut added = Vec::new();
                for m in &new {
                    let dup = t
                        .members_with_roles
                        .iter()
                        .chain(added.iter())
                        .any(|e: &TeamMember| e.same_as(m.user_id.as_deref(), m.user_email.as_deref()));
                    if !dup {
                        added.push(m.clone());
                    }
                }
                if added.is_empty() {
                    let message = match new.as_slice() {
                        [one] => format!(
                            "User already in team. Member: user_id={}, user_email={}. Existing members={existing}",
                            one.user_id.as_deref().unwrap_or("None"),
                            one.user_email.as_deref().unwrap_or("None"),
                        ),
                        _ => format!("All users are already in team. Existing members={existing}"),
                    };
                    return Err(StoreError::bad_request(message, "member"));
                }
                let mut writes = TeamWrites::default();
                if max_budget.is_some() || duration.is_some() {
                    for m in &added {
                        let Some(id) = m.id() else { continue };
                        let mut b = Budget::new(entities::member(&t.team_id, id));
                        b.max_budget = max_budget;
                        b.budget_duration = req.budget_duration.clone();
                        b.budget_reset_at = duration.map(|d| d.next_reset(now));
                        writes.put.push(b);
                    }
                }
                budgets = writes.put.clone();
                t.members_with_roles.extend(added);
                t.updated_at = now;
                t.updated_by = by.map(str::to_owned);
                Ok(writes)
            })
            .await?;
        self.after_team_change(&team, &budgets);
        let updated_team_memberships = budgets
            .iter()
            .filter_map(|b| membership(&team.team_id, b))
            .collect();
        Ok(TeamMemberAddResponse {
            team,
            updated_team_memberships,
        })
    }

    /// `/team/member_delete`: 400 when the user is not in the team.
    pub async fn team_member_delete(
        &self,
        req: TeamMemberDeleteRequest,
        by: Option<&str>,
    ) -> Result<TeamRecord, StoreError> {
        if req.user_id.is_none() && req.user_email.is_none() {
            return Err(StoreError::bad_request(
                "Either `user_id` or `user_email` is required",
                "user_id",
            ));
        }
        let now = self.config().clock.now();
        let mut gone = Vec::new();
        let team = self
            .store()
            .update_team_with(&req.team_id, |t| {
                let before = t.members_with_roles.len();
                let (u, e) = (req.user_id.as_deref(), req.user_email.as_deref());
                let mut writes = TeamWrites::default();
                for m in t.members_with_roles.iter().filter(|m| m.same_as(u, e)) {
                    if let Some(id) = m.id() {
                        writes.delete.push(entities::member(&t.team_id, id));
                    }
                }
                t.members_with_roles.retain(|m| !m.same_as(u, e));
                if t.members_with_roles.len() == before {
                    return Err(StoreError::bad_request("User not found in team", "user_id"));
                }
                gone = writes.delete.clone();
                t.updated_at = now;
                t.updated_by = by.map(str::to_owned);
                Ok(writes)
            })
            .await?;
        for entity in &gone {
            self.limiter().forget(entity);
        }
        self.after_team_change(&team, &[]);
        Ok(team)
    }

    /// `/team/member_update`: the member's role and budget within the team.
    pub async fn team_member_update(
        &self,
        req: TeamMemberUpdateRequest,
        by: Option<&str>,
    ) -> Result<TeamMemberUpdateResponse, StoreError> {
        if req.user_id.is_none() && req.user_email.is_none() {
            return Err(StoreError::bad_request(
                "Either `user_id` or `user_email` is required",
                "user_id",
            ));
        }
        if let Some(role) = &req.role
            && !ROLES.contains(&role.as_str())
        {
            return Err(StoreError::bad_request(
                format!("Invalid team member role '{role}': use 'admin' or 'user'"),
                "role",
            ));
        }
        let now = self.config().clock.now();
        let patch = crate::budgets::BudgetPatch {
            max_budget: req.max_budget_in_team,
            budget_duration: req.budget_duration.clone(),
            tpm_limit: req.tpm_limit,
            rpm_limit: req.rpm_limit,
            ..Default::default()
        };
        let (u, e) = (req.user_id.as_deref(), req.user_email.as_deref());
        let Some(current) = self.store().get_team_view(&req.team_id).await? else {
            return Err(team_not_found(&req.team_id));
        };
        let Some(member) = current
            .record
            .members_with_roles
            .iter()
            .find(|m| m.same_as(u, e))
            .cloned()
        else {
            return Err(StoreError::bad_request("User not found in team", "user_id"));
        };
        let member_id = member.id().unwrap_or_default().to_owned();
        let entity = entities::member(&req.team_id, &member_id);
        let mut budget = current
            .member_budgets
            .get(&member_id)
            .cloned()
            .unwrap_or_else(|| Budget::new(entity.clone()));
        budget.apply(&patch, now)?;
        let put = budget.clone();
        let team = self
            .store()
            .update_team_with(&req.team_id, |t| {
                let Some(m) = t.members_with_roles.iter_mut().find(|m| m.same_as(u, e)) else {
                    return Err(StoreError::bad_request("User not found in team", "user_id"));
                };
                if let Some(role) = &req.role {
                    m.role = role.clone();
                }
                t.updated_at = now;
                t.updated_by = by.map(str::to_owned);
                Ok(TeamWrites {
                    put: vec![put],
                    delete: Vec::new(),
                })
            })
            .await?;
        self.after_team_change(&team, std::slice::from_ref(&budget));
        Ok(TeamMemberUpdateResponse {
            team_id: team.team_id,
            user_id: member.user_id,
            user_email: member.user_email,
            max_budget_in_team: budget.max_budget,
            budget_duration: budget.budget_duration,
            tpm_limit: budget.tpm_limit,
            rpm_limit: budget.rpm_limit,
        })
    }

    /// `/team/model/add` (`add = true`) and `/team/model/delete`.
    pub async fn team_models(
        &self,
        req: TeamModelsRequest,
        add: bool,
        by: Option<&str>,
    ) -> Result<TeamRecord, StoreError> {
        check_models(&req.models)?;
        let now = self.config().clock.now();
        let team = self
            .store()
            .update_team_with(&req.team_id, |t| {
                if add {
                    // An empty list means every model: LiteLLM keeps that meaning by
                    // writing its `all-proxy-models` first.
                    if t.models.is_empty() && !req.models.is_empty() {
                        t.models.push("all-proxy-models".to_owned());
                    }
                    for m in &req.models {
                        if !t.models.contains(m) {
                            t.models.push(m.clone());
                        }
                    }
                } else {
                    t.models.retain(|m| !req.models.contains(m));
                }
                t.updated_at = now;
                t.updated_by = by.map(str::to_owned);
                Ok(TeamWrites::default())
            })
            .await?;
        self.after_team_change(&team, &[]);
        Ok(team)
    }

    /// Whether `team_id` names a team (for keys created in it).
    pub async fn team_exists(&self, team_id: &str) -> Result<bool, StoreError> {
        Ok(self.store().get_team(team_id).await?.is_some())
    }
}
