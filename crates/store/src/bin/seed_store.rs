//! `bench/seed_store`: fills a gateway store with N spend-log rows and K virtual keys, fast, for
//! the store-growth bench (`bench/store_growth.sh`). The schema is the store's own (it is
//! opened, and so migrated, first). Rows are spread evenly over the last `--days` days in time
//! order (as the gateway writes them), over the keys with a skew (key i is about as busy as
//! 1/sqrt(i): a few keys carry much of the traffic, as in real fleets), five models, a user id
//! on one row in ten, an end user (of 2,000) on one in four, each key in a team (a team per 100
//! keys); each key's `spend` is the sum of its rows, as the ledger keeps it.
//! Key i is `sk-seed-<i, 6 digits>` (stored as its hash, as all keys are), so the bench can call
//! with it and ask for its rows. SQLite: one prepared insert in large transactions; Postgres:
//! `COPY ... FROM STDIN`, then `ANALYZE` (what autovacuum would have done for a store that grew
//! over a month). The daily spend rollups are then computed from the rows, as migration 9 does
//! for a store that had rows before it.
//!
//! `seed_store --db PATH|postgresql://... --rows N --keys K [--days 30] [--seed 1]`

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use idlehands_store::keygen::{abbreviate, hash_key};

const MODELS: [&str; 5] = [
    "gpt-4o",
    "gpt-4o-mini",
    "claude-sonnet-4",
    "llama-3.1-70b",
    "qwen2.5-coder-32b",
];
const DAY_MS: i64 = 86_400_000;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One spend-log row, as the columns are written.
struct Row {
    request_id: String,
    api_key_index: usize,
    spend: i64,
    prompt: i64,
    completion: i64,
    start: i64,
    end: i64,
    model: &'static str,
    user: Option<String>,
    team: String,
    end_user: Option<String>,
}

struct Seeder {
    rng: Rng,
    keys: Vec<String>,
    key_spend: Vec<i64>,
    rows: u64,
    from_ms: i64,
    span_ms: i64,
}

impl Seeder {
    fn row(&mut self, i: u64) -> Row {
        let start =
            self.from_ms + (i as i128 * self.span_ms as i128 / self.rows.max(1) as i128) as i64;
        let k = ((self.keys.len() as f64) * self.rng.unit().powi(2)) as usize;
        let k = k.min(self.keys.len() - 1);
        let prompt = 20 + self.rng.below(4000) as i64;
        let completion = 1 + self.rng.below(800) as i64;
        let model = MODELS[self.rng.below(MODELS.len() as u64) as usize];
        // About $0.15 / $0.60 per million tokens, in nano-USD.
        let spend = prompt * 150 + completion * 600;
        self.key_spend[k] = self.key_spend[k].saturating_add(spend);
        let user = (self.rng.below(10) == 0).then(|| format!("seed-user-{}", self.rng.below(1000)));
        let end_user =
            (self.rng.below(4) == 0).then(|| format!("seed-customer-{}", self.rng.below(2000)));
        let team = format!("seed-team-{}", k % (self.keys.len() / 100).max(1));
        Row {
            request_id: format!("seed-{start:013x}-{i:010}"),
            api_key_index: k,
            spend,
            prompt,
            completion,
            start,
            end: start + 200 + self.rng.below(5000) as i64,
            model,
            user,
            team,
            end_user,
        }
    }
}

const ROW_COLS: &str = "request_id, call_type, api_key, spend, total_tokens, prompt_tokens, \
    completion_tokens, start_time, end_time, completion_start_time, request_duration_ms, model, \
    model_id, model_group, custom_llm_provider, api_base, user_id, metadata, request_tags, \
    status, litellm_call_id, created_at, usage_estimated, team_id, end_user";
const KEY_COLS: &str = "token, key_name, key_alias, spend, models, created_at, updated_at";

fn fail(msg: &str) -> ! {
    eprintln!("seed_store: {msg}");
    std::process::exit(2);
}

fn seed_sqlite(path: &str, s: &mut Seeder) -> Result<(), rusqlite::Error> {
    let path = path
        .strip_prefix("sqlite://")
        .or_else(|| path.strip_prefix("sqlite:"))
        .unwrap_or(path);
    let mut conn = rusqlite::Connection::open(path)?;
    // A bench store: nothing to lose if the machine dies mid-seed.
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;
    let marks: Vec<String> = (1..=25).map(|i| format!("?{i}")).collect();
    let insert = format!(
        "INSERT INTO idlehands_spend_logs ({ROW_COLS}) VALUES ({})",
        marks.join(", ")
    );
    let mut i = 0u64;
    while i < s.rows {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(&insert)?;
            let end = (i + 200_000).min(s.rows);
            while i < end {
                let r = s.row(i);
                stmt.execute(rusqlite::params![
                    r.request_id,
                    "acompletion",
                    s.keys[r.api_key_index],
                    r.spend,
                    r.prompt + r.completion,
                    r.prompt,
                    r.completion,
                    r.start,
                    r.end,
                    r.start + 150,
                    r.end - r.start,
                    r.model,
                    "seed-deployment",
                    r.model,
                    "openai",
                    "http://127.0.0.1:18080/v1",
                    r.user,
                    "{}",
                    "[]",
                    "success",
                    // The gateway's call id is the row's key and its litellm_call_id alike.
                    r.request_id,
                    r.end,
                    false,
                    r.team,
                    r.end_user,
                ])?;
                i += 1;
            }
        }
        tx.commit()?;
        eprint!("\rseed_store: {i} rows");
    }
    eprintln!();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(&format!(
            "INSERT INTO idlehands_verification_tokens ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, '[]', ?5, ?5)"
        ))?;
        for (n, token) in s.keys.iter().enumerate() {
            stmt.execute(rusqlite::params![
                token,
                abbreviate(&key_text(n)),
                format!("seed-{n:06}"),
                s.key_spend[n],
                s.from_ms,
            ])?;
        }
    }
    tx.commit()
}

async fn seed_postgres(url: &str, s: &mut Seeder) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let mut i = 0u64;
    while i < s.rows {
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY idlehands_spend_logs ({ROW_COLS}) FROM STDIN WITH (FORMAT csv)"
            ))
            .await?;
        let end = (i + 200_000).min(s.rows);
        let mut buf = String::with_capacity(1 << 20);
        while i < end {
            let r = s.row(i);
            use std::fmt::Write;
            let _ = writeln!(
                buf,
                "{id},acompletion,{key},{spend},{total},{p},{c},{st},{en},{cs},{dur},{m},seed-deployment,{m},openai,http://127.0.0.1:18080/v1,{user},{{}},[],success,{id},{en},false,{team},{end_user}",
                id = r.request_id,
                key = s.keys[r.api_key_index],
                spend = r.spend,
                total = r.prompt + r.completion,
                p = r.prompt,
                c = r.completion,
                st = r.start,
                en = r.end,
                cs = r.start + 150,
                dur = r.end - r.start,
                m = r.model,
                user = r.user.as_deref().unwrap_or(""),
                team = r.team,
                end_user = r.end_user.as_deref().unwrap_or(""),
            );
            i += 1;
            if buf.len() > (1 << 20) - 1024 {
                copy.send(std::mem::take(&mut buf).into_bytes()).await?;
            }
        }
        if !buf.is_empty() {
            copy.send(buf.into_bytes()).await?;
        }
        copy.finish().await?;
        eprint!("\rseed_store: {i} rows");
    }
    eprintln!();
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY idlehands_verification_tokens ({KEY_COLS}) FROM STDIN WITH (FORMAT csv)"
        ))
        .await?;
    let mut buf = String::new();
    for (n, token) in s.keys.iter().enumerate() {
        use std::fmt::Write;
        let _ = writeln!(
            buf,
            "{token},{},seed-{n:06},{},[],{},{}",
            abbreviate(&key_text(n)),
            s.key_spend[n],
            s.from_ms,
            s.from_ms
        );
    }
    copy.send(buf.into_bytes()).await?;
    copy.finish().await?;
    sqlx::query("ANALYZE idlehands_spend_logs, idlehands_verification_tokens")
        .execute(&mut conn)
        .await?;
    conn.close().await
}

fn key_text(n: usize) -> String {
    format!("sk-seed-{n:06}")
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| {
        argv.iter().position(|a| a == flag).map(|i| {
            argv.get(i + 1)
                .cloned()
                .unwrap_or_else(|| fail(&format!("{flag} takes a value")))
        })
    };
    let num = |flag: &str, default: Option<u64>| -> u64 {
        match get(flag) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| fail(&format!("{flag} takes a whole number, got {v:?}"))),
            None => default.unwrap_or_else(|| fail(&format!("{flag} is required"))),
        }
    };
    let db = get("--db").unwrap_or_else(|| fail("--db PATH|postgresql://... is required"));
    let rows = num("--rows", None);
    let nkeys = num("--keys", None).max(1) as usize;
    let days = num("--days", Some(30)).max(1) as i64;
    let seed = num("--seed", Some(1));
    // Open once so the schema is the store's own, migrated to the latest version.
    match idlehands_store::Store::open(&db).await {
        Ok(store) => store.close().await,
        Err(e) => fail(&format!("--db {db}: {e}")),
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut s = Seeder {
        rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        keys: (0..nkeys).map(|n| hash_key(&key_text(n))).collect(),
        key_spend: vec![0; nkeys],
        rows,
        from_ms: now - days * DAY_MS,
        span_ms: days * DAY_MS,
    };
    let t = Instant::now();
    let postgres = db.starts_with("postgres://") || db.starts_with("postgresql://");
    let result = if postgres {
        seed_postgres(&db, &mut s).await.map_err(|e| e.to_string())
    } else {
        seed_sqlite(&db, &mut s).map_err(|e| e.to_string())
    };
    if let Err(e) = result {
        fail(&format!(
            "seeding {}: {e}",
            if postgres { "Postgres" } else { "SQLite" }
        ));
    }
    let seeded = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let rebuilt = match idlehands_store::Store::open(&db).await {
        Ok(store) => {
            let r = store.rebuild_daily_spend().await;
            store.close().await;
            r
        }
        Err(e) => Err(e),
    };
    if let Err(e) = rebuilt {
        fail(&format!("computing the daily spend rollups: {e}"));
    }
    // As for the rows: what autovacuum would have done by now (without statistics Postgres
    // took a 30-day range of the by-key rollup for a few thousand rows and sorted on disk).
    if postgres {
        let analyzed = async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&db).await?;
            // Migration 10's table too: unanalyzed, the 10M-row run planned 316 rows per
            // key-model cell (of 500,000) and read them through lossy bitmaps.
            sqlx::query(
                "ANALYZE idlehands_daily_spend_by_key, idlehands_daily_spend, \
                 idlehands_key_models, idlehands_spend_by_key_model",
            )
            .execute(&mut conn)
            .await?;
            conn.close().await
        };
        if let Err(e) = analyzed.await {
            fail(&format!("analyzing the daily spend rollups: {e}"));
        }
    }
    println!(
        "seeded {rows} spend rows and {nkeys} keys over {days} days in {seeded:.1} s; daily \
         rollups computed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}
