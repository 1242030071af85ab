//! `/organization/*` on the ledger, and the checks that keep a team within its organization.

use std::sync::Arc;
use std::time::Instant;

use crate::budgets::Budget;
use crate::entities;
use crate::error::{AccessError, StoreError};
use crate::ledger::Ledger;
use crate::ledger_budget_table::apply_link;
use crate::money::usd_string;
use crate::organizations::{
    DeleteOrgRequest, NewOrgRequest, ORG_ROLES, OrgInfoResponse, OrgMember, OrgMemberAddRequest,
    OrgMemberDeleteRequest, OrgMemberUpdateRequest, OrgRecord, UpdateOrgRequest,
};
use crate::organizations_db::org_not_found;
use crate::validate::models as check_models;

/// The member a request names, by user id or e-mail (one of them is needed).
struct Who<'a>(Option<&'a str>, Option<&'a str>);

impl<'a> Who<'a> {
    fn of(user_id: &'a Option<String>, email: &'a Option<String>) -> Result<Self, StoreError> {
        if user_id.is_none() && email.is_none() {
            return Err(StoreError::bad_request(
                "Either `user_id` or `user_email` is required",
                "user_id",
            ));
        }
        Ok(Who(user_id.as_deref(), email.as_deref()))
    }

    fn is(&self, m: &OrgMember) -> bool {
        (self.0.is_some() && m.user_id.as_deref() == self.0)
            || (self.1.is_some() && m.user_email.as_deref() == self.1)
    }
}

impl Ledger {
    /// The organization as the request path sees it (cached like teams).
    pub(crate) async fn org_view(&self, id: &str) -> Result<Option<Arc<OrgRecord>>, AccessError> {
        let cached = self.orgs_cache().read().get(id).cloned();
        if let Some((at, view)) = &cached
            && at.elapsed() < self.config().cache_ttl
        {
            return Ok(view.clone());
        }
        match self.store().get_org(id).await {
            Ok(org) => {
                let org = org.map(Arc::new);
                if let Some(o) = &org {
                    self.limiter()
                        .reconfigure(&o.litellm_budget_table.key_limits(), false);
                }
                let mut map = self.orgs_cache().write();
                if map.len() > 100_000 {
                    map.clear();
                }
                map.insert(id.to_owned(), (Instant::now(), org.clone()));
                Ok(org)
            }
            Err(e) => {
                tracing::warn!(error = %e, "organization lookup failed");
                match cached {
                    Some((_, org)) => Ok(org),
                    None => Err(AccessError::Unavailable),
                }
            }
        }
    }

    /// A team joining or changing within `org_id`: the organization must exist, the team's
    /// models must be among the organization's, its budget not above the organization's.
    pub(crate) async fn check_team_in_org(
        &self,
        org_id: &str,
        team_budget: &Budget,
        team_models: &[String],
    ) -> Result<(), StoreError> {
        let Some(org) = self.store().get_org(org_id).await? else {
            return Err(StoreError::bad_request(
                format!("Organization not found for organization_id={org_id}"),
                "organization_id",
            ));
        };
        let org_budget = &org.litellm_budget_table;
        if let (Some(team), Some(max)) = (team_budget.max_budget, org_budget.max_budget)
            && team > max
        {
            return Err(StoreError::bad_request(
                format!(
                    "Team max_budget ({}) exceeds organization's max_budget ({}). Organization: {org_id}",
                    usd_string(team),
                    usd_string(max)
                ),
                "max_budget",
            ));
        }
        if !org.models.is_empty() {
            for m in team_models {
                if !org.models.contains(m) {
                    return Err(StoreError::bad_request(
                        format!(
                            "Model '{m}' not in organization's allowed models. Organization allowed models={:?}. Organization: {org_id}",
                            org.models
                        ),
                        "models",
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn after_org_change(&self, o: &OrgRecord) {
        self.limiter()
            .reconfigure(&o.litellm_budget_table.key_limits(), false);
        self.invalidate_and_announce(&entities::org(&o.organization_id));
    }

    /// `/organization/new`.
    pub async fn new_org(
        &self,
        req: NewOrgRequest,
        by: Option<&str>,
    ) -> Result<OrgRecord, StoreError> {
        let now = self.config().clock.now();
        let id = match req.organization_id.as_deref().map(str::trim) {
            Some("") | None => uuid::Uuid::new_v4().to_string(),
            Some(id) => id.to_owned(),
        };
        if id.contains(':') {
            return Err(StoreError::bad_request(
                format!("organization_id '{id}' may not contain ':'"),
                "organization_id",
            ));
        }
        let models = req.models.clone().unwrap_or_default();
        check_models(&models)?;
        let mut budget = Budget::new(entities::org(&id));
        let link = self
            .link_for(&req.budget_id.clone().map(Some), &req.budget)
            .await?;
        let mut budget_id = None;
        let who = format!("Organization {id}");
        apply_link(&link, &mut budget_id, &mut budget, &req.budget, &who, now)?;
        let mut o = OrgRecord {
            organization_id: id,
            organization_alias: Some(req.organization_alias.clone()),
            models,
            metadata: req.metadata.clone().unwrap_or_default(),
            members: Vec::new(),
            spend: 0,
            litellm_budget_table: budget,
            budget_id,
            created_at: now,
            created_by: by.map(str::to_owned),
            updated_at: now,
        };
        self.store().insert_org(&mut o).await?;
        self.after_org_change(&o);
        Ok(o)
    }

    /// `/organization/info`: the organization (spend as the limiter counts it) and its teams.
    pub async fn org_info(&self, id: &str) -> Result<OrgInfoResponse, StoreError> {
        let mut org = self
            .store()
            .get_org(id)
            .await?
            .ok_or_else(|| org_not_found(id))?;
        if let Some(live) = self.limiter().live(&org.litellm_budget_table.entity).await {
            org.spend = live.spend;
            org.litellm_budget_table.spend = live.spend;
        }
        let teams = self.store().list_teams(Some(id)).await?;
        Ok(OrgInfoResponse { org, teams })
    }

    pub async fn list_orgs(&self) -> Result<Vec<OrgRecord>, StoreError> {
        self.store().list_orgs().await
    }

    /// `/organization/update`.
    pub async fn update_org(&self, req: UpdateOrgRequest) -> Result<OrgRecord, StoreError> {
        let now = self.config().clock.now();
        if let Some(m) = &req.models {
            check_models(m)?;
        }
        let link = self.link_for(&req.budget_id, &req.budget).await?;
        let o = self
            .store()
            .update_org_with(&req.organization_id, |o, _teams| {
                let mut next = o.clone();
                let who = format!("Organization {}", o.organization_id);
                apply_link(
                    &link,
                    &mut next.budget_id,
                    &mut next.litellm_budget_table,
                    &req.budget,
                    &who,
                    now,
                )?;
                if let Some(a) = &req.organization_alias {
                    next.organization_alias = a.clone();
                }
                if let Some(m) = &req.models {
                    next.models = m.clone();
                }
                if let Some(m) = &req.metadata {
                    next.metadata = m.clone();
                }
                next.updated_at = now;
                *o = next;
                Ok(())
            })
            .await?;
        self.after_org_change(&o);
        Ok(o)
    }

    /// `/organization/delete`: all named or none; one with teams is refused.
    pub async fn delete_orgs(&self, req: DeleteOrgRequest) -> Result<Vec<String>, StoreError> {
        if req.organization_ids.is_empty() {
            return Err(StoreError::bad_request(
                "`organization_ids` must list at least one organization",
                "organization_ids",
            ));
        }
        self.store().delete_orgs(&req.organization_ids).await?;
        self.forget_and_announce(req.organization_ids.iter().map(|id| entities::org(id)));
        Ok(req.organization_ids)
    }

    /// `/organization/member_add`: 400 when every one is already a member.
    pub async fn org_member_add(&self, req: OrgMemberAddRequest) -> Result<OrgRecord, StoreError> {
        let now = self.config().clock.now();
        for (i, m) in req.member.0.iter().enumerate() {
            if m.user_id.is_none() && m.user_email.is_none() {
                return Err(StoreError::bad_request(
                    "Either `user_id` or `user_email` must be set for an organization member",
                    format!("member[{i}]"),
                ));
            }
            if !ORG_ROLES.contains(&m.user_role.as_str()) {
                return Err(StoreError::bad_request(
                    format!(
                        "Invalid organization role '{}': use one of {}",
                        m.user_role,
                        ORG_ROLES.join(", ")
                    ),
                    format!("member[{i}].user_role"),
                ));
            }
        }
        let o = self
            .store()
            .update_org_with(&req.organization_id, |o, _| {
                let mut added = 0;
                for m in &req.member.0 {
                    let dup = o.members.iter().any(|e| {
                        (m.user_id.is_some() && e.user_id == m.user_id)
                            || (m.user_email.is_some() && e.user_email == m.user_email)
                    });
                    if !dup {
                        o.members.push(m.clone());
                        added += 1;
                    }
                }
                if added == 0 {
                    return Err(StoreError::bad_request(
                        "User already in organization",
                        "member",
                    ));
                }
                o.updated_at = now;
                Ok(())
            })
            .await?;
        self.after_org_change(&o);
        Ok(o)
    }

    /// `/organization/member_update`: a member's role. The member as it is now; 404 when the
    /// user is not a member.
    pub async fn org_member_update(
        &self,
        req: OrgMemberUpdateRequest,
    ) -> Result<OrgMember, StoreError> {
        let now = self.config().clock.now();
        let who = Who::of(&req.user_id, &req.user_email)?;
        if let Some(r) = &req.role
            && !ORG_ROLES.contains(&r.as_str())
        {
            return Err(StoreError::bad_request(
                format!("Invalid role. Must be one of: {}", ORG_ROLES.join(", ")),
                "role",
            ));
        }
        let mut updated = None;
        let o = self
            .store()
            .update_org_with(&req.organization_id, |o, _| {
                let Some(m) = o.members.iter_mut().find(|m| who.is(m)) else {
                    return Err(StoreError::NotFound {
                        message: format!(
                            "Member not found in organization for user_id={}",
                            who.0.or(who.1).unwrap_or_default()
                        ),
                        param: Some("user_id"),
                    });
                };
                if let Some(r) = &req.role {
                    m.user_role.clone_from(r);
                }
                updated = Some(m.clone());
                o.updated_at = now;
                Ok(())
            })
            .await?;
        self.after_org_change(&o);
        updated.ok_or_else(|| StoreError::Internal("the member update saw no member".into()))
    }

    /// `POST /organization/info` (LiteLLM's older form): the named organizations that exist.
    pub async fn orgs_named(&self, ids: &[String]) -> Result<Vec<OrgRecord>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(o) = self.store().get_org(id).await? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// `/organization/member_delete`: 400 when the user is not a member.
    pub async fn org_member_delete(
        &self,
        req: OrgMemberDeleteRequest,
    ) -> Result<OrgRecord, StoreError> {
        let now = self.config().clock.now();
        let who = Who::of(&req.user_id, &req.user_email)?;
        let o = self
            .store()
            .update_org_with(&req.organization_id, |o, _| {
                let before = o.members.len();
                o.members.retain(|m| !who.is(m));
                if o.members.len() == before {
                    return Err(StoreError::bad_request(
                        "User not found in organization",
                        "user_id",
                    ));
                }
                o.updated_at = now;
                Ok(())
            })
            .await?;
        self.after_org_change(&o);
        Ok(o)
    }
}
