//! User rows and their budgets in the database, each change one transaction (a new user's
//! team memberships, a deleted user's keys and memberships go with it).

use chrono::Utc;
use sqlx::Row;

use crate::budgets::{Budget, put_budget, read_budget};
use crate::db::{BeginWrite, Db, Store, from_ms, json_text, on_db, to_ms};
use crate::entities;
use crate::error::StoreError;
use crate::teams::TeamMember;
use crate::users::UserRecord;

const USER_COLS: &str =
    "user_id, user_email, user_alias, user_role, models, metadata, created_at, updated_at";

fn json_col<T: serde::de::DeserializeOwned + Default>(text: String) -> T {
    serde_json::from_str(&text).unwrap_or_default()
}

macro_rules! user_from_row {
    ($row:expr, $budget:expr) => {{
        let row = $row;
        UserRecord {
            user_id: row.try_get("user_id")?,
            user_email: row.try_get("user_email")?,
            user_alias: row.try_get("user_alias")?,
            user_role: row.try_get("user_role")?,
            models: json_col(row.try_get("models")?),
            metadata: json_col(row.try_get("metadata")?),
            teams: Vec::new(),
            budget: $budget,
            created_at: from_ms(row.try_get("created_at")?),
            updated_at: from_ms(row.try_get("updated_at")?),
        }
    }};
}

pub(crate) fn user_not_found(user_id: &str) -> StoreError {
    StoreError::NotFound {
        message: format!("User not found, passed user_id={user_id}"),
        param: Some("user_id"),
    }
}

impl Store {
    fn for_update(&self) -> &'static str {
        if matches!(self.db, Db::Postgres(_)) {
            " FOR UPDATE"
        } else {
            ""
        }
    }

    /// Creates the user and its budget, and adds it to `teams` as a `user` member; 400 when
    /// the id is taken, 404 when a team is missing (then nothing is written).
    pub(crate) async fn insert_user(
        &self,
        user: &UserRecord,
        teams: &[String],
    ) -> Result<(), StoreError> {
        let insert = format!(
            "INSERT INTO idlehands_users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        let select_team = format!(
            "SELECT members FROM idlehands_teams WHERE team_id = $1{}",
            self.for_update()
        );
        let now = to_ms(Utc::now());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let taken: Option<String> =
                sqlx::query_scalar("SELECT user_id FROM idlehands_users WHERE user_id = $1")
                    .bind(&user.user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if taken.is_some() {
                return Err(StoreError::bad_request(
                    format!("User with id = {} already exists. Please use a different user id.", user.user_id),
                    "user_id",
                ));
            }
            sqlx::query(&insert)
                .bind(&user.user_id)
                .bind(user.user_email.clone())
                .bind(user.user_alias.clone())
                .bind(&user.user_role)
                .bind(json_text(&user.models))
                .bind(json_text(&user.metadata))
                .bind(to_ms(user.created_at))
                .bind(to_ms(user.updated_at))
                .execute(&mut *tx)
                .await?;
            put_budget!(tx, &user.budget, now);
            for team_id in teams {
                let members: Option<String> = sqlx::query_scalar(&select_team)
                    .bind(team_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(members) = members else {
                    return Err(crate::teams_db::team_not_found(team_id));
                };
                let mut members: Vec<TeamMember> = json_col(members);
                if !members.iter().any(|m| m.same_as(Some(&user.user_id), None)) {
                    members.push(TeamMember {
                        user_id: Some(user.user_id.clone()),
                        user_email: user.user_email.clone(),
                        role: "user".to_string(),
                    });
                }
                sqlx::query("UPDATE idlehands_teams SET members = $2, updated_at = $3 WHERE team_id = $1")
                    .bind(team_id)
                    .bind(json_text(&members))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The user with its budget, or `None`. `teams` is left empty (the ledger fills it).
    pub async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM idlehands_users WHERE user_id = $1");
        let entity = entities::user(user_id);
        let user = on_db!(&self.db, pool => {
            match sqlx::query(&sql).bind(user_id).fetch_optional(pool).await? {
                Some(row) => {
                    let budget = read_budget!(pool, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
                    Some(user_from_row!(&row, budget))
                }
                None => None,
            }
        });
        Ok(user)
    }

    /// The id of the user with this e-mail, if any.
    pub(crate) async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        let id = on_db!(&self.db, pool => {
            sqlx::query_scalar::<_, String>("SELECT user_id FROM idlehands_users WHERE user_email = $1 LIMIT 1")
                .bind(email)
                .fetch_optional(pool)
                .await?
        });
        Ok(id)
    }

    /// Every user (oldest first), with budgets.
    pub async fn all_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM idlehands_users ORDER BY created_at, user_id");
        let users = on_db!(&self.db, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: String = row.try_get("user_id")?;
                let entity = entities::user(&id);
                let budget = read_budget!(pool, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
                out.push(user_from_row!(row, budget));
            }
            out
        });
        Ok(users)
    }

    /// Reads the user, lets `change` edit it, writes it and its budget configuration back in
    /// one transaction (spend is never overwritten).
    pub(crate) async fn update_user_with<F>(
        &self,
        user_id: &str,
        change: F,
    ) -> Result<UserRecord, StoreError>
    where
        F: FnOnce(&mut UserRecord) -> Result<(), StoreError>,
    {
        let select = format!(
            "SELECT {USER_COLS} FROM idlehands_users WHERE user_id = $1{}",
            self.for_update()
        );
        let entity = entities::user(user_id);
        let now = to_ms(Utc::now());
        let user = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let Some(row) = sqlx::query(&select).bind(user_id).fetch_optional(&mut *tx).await? else {
                return Err(user_not_found(user_id));
            };
            let budget = read_budget!(&mut *tx, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
            let mut user = user_from_row!(&row, budget);
            change(&mut user)?;
            sqlx::query(
                "UPDATE idlehands_users SET user_email = $2, user_alias = $3, user_role = $4, \
                 models = $5, metadata = $6, updated_at = $7 WHERE user_id = $1",
            )
            .bind(user_id)
            .bind(user.user_email.clone())
            .bind(user.user_alias.clone())
            .bind(&user.user_role)
            .bind(json_text(&user.models))
            .bind(json_text(&user.metadata))
            .bind(to_ms(user.updated_at))
            .execute(&mut *tx)
            .await?;
            put_budget!(tx, &user.budget, now);
            let row = sqlx::query(&select).bind(user_id).fetch_one(&mut *tx).await?;
            let budget = read_budget!(&mut *tx, &entity).unwrap_or_else(|| Budget::new(entity.clone()));
            let user = user_from_row!(&row, budget);
            tx.commit().await?;
            user
        });
        Ok(user)
    }

    /// Deletes the users, their budgets, their keys (archived) and their team memberships;
    /// all or nothing (404 if one is missing). Returns the deleted keys' hashes and the teams
    /// that changed.
    pub(crate) async fn delete_users(
        &self,
        user_ids: &[String],
        deleted_by: Option<&str>,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let archive = format!(
            "INSERT INTO idlehands_deleted_verification_tokens ({}, deleted_at, deleted_by) \
             SELECT {}, $2, $3 FROM idlehands_verification_tokens WHERE user_id = $1",
            crate::keys_db::KEY_COLS,
            crate::keys_db::KEY_COLS
        );
        let now = to_ms(Utc::now());
        let out = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let mut tokens = Vec::new();
            let mut changed_teams = Vec::new();
            let teams: Vec<(String, String)> = {
                let rows = sqlx::query("SELECT team_id, members FROM idlehands_teams").fetch_all(&mut *tx).await?;
                let mut v = Vec::with_capacity(rows.len());
                for row in &rows {
                    v.push((row.try_get("team_id")?, row.try_get("members")?));
                }
                v
            };
            for user_id in user_ids {
                let gone = sqlx::query("DELETE FROM idlehands_users WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                if gone.rows_affected() == 0 {
                    return Err(user_not_found(user_id));
                }
                let keys: Vec<String> =
                    sqlx::query_scalar("SELECT token FROM idlehands_verification_tokens WHERE user_id = $1")
                        .bind(user_id)
                        .fetch_all(&mut *tx)
                        .await?;
                sqlx::query(&archive).bind(user_id).bind(now).bind(deleted_by).execute(&mut *tx).await?;
                sqlx::query(&crate::key_model_budgets::delete_rows_of_keys_by("user_id"))
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM idlehands_verification_tokens WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                tokens.extend(keys);
                sqlx::query("DELETE FROM idlehands_budgets WHERE entity = $1")
                    .bind(entities::user(user_id))
                    .execute(&mut *tx)
                    .await?;
            }
            for (team_id, members) in teams {
                let mut members: Vec<TeamMember> = json_col(members);
                let before = members.len();
                members.retain(|m| !user_ids.iter().any(|u| m.same_as(Some(u), None)));
                if members.len() == before {
                    continue;
                }
                sqlx::query("UPDATE idlehands_teams SET members = $2, updated_at = $3 WHERE team_id = $1")
                    .bind(&team_id)
                    .bind(json_text(&members))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                for u in user_ids {
                    sqlx::query("DELETE FROM idlehands_budgets WHERE entity = $1")
                        .bind(entities::member(&team_id, u))
                        .execute(&mut *tx)
                        .await?;
                }
                changed_teams.push(team_id);
            }
            tx.commit().await?;
            (tokens, changed_teams)
        });
        Ok(out)
    }
}
