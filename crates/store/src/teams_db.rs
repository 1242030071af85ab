//! Team rows and their budgets in the database. Every change is one transaction: the team
//! row, its budget and its members' budgets change together or not at all.

use chrono::Utc;
use sqlx::Row;

use crate::budgets::{BUDGET_COLS, Budget, put_budget, read_budget};
use crate::db::{BeginWrite, Store, from_ms, json_text, on_db, to_ms};
use crate::entities;
use crate::error::StoreError;
use crate::teams::{TeamRecord, TeamView};

const TEAM_COLS: &str = "team_id, team_alias, organization_id, models, metadata, members, \
    blocked, created_at, created_by, updated_at, updated_by";

fn json_col<T: serde::de::DeserializeOwned + Default>(text: String) -> T {
    serde_json::from_str(&text).unwrap_or_default()
}

macro_rules! team_from_row {
    ($row:expr, $budget:expr) => {{
        let row = $row;
        let mut team = TeamRecord {
            team_id: row.try_get("team_id")?,
            team_alias: row.try_get("team_alias")?,
            organization_id: row.try_get("organization_id")?,
            admins: Vec::new(),
            members: Vec::new(),
            members_with_roles: json_col(row.try_get("members")?),
            models: json_col(row.try_get("models")?),
            metadata: json_col(row.try_get("metadata")?),
            blocked: row.try_get("blocked")?,
            budget: $budget,
            created_at: from_ms(row.try_get("created_at")?),
            created_by: row.try_get("created_by")?,
            updated_at: from_ms(row.try_get("updated_at")?),
            updated_by: row.try_get("updated_by")?,
        };
        team.derive_member_lists();
        team
    }};
}

pub(crate) fn team_not_found(team_id: &str) -> StoreError {
    StoreError::NotFound {
        message: format!("Team not found, passed team_id={team_id}"),
        param: Some("team_id"),
    }
}

/// What a team change writes besides the team row.
#[derive(Debug, Default)]
pub(crate) struct TeamWrites {
    /// Budgets to create or reconfigure (members' budgets).
    pub put: Vec<Budget>,
    /// Budgets to remove (members that left or lost their budget).
    pub delete: Vec<String>,
}

macro_rules! write_team {
    ($tx:expr, $t:expr) => {{
        let t = $t;
        sqlx::query(
            "UPDATE idlehands_teams SET team_alias = $2, organization_id = $3, models = $4, \
             metadata = $5, members = $6, blocked = $7, updated_at = $8, updated_by = $9 \
             WHERE team_id = $1",
        )
        .bind(&t.team_id)
        .bind(t.team_alias.clone())
        .bind(t.organization_id.clone())
        .bind(json_text(&t.models))
        .bind(json_text(&t.metadata))
        .bind(json_text(&t.members_with_roles))
        .bind(t.blocked)
        .bind(to_ms(t.updated_at))
        .bind(t.updated_by.clone())
        .execute(&mut *$tx)
        .await?;
    }};
}

impl Store {
    /// Creates the team and its budget; 400 when the id is taken.
    pub(crate) async fn insert_team(
        &self,
        team: &TeamRecord,
        writes: &TeamWrites,
    ) -> Result<(), StoreError> {
        let insert = format!(
            "INSERT INTO idlehands_teams ({TEAM_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        let now = to_ms(Utc::now());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let taken: Option<String> =
                sqlx::query_scalar("SELECT team_id FROM idlehands_teams WHERE team_id = $1")
                    .bind(&team.team_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if taken.is_some() {
                return Err(StoreError::bad_request(
                    format!("Team id = {} already exists. Please use a different team id.", team.team_id),
                    "team_id",
                ));
            }
            sqlx::query(&insert)
                .bind(&team.team_id)
                .bind(team.team_alias.clone())
                .bind(team.organization_id.clone())
                .bind(json_text(&team.models))
                .bind(json_text(&team.metadata))
                .bind(json_text(&team.members_with_roles))
                .bind(team.blocked)
                .bind(to_ms(team.created_at))
                .bind(team.created_by.clone())
                .bind(to_ms(team.updated_at))
                .bind(team.updated_by.clone())
                .execute(&mut *tx)
                .await?;
            // Spend left by an earlier team of the same id (calls settled after its delete)
            // is not this team's.
            sqlx::query("DELETE FROM idlehands_budgets WHERE entity = $1")
                .bind(&team.budget.entity)
                .execute(&mut *tx)
                .await?;
            put_budget!(tx, &team.budget, now);
            for b in &writes.put {
                put_budget!(tx, b, now);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The team with its budget (spend as committed), or `None`.
    pub async fn get_team(&self, team_id: &str) -> Result<Option<TeamRecord>, StoreError> {
        let sql = format!("SELECT {TEAM_COLS} FROM idlehands_teams WHERE team_id = $1");
        let entity = entities::team(team_id);
        let team = on_db!(&self.db, pool => {
            match sqlx::query(&sql).bind(team_id).fetch_optional(pool).await? {
                Some(row) => {
                    let budget = read_budget!(pool, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
                    Some(team_from_row!(&row, budget))
                }
                None => None,
            }
        });
        Ok(team)
    }

    /// The team and the budgets of its members that have one, for the request path.
    pub async fn get_team_view(&self, team_id: &str) -> Result<Option<TeamView>, StoreError> {
        let Some(record) = self.get_team(team_id).await? else {
            return Ok(None);
        };
        let mut member_budgets = std::collections::HashMap::new();
        for m in &record.members_with_roles {
            let Some(id) = m.id() else { continue };
            if let Some(b) = self.get_budget(&entities::member(team_id, id)).await? {
                member_budgets.insert(id.to_owned(), b);
            }
        }
        Ok(Some(TeamView {
            record,
            member_budgets,
        }))
    }

    /// Every team (oldest first), optionally of one organization.
    pub async fn list_teams(
        &self,
        organization_id: Option<&str>,
    ) -> Result<Vec<TeamRecord>, StoreError> {
        let sql = format!(
            "SELECT t.team_id AS team_id, t.team_alias AS team_alias, \
             t.organization_id AS organization_id, t.models AS models, t.metadata AS metadata, \
             t.members AS members, t.blocked AS blocked, t.created_at AS created_at, \
             t.created_by AS created_by, t.updated_at AS updated_at, t.updated_by AS updated_by, \
             {} FROM idlehands_teams t LEFT JOIN idlehands_budgets b \
             ON b.entity = {} WHERE (CAST($1 AS TEXT) IS NULL OR t.organization_id = $1) \
             ORDER BY t.created_at, t.team_id",
            BUDGET_COLS
                .split(", ")
                .map(|c| format!("b.{c} AS {c}"))
                .collect::<Vec<_>>()
                .join(", "),
            "'team:' || t.team_id"
        );
        let teams = on_db!(&self.db, pool => {
            let rows = sqlx::query(&sql).bind(organization_id).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let team_id: String = row.try_get("team_id")?;
                let budget = match row.try_get::<Option<String>, _>("entity")? {
                    Some(_) => crate::budgets::budget_from_row!(row),
                    None => Budget::new(entities::team(&team_id)),
                };
                out.push(team_from_row!(row, budget));
            }
            out
        });
        Ok(teams)
    }

    /// Reads the team, lets `change` edit it (and name member budgets to write), and writes
    /// it all back in one transaction. The team's spend is never overwritten.
    pub(crate) async fn update_team_with<F>(
        &self,
        team_id: &str,
        change: F,
    ) -> Result<TeamRecord, StoreError>
    where
        F: FnOnce(&mut TeamRecord) -> Result<TeamWrites, StoreError>,
    {
        let select = format!(
            "SELECT {TEAM_COLS} FROM idlehands_teams WHERE team_id = $1{}",
            if matches!(self.db, crate::db::Db::Postgres(_)) {
                " FOR UPDATE"
            } else {
                ""
            }
        );
        let entity = entities::team(team_id);
        let now = to_ms(Utc::now());
        let team = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let Some(row) = sqlx::query(&select).bind(team_id).fetch_optional(&mut *tx).await? else {
                return Err(team_not_found(team_id));
            };
            let budget = read_budget!(&mut *tx, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
            let mut team = team_from_row!(&row, budget);
            let writes = change(&mut team)?;
            team.derive_member_lists();
            write_team!(tx, &team);
            // Budget rows in entity order, the order a spend commit adds to them in: a member
            // change beside a call's settlement would otherwise deadlock on Postgres.
            let mut budget_writes: Vec<(&str, Option<&Budget>)> = writes
                .delete
                .iter()
                .map(|e| (e.as_str(), None))
                .chain(std::iter::once(&team.budget).chain(&writes.put).map(|b| (b.entity.as_str(), Some(b))))
                .collect();
            budget_writes.sort_by(|a, b| a.0.cmp(b.0));
            for (entity, put) in budget_writes {
                match put {
                    Some(b) => put_budget!(tx, b, now),
                    None => {
                        sqlx::query("DELETE FROM idlehands_budgets WHERE entity = $1")
                            .bind(entity)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            let row = sqlx::query(&select).bind(team_id).fetch_one(&mut *tx).await?;
            let budget = read_budget!(&mut *tx, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
            let team = team_from_row!(&row, budget);
            tx.commit().await?;
            team
        });
        Ok(team)
    }

    /// Deletes the teams, their budgets, their members' budgets and their keys (archived like
    /// `/key/delete`); if one team is missing nothing is deleted (404). Returns the deleted
    /// keys' hashes.
    pub(crate) async fn delete_teams(
        &self,
        team_ids: &[String],
        deleted_by: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let archive = format!(
            "INSERT INTO idlehands_deleted_verification_tokens ({}, deleted_at, deleted_by) \
             SELECT {}, $2, $3 FROM idlehands_verification_tokens WHERE team_id = $1",
            crate::keys_db::KEY_COLS,
            crate::keys_db::KEY_COLS
        );
        let now = to_ms(Utc::now());
        let tokens = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let mut tokens = Vec::new();
            for team_id in team_ids {
                let members: Option<String> =
                    sqlx::query_scalar("SELECT members FROM idlehands_teams WHERE team_id = $1")
                        .bind(team_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(members) = members else {
                    return Err(team_not_found(team_id));
                };
                let members: Vec<crate::teams::TeamMember> = json_col(members);
                let keys: Vec<String> =
                    sqlx::query_scalar("SELECT token FROM idlehands_verification_tokens WHERE team_id = $1")
                        .bind(team_id)
                        .fetch_all(&mut *tx)
                        .await?;
                sqlx::query(&archive).bind(team_id).bind(now).bind(deleted_by).execute(&mut *tx).await?;
                sqlx::query(&crate::key_model_budgets::delete_rows_of_keys_by("team_id"))
                .bind(team_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM idlehands_verification_tokens WHERE team_id = $1")
                    .bind(team_id)
                    .execute(&mut *tx)
                    .await?;
                tokens.extend(keys);
                let mut budgets = vec![entities::team(team_id)];
                budgets.extend(members.iter().filter_map(|m| m.id()).map(|u| entities::member(team_id, u)));
                for b in &budgets {
                    sqlx::query("DELETE FROM idlehands_budgets WHERE entity = $1")
                        .bind(b)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("DELETE FROM idlehands_teams WHERE team_id = $1")
                    .bind(team_id)
                    .execute(&mut *tx)
                    .await?;
            }
            // The teams' own deployments (`/model/new` with `model_info.team_id`) go with
            // them, as in LiteLLM: nothing could call them any more.
            let models: Vec<(String, String)> =
                sqlx::query_as("SELECT model_id, model_info FROM idlehands_proxy_models")
                    .fetch_all(&mut *tx)
                    .await?;
            for (model_id, info) in models {
                if crate::models_db::team_of_model(&info).is_some_and(|t| team_ids.contains(&t)) {
                    sqlx::query("DELETE FROM idlehands_proxy_models WHERE model_id = $1")
                        .bind(&model_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            tokens
        });
        Ok(tokens)
    }
}

impl Store {
    /// How many keys each of `team_ids` has (teams without keys are left out).
    pub async fn key_counts_of_teams(
        &self,
        team_ids: &[String],
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        if team_ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let marks: Vec<String> = (1..=team_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT team_id, COUNT(*) AS n FROM idlehands_verification_tokens \
             WHERE team_id IN ({}) GROUP BY team_id",
            marks.join(", ")
        );
        let out = on_db!(&self.db, pool => {
            let mut q = sqlx::query(&sql);
            for id in team_ids {
                q = q.bind(id);
            }
            let mut out = std::collections::HashMap::new();
            for r in q.fetch_all(pool).await? {
                out.insert(r.try_get::<String, _>("team_id")?, r.try_get::<i64, _>("n")?);
            }
            out
        });
        Ok(out)
    }
}
