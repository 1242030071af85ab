//! `/user/*` on the ledger: users change in the database in one transaction, then the limiter
//! takes their new limits and every instance drops its cached copy.

use std::sync::Arc;
use std::time::Instant;

use crate::budgets::Budget;
use crate::entities;
use crate::error::{AccessError, StoreError};
use crate::ledger::{Ledger, PROXY_BUDGET_USER};
use crate::types::{GenerateKeyRequest, KeyListQuery, KeyObject};
use crate::users::{
    DeleteUserRequest, DeleteUserResponse, NewUserRequest, NewUserResponse, USER_ROLES,
    UpdateUserRequest, UserInfoResponse, UserListQuery, UserListResponse, UserRecord,
};
use crate::users_db::user_not_found;
use crate::validate::models as check_models;

fn check_role(role: &str) -> Result<(), StoreError> {
    if USER_ROLES.contains(&role) {
        Ok(())
    } else {
        Err(StoreError::bad_request(
            format!(
                "Invalid user_role '{role}': use one of {}",
                USER_ROLES.join(", ")
            ),
            "user_role",
        ))
    }
}

impl Ledger {
    /// The user as the request path sees it (cached like teams; `None`: no such user).
    pub(crate) async fn user_view(
        &self,
        user_id: &str,
    ) -> Result<Option<Arc<UserRecord>>, AccessError> {
        let cached = self.users_cache().read().get(user_id).cloned();
        if let Some((at, view)) = &cached
            && at.elapsed() < self.config().cache_ttl
        {
            return Ok(view.clone());
        }
        match self.store().get_user(user_id).await {
            Ok(user) => {
                let user = user.map(Arc::new);
                if let Some(u) = &user {
                    self.limiter().reconfigure(&u.budget.key_limits(), false);
                }
                let mut users = self.users_cache().write();
                if users.len() > 100_000 {
                    users.clear();
                }
                users.insert(user_id.to_owned(), (Instant::now(), user.clone()));
                Ok(user)
            }
            Err(e) => {
                tracing::warn!(error = %e, "user lookup failed");
                match cached {
                    Some((_, user)) => Ok(user),
                    None => Err(AccessError::Unavailable),
                }
            }
        }
    }

    fn after_user_change(&self, user: &UserRecord) {
        self.limiter().reconfigure(&user.budget.key_limits(), false);
        self.invalidate_and_announce(&entities::user(&user.user_id));
    }

    /// The role of `user_id`, read from the database (admin routes only).
    pub async fn user_role(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.store().get_user(user_id).await?.map(|u| u.user_role))
    }

    /// The teams `user_id` is a member of.
    async fn teams_of(&self, user_id: &str) -> Result<Vec<crate::teams::TeamRecord>, StoreError> {
        let mut teams = self.store().list_teams(None).await?;
        teams.retain(|t| t.members.iter().any(|m| m == user_id));
        Ok(teams)
    }

    /// `/user/new`: the user, in `teams` as a member, and (unless `auto_create_key: false`)
    /// a key of theirs.
    pub async fn new_user(
        &self,
        req: NewUserRequest,
        by: Option<&str>,
    ) -> Result<NewUserResponse, StoreError> {
        let now = self.config().clock.now();
        let role = req
            .user_role
            .clone()
            .unwrap_or_else(|| "internal_user".to_string());
        check_role(&role)?;
        let user_id = match req.user_id.as_deref().map(str::trim) {
            Some("") | None => uuid::Uuid::new_v4().to_string(),
            Some(id) => id.to_owned(),
        };
        if user_id.contains(':') {
            return Err(StoreError::bad_request(
                format!("user_id '{user_id}' may not contain ':'"),
                "user_id",
            ));
        }
        let models = req.models.clone().unwrap_or_default();
        check_models(&models)?;
        let mut budget = Budget::new(entities::user(&user_id));
        budget.apply(&req.budget, now)?;
        let teams = req.teams.clone().unwrap_or_default();
        let mut user = UserRecord {
            user_id,
            user_email: req.user_email.clone(),
            user_alias: req.user_alias.clone(),
            user_role: role,
            models,
            metadata: req.metadata.clone().unwrap_or_default(),
            teams: teams.clone(),
            budget,
            created_at: now,
            updated_at: now,
        };
        self.store().insert_user(&user, &teams).await?;
        self.after_user_change(&user);
        for t in &teams {
            self.invalidate_and_announce(&entities::team(t));
        }
        let (key, token_id) = if req.auto_create_key.unwrap_or(true) {
            let generated = self
                .generate_key(
                    GenerateKeyRequest {
                        user_id: Some(user.user_id.clone()),
                        key_alias: req.key_alias.clone(),
                        ..GenerateKeyRequest::default()
                    },
                    by,
                )
                .await?;
            (Some(generated.key), Some(generated.token_id))
        } else {
            (None, None)
        };
        user.updated_at = now;
        Ok(NewUserResponse {
            key,
            token_id,
            user,
        })
    }

    /// `/user/info`: the user, their keys and their teams; spend as the limiter counts it.
    pub async fn user_info(&self, user_id: &str) -> Result<UserInfoResponse, StoreError> {
        let Some(mut user) = self.store().get_user(user_id).await? else {
            return Err(user_not_found(user_id));
        };
        if let Some(live) = self.limiter().live(&user.budget.entity).await {
            user.budget.spend = live.spend;
        }
        let teams = self.teams_of(user_id).await?;
        user.teams = teams.iter().map(|t| t.team_id.clone()).collect();
        let q = KeyListQuery {
            user_id: Some(user_id.to_owned()),
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
        Ok(UserInfoResponse {
            user_id: user_id.to_owned(),
            user_info: user,
            keys,
            teams,
        })
    }

    /// `/user/update`: only the fields present change.
    pub async fn update_user(&self, req: UpdateUserRequest) -> Result<UserRecord, StoreError> {
        if req.budget.sets_any() && req.user_id.as_deref() == Some(PROXY_BUDGET_USER) {
            self.refuse_proxy_budget_change()?;
        }
        self.apply_user_update(req).await
    }

    /// The proxy-wide budget is the config's: its user's budget is not changed, nor the
    /// user deleted, over the API while `litellm_settings.max_budget` is set (a deleted one
    /// would leave calls unbounded until the next start).
    fn refuse_proxy_budget_change(&self) -> Result<(), StoreError> {
        if self.config().proxy_budget.is_none() {
            return Ok(());
        }
        Err(StoreError::bad_request(
            format!(
                "{PROXY_BUDGET_USER} holds the proxy-wide budget (litellm_settings.max_budget, budget_duration): change it in the config"
            ),
            "user_id",
        ))
    }

    /// [`Ledger::update_user`] without the proxy-budget guard (which keeps that user itself).
    pub(crate) async fn apply_user_update(
        &self,
        req: UpdateUserRequest,
    ) -> Result<UserRecord, StoreError> {
        let now = self.config().clock.now();
        let user_id = match (&req.user_id, &req.user_email) {
            (Some(id), _) => id.clone(),
            (None, Some(email)) => self
                .store()
                .user_id_by_email(email)
                .await?
                .ok_or_else(|| user_not_found(email))?,
            (None, None) => {
                return Err(StoreError::bad_request(
                    "Either `user_id` or `user_email` is required to identify the user",
                    "user_id",
                ));
            }
        };
        if let Some(r) = &req.user_role {
            check_role(r)?;
        }
        if let Some(m) = &req.models {
            check_models(m)?;
        }
        let user = self
            .store()
            .update_user_with(&user_id, |u| {
                let mut next = u.clone();
                next.budget.apply(&req.budget, now)?;
                if req.user_id.is_some()
                    && let Some(e) = &req.user_email
                {
                    next.user_email = Some(e.clone());
                }
                if let Some(v) = &req.user_alias {
                    next.user_alias = v.clone();
                }
                if let Some(v) = &req.user_role {
                    next.user_role = v.clone();
                }
                if let Some(v) = &req.models {
                    next.models = v.clone();
                }
                if let Some(v) = &req.metadata {
                    next.metadata = v.clone();
                }
                next.updated_at = now;
                *u = next;
                Ok(())
            })
            .await?;
        self.after_user_change(&user);
        Ok(user)
    }

    /// `/user/delete`: the users, their keys and memberships; all or nothing.
    pub async fn delete_users(
        &self,
        req: DeleteUserRequest,
        by: Option<&str>,
    ) -> Result<DeleteUserResponse, StoreError> {
        if req.user_ids.is_empty() {
            return Err(StoreError::bad_request(
                "`user_ids` must list at least one user",
                "user_ids",
            ));
        }
        if req.user_ids.iter().any(|id| id == PROXY_BUDGET_USER) {
            self.refuse_proxy_budget_change()?;
        }
        let mut ids = req.user_ids.clone();
        crate::ledger::unique_in_order(&mut ids);
        self.writer().flush().await?;
        let (tokens, teams) = self.store().delete_users(&ids, by).await?;
        self.forget_and_announce(&tokens);
        self.forget_and_announce(ids.iter().map(|id| entities::user(id)));
        for t in &teams {
            self.invalidate_and_announce(&entities::team(t));
        }
        Ok(DeleteUserResponse {
            deleted_users: ids,
            deleted_keys: tokens,
        })
    }

    /// Every user, each with the teams they are a member of.
    pub async fn users_with_teams(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut users = self.store().all_users().await?;
        let teams = self.store().list_teams(None).await?;
        for u in &mut users {
            u.teams = teams
                .iter()
                .filter(|t| t.members.iter().any(|m| m == &u.user_id))
                .map(|t| t.team_id.clone())
                .collect();
        }
        Ok(users)
    }

    /// One user with the teams they are a member of (`None`: no such user).
    pub async fn user_with_teams(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        let Some(mut user) = self.store().get_user(user_id).await? else {
            return Ok(None);
        };
        user.teams = self
            .teams_of(user_id)
            .await?
            .into_iter()
            .map(|t| t.team_id)
            .collect();
        Ok(Some(user))
    }

    /// `/v2/user/info`: one user with their team ids, spend as the limiter counts it.
    pub async fn user_v2(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        let Some(mut user) = self.user_with_teams(user_id).await? else {
            return Ok(None);
        };
        if let Some(live) = self.limiter().live(&user.budget.entity).await {
            user.budget.spend = live.spend;
        }
        Ok(Some(user))
    }

    /// `/user/list`: a page of users, optionally of one role or among named ids.
    pub async fn list_users(&self, q: &UserListQuery) -> Result<UserListResponse, StoreError> {
        let page = q.page.unwrap_or(1);
        let page_size = q.page_size.unwrap_or(25);
        if page == 0 {
            return Err(StoreError::bad_request("page must be >= 1", "page"));
        }
        if page_size == 0 || page_size > 100 {
            return Err(StoreError::bad_request(
                "page_size must be between 1 and 100",
                "page_size",
            ));
        }
        let mut users = self.users_with_teams().await?;
        if let Some(role) = &q.role {
            users.retain(|u| &u.user_role == role);
        }
        if let Some(ids) = &q.user_ids {
            let ids: Vec<&str> = ids.split(',').map(str::trim).collect();
            users.retain(|u| ids.contains(&u.user_id.as_str()));
        }
        let total = users.len() as u64;
        let start = (page as usize - 1).saturating_mul(page_size as usize);
        let users: Vec<UserRecord> = users
            .into_iter()
            .skip(start)
            .take(page_size as usize)
            .collect();
        Ok(UserListResponse {
            users,
            total,
            page,
            page_size,
            total_pages: total.div_ceil(u64::from(page_size)),
        })
    }
}
