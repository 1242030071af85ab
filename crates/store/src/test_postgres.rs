//! A store of its own on the test Postgres, for unit tests that need one.
#![allow(clippy::unwrap_used, clippy::panic)]

use crate::StoreOptions;

/// Options for a store in a schema of its own on the test Postgres (which must be up).
pub(crate) async fn postgres_schema() -> (sqlx::PgPool, StoreOptions, String) {
    let url = std::env::var("DATABASE_URL_TEST")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".to_owned());
    let pool = sqlx::PgPool::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("Postgres at {url} is required for this test: {e}"));
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut opts = StoreOptions::new(url);
    opts.pg_schema = Some(schema.clone());
    (pool, opts, schema)
}

pub(crate) async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(pool)
        .await
        .unwrap();
}
