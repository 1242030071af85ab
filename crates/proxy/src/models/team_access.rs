//! How the caller reaches each deployment, as LiteLLM's model info tells it
//! (`_populate_team_access_on_models`): `model_info.access_via_team_ids`, the caller's teams
//! whose `models` allow the deployment, and `model_info.direct_access`, whether the caller's
//! own grant (the user's `models`, narrowed by the key's) allows it. A proxy admin's teams are
//! every team and its own grant is every deployment that belongs to no team.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::CatalogEntry;
use crate::router::Router;

/// One team and its `models`.
#[derive(Debug, Clone)]
pub struct TeamGrant {
    pub team_id: String,
    pub models: Vec<String>,
}

/// What the caller may call without a team.
#[derive(Debug, Clone)]
pub enum Direct {
    /// A proxy admin: every deployment that belongs to no team.
    All,
    /// A user's `models`, then the key's (an empty list or `all-proxy-models` passes all).
    Grants { user: Vec<String>, key: Vec<String> },
    /// A key without a user (or whose user is not there): nothing, as in LiteLLM.
    Nothing,
}

/// The caller's teams and grant.
#[derive(Debug, Clone)]
pub struct Access {
    /// `None` for a caller without a user: `access_via_team_ids` is left out.
    pub teams: Option<Vec<TeamGrant>>,
    pub direct: Direct,
    /// The teams whose own deployments the caller may see; `None`: every team's (an admin).
    pub visible_teams: Option<HashSet<String>>,
    /// A proxy admin (or admin viewer): may filter by any team.
    pub admin: bool,
    /// The teams the caller's user is in (who may filter by a team).
    pub user_teams: Vec<String>,
}

const ALL: &str = "all-proxy-models";

/// Whether a `models` list grants `e`; `team` is the list's team (team deployments are only
/// ever granted to their own team). A team's list also grants everything with
/// `all-team-models`, and names the team's own deployments by their public names.
pub fn grants(models: &[String], e: &CatalogEntry, router: &Router, team: Option<&str>) -> bool {
    let every = models.is_empty()
        || models
            .iter()
            .any(|m| m == ALL || (team.is_some() && m == "all-team-models"));
    if let Some((owner, public)) = &e.team {
        return team == Some(owner.as_str())
            && (every
                || models
                    .iter()
                    .any(|m| m == public || e.access_groups.contains(m)));
    }
    every
        || models.iter().any(|m| {
            *m == e.model_name
                || e.access_groups.contains(m)
                // A router alias of the deployment's group.
                || router.group(m).is_some_and(|g| g.name == e.model_name)
        })
}

impl Access {
    /// The teams (of the caller's) that give `e`; `None` when the field is not shown for it
    /// (a caller without a user, or a team's deployment none of the caller's teams is).
    pub fn via_teams(&self, e: &CatalogEntry, router: &Router) -> Option<Vec<String>> {
        let teams = self.teams.as_ref()?;
        let via: Vec<String> = teams
            .iter()
            .filter(|t| grants(&t.models, e, router, Some(&t.team_id)))
            .map(|t| t.team_id.clone())
            .collect();
        match &e.team {
            Some((owner, _)) if !via.contains(owner) => None,
            _ => Some(via),
        }
    }

    /// Whether the caller's own grant allows `e` (never a team's deployment).
    pub fn direct(&self, e: &CatalogEntry, router: &Router) -> bool {
        if e.team.is_some() {
            return false;
        }
        match &self.direct {
            Direct::All => true,
            Direct::Grants { user, key } => {
                grants(user, e, router, None)
                    && (key.is_empty()
                        || key.iter().any(|m| m == ALL)
                        || grants(key, e, router, None))
            }
            Direct::Nothing => false,
        }
    }

    /// Whether the caller may see `e` at all: a team's deployment only by its team's callers.
    pub fn sees(&self, e: &CatalogEntry) -> bool {
        match (&e.team, &self.visible_teams) {
            (Some((owner, _)), Some(teams)) => teams.contains(owner),
            _ => true,
        }
    }

    /// `row` (a `/model/info` row of `e`) with both fields in its `model_info`.
    pub fn annotate(&self, row: &mut Value, e: &CatalogEntry, router: &Router) {
        let via = self.via_teams(e, router);
        let direct = self.direct(e, router);
        if let Some(info) = row.get_mut("model_info").and_then(Value::as_object_mut) {
            if let Some(via) = via {
                info.insert("access_via_team_ids".into(), json!(via));
            }
            info.insert("direct_access".into(), json!(direct));
        }
    }

    /// Usable by the caller: directly or through one of its teams (LiteLLM's
    /// `include_team_models` filter).
    pub fn usable(&self, e: &CatalogEntry, router: &Router) -> bool {
        self.direct(e, router) || self.via_teams(e, router).is_some_and(|v| !v.is_empty())
    }
}
