//! Key rows in the database. Every operation is one transaction: it happens whole or not at all.

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::db::{BeginWrite, Store, from_ms, json_text, on_db, placeholders, to_ms};
use crate::error::StoreError;
use crate::types::{KeyListQuery, KeyRecord};

pub(crate) const KEY_COLS: &str = "token, key_name, key_alias, user_id, team_id, organization_id, spend, \
    max_budget, soft_budget, budget_duration, budget_reset_at, expires, models, aliases, config, \
    permissions, metadata, tpm_limit, rpm_limit, max_parallel_requests, blocked, created_at, \
    created_by, updated_at, updated_by, allowed_routes, key_type, model_max_budget, \
    allowed_cache_controls, budget_id";

macro_rules! key_from_row {
    ($row:expr) => {{
        let row = $row;
        KeyRecord {
            token: row.try_get("token")?,
            key_name: row.try_get("key_name")?,
            key_alias: row.try_get("key_alias")?,
            user_id: row.try_get("user_id")?,
            team_id: row.try_get("team_id")?,
            organization_id: row.try_get("organization_id")?,
            spend: row.try_get("spend")?,
            max_budget: row.try_get("max_budget")?,
            soft_budget: row.try_get("soft_budget")?,
            budget_duration: row.try_get("budget_duration")?,
            budget_reset_at: row
                .try_get::<Option<i64>, _>("budget_reset_at")?
                .map(from_ms),
            expires: row.try_get::<Option<i64>, _>("expires")?.map(from_ms),
            models: json_col(row.try_get("models")?),
            aliases: json_col(row.try_get("aliases")?),
            config: json_col(row.try_get("config")?),
            permissions: json_col(row.try_get("permissions")?),
            metadata: json_col(row.try_get("metadata")?),
            tpm_limit: row.try_get("tpm_limit")?,
            rpm_limit: row.try_get("rpm_limit")?,
            max_parallel_requests: row.try_get("max_parallel_requests")?,
            blocked: row.try_get("blocked")?,
            created_at: from_ms(row.try_get("created_at")?),
            created_by: row.try_get("created_by")?,
            updated_at: from_ms(row.try_get("updated_at")?),
            updated_by: row.try_get("updated_by")?,
            allowed_routes: json_col(row.try_get("allowed_routes")?),
            key_type: row.try_get("key_type")?,
            model_max_budget: json_col(row.try_get("model_max_budget")?),
            allowed_cache_controls: json_col(row.try_get("allowed_cache_controls")?),
            budget_id: row.try_get("budget_id")?,
        }
    }};
}

/// Binds a [`KeyRecord`] in `KEY_COLS` order.
macro_rules! bind_key {
    ($q:expr, $k:expr) => {{
        let k = $k;
        $q.bind(k.token.clone())
            .bind(k.key_name.clone())
            .bind(k.key_alias.clone())
            .bind(k.user_id.clone())
            .bind(k.team_id.clone())
            .bind(k.organization_id.clone())
            .bind(k.spend)
            .bind(k.max_budget)
            .bind(k.soft_budget)
            .bind(k.budget_duration.clone())
            .bind(k.budget_reset_at.map(to_ms))
            .bind(k.expires.map(to_ms))
            .bind(json_text(&k.models))
            .bind(json_text(&k.aliases))
            .bind(json_text(&k.config))
            .bind(json_text(&k.permissions))
            .bind(json_text(&k.metadata))
            .bind(k.tpm_limit)
            .bind(k.rpm_limit)
            .bind(k.max_parallel_requests)
            .bind(k.blocked)
            .bind(to_ms(k.created_at))
            .bind(k.created_by.clone())
            .bind(to_ms(k.updated_at))
            .bind(k.updated_by.clone())
            .bind(json_text(&k.allowed_routes))
            .bind(k.key_type.clone())
            .bind(json_text(&k.model_max_budget))
            .bind(json_text(&k.allowed_cache_controls))
            .bind(k.budget_id.clone())
    }};
}

fn json_col<T: serde::de::DeserializeOwned + Default>(text: String) -> T {
    serde_json::from_str(&text).unwrap_or_default()
}

fn alias_taken(alias: &str) -> StoreError {
    StoreError::bad_request(
        format!(
            "Key with alias '{alias}' already exists. Unique key aliases across all keys are required."
        ),
        "key_alias",
    )
}

/// Which columns an update rewrites besides the ordinary ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateScope {
    /// Overwrite `spend` (an admin set it); otherwise concurrent spend increments are kept.
    pub spend: bool,
    /// Overwrite `budget_reset_at` (budget_duration changed).
    pub budget_reset_at: bool,
}

/// What reports say of a key: [`Store::key_facts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    pub key_alias: Option<String>,
    /// `sk-...abcd`.
    pub key_name: String,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
}

impl Store {
    pub async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let insert = format!(
            "INSERT INTO idlehands_verification_tokens ({KEY_COLS}) VALUES ({})",
            placeholders(1, 30)
        );
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            if let Some(alias) = &key.key_alias {
                let taken: Option<String> = sqlx::query_scalar(
                    "SELECT token FROM idlehands_verification_tokens WHERE key_alias = $1",
                )
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_some() {
                    return Err(alias_taken(alias));
                }
            }
            let res = bind_key!(sqlx::query(&insert), key).execute(&mut *tx).await;
            match res {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(StoreError::bad_request(
                        "A key with this value already exists; choose another `key`",
                        "key",
                    ));
                }
                other => {
                    other?;
                }
            }
            let budgets = crate::key_model_budgets::parse(&key.model_max_budget)?;
            crate::key_model_budgets::sync_key_model_budgets!(tx, &key.token, &budgets, false, key.created_at);
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn get_key(&self, token: &str) -> Result<Option<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLS} FROM idlehands_verification_tokens WHERE token = $1");
        let key = on_db!(&self.db, pool => {
            match sqlx::query(&sql).bind(token).fetch_optional(pool).await? {
                Some(row) => Some(key_from_row!(&row)),
                None => None,
            }
        });
        Ok(key)
    }

    /// How `/global/spend/report` names keys: each token's alias, else its key name. Tokens
    /// with no key (deleted since) are not in the map.
    pub async fn key_labels(
        &self,
        tokens: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        Ok(self
            .key_facts(tokens)
            .await?
            .into_iter()
            .map(|(token, k)| (token, k.key_alias.unwrap_or(k.key_name)))
            .collect())
    }

    /// What reports say of each token's key, in one query per 500 tokens (not one per key:
    /// a month's report may name 100,000 keys). Tokens with no key (deleted since) are not
    /// in the map.
    pub async fn key_facts(
        &self,
        tokens: &[String],
    ) -> Result<std::collections::HashMap<String, KeyFacts>, StoreError> {
        let mut out = std::collections::HashMap::with_capacity(tokens.len());
        for part in tokens.chunks(500) {
            let sql = format!(
                "SELECT token, key_alias, key_name, team_id, user_id \
                 FROM idlehands_verification_tokens WHERE token IN ({})",
                crate::db::placeholders(1, part.len())
            );
            type Found = (
                String,
                Option<String>,
                String,
                Option<String>,
                Option<String>,
            );
            let found: Vec<Found> = on_db!(&self.db, pool => {
                let mut q = sqlx::query_as(&sql);
                for t in part {
                    q = q.bind(t);
                }
                q.fetch_all(pool).await?
            });
            for (token, key_alias, key_name, team_id, user_id) in found {
                out.insert(
                    token,
                    KeyFacts {
                        key_alias,
                        key_name,
                        team_id,
                        user_id,
                    },
                );
            }
        }
        Ok(out)
    }

    pub async fn get_key_by_alias(&self, alias: &str) -> Result<Option<KeyRecord>, StoreError> {
        let sql =
            format!("SELECT {KEY_COLS} FROM idlehands_verification_tokens WHERE key_alias = $1");
        let key = on_db!(&self.db, pool => {
            match sqlx::query(&sql).bind(alias).fetch_optional(pool).await? {
                Some(row) => Some(key_from_row!(&row)),
                None => None,
            }
        });
        Ok(key)
    }

    /// Every key, for warming the cache at start.
    pub async fn all_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLS} FROM idlehands_verification_tokens");
        let keys = on_db!(&self.db, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                keys.push(key_from_row!(row));
            }
            keys
        });
        Ok(keys)
    }

    /// The tokens of the keys that follow the named budget `budget_id`.
    pub(crate) async fn keys_following(&self, budget_id: &str) -> Result<Vec<String>, StoreError> {
        let tokens = on_db!(&self.db, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT token FROM idlehands_verification_tokens WHERE budget_id = $1",
            )
            .bind(budget_id)
            .fetch_all(pool)
            .await?
        });
        Ok(tokens)
    }

    /// A page of keys matching the filters (newest first) and the total count.
    pub async fn list_keys(
        &self,
        q: &KeyListQuery,
        page: u32,
        size: u32,
    ) -> Result<(Vec<KeyRecord>, u64), StoreError> {
        let mut filters: Vec<(&str, String)> = Vec::new();
        let pairs = [
            ("user_id", &q.user_id),
            ("team_id", &q.team_id),
            ("organization_id", &q.organization_id),
            ("key_alias", &q.key_alias),
            ("token", &q.key_hash),
        ];
        for (col, v) in pairs {
            if let Some(v) = v {
                let v = if col == "token" {
                    crate::keygen::token_of(v)
                } else {
                    v.clone()
                };
                filters.push((col, v));
            }
        }
        let mut where_sql = String::new();
        for (i, (col, _)) in filters.iter().enumerate() {
            where_sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            where_sql.push_str(&format!("{col} = ${}", i + 1));
        }
        let count_sql = format!("SELECT COUNT(*) FROM idlehands_verification_tokens{where_sql}");
        let n = filters.len();
        let page_sql = format!(
            "SELECT {KEY_COLS} FROM idlehands_verification_tokens{where_sql} \
             ORDER BY created_at DESC, token LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let offset = i64::from(page.saturating_sub(1)) * i64::from(size);
        let out = on_db!(&self.db, pool => {
            let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
            for (_, v) in &filters {
                count = count.bind(v.clone());
            }
            let total = count.fetch_one(pool).await?;
            let mut query = sqlx::query(&page_sql);
            for (_, v) in &filters {
                query = query.bind(v.clone());
            }
            let rows = query.bind(i64::from(size)).bind(offset).fetch_all(pool).await?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                keys.push(key_from_row!(row));
            }
            (keys, total.max(0) as u64)
        });
        Ok(out)
    }

    /// Reads the key, lets `change` edit it, and writes it back in one transaction. Spend and
    /// `budget_reset_at` are only written when `change` says so, so spend the writer adds
    /// meanwhile is not lost.
    pub async fn update_key_with<F>(&self, token: &str, change: F) -> Result<KeyRecord, StoreError>
    where
        F: FnOnce(&mut KeyRecord) -> Result<UpdateScope, StoreError>,
    {
        let select = format!(
            "SELECT {KEY_COLS} FROM idlehands_verification_tokens WHERE token = $1{}",
            if matches!(self.db, crate::db::Db::Postgres(_)) {
                " FOR UPDATE"
            } else {
                ""
            }
        );
        const UPDATE: &str = "UPDATE idlehands_verification_tokens SET key_alias = $2, \
            user_id = $3, team_id = $4, organization_id = $5, max_budget = $6, soft_budget = $7, \
            budget_duration = $8, expires = $9, models = $10, aliases = $11, config = $12, \
            permissions = $13, metadata = $14, tpm_limit = $15, rpm_limit = $16, \
            max_parallel_requests = $17, blocked = $18, updated_at = $19, updated_by = $20, \
            spend = CASE WHEN $21 THEN $22 ELSE spend END, \
            budget_reset_at = CASE WHEN $23 THEN $24 ELSE budget_reset_at END, \
            allowed_routes = $25, key_type = $26, model_max_budget = $27, \
            allowed_cache_controls = $28, budget_id = $29 \
            WHERE token = $1";
        let updated = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let Some(row) = sqlx::query(&select).bind(token).fetch_optional(&mut *tx).await? else {
                return Err(StoreError::key_not_found());
            };
            let mut key = key_from_row!(&row);
            let old_alias = key.key_alias.clone();
            let had_budgets = !key.model_max_budget.is_empty();
            let scope = change(&mut key)?;
            if let Some(alias) = &key.key_alias
                && old_alias.as_ref() != Some(alias)
            {
                let taken: Option<String> = sqlx::query_scalar(
                    "SELECT token FROM idlehands_verification_tokens WHERE key_alias = $1",
                )
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await?;
                if taken.is_some() {
                    return Err(alias_taken(alias));
                }
            }
            sqlx::query(UPDATE)
                .bind(token)
                .bind(key.key_alias.clone())
                .bind(key.user_id.clone())
                .bind(key.team_id.clone())
                .bind(key.organization_id.clone())
                .bind(key.max_budget)
                .bind(key.soft_budget)
                .bind(key.budget_duration.clone())
                .bind(key.expires.map(to_ms))
                .bind(json_text(&key.models))
                .bind(json_text(&key.aliases))
                .bind(json_text(&key.config))
                .bind(json_text(&key.permissions))
                .bind(json_text(&key.metadata))
                .bind(key.tpm_limit)
                .bind(key.rpm_limit)
                .bind(key.max_parallel_requests)
                .bind(key.blocked)
                .bind(to_ms(key.updated_at))
                .bind(key.updated_by.clone())
                .bind(scope.spend)
                .bind(key.spend)
                .bind(scope.budget_reset_at)
                .bind(key.budget_reset_at.map(to_ms))
                .bind(json_text(&key.allowed_routes))
                .bind(key.key_type.clone())
                .bind(json_text(&key.model_max_budget))
                .bind(json_text(&key.allowed_cache_controls))
                .bind(key.budget_id.clone())
                .execute(&mut *tx)
                .await?;
            let budgets = crate::key_model_budgets::parse(&key.model_max_budget)?;
            crate::key_model_budgets::sync_key_model_budgets!(tx, token, &budgets, had_budgets, key.updated_at);
            // Return what the database now holds (spend may have moved meanwhile).
            let row = sqlx::query(&select).bind(token).fetch_one(&mut *tx).await?;
            let key = key_from_row!(&row);
            tx.commit().await?;
            key
        });
        Ok(updated)
    }

    /// Archives and deletes the keys; if any is missing nothing is deleted (404).
    pub async fn delete_keys(
        &self,
        tokens: &[String],
        deleted_by: Option<&str>,
    ) -> Result<(), StoreError> {
        let archive = format!(
            "INSERT INTO idlehands_deleted_verification_tokens ({KEY_COLS}, deleted_at, deleted_by) \
             SELECT {KEY_COLS}, $2, $3 FROM idlehands_verification_tokens WHERE token = $1"
        );
        let now = to_ms(Utc::now());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            for token in tokens {
                sqlx::query(&archive)
                    .bind(token)
                    .bind(now)
                    .bind(deleted_by)
                    .execute(&mut *tx)
                    .await?;
                let gone: Option<String> = sqlx::query_scalar(
                    "DELETE FROM idlehands_verification_tokens WHERE token = $1 RETURNING model_max_budget",
                )
                .bind(token)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(budgets) = gone else {
                    return Err(StoreError::key_not_found());
                };
                if crate::key_model_budgets::has_entries(&budgets) {
                    sqlx::query("DELETE FROM idlehands_budgets WHERE entity LIKE $1")
                        .bind(crate::key_model_budgets::entities_like(token))
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// `/global/spend/reset`: every key's and every team's spend to 0, in one transaction (the
    /// spend rows stay). Returns the keys and the team budgets as they are afterwards.
    pub async fn zero_key_and_team_spend(
        &self,
    ) -> Result<(Vec<KeyRecord>, Vec<crate::Budget>), StoreError> {
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE idlehands_verification_tokens SET spend = 0 WHERE spend <> 0")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE idlehands_budgets SET spend = 0 WHERE entity LIKE 'team:%' AND spend <> 0",
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        let keys = self.all_keys().await?;
        let teams = self
            .list_teams(None)
            .await?
            .into_iter()
            .map(|t| t.budget)
            .collect();
        Ok((keys, teams))
    }

    /// Replaces the key `old_token` by `new_key` (same row, new token) in one transaction; the
    /// old row is archived. Spend the writer has not flushed for the old token is lost, so the
    /// ledger flushes first.
    pub async fn replace_key(
        &self,
        old_token: &str,
        new_key: &KeyRecord,
        by: Option<&str>,
        grace_until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let archive = format!(
            "INSERT INTO idlehands_deleted_verification_tokens ({KEY_COLS}, deleted_at, deleted_by) \
             SELECT {KEY_COLS}, $2, $3 FROM idlehands_verification_tokens WHERE token = $1"
        );
        let insert = format!(
            "INSERT INTO idlehands_verification_tokens ({KEY_COLS}) VALUES ({})",
            placeholders(1, 30)
        );
        let now = to_ms(Utc::now());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(&archive).bind(old_token).bind(now).bind(by).execute(&mut *tx).await?;
            let gone: Option<(i64, String)> = sqlx::query_as(
                "DELETE FROM idlehands_verification_tokens WHERE token = $1 RETURNING spend, model_max_budget",
            )
            .bind(old_token)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((spend, old_budgets)) = gone else {
                return Err(StoreError::key_not_found());
            };
            let had_budgets = crate::key_model_budgets::has_entries(&old_budgets);
            let mut key = new_key.clone();
            key.spend = spend;
            // Older aliases of the old token now lead to the new one.
            sqlx::query("UPDATE idlehands_deprecated_tokens SET active_token = $2 WHERE active_token = $1")
                .bind(old_token)
                .bind(&key.token)
                .execute(&mut *tx)
                .await?;
            if let Some(until) = grace_until {
                sqlx::query(
                    "INSERT INTO idlehands_deprecated_tokens (token, active_token, revoke_at, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (token) DO UPDATE \
                     SET active_token = $2, revoke_at = $3",
                )
                .bind(old_token)
                .bind(&key.token)
                .bind(to_ms(until))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let res = bind_key!(sqlx::query(&insert), &key).execute(&mut *tx).await;
            match res {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(StoreError::bad_request(
                        "A key with this value already exists; choose another `new_key`",
                        "new_key",
                    ));
                }
                other => {
                    other?;
                }
            }
            // The per-model budgets follow the key with their spend and windows.
            if had_budgets {
                let old_prefix = crate::key_model_budgets::entity(old_token, "");
                sqlx::query(
                    "UPDATE idlehands_budgets SET entity = CAST($2 AS TEXT) || substr(entity, $3) WHERE entity LIKE $1",
                )
                .bind(crate::key_model_budgets::entities_like(old_token))
                .bind(crate::key_model_budgets::entity(&key.token, ""))
                .bind(i32::try_from(old_prefix.len() + 1).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await?;
            }
            let budgets = crate::key_model_budgets::parse(&key.model_max_budget)?;
            crate::key_model_budgets::sync_key_model_budgets!(tx, &key.token, &budgets, had_budgets, Utc::now());
            tx.commit().await?;
        });
        Ok(())
    }

    /// The token a regenerated key's old `token` stands for while its grace period lasts,
    /// and when that ends.
    pub async fn deprecated_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let found = on_db!(&self.db, pool => {
            match sqlx::query(
                "SELECT active_token, revoke_at FROM idlehands_deprecated_tokens \
                 WHERE token = $1 AND revoke_at > $2",
            )
            .bind(token)
            .bind(to_ms(now))
            .fetch_optional(pool)
            .await?
            {
                Some(row) => Some((
                    row.try_get::<String, _>("active_token")?,
                    from_ms(row.try_get("revoke_at")?),
                )),
                None => None,
            }
        });
        Ok(found)
    }

    /// Whether `token` was deleted (archived), for `/key/info`'s status.
    pub async fn was_deleted(&self, token: &str) -> Result<bool, StoreError> {
        let found = on_db!(&self.db, pool => {
            sqlx::query_scalar::<_, String>(
                "SELECT token FROM idlehands_deleted_verification_tokens WHERE token = $1 LIMIT 1",
            )
            .bind(token)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// Keys whose budget window has passed, for the reset sweep.
    pub(crate) async fn due_budget_resets(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = on_db!(&self.db, pool => {
            let rows = sqlx::query(
                // A key without a window of its own that follows a named budget resets on
                // the budget's window.
                "SELECT v.token, COALESCE(v.budget_duration, b.budget_duration) AS budget_duration, \
                 v.budget_reset_at FROM idlehands_verification_tokens v \
                 LEFT JOIN idlehands_budget_table b ON b.budget_id = v.budget_id \
                 WHERE v.budget_reset_at IS NOT NULL AND v.budget_reset_at <= $1",
            )
            .bind(to_ms(now))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let dur: Option<String> = row.try_get("budget_duration")?;
                out.push((row.try_get("token")?, dur.unwrap_or_default(), row.try_get("budget_reset_at")?));
            }
            out
        });
        Ok(rows)
    }
}
