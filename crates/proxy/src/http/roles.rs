//! LiteLLM's user roles on the admin routes. The master key (and the dashboard session) is the
//! proxy admin; a virtual key acts with the role of its user (`/user/new`'s `user_role`):
//! `proxy_admin` does everything, `proxy_admin_viewer` reads everything and changes nothing,
//! `internal_user` manages their own keys and reads their own user and teams,
//! `internal_user_viewer` only reads those. A key without a user is treated as an internal
//! user without a user id: it reads its own key and team.

use http::HeaderMap;

use super::keys::{ADMIN_USER, Mgmt, caller, forbidden};
use crate::auth::Principal;
use crate::error::ProxyError;
use crate::ledger::seams::store_error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The master key, or a key of a `proxy_admin` user (the user's id).
    Admin(String),
    AdminViewer(String),
    Internal(String),
    InternalViewer(String),
    /// A key without a user.
    KeyOnly,
}

impl Role {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Role::Admin(_) => "proxy_admin",
            Role::AdminViewer(_) => "proxy_admin_viewer",
            Role::Internal(_) | Role::KeyOnly => "internal_user",
            Role::InternalViewer(_) => "internal_user_viewer",
        }
    }

    /// Reads every key, user, team and spend row.
    pub(crate) fn reads_all(&self) -> bool {
        matches!(self, Role::Admin(_) | Role::AdminViewer(_))
    }

    /// The user this caller acts as, when it is not an admin.
    pub(crate) fn own_user(&self) -> Option<&str> {
        match self {
            Role::Internal(u) | Role::InternalViewer(u) => Some(u),
            _ => None,
        }
    }

    /// Whose data a read answers with: `None` for a caller who reads everything, their own user
    /// for an internal user; anyone else (a key without a user) is refused.
    pub(crate) fn reads_as(&self, route: &str) -> Result<Option<&str>, ProxyError> {
        if self.reads_all() {
            return Ok(None);
        }
        match self.own_user() {
            Some(u) => Ok(Some(u)),
            None => Err(not_allowed(route, self)),
        }
    }

    /// Whether the caller may read this key: everything for an admin, an internal user their
    /// own keys.
    pub(crate) fn reads_key(&self, key: &idlehands_store::KeyRecord) -> bool {
        self.reads_all()
            || self
                .own_user()
                .is_some_and(|u| key.user_id.as_deref() == Some(u))
    }

    /// Who the change is recorded as (`created_by`, `updated_by`).
    pub(crate) fn by(&self) -> Option<&str> {
        match self {
            Role::Admin(u) | Role::AdminViewer(u) | Role::Internal(u) | Role::InternalViewer(u) => {
                Some(u)
            }
            Role::KeyOnly => None,
        }
    }
}

/// The caller's role.
pub(crate) async fn role_of(m: &Mgmt, p: &Principal) -> Result<Role, ProxyError> {
    let vk = match p {
        Principal::Master { .. } | Principal::Anonymous => {
            return Ok(Role::Admin(ADMIN_USER.to_string()));
        }
        Principal::JwtAdmin(a) => {
            return Ok(Role::Admin(
                a.user_id.clone().unwrap_or_else(|| ADMIN_USER.to_string()),
            ));
        }
        Principal::VirtualKey(vk) => vk,
    };
    let Some(user) = vk.user_id.clone() else {
        return Ok(Role::KeyOnly);
    };
    let role = m
        .ledger
        .user_role(&user)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(match role.as_deref() {
        Some("proxy_admin") => Role::Admin(user),
        Some("proxy_admin_viewer") => Role::AdminViewer(user),
        Some("internal_user_viewer") => Role::InternalViewer(user),
        // A user id without a user row, as in LiteLLM, acts as an internal user.
        _ => Role::Internal(user),
    })
}

/// The caller and its role.
pub(crate) async fn caller_role(
    m: &Mgmt,
    headers: &HeaderMap,
) -> Result<(Principal, Role), ProxyError> {
    let p = caller(m, headers).await?;
    let role = role_of(m, &p).await?;
    Ok((p, role))
}

/// LiteLLM's refusal of a route the role may not use.
pub(crate) fn not_allowed(route: &str, role: &Role) -> ProxyError {
    forbidden(format!(
        "Only proxy admin can be used to generate, delete, update info for new keys/users/teams. Route={route}. Your role={}",
        role.name()
    ))
}

/// Whether `user` is an admin of the team `team_id` (no such team: no).
pub(crate) async fn admin_of_team(m: &Mgmt, team_id: &str, user: &str) -> Result<bool, ProxyError> {
    let team = m
        .ledger
        .store()
        .get_team(team_id)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(team.is_some_and(|t| t.admins.iter().any(|a| a == user)))
}

/// The caller must be a proxy admin; returns who it is recorded as.
pub(crate) async fn require_admin(
    m: &Mgmt,
    headers: &HeaderMap,
    route: &str,
) -> Result<Option<String>, ProxyError> {
    let (_, role) = caller_role(m, headers).await?;
    match &role {
        Role::Admin(u) => Ok(Some(u.clone())),
        _ => Err(not_allowed(route, &role)),
    }
}

/// The caller must read everything (proxy admin or proxy admin viewer).
pub(crate) async fn require_reader(
    m: &Mgmt,
    headers: &HeaderMap,
    route: &str,
) -> Result<Role, ProxyError> {
    let (_, role) = caller_role(m, headers).await?;
    if role.reads_all() {
        Ok(role)
    } else {
        Err(not_allowed(route, &role))
    }
}
