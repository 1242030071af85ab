//! Stored `/v1/responses` answers (see the gateway's `http/responses.rs`).

use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::Store;
use crate::db::on_db;
use crate::error::StoreError;

/// One stored answer: JSON kept as text, the owner a key hash.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponseRow {
    pub id: String,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub input_items: String,
    pub response: String,
}

impl Store {
    /// Keeps `row`, replacing one with the same id.
    pub async fn put_response(&self, row: &StoredResponseRow) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO idlehands_responses (id, owner, created_at, input_items, response) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, \
                 created_at = excluded.created_at, input_items = excluded.input_items, \
                 response = excluded.response",
            )
            .bind(&row.id)
            .bind(&row.owner)
            .bind(row.created_at.timestamp_millis())
            .bind(&row.input_items)
            .bind(&row.response)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The answer `id`, if `owner` created it.
    pub async fn get_response(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<Option<StoredResponseRow>, StoreError> {
        let row = on_db!(&self.db, pool => {
            sqlx::query(
                "SELECT id, owner, created_at, input_items, response FROM idlehands_responses \
                 WHERE id = $1 AND owner = $2",
            )
            .bind(id)
            .bind(owner)
            .fetch_optional(pool)
            .await?
            .map(|r| -> Result<StoredResponseRow, sqlx::Error> {
                Ok(StoredResponseRow {
                    id: r.try_get("id")?,
                    owner: r.try_get("owner")?,
                    created_at: DateTime::from_timestamp_millis(r.try_get::<i64, _>("created_at")?)
                        .unwrap_or_default(),
                    input_items: r.try_get("input_items")?,
                    response: r.try_get("response")?,
                })
            })
            .transpose()?
        });
        Ok(row)
    }

    /// Deletes `id` if `owner` created it; whether it did.
    pub async fn delete_response(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let n = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM idlehands_responses WHERE id = $1 AND owner = $2")
                .bind(id)
                .bind(owner)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    /// Drops answers stored before `cutoff` (the spend-log retention setting covers them).
    pub async fn delete_responses_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let n = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM idlehands_responses WHERE created_at < $1")
                .bind(cutoff.timestamp_millis())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
