//! Calls made with a JWT (LiteLLM's `enable_jwt_auth`) instead of a stored key: the team and
//! user the token names stand where a key's would, so their budgets, limits, models and member
//! budget hold the call exactly as for a key of theirs; the call's row names no key.

use std::sync::Arc;

use chrono::DateTime;

use crate::entities;
use crate::error::AccessError;
use crate::ledger::{AuthedKey, Ledger};
use crate::types::{JsonMap, KeyRecord};
use crate::users::NewUserRequest;

/// The token a JWT caller is held under in memory (never stored, never a row's `api_key`; a
/// key's is 64 hex digits): one per team and user, so calls of the same pair share their
/// in-flight counts. The team's length keeps any two pairs apart.
pub(crate) fn jwt_token(team_id: Option<&str>, user_id: Option<&str>) -> String {
    let team = team_id.unwrap_or_default();
    format!(
        "{JWT_TOKEN_PREFIX}{}:{team}{}",
        team.len(),
        user_id.unwrap_or_default()
    )
}

/// What every [`jwt_token`] starts with.
pub const JWT_TOKEN_PREFIX: &str = "jwt:";

impl Ledger {
    /// The caller a verified token names: its team (which must exist and not be blocked, as a
    /// key's), its user (which must exist, unless `upsert` creates it: LiteLLM's
    /// `user_id_upsert`, with the token's `user_email`). A team's token may call
    /// `team_routes` only.
    pub async fn authenticate_claims(
        &self,
        team_id: Option<&str>,
        user_id: Option<&str>,
        team_routes: &[String],
        upsert: Option<(&NewUserRequest, Option<&str>)>,
    ) -> Result<AuthedKey, AccessError> {
        let team = match team_id {
            Some(id) => match self.team_view(id).await? {
                Some(t) if t.record.blocked => {
                    return Err(AccessError::TeamBlocked {
                        team_id: t.record.team_id.clone(),
                    });
                }
                Some(t) => Some(t),
                None => {
                    return Err(AccessError::TeamNotFound {
                        team_id: id.to_owned(),
                    });
                }
            },
            None => None,
        };
        let user = match user_id {
            Some(id) => match self.user_view(id).await? {
                Some(u) => Some(u),
                None => match upsert {
                    Some((req, email)) => {
                        let mut req = req.clone();
                        if let Some(e) = email {
                            req.user_email = Some(e.to_owned());
                        }
                        Some(self.upsert_user(id, req).await?)
                    }
                    None => {
                        return Err(AccessError::UserNotFound {
                            user_id: id.to_owned(),
                        });
                    }
                },
            },
            None => None,
        };
        let org_id = team.as_ref().and_then(|t| t.record.organization_id.clone());
        let org = match org_id.as_deref() {
            Some(id) => self.org_view(id).await?,
            None => None,
        };
        let token = jwt_token(team_id, user_id);
        let mut record = claims_record(&token, team_id, user_id, org_id);
        if team.is_some() {
            record.allowed_routes = team_routes.to_vec();
        }
        Ok(AuthedKey {
            token,
            record: Arc::new(record),
            team,
            user,
            org,
        })
    }

    /// Creates the user a token names; a concurrent first call that created it first wins.
    async fn upsert_user(
        &self,
        user_id: &str,
        mut req: NewUserRequest,
    ) -> Result<Arc<crate::users::UserRecord>, AccessError> {
        req.user_id = Some(user_id.to_owned());
        req.auto_create_key = Some(false);
        // A user made here is announced by `new_user`; one made meanwhile by another call
        // was, but this instance may have cached its absence after that.
        if let Err(e) = self.new_user(req, None).await {
            tracing::debug!(error = %e, user_id, "JWT user upsert: creating the user failed; reading it");
            self.invalidate_and_announce(&entities::user(user_id));
        }
        match self.user_view(user_id).await? {
            Some(u) => Ok(u),
            None => Err(AccessError::UserNotFound {
                user_id: user_id.to_owned(),
            }),
        }
    }
}

/// A key record with nothing of its own: the token's team and user carry every limit.
fn claims_record(
    token: &str,
    team_id: Option<&str>,
    user_id: Option<&str>,
    organization_id: Option<String>,
) -> KeyRecord {
    let epoch = DateTime::UNIX_EPOCH;
    KeyRecord {
        token: token.to_owned(),
        key_name: String::new(),
        key_alias: None,
        spend: 0,
        max_budget: None,
        soft_budget: None,
        budget_duration: None,
        budget_reset_at: None,
        expires: None,
        models: Vec::new(),
        aliases: JsonMap::new(),
        config: JsonMap::new(),
        permissions: JsonMap::new(),
        metadata: JsonMap::new(),
        user_id: user_id.map(str::to_owned),
        team_id: team_id.map(str::to_owned),
        organization_id,
        tpm_limit: None,
        rpm_limit: None,
        max_parallel_requests: None,
        blocked: false,
        created_at: epoch,
        created_by: None,
        updated_at: epoch,
        updated_by: None,
        allowed_routes: Vec::new(),
        key_type: None,
        model_max_budget: JsonMap::new(),
        allowed_cache_controls: Vec::new(),
        budget_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_tokens_name_the_pair_and_never_look_like_a_key_hash() {
        assert_ne!(
            jwt_token(Some("team-a"), None),
            jwt_token(None, Some("team-a"))
        );
        assert_ne!(jwt_token(Some("a"), Some("b")), jwt_token(Some("ab"), None));
        assert_ne!(
            jwt_token(Some("a"), Some("bc")),
            jwt_token(Some("ab"), Some("c"))
        );
        assert!(jwt_token(None, None).starts_with("jwt:"));
    }
}
