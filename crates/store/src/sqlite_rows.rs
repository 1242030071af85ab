//! The SQLite end of the spend writer's group commit: a connection and a thread of its own,
//! one prepared single-row INSERT run once per row inside one transaction.
//!
//! Through sqlx every batch was turned into argument lists on the async runtime, copied again
//! for sqlx's connection thread, and bound into many-row statements whose bindings were
//! cleared after every run: about 40% of the CPU the spend log cost per request (callgrind,
//! bench/). Here the rows are bound straight from the batch. The process links one SQLite
//! (rusqlite and sqlx share libsqlite3-sys), so this connection and sqlx's pool lock the file
//! as any two connections do; WAL lets readers run during a commit.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{
    Connection, ErrorCode, OptionalExtension, TransactionBehavior, named_params, params,
};
use tokio::sync::oneshot;

use crate::db::{SQLITE_BUSY_TIMEOUT, SQLITE_PRAGMAS, json_text, to_ms};
use crate::error::StoreError;
use crate::spend_db::{
    ADD_ENTITY_SPEND_SQL, ADD_SPEND_SQL, BatchItem, CommitPlan, RESET_ENTITY_SQL, RESET_SPEND_SQL,
    insert_sql, tags_text, text,
};

type Done = oneshot::Sender<(Vec<BatchItem>, Result<(), StoreError>)>;

enum Job {
    Write {
        items: Vec<BatchItem>,
        store_rows: bool,
        done: Done,
    },
    Close(oneshot::Sender<()>),
}

/// Handle to the writing thread; it ends when closed or when every handle is dropped.
#[derive(Debug)]
pub(crate) struct RowWriter {
    jobs: mpsc::Sender<Job>,
    /// The database file, for readers that go around sqlx as well (`sqlite_reads`).
    path: String,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl RowWriter {
    /// Opens `path` (already created and migrated through sqlx) with the pool's settings.
    pub(crate) fn open(path: &str) -> Result<RowWriter, StoreError> {
        let conn = Connection::open(path).map_err(|e| internal("open", &e))?;
        conn.busy_timeout(SQLITE_BUSY_TIMEOUT)
            .map_err(|e| internal("busy_timeout", &e))?;
        let pragmas: String = SQLITE_PRAGMAS
            .iter()
            .map(|(name, value)| format!("PRAGMA {name} = {value};"))
            .collect();
        conn.execute_batch(&pragmas)
            .map_err(|e| internal("pragmas", &e))?;
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("idlehands-spend-rows".to_owned())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Internal(format!("cannot start the spend-row thread: {e}")))?;
        Ok(RowWriter {
            jobs,
            path: path.to_owned(),
        })
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Commits `items` in one transaction; gives them back with the outcome (emptied, with
    /// its capacity, once committed).
    pub(crate) async fn write(
        &self,
        items: Vec<BatchItem>,
        store_rows: bool,
    ) -> (Vec<BatchItem>, Result<(), StoreError>) {
        let (done, answer) = oneshot::channel();
        let job = Job::Write {
            items,
            store_rows,
            done,
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            let Job::Write { items, .. } = job else {
                return (Vec::new(), Err(closed()));
            };
            return (items, Err(closed()));
        }
        match answer.await {
            Ok(result) => result,
            // The thread is gone (it cannot panic on a row, but be safe): the rows are lost
            // with it, and the error says so.
            Err(_) => (Vec::new(), Err(closed())),
        }
    }

    /// Finishes the queued writes, then closes the connection.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.jobs.send(Job::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

/// How long a commit works before it lets a runnable thread on its CPU go first.
const SLICE: Duration = Duration::from_micros(200);

/// Lets the serving threads in during a long commit. The scheduler does not preempt this
/// thread when a serving thread wakes on its CPU (it waits for the next tick, 4 ms at 250 Hz,
/// even with the other CPU idle), so a commit of a second's rows held requests up for
/// milliseconds: at one connection the gateway's p99 was about 2 ms with spend logging and
/// 0.5 ms without (README, Performance). Yielding every [`SLICE`] bounds that wait; with
/// nothing else runnable the yield returns at once.
struct Pace(Instant);

impl Pace {
    fn new() -> Self {
        Pace(Instant::now())
    }

    fn tick(&mut self) {
        if self.0.elapsed() >= SLICE {
            std::thread::yield_now();
            self.0 = Instant::now();
        }
    }
}

fn closed() -> StoreError {
    StoreError::Internal("the spend-row writer is closed".to_owned())
}

fn internal(what: &str, e: &rusqlite::Error) -> StoreError {
    StoreError::Internal(format!("SQLite spend-row writer ({what}): {e}"))
}

fn run(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Write {
                mut items,
                store_rows,
                done,
            } => {
                let result = commit(&mut conn, &items, store_rows).map_err(|e| {
                    // A row the database refuses (a constraint, a value too big) is the
                    // writer's cue to retry the rows one by one; anything else is transient.
                    match e.sqlite_error_code() {
                        Some(
                            ErrorCode::ConstraintViolation
                            | ErrorCode::TooBig
                            | ErrorCode::TypeMismatch
                            | ErrorCode::ParameterOutOfRange,
                        ) => StoreError::RowRefused(e.to_string()),
                        _ => internal("commit", &e),
                    }
                });
                if result.is_ok() {
                    // Committed rows are freed here, paced like the commit: a second's rows
                    // freed at once on the writer's runtime thread held a CPU for milliseconds.
                    // The emptied vector goes back for the next batch.
                    let mut pace = Pace::new();
                    for item in items.drain(..) {
                        drop(item);
                        pace.tick();
                    }
                }
                let _ = done.send((items, result));
            }
            Job::Close(done) => {
                drop(conn);
                let _ = done.send(());
                return;
            }
        }
    }
}

/// The id of each (key, model) pair of the cells, made where missing (see
/// `daily_spend::NEW_KEY_MODEL_ID`).
fn key_model_ids<'c>(
    tx: &rusqlite::Transaction<'_>,
    cells: &'c [crate::daily_spend::KeyModelCell<'_>],
) -> rusqlite::Result<HashMap<(&'c str, &'c str), i64>> {
    let mut find = tx.prepare_cached(crate::daily_spend::KEY_MODEL_ID)?;
    let mut make = tx.prepare_cached(crate::daily_spend::NEW_KEY_MODEL_ID)?;
    let mut ids = HashMap::new();
    for (key, model) in crate::daily_spend::key_model_pairs(cells) {
        let id = match find
            .query_row(params![key, model], |r| r.get(0))
            .optional()?
        {
            Some(id) => id,
            None => match make
                .query_row(params![key, model], |r| r.get(0))
                .optional()?
            {
                Some(id) => id,
                None => find.query_row(params![key, model], |r| r.get(0))?,
            },
        };
        ids.insert((key, model), id);
    }
    Ok(ids)
}

fn commit(conn: &mut Connection, items: &[BatchItem], store_rows: bool) -> rusqlite::Result<()> {
    let mut pace = Pace::new();
    let plan = CommitPlan::new(items, store_rows);
    pace.tick();
    let now = to_ms(chrono::Utc::now());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !plan.rows.is_empty() {
        let mut insert = tx.prepare_cached(insert_sql())?;
        for r in &plan.rows {
            pace.tick();
            insert.execute(params![
                text(&r.request_id),
                text(&r.call_type),
                text(&r.api_key),
                r.spend,
                r.total_tokens,
                r.prompt_tokens,
                r.completion_tokens,
                to_ms(r.start_time),
                to_ms(r.end_time),
                r.completion_start_time.map(to_ms),
                r.request_duration_ms,
                text(&r.model),
                r.model_id.as_deref().map(text),
                r.model_group.as_deref().map(text),
                r.custom_llm_provider.as_deref().map(text),
                r.api_base.as_deref().map(text),
                r.user.as_deref().map(text),
                r.team_id.as_deref().map(text),
                r.end_user.as_deref().map(text),
                r.requester_ip_address.as_deref().map(text),
                r.session_id.as_deref().map(text),
                r.metadata.as_str(),
                r.cache_hit.as_deref().map(text),
                r.cache_key.as_deref().map(text),
                tags_text(&r.request_tags),
                r.messages.as_ref().map(json_text),
                r.response.as_ref().map(json_text),
                text(&r.status),
                r.litellm_call_id.as_deref().map(text),
                now,
                r.upstream_response_id.as_deref().map(text),
                r.usage_estimated,
                r.organization_id.as_deref().map(text),
            ])?;
        }
    }
    for (rollup, cell, delta) in &plan.daily {
        pace.tick();
        let mut upsert = tx.prepare_cached(crate::daily_spend::upsert_sql(*rollup))?;
        let mut i = 1;
        upsert.raw_bind_parameter(i, cell.day)?;
        for t in crate::daily_spend::upsert_texts(cell) {
            i += 1;
            upsert.raw_bind_parameter(i, t)?;
        }
        for n in crate::daily_spend::upsert_numbers(cell, delta) {
            i += 1;
            upsert.raw_bind_parameter(i, n)?;
        }
        upsert.raw_execute()?;
    }
    if !plan.key_model.is_empty() {
        let ids = key_model_ids(&tx, &plan.key_model)?;
        let mut upsert = tx.prepare_cached(crate::daily_spend::KEY_MODEL_UPSERT)?;
        let cells = crate::daily_spend::cells_by_id(&plan.key_model, &ids);
        for (span, day, id, sums) in &cells {
            pace.tick();
            upsert.raw_bind_parameter(1, span)?;
            upsert.raw_bind_parameter(2, day)?;
            upsert.raw_bind_parameter(3, id)?;
            for (i, n) in sums.iter().enumerate() {
                upsert.raw_bind_parameter(4 + i, n)?;
            }
            upsert.raw_execute()?;
        }
        let late = crate::daily_spend::late_cells(&cells, now);
        if !late.is_empty() {
            let mut count = tx.prepare_cached(crate::daily_spend::LATE_WRITE)?;
            for (span, day) in late {
                count.execute(params![span, day])?;
            }
        }
    }
    if !plan.resets.is_empty() {
        let mut reset = tx.prepare_cached(RESET_SPEND_SQL)?;
        for (token, at) in &plan.resets {
            reset.execute(named_params! {"$1": token, "$2": at})?;
        }
    }
    if !plan.increments.is_empty() {
        let mut add = tx.prepare_cached(ADD_SPEND_SQL)?;
        for (token, delta) in &plan.increments {
            add.execute(named_params! {"$1": token, "$2": delta})?;
        }
    }
    if !plan.entity_resets.is_empty() {
        let mut reset = tx.prepare_cached(RESET_ENTITY_SQL)?;
        for (entity, at) in &plan.entity_resets {
            reset.execute(named_params! {"$1": entity, "$2": at})?;
        }
    }
    if !plan.entity_increments.is_empty() {
        let mut add = tx.prepare_cached(ADD_ENTITY_SPEND_SQL)?;
        for (entity, delta) in &plan.entity_increments {
            add.execute(named_params! {"$1": entity, "$2": delta, "$3": now})?;
        }
    }
    tx.commit()
}
