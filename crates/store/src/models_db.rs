//! Deployments added over the API (`/model/new` with `store_model_in_db`), LiteLLM's proxy
//! model table. The store keeps JSON text as given; the gateway owns its meaning (and encrypts
//! secret values before they get here).

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::Store;
use crate::db::{BeginWrite, from_ms, on_db, to_ms};
use crate::error::StoreError;

/// One stored deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyModelRow {
    pub model_id: String,
    pub model_name: String,
    /// JSON object text.
    pub litellm_params: String,
    /// JSON object text.
    pub model_info: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: Option<String>,
}

pub(crate) const COLUMNS: &str = "model_id, model_name, litellm_params, model_info, created_at, created_by, \
                       updated_at, updated_by";

pub(crate) fn row_of<R: Row>(r: &R) -> Result<ProxyModelRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> Option<String>: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ProxyModelRow {
        model_id: r.try_get("model_id")?,
        model_name: r.try_get("model_name")?,
        litellm_params: r.try_get("litellm_params")?,
        model_info: r.try_get("model_info")?,
        created_at: from_ms(r.try_get("created_at")?),
        created_by: r.try_get("created_by")?,
        updated_at: from_ms(r.try_get("updated_at")?),
        updated_by: r.try_get("updated_by")?,
    })
}

/// The team a stored deployment belongs to (`model_info.team_id`), if any.
pub(crate) fn team_of_model(model_info: &str) -> Option<String> {
    let info: serde_json::Value = serde_json::from_str(model_info).ok()?;
    info.get("team_id")?.as_str().map(str::to_owned)
}

/// The stored credential a deployment write names, read in the write's transaction; on Postgres
/// the row stays shared-locked until the write commits, so a concurrent delete of it (which
/// locks it first, then looks for deployments naming it) either waits and then sees the
/// deployment, or commits first and this write finds nothing. SQLite's writers take turns.
fn credential_lock(db: &crate::db::Db) -> String {
    crate::credentials_db::locked_credential(db, "FOR SHARE")
}

/// Refuses the write (404 naming it) when the stored credential `name` is gone.
macro_rules! credential_must_remain {
    ($tx:expr, $sql:expr, $name:expr) => {{
        let name: &str = $name;
        let found: Option<String> = sqlx::query_scalar($sql)
            .bind(name)
            .fetch_optional($tx)
            .await?;
        if found.is_none() {
            return Err(StoreError::NotFound {
                message: format!("Credential '{name}' not found"),
                param: Some("litellm_params.litellm_credential_name"),
            });
        }
    }};
}

impl Store {
    /// Adds `row`; a 400 naming `model_info.id` when that id is taken. `credential` is the
    /// stored credential (`/credentials`) the row names, if any: it must still be there, and it
    /// cannot be deleted while this write runs (see [`Store::delete_credential`]).
    pub async fn insert_model(
        &self,
        row: &ProxyModelRow,
        credential: Option<&str>,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO idlehands_proxy_models ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (model_id) DO NOTHING"
        );
        let lock = credential_lock(&self.db);
        let n = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            if let Some(name) = credential {
                credential_must_remain!(&mut *tx, &lock, name);
            }
            let n = sqlx::query(&sql)
                .bind(&row.model_id)
                .bind(&row.model_name)
                .bind(&row.litellm_params)
                .bind(&row.model_info)
                .bind(to_ms(row.created_at))
                .bind(&row.created_by)
                .bind(to_ms(row.updated_at))
                .bind(&row.updated_by)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            n
        });
        if n == 0 {
            return Err(StoreError::bad_request(
                format!("A model with id={} already exists", row.model_id),
                "model_info.id",
            ));
        }
        Ok(())
    }

    /// The stored deployment `model_id`.
    pub async fn get_model(&self, model_id: &str) -> Result<Option<ProxyModelRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM idlehands_proxy_models WHERE model_id = $1");
        let row = on_db!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(model_id)
                .fetch_optional(pool)
                .await?
                .map(|r| row_of(&r))
                .transpose()?
        });
        Ok(row)
    }

    /// Every stored deployment, oldest first (the order they join the model list in).
    pub async fn list_models(&self) -> Result<Vec<ProxyModelRow>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM idlehands_proxy_models ORDER BY created_at, model_id");
        let rows = on_db!(&self.db, pool => {
            sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(row_of)
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Replaces the stored deployment's name, params and info with what `change` makes of the
    /// current row, in one transaction (two concurrent updates never lose one another's
    /// change). `None` when there is no such row; the row as written otherwise.
    /// `credential` is a stored credential the change newly names, as for
    /// [`Store::insert_model`].
    pub async fn update_model<F>(
        &self,
        model_id: &str,
        updated_by: Option<&str>,
        credential: Option<&str>,
        change: F,
    ) -> Result<Option<ProxyModelRow>, StoreError>
    where
        F: FnOnce(&ProxyModelRow) -> Result<ProxyModelRow, StoreError> + Send,
    {
        let select = format!("SELECT {COLUMNS} FROM idlehands_proxy_models WHERE model_id = $1");
        let select = if matches!(self.db, crate::db::Db::Postgres(_)) {
            format!("{select} FOR UPDATE")
        } else {
            select
        };
        let lock = credential_lock(&self.db);
        let now = Utc::now();
        let written = on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let current = sqlx::query(&select)
                .bind(model_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| row_of(&r))
                .transpose()?;
            let Some(current) = current else {
                return Ok(None);
            };
            if let Some(name) = credential {
                credential_must_remain!(&mut *tx, &lock, name);
            }
            let mut next = change(&current)?;
            next.model_id = current.model_id.clone();
            next.created_at = current.created_at;
            next.created_by = current.created_by.clone();
            next.updated_at = now;
            next.updated_by = updated_by.map(str::to_string);
            sqlx::query(
                "UPDATE idlehands_proxy_models SET model_name = $2, litellm_params = $3, \
                 model_info = $4, updated_at = $5, updated_by = $6 WHERE model_id = $1",
            )
            .bind(&next.model_id)
            .bind(&next.model_name)
            .bind(&next.litellm_params)
            .bind(&next.model_info)
            .bind(to_ms(next.updated_at))
            .bind(&next.updated_by)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            next
        });
        Ok(Some(written))
    }

    /// Deletes the stored deployment `model_id`; the row it was, if there was one.
    pub async fn delete_model(&self, model_id: &str) -> Result<Option<ProxyModelRow>, StoreError> {
        let sql =
            format!("DELETE FROM idlehands_proxy_models WHERE model_id = $1 RETURNING {COLUMNS}");
        let row = on_db!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(model_id)
                .fetch_optional(pool)
                .await?
                .map(|r| row_of(&r))
                .transpose()?
        });
        Ok(row)
    }
}
