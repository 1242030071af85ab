//! The fleet limiter: budget reservations and rpm/tpm/parallel counters in Redis, each check
//! and its reservation one Lua script (atomic across instances), plus key invalidation between
//! instances over pub/sub.
//!
//! Budget windows roll over inside the scripts (on the next request after the boundary); the
//! database's copy of spend is reset by the ledger's periodic sweep, which in this mode covers
//! every key. Spend settled between the boundary and that sweep (at most one `reset_tick`) can
//! be missing from the database's `spend` column while Redis, which enforces, has it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use parking_lot::RwLock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use tokio::task::JoinHandle;

use crate::error::{AccessError, LimitKind, StoreError};
use crate::leases::{self, LEASE_CALLS, Leases};
use crate::ledger::Ledger;
use crate::limiter::{BoxFuture, KeyLimits, Limiter, LiveSpend, RATE_WINDOW, Ticket};
use crate::spend::SpendLogRow;
use crate::writer::SpendWriter;

/// Admissions and settlements of every key, many per script call, applied in the order they
/// were queued, each under `pcall` so that one failing does not fail (or half-apply and then
/// retry) the others. KEYS: three per distinct virtual key of the batch (state, rpm, tpm),
/// then this instance's set of the keys it holds (see below). ARGV: `now`, the rate window,
/// this instance's holdings field (see below), then per call `a`, `s` or `g`, the key's
/// number (1-based, in KEYS order) and its arguments:
///
/// - admit: the database's spend and `budget_reset_at` (seed the counters when they are
///   missing), the next reset (-1: no budget window), max budget, rpm, tpm, parallel (-1: no
///   limit), the estimate in nanos and tokens, the rpm member;
/// - settle: the next reset (-1: none, or a release), minus the nanos and tokens to give back
///   (the estimate), the actual nanos and tokens, the tpm member, `1` when the tokens count
///   toward tpm, `1` when a parallel slot is given back (`0`: a lease's call, or a lease);
/// - grant (a lease): the next reset, max budget, the nanos wanted; grants them when they are
///   at most an eighth of what the budget has left beyond spend and reservations (else
///   nothing: a tight budget is checked call by call), reserved and held like a call's
///   estimate; answers `{granted, spend}`.
///
/// A key's hash is read once per batch (`HMGET`) into Lua locals, every call of the batch for
/// that key works on them, and they are written back once at the end (`HSET` of the fields,
/// plus one `HINCRBY` of the batch's settled spend, so stored spend stays an exact integer
/// however large; comparisons and the spend answered are Lua numbers, exact to 2^53 nanos,
/// about 9 million USD, as before). The script is atomic, so this is the same as running each
/// call's commands in turn: a key with only a budget costs Redis 2 or 3 commands a batch
/// however many of its calls the batch holds (it cost 4 a call). rpm and tpm windows are kept
/// in sorted sets touched per call, and only while the key has such a limit (tokens count
/// toward a tpm window from when the key has a tpm limit: a ticket without one reserves no
/// tokens). Answers one array per call: `{code, wait or reserved, spend, left requests, left
/// tokens}` for an admission, `{spend}` (-1: the key has no counters) for a settlement, or
/// `{'x', error}`; a key whose write-back fails turns its calls' answers into that error. The
/// answers go back as one string, a line per call of numbers (`%d`: exact integers) separated
/// by spaces, or `x` and the error: the client parsed a nested array value by value, which cost
/// the gateway more than the rest of the batch's handling.
///
/// Holdings: what this instance's admitted calls hold of each key's `reserved`,
/// `reserved_tokens` and `in_flight` is a field of the key's own hash (`held:<instance>`,
/// `"<nanos> <tokens> <calls>"`), read by the same `HMGET` and written by the same `HSET`
/// as the counters, so it costs Redis no command of its own; the first time an instance holds
/// a key, the key joins that instance's set (`{prefix}holds:{instance}`). A settlement gives
/// back only what its instance still holds, so an instance that died with calls in flight can
/// have its holdings taken back by the others (see [`HEARTBEAT`]) without a late settlement
/// of its (if it was only cut off) giving them back twice.
const BATCH: &str = r#"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local holds_key = KEYS[#KEYS]
local held_field = ARGV[3]
local state = {}
local order = {}
local function count(v, name)
  if v == false or v == nil then return 0 end
  local n = tonumber(v)
  if n == nil then error('counter ' .. name .. ' is not a number') end
  return n
end
local function load(k)
  local s = state[k]
  if s then return s end
  local key = KEYS[3 * k - 2]
  local h = redis.call('HMGET', key, 'spend', 'reserved', 'reserved_tokens', 'in_flight', 'reset_at',
    held_field)
  s = {key = key, exists = false, spend = 0, d_spend = 0, reserved = 0, rtok = 0, inflight = 0,
    reset_at = -1, dirty = false, hr = 0, ht = 0, hp = 0, hdirty = false, hnew = not h[6]}
  if h[6] then
    local r, t, p = string.match(h[6], '^(%d+) (%d+) (%d+)$')
    if not r then error('holding of ' .. key .. ' is not three counts') end
    s.hr, s.ht, s.hp = tonumber(r), tonumber(t), tonumber(p)
  end
  if h[1] then
    if not string.match(h[1], '^%-?%d+$') then error('counter spend is not an integer') end
    s.exists = true
    s.spend = tonumber(h[1])
    s.reserved = count(h[2], 'reserved')
    s.rtok = count(h[3], 'reserved_tokens')
    s.inflight = count(h[4], 'in_flight')
    s.reset_at = count(h[5] or '-1', 'reset_at')
  end
  state[k] = s
  order[#order + 1] = k
  return s
end
local function roll(s, next_reset)
  s.spend = 0
  s.base = '0'
  s.d_spend = 0
  s.reset_str = next_reset
  s.reset_at = tonumber(next_reset)
  s.dirty = true
end
local function admit(k, a)
  local s = load(k)
  if not s.exists then
    s.exists = true
    s.spend = tonumber(ARGV[a])
    s.base = ARGV[a]
    s.d_spend = 0
    s.reserved, s.rtok, s.inflight = 0, 0, 0
    s.reset_str = ARGV[a + 1]
    s.reset_at = tonumber(ARGV[a + 1])
    s.dirty = true
  end
  if s.reset_at >= 0 and ARGV[a + 2] ~= '-1' and s.reset_at <= now then roll(s, ARGV[a + 2]) end
  local spend = s.spend
  local rpm = tonumber(ARGV[a + 4])
  local tpm = tonumber(ARGV[a + 5])
  local rkey, tkey = KEYS[3 * k - 1], KEYS[3 * k]
  if rpm >= 0 then redis.call('ZREMRANGEBYSCORE', rkey, '-inf', now - window) end
  if tpm >= 0 then redis.call('ZREMRANGEBYSCORE', tkey, '-inf', now - window) end
  local parallel = tonumber(ARGV[a + 6])
  if parallel >= 0 and s.inflight >= parallel then return {1, 1000, spend} end
  if rpm >= 0 and redis.call('ZCARD', rkey) >= rpm then
    local oldest = redis.call('ZRANGE', rkey, 0, 0, 'WITHSCORES')
    local wait = window
    if oldest[2] then wait = tonumber(oldest[2]) + window - now end
    return {2, wait, spend}
  end
  local used = 0
  if tpm >= 0 then
    local first = nil
    local entries = redis.call('ZRANGE', tkey, 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      used = used + (tonumber(string.match(entries[i], ':(%d+)$')) or 0)
      if first == nil then first = tonumber(entries[i + 1]) end
    end
    if used + s.rtok >= tpm then
      local wait = 1000
      if first then wait = first + window - now end
      return {3, wait, spend}
    end
  end
  local maxb = tonumber(ARGV[a + 3])
  if maxb >= 0 and spend + s.reserved >= maxb then return {4, s.reserved, spend} end
  local left_requests = -1
  if rpm >= 0 then
    redis.call('ZADD', rkey, now, ARGV[a + 9])
    redis.call('PEXPIRE', rkey, window)
    left_requests = math.max(rpm - redis.call('ZCARD', rkey), 0)
  end
  local tokens = tonumber(ARGV[a + 8])
  local left_tokens = -1
  if tpm >= 0 then left_tokens = math.max(tpm - used - s.rtok - tokens, 0) end
  s.reserved = s.reserved + tonumber(ARGV[a + 7])
  s.rtok = s.rtok + tokens
  s.inflight = s.inflight + 1
  s.dirty = true
  s.hr, s.ht, s.hp = s.hr + tonumber(ARGV[a + 7]), s.ht + tokens, s.hp + 1
  s.hdirty = true
  return {0, 0, spend, left_requests, left_tokens}
end
local function settle(k, a)
  local s = load(k)
  -- Only what this instance still holds goes back (nothing, once its holdings were taken back).
  local slot = 1
  if ARGV[a + 7] == '0' then slot = 0 end
  local back, back_tok, back_call = math.min(-tonumber(ARGV[a + 1]), s.hr),
    math.min(-tonumber(ARGV[a + 2]), s.ht), math.min(slot, s.hp)
  if back > 0 or back_tok > 0 or back_call > 0 then
    s.hr, s.ht, s.hp = s.hr - back, s.ht - back_tok, s.hp - back_call
    s.hdirty = true
  end
  if not s.exists then return -1 end
  if ARGV[a] ~= '-1' and s.reset_at >= 0 and s.reset_at <= now then roll(s, ARGV[a]) end
  local actual = tonumber(ARGV[a + 3])
  if ARGV[a + 6] == '1' and ARGV[a + 4] ~= '0' then
    redis.call('ZADD', KEYS[3 * k], now, ARGV[a + 5] .. ':' .. ARGV[a + 4])
    redis.call('PEXPIRE', KEYS[3 * k], window)
  end
  s.reserved = math.max(s.reserved - back, 0)
  s.rtok = math.max(s.rtok - back_tok, 0)
  s.inflight = math.max(s.inflight - back_call, 0)
  s.spend = s.spend + actual
  s.d_spend = s.d_spend + actual
  s.dirty = true
  return s.spend
end
local function grant(k, a)
  local s = load(k)
  if not s.exists then return {0, -1} end
  if s.reset_at >= 0 and ARGV[a] ~= '-1' and s.reset_at <= now then roll(s, ARGV[a]) end
  local maxb = tonumber(ARGV[a + 1])
  local want = tonumber(ARGV[a + 2])
  local g = 0
  if maxb >= 0 and want > 0 and want * 8 <= maxb - s.spend - s.reserved then g = want end
  if g > 0 then
    s.reserved = s.reserved + g
    s.hr = s.hr + g
    s.dirty = true
    s.hdirty = true
  end
  return {g, s.spend}
end
local out = {}
local key_of = {}
local a = 4
while a <= #ARGV do
  local k = tonumber(ARGV[a + 1])
  local ok, r
  if ARGV[a] == 'a' then
    ok, r = pcall(admit, k, a + 2)
    a = a + 12
  elseif ARGV[a] == 'g' then
    ok, r = pcall(grant, k, a + 2)
    a = a + 5
  else
    ok, r = pcall(settle, k, a + 2)
    if ok then r = {r} end
    a = a + 10
  end
  if not ok then
    if type(r) == 'table' and r.err then r = r.err end
    r = {'x', tostring(r)}
  end
  out[#out + 1] = r
  key_of[#out] = k
end
local failed = {}
for _, k in ipairs(order) do
  local s = state[k]
  if s.dirty then
    local ok, e = pcall(function()
      local f = {'reserved', string.format('%d', s.reserved), 'reserved_tokens',
        string.format('%d', s.rtok), 'in_flight', string.format('%d', s.inflight)}
      if s.hdirty then
        f[#f + 1] = held_field
        f[#f + 1] = string.format('%d %d %d', s.hr, s.ht, s.hp)
        if s.hnew then redis.call('SADD', holds_key, s.key) end
      end
      if s.reset_str then
        f[#f + 1] = 'reset_at'
        f[#f + 1] = s.reset_str
      end
      if s.base then
        f[#f + 1] = 'spend'
        f[#f + 1] = s.base
      end
      redis.call('HSET', s.key, unpack(f))
      if s.d_spend ~= 0 then redis.call('HINCRBY', s.key, 'spend', string.format('%d', s.d_spend)) end
    end)
    if not ok then
      if type(e) == 'table' and e.err then e = e.err end
      failed[k] = tostring(e)
    end
  end
end
local lines = {}
for i = 1, #out do
  local r = out[i]
  if failed[key_of[i]] then r = {'x', failed[key_of[i]]} end
  if r[1] == 'x' then
    lines[i] = 'x ' .. (string.gsub(r[2], '\n', ' '))
  else
    for j = 1, #r do r[j] = string.format('%d', r[j]) end
    lines[i] = table.concat(r, ' ')
  end
end
return table.concat(lines, '\n')
"#;

/// An instance's heartbeat, and the holdings of instances whose heartbeat stopped taken
/// back. KEYS: the instances' sorted set. ARGV: this instance, the timeout in ms, the prefix
/// of the instances' sets of held keys. Redis's own clock scores the heartbeats, so the
/// instances' clocks need not agree. For each instance silent longer than the timeout (at
/// most 16 a call), its holding of each key in its set is taken off that key's `reserved`,
/// `reserved_tokens` and `in_flight` (never below zero; keys since deleted are skipped) and
/// the field deleted, then the set and the instance's entry go. Answers `{instances, calls,
/// nanos}` taken back. The sets name keys that are not in KEYS, so this needs one Redis
/// server, not a cluster (as the batches do).
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, 16)
local calls, nanos = 0, 0
for _, d in ipairs(dead) do
  local set = ARGV[3] .. d
  local field = 'held:' .. d
  for _, key in ipairs(redis.call('SMEMBERS', set)) do
    local h = redis.call('HMGET', key, 'reserved', 'reserved_tokens', 'in_flight', field)
    local r, tk, p = nil, nil, nil
    if h[4] then r, tk, p = string.match(h[4], '^(%d+) (%d+) (%d+)$') end
    if r then
      redis.call('HSET', key,
        'reserved', string.format('%d', math.max((tonumber(h[1]) or 0) - tonumber(r), 0)),
        'reserved_tokens', string.format('%d', math.max((tonumber(h[2]) or 0) - tonumber(tk), 0)),
        'in_flight', string.format('%d', math.max((tonumber(h[3]) or 0) - tonumber(p), 0)))
      calls = calls + tonumber(p)
      nanos = nanos + tonumber(r)
    end
    if h[4] then redis.call('HDEL', key, field) end
  end
  redis.call('DEL', set)
  redis.call('ZREM', KEYS[1], d)
end
return {#dead, calls, nanos}
"#;

/// How long an instance may go without a heartbeat before the others take back what its calls
/// held (`general_settings.redis_instance_timeout`). Heartbeats go every
/// [`HEARTBEAT_EVERY`].
pub const INSTANCE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an instance that Redis answers sends its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

// ARGV: overwrite_spend ('1'/'0'), spend, reset_at (-1 = no window)
const RECONFIGURE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'spend', ARGV[2]) end
local cur = tonumber(redis.call('HGET', KEYS[1], 'reset_at') or '-1')
local new = tonumber(ARGV[3])
if new == -1 or new > cur then redis.call('HSET', KEYS[1], 'reset_at', ARGV[3]) end
return 1
"#;

/// How long one Redis command may take before it counts as failed. Admission waits on it, so
/// it is short; a healthy Redis answers in well under a millisecond.
pub const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection manager that reconnects within about a second. The client's default retry
/// schedule grows by a factor of 100 per attempt up to a minute, which kept a fleet refusing
/// (or paying a timeout per call) for one to two minutes after Redis came back.
pub async fn connection_manager(client: redis::Client) -> Result<ConnectionManager, StoreError> {
    let config = ConnectionManagerConfig::new()
        .set_factor(2)
        .set_exponent_base(2)
        .set_max_delay(500)
        .set_number_of_retries(2)
        .set_connection_timeout(REDIS_RESPONSE_TIMEOUT)
        .set_response_timeout(REDIS_RESPONSE_TIMEOUT);
    Ok(client.get_connection_manager_with_config(config).await?)
}

/// Most settlements kept for Redis while it is down; past this, the oldest are dropped with an
/// error logged (their spend rows are stored all the same).
const MAX_BACKLOG: usize = 100_000;

/// A settlement (or a release) Redis has not taken yet: replayed when it answers again, so
/// a short outage does not leave reservations held in the shared counters forever.
#[derive(Debug, Clone)]
struct Unsettled {
    token: String,
    estimate_nanos: i64,
    estimate_tokens: u64,
    actual_nanos: i64,
    actual_tokens: i64,
    budget_window: Option<crate::duration::LlmDuration>,
    /// The ticket's id: with the instance's id, its member in the tpm window.
    id: u64,
    /// `false` for a release: nothing spent, no tokens for tpm.
    settled: bool,
    /// The key had a tpm limit at admission: its tokens count in the tpm window.
    track_tokens: bool,
    /// The call held a parallel slot (calls admitted against a lease, and leases, hold none).
    slot: bool,
}

impl Unsettled {
    /// Gives back `nanos` of what this instance holds of the key without spending anything
    /// (what a lease has left).
    fn give_back(token: String, nanos: i64) -> Unsettled {
        Unsettled {
            token,
            estimate_nanos: nanos,
            estimate_tokens: 0,
            actual_nanos: 0,
            actual_tokens: 0,
            budget_window: None,
            id: 0,
            settled: false,
            track_tokens: false,
            slot: false,
        }
    }
}

/// Most calls one script call carries. Calls queued while a batch is in Redis wait for the
/// next one, so under load a batch holds what arrived during one round trip.
const MAX_BATCH: usize = 256;

/// One call for the batch script.
enum Op {
    Admit {
        token: String,
        /// The admission's arguments after the key's number (see [`BATCH`]), but the member.
        args: [i64; 9],
        /// The key has an rpm limit: the call is a member of its rpm window.
        rpm_member: bool,
        id: u64,
    },
    Settle(Unsettled),
    /// A lease (see [`BATCH`]'s grant): the next reset, max budget, nanos wanted.
    Grant {
        token: String,
        args: [i64; 3],
    },
}

impl Op {
    fn token(&self) -> &str {
        match self {
            Op::Admit { token, .. } | Op::Grant { token, .. } => token,
            Op::Settle(u) => &u.token,
        }
    }
}

/// Why a queued call got no answer: Redis failed (the whole batch), the script failed for
/// this call alone, or the batcher is gone (shutdown).
#[derive(Debug, Clone)]
struct BatchFailed(String);

impl std::fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Answer = Result<Vec<i64>, BatchFailed>;

struct Queued {
    op: Op,
    answer: tokio::sync::oneshot::Sender<Answer>,
}

/// Sends queued calls to Redis, as many as are waiting in one script call, one call at a
/// time: an admission still waits for its own answer, and a settlement is applied in the
/// order it came, but a busy instance makes one round trip and one script call for many
/// requests instead of one each. (The gateway queues a call's settlement as its response
/// leaves, without waiting for it.)
async fn run_batches(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Queued>,
    conn: ConnectionManager,
    prefix: String,
    instance: String,
    clock: Arc<dyn crate::clock::Clock>,
) {
    let script = Script::new(BATCH);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let window = RATE_WINDOW.as_millis() as i64;
    let mut member = String::new();
    let holds = holds_name(&prefix, &instance);
    let field = format!("held:{instance}");
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut call = script.prepare_invoke();
        let now = clock.now();
        call.arg(ms(now)).arg(window).arg(&field);
        // Each key's names go once, however many of the batch's calls are its.
        let mut numbers: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
        for q in &batch {
            let token = q.op.token();
            let next = numbers.len() + 1;
            let number = *numbers.entry(token).or_insert_with(|| {
                for name in key_names(&prefix, token) {
                    call.key(name);
                }
                next
            });
            match &q.op {
                Op::Admit {
                    args,
                    rpm_member,
                    id,
                    ..
                } => {
                    call.arg("a").arg(number);
                    for a in args {
                        call.arg(*a);
                    }
                    call.arg(if *rpm_member {
                        member_of(&mut member, &instance, *id)
                    } else {
                        ""
                    });
                }
                Op::Settle(u) => {
                    let next_reset = match (u.settled, u.budget_window) {
                        (true, Some(d)) => ms(d.next_reset(now)),
                        _ => -1,
                    };
                    let track = u.settled && u.track_tokens && u.actual_tokens != 0;
                    call.arg("s")
                        .arg(number)
                        .arg(next_reset)
                        .arg(-u.estimate_nanos)
                        .arg(-(u.estimate_tokens as i64))
                        .arg(u.actual_nanos)
                        .arg(u.actual_tokens)
                        .arg(if track {
                            member_of(&mut member, &instance, u.id)
                        } else {
                            ""
                        })
                        .arg(if track { "1" } else { "0" })
                        .arg(if u.slot { "1" } else { "0" });
                }
                Op::Grant { args, .. } => {
                    call.arg("g").arg(number);
                    for a in args {
                        call.arg(*a);
                    }
                }
            }
        }
        drop(numbers);
        call.key(&holds);
        let mut conn = conn.clone();
        let reply: Result<Vec<u8>, _> = call.invoke_async(&mut conn).await;
        let lines = match &reply {
            Ok(text) => std::str::from_utf8(text)
                .map(|t| t.split('\n').collect::<Vec<_>>())
                .map_err(|e| BatchFailed(format!("redis batch answer is not text: {e}"))),
            Err(e) => Err(BatchFailed(e.to_string())),
        }
        .and_then(|lines| {
            if lines.len() == batch.len() {
                Ok(lines)
            } else {
                Err(BatchFailed(format!(
                    "redis batch answered {} of {} calls",
                    lines.len(),
                    batch.len()
                )))
            }
        });
        match lines {
            Ok(lines) => {
                for (q, line) in batch.drain(..).zip(lines) {
                    let _ = q.answer.send(answer_of(line));
                }
            }
            Err(e) => {
                for q in batch.drain(..) {
                    let _ = q.answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A call's member in the key's rpm or tpm window: unique across the fleet.
fn member_of<'a>(buf: &'a mut String, instance: &str, id: u64) -> &'a str {
    use std::fmt::Write as _;
    buf.clear();
    let _ = write!(buf, "{instance}-{id}");
    buf.as_str()
}

/// A virtual key's state, rpm and tpm keys. They share a hash tag, so the per-key scripts
/// touch one slot (a batch spans many keys: see README, Fleet mode).
fn key_names(prefix: &str, token: &str) -> [String; 3] {
    [
        format!("{prefix}{{{token}}}:state"),
        format!("{prefix}{{{token}}}:rpm"),
        format!("{prefix}{{{token}}}:tpm"),
    ]
}

/// The set of the keys whose hashes hold an instance's holdings field (see [`BATCH`]).
fn holds_name(prefix: &str, instance: &str) -> String {
    format!("{prefix}holds:{instance}")
}

/// The fleet's instances, each scored by its last heartbeat (Redis's clock, ms).
fn instances_name(prefix: &str) -> String {
    format!("{prefix}instances")
}

/// One call's line of the batch's answer (see [`BATCH`]).
fn answer_of(line: &str) -> Answer {
    if let Some(error) = line.strip_prefix("x ") {
        return Err(BatchFailed(format!("redis script failed: {error}")));
    }
    line.split(' ')
        .map(|n| {
            n.parse::<i64>()
                .map_err(|_| BatchFailed(format!("unexpected redis answer {line:?}")))
        })
        .collect()
}

/// What a settlement needs, shared with the tasks that release reservations.
struct Settler {
    queue: tokio::sync::mpsc::UnboundedSender<Queued>,
    backlog: parking_lot::Mutex<std::collections::VecDeque<Unsettled>>,
    /// Judges budget windows.
    clock: Arc<dyn crate::clock::Clock>,
}

impl Settler {
    /// Queues `op` for the next batch; the answer comes when that batch returns.
    fn submit(&self, op: Op) -> tokio::sync::oneshot::Receiver<Answer> {
        let (answer, rx) = tokio::sync::oneshot::channel();
        // A closed queue drops `answer`: the receiver then reports the batcher gone.
        let _ = self.queue.send(Queued { op, answer });
        rx
    }

    async fn wait(rx: tokio::sync::oneshot::Receiver<Answer>) -> Answer {
        rx.await
            .unwrap_or_else(|_| Err(BatchFailed("the redis batcher stopped".to_owned())))
    }

    async fn call(&self, op: Op) -> Answer {
        Self::wait(self.submit(op)).await
    }

    async fn apply(&self, u: &Unsettled) -> Result<i64, BatchFailed> {
        let answer = self.call(Op::Settle(u.clone())).await?;
        answer
            .first()
            .copied()
            .ok_or_else(|| BatchFailed("empty settlement answer".to_owned()))
    }

    /// Gives back `nanos` of what this instance holds of the key (a lease's unspent rest),
    /// without waiting; kept for later if Redis fails.
    fn give_back(self: &Arc<Self>, token: String, nanos: i64) {
        if nanos > 0 {
            self.apply_later(Unsettled::give_back(token, nanos), true);
        }
    }

    /// Applies `u` in a coming batch without waiting for it; kept for when Redis answers
    /// again if `try_now` is false (Redis is known down), outside a runtime, or if the batch
    /// fails.
    fn apply_later(self: &Arc<Self>, u: Unsettled, try_now: bool) {
        let handle = match tokio::runtime::Handle::try_current() {
            Ok(h) if try_now => h,
            _ => return self.defer(u),
        };
        let settler = self.clone();
        handle.spawn(async move {
            if let Err(e) = settler.apply(&u).await {
                tracing::warn!(error = %e, "giving a reservation back to redis failed; retried when redis answers");
                settler.defer(u);
            }
        });
    }

    fn defer(&self, u: Unsettled) {
        let mut backlog = self.backlog.lock();
        if backlog.len() >= MAX_BACKLOG
            && let Some(old) = backlog.pop_front()
        {
            tracing::error!(
                key = %old.token,
                "too many settlements waiting for Redis: the oldest is dropped, so the key's shared counters keep its reservation until Redis restarts (its spend row is stored)"
            );
        }
        backlog.push_back(u);
    }
}

async fn run_id(conn: &ConnectionManager) -> Option<String> {
    let mut conn = conn.clone();
    let mut cmd = redis::cmd("INFO");
    let info: String = tokio::time::timeout(
        REDIS_RESPONSE_TIMEOUT,
        cmd.arg("server").query_async(&mut conn),
    )
    .await
    .ok()?
    .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
}

/// Budget and rate-limit counters shared by every instance through Redis.
pub struct RedisLimiter {
    conn: ConnectionManager,
    /// Whether Redis answered the last command or probe. While it is false, the request path
    /// does not touch Redis at all (see [`RedisLimiter::probe`]), so an outage costs no
    /// timeout per call.
    up: AtomicBool,
    settler: Arc<Settler>,
    /// The Redis server's `run_id`: a new one means Redis restarted and its counters are gone.
    run_id: parking_lot::Mutex<Option<String>>,
    prefix: String,
    writer: SpendWriter,
    budget_exceeded_status: u16,
    known_spend: Arc<RwLock<HashMap<String, i64>>>,
    reconfigure: Arc<Script>,
    next_id: AtomicU64,
    /// This instance's name in the fleet's heartbeats and holdings.
    instance: String,
    heartbeat: Script,
    instance_timeout: Duration,
    last_heartbeat: parking_lot::Mutex<Option<std::time::Instant>>,
    leases: Arc<Leases>,
}

/// What a heartbeat took back from instances that stopped: how many instances, calls, nanos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reclaimed {
    pub instances: i64,
    pub calls: i64,
    pub nanos: i64,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl RedisLimiter {
    /// `prefix` namespaces every Redis key (e.g. `idlehands:`).
    pub async fn connect(
        url: &str,
        prefix: &str,
        writer: SpendWriter,
        budget_exceeded_status: u16,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<RedisLimiter, StoreError> {
        let client = redis::Client::open(url)?;
        let conn = connection_manager(client).await?;
        let run_id = parking_lot::Mutex::new(run_id(&conn).await);
        // The batcher ends when the limiter (and with it the queue's sender) is dropped, after
        // answering what was queued.
        let (queue, queued) = tokio::sync::mpsc::unbounded_channel();
        let instance = uuid::Uuid::new_v4().simple().to_string();
        tokio::spawn(run_batches(
            queued,
            conn.clone(),
            prefix.to_owned(),
            instance.clone(),
            clock.clone(),
        ));
        let limiter = RedisLimiter {
            settler: Arc::new(Settler {
                queue,
                backlog: parking_lot::Mutex::new(std::collections::VecDeque::new()),
                clock,
            }),
            run_id,
            conn,
            up: AtomicBool::new(true),
            prefix: prefix.to_owned(),
            writer,
            budget_exceeded_status,
            known_spend: Arc::new(RwLock::new(HashMap::new())),
            reconfigure: Arc::new(Script::new(RECONFIGURE)),
            next_id: AtomicU64::new(1),
            instance,
            heartbeat: Script::new(HEARTBEAT),
            instance_timeout: INSTANCE_TIMEOUT,
            last_heartbeat: parking_lot::Mutex::new(None),
            leases: Arc::new(Leases::default()),
        };
        // Registered before its first call can hold anything, so that its holdings are taken
        // back even if it dies before the first periodic heartbeat. (Nothing is taken back
        // here: the timeout to judge others by is set after this.)
        limiter.beat(None).await?;
        Ok(limiter)
    }

    /// How long this instance lets another go without a heartbeat before taking back what
    /// that one's calls held (default [`INSTANCE_TIMEOUT`]).
    pub fn with_instance_timeout(mut self, timeout: Duration) -> RedisLimiter {
        self.instance_timeout = timeout;
        self
    }

    /// What this instance's lease on the key (a limiter token) has left for new calls, if it
    /// holds one (see [`crate::leases`]).
    pub fn lease_left(&self, token: &str) -> Option<i64> {
        self.leases.left(token)
    }

    /// Sends this instance's heartbeat and takes back the holdings of instances silent for
    /// longer than the instance timeout, logging what it took; on the same beat, gives back
    /// this instance's idle leases. [`RedisLimiter::probe`] calls it every
    /// [`HEARTBEAT_EVERY`].
    pub async fn heartbeat(&self) -> Result<Reclaimed, StoreError> {
        self.beat(Some(self.instance_timeout)).await
    }

    /// A heartbeat that takes back the holdings of instances silent for longer than
    /// `reclaim_after` (`None`: only the heartbeat).
    async fn beat(&self, reclaim_after: Option<Duration>) -> Result<Reclaimed, StoreError> {
        let mut conn = self.conn.clone();
        let mut call = self.heartbeat.prepare_invoke();
        // Lua numbers are exact to 2^53: "never" is a timeout far past any heartbeat.
        let timeout_ms = reclaim_after.map_or(1 << 52, |t| t.as_millis().min(1 << 52) as i64);
        call.key(instances_name(&self.prefix))
            .arg(&self.instance)
            .arg(timeout_ms)
            .arg(holds_name(&self.prefix, ""));
        let answer: Vec<i64> = match tokio::time::timeout(
            REDIS_RESPONSE_TIMEOUT,
            call.invoke_async(&mut conn),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => {
                return Err(StoreError::Internal(
                    "redis heartbeat: no answer within 1s".to_owned(),
                ));
            }
        };
        *self.last_heartbeat.lock() = Some(std::time::Instant::now());
        for (token, nanos) in self.leases.idle() {
            self.settler.give_back(token, nanos);
        }
        let reclaimed = Reclaimed {
            instances: answer.first().copied().unwrap_or(0),
            calls: answer.get(1).copied().unwrap_or(0),
            nanos: answer.get(2).copied().unwrap_or(0),
        };
        if reclaimed.calls > 0 || reclaimed.nanos > 0 {
            tracing::warn!(
                instances = reclaimed.instances,
                calls = reclaimed.calls,
                reserved_usd = reclaimed.nanos as f64 / 1e9,
                timeout_s = self.instance_timeout.as_secs_f64(),
                "fleet instances stopped sending heartbeats: the reservations and in-flight counts of their unfinished calls were given back"
            );
        } else if reclaimed.instances > 0 {
            // An instance stopped with nothing in flight (a graceful stop, a restart).
            tracing::info!(
                instances = reclaimed.instances,
                "fleet instances stopped sending heartbeats; they held nothing"
            );
        }
        Ok(reclaimed)
    }

    /// Whether Redis is answering, as of the last command or probe.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Records a failed command: requests stop using Redis until [`RedisLimiter::probe`]
    /// sees it answer again.
    pub fn mark_down(&self) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::error!("redis stopped answering");
        }
    }

    /// PINGs Redis (through the same connection, which reconnects on the way) and records
    /// the answer; returns whether it answered. Run it every few hundred milliseconds.
    pub async fn probe(&self) -> bool {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        let mut ok = matches!(
            tokio::time::timeout(REDIS_RESPONSE_TIMEOUT * 2, ping).await,
            Ok(Ok(_))
        );
        if ok && (!self.is_up() || !self.settler.backlog.lock().is_empty()) {
            // Before requests use Redis again: their admissions would re-seed lost counters.
            ok = self.catch_up().await;
        }
        let due = self
            .last_heartbeat
            .lock()
            .is_none_or(|t| t.elapsed() >= HEARTBEAT_EVERY);
        if ok
            && due
            && let Err(e) = self.heartbeat().await
        {
            tracing::warn!(error = %e, "redis heartbeat failed");
            ok = false;
        }
        let was = self.up.swap(ok, Ordering::AcqRel);
        if ok && !was {
            tracing::info!("redis answers again: fleet limits are shared again");
        } else if !ok && was {
            tracing::error!("redis stopped answering");
        }
        ok
    }

    /// After an outage: settlements made meanwhile are applied to the counters, unless Redis
    /// restarted, which took the counters (and the reservations in them) away: they are
    /// seeded again from the database, where those calls' rows are. `false` if Redis failed
    /// again on the way.
    async fn catch_up(&self) -> bool {
        // A Redis that does not serve INFO (some managed ones) counts as not restarted.
        let restarted = match run_id(&self.conn).await {
            Some(now_id) => {
                let mut known = self.run_id.lock();
                let restarted = known.as_deref().is_some_and(|k| k != now_id);
                *known = Some(now_id);
                restarted
            }
            None => false,
        };
        let waiting: Vec<Unsettled> = self.settler.backlog.lock().drain(..).collect();
        if restarted {
            self.known_spend.write().clear();
            self.leases.clear();
            if !waiting.is_empty() {
                tracing::warn!(
                    settlements = waiting.len(),
                    "redis restarted: its counters start again from the database's spend"
                );
            }
            return true;
        }
        // All queued at once, so they go in a few batches rather than a round trip each.
        let answers: Vec<_> = waiting
            .into_iter()
            .map(|u| {
                let rx = self.settler.submit(Op::Settle(u.clone()));
                (u, rx)
            })
            .collect();
        let mut failed = Vec::new();
        for (u, rx) in answers {
            if Settler::wait(rx).await.is_err() {
                failed.push(u);
            }
        }
        if failed.is_empty() {
            return true;
        }
        let mut backlog = self.settler.backlog.lock();
        for u in failed.into_iter().rev() {
            backlog.push_front(u);
        }
        false
    }

    /// Records the key's shared spend as Redis last answered it; the key's name is copied only
    /// the first time (this runs twice per call).
    fn remember_spend(&self, token: &str, spend: i64) {
        let mut known = self.known_spend.write();
        match known.get_mut(token) {
            Some(s) => *s = spend,
            None => {
                known.insert(token.to_owned(), spend);
            }
        }
    }

    /// A settlement of `ticket`, which spent `actual_nanos`: what it gives back of what this
    /// instance holds (see [`Leases::settled`] for a call admitted against a lease).
    fn settlement(&self, ticket: &Ticket, actual_nanos: i64, actual_tokens: i64) -> Unsettled {
        let leased = leases::is_leased(ticket.id);
        let give_back = if leased {
            self.leases.settled(
                &ticket.token,
                ticket.id,
                ticket.estimate_nanos,
                Some(actual_nanos),
            )
        } else {
            ticket.estimate_nanos
        };
        Unsettled {
            token: ticket.token.clone(),
            estimate_nanos: give_back,
            estimate_tokens: ticket.estimate_tokens,
            actual_nanos,
            actual_tokens,
            budget_window: ticket.budget_window,
            id: ticket.id,
            settled: true,
            // Set exactly when the key had a tpm limit (an admission answers -1 otherwise).
            track_tokens: ticket.remaining_tokens.is_some(),
            slot: !leased,
        }
    }

    /// Asks Redis for a lease on a budget-limited key (see [`crate::leases`]): as many nanos
    /// as [`LEASE_CALLS`] calls like this one are estimated at, granted only when that is at
    /// most an eighth of what the budget has left; the answer is applied when it comes,
    /// without holding up the call that asked.
    fn ask_lease(&self, key: &KeyLimits, estimate: i64, generation: u64, now: DateTime<Utc>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.leases.granted(&key.token, generation, None);
            return;
        };
        let rx = self.settler.submit(Op::Grant {
            token: key.token.clone(),
            args: [
                Self::next_reset(Some(key), now),
                key.max_budget.unwrap_or(-1),
                estimate.max(1).saturating_mul(LEASE_CALLS),
            ],
        });
        let (leases, settler, token) =
            (self.leases.clone(), self.settler.clone(), key.token.clone());
        handle.spawn(async move {
            let granted = Settler::wait(rx)
                .await
                .ok()
                .and_then(|r| r.first().copied());
            let back = leases.granted(&token, generation, granted);
            settler.give_back(token, back);
        });
    }

    fn keys(&self, token: &str) -> [String; 3] {
        key_names(&self.prefix, token)
    }

    fn next_reset(limits: Option<&KeyLimits>, now: DateTime<Utc>) -> i64 {
        limits
            .and_then(|l| l.budget_duration)
            .map(|d| ms(d.next_reset(now)))
            .unwrap_or(-1)
    }
}

fn to_limit(v: Option<u64>) -> i64 {
    v.map(|v| v.min(i64::MAX as u64) as i64).unwrap_or(-1)
}

impl Limiter for RedisLimiter {
    fn admit<'a>(
        &'a self,
        key: &'a KeyLimits,
        estimate_nanos: i64,
        estimate_tokens: u64,
    ) -> BoxFuture<'a, Result<Ticket, AccessError>> {
        Box::pin(async move {
            let now = self.settler.clock.now();
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let estimate_nanos = estimate_nanos.max(0);
            // Tokens are reserved only against a tpm limit (see BATCH).
            let estimate_tokens = if key.tpm_limit.is_some() {
                estimate_tokens
            } else {
                0
            };
            let lease = leases::kind_of(key);
            if lease.is_some()
                && self.is_up()
                && let Some(id) = self.leases.take(&key.token, estimate_nanos)
            {
                return Ok(Ticket {
                    token: key.token.clone(),
                    estimate_nanos,
                    estimate_tokens: 0,
                    budget_window: key.budget_duration,
                    id,
                    remaining_requests: None,
                    remaining_tokens: None,
                });
            }
            let reply = self
                .settler
                .call(Op::Admit {
                    token: key.token.clone(),
                    args: [
                        key.spend,
                        key.budget_reset_at.map(ms).unwrap_or(-1),
                        Self::next_reset(Some(key), now),
                        key.max_budget.unwrap_or(-1),
                        to_limit(key.rpm_limit),
                        to_limit(key.tpm_limit),
                        to_limit(key.max_parallel_requests),
                        estimate_nanos,
                        estimate_tokens as i64,
                    ],
                    rpm_member: key.rpm_limit.is_some(),
                    id,
                })
                .await;
            let (code, wait_ms, spend, left_requests, left_tokens) = match reply {
                Ok(r) if r.len() >= 3 => (
                    r[0],
                    r[1],
                    r[2],
                    r.get(3).copied().unwrap_or(-1),
                    r.get(4).copied().unwrap_or(-1),
                ),
                Ok(_) => return Err(AccessError::Unavailable),
                Err(e) => {
                    tracing::warn!(error = %e, "redis limiter unavailable");
                    self.mark_down();
                    return Err(AccessError::Unavailable);
                }
            };
            self.remember_spend(&key.token, spend);
            let wait = Duration::from_millis(wait_ms.max(0) as u64);
            let limited = |kind, limit: Option<u64>| {
                let secs = wait.as_secs().max(1)
                    + u64::from(wait.subsec_nanos() > 0 && wait.as_secs() >= 1);
                AccessError::RateLimited {
                    scope: "api_key",
                    key_hash: key.token.clone(),
                    kind,
                    limit: limit.unwrap_or(0),
                    reset_at: now + chrono::Duration::seconds(secs as i64),
                    retry_after_secs: secs,
                }
            };
            if code == 0
                && let Some(kind) = lease
                && let Some(generation) = self.leases.after_admission(key, kind)
            {
                self.ask_lease(key, estimate_nanos, generation, now);
            }
            match code {
                0 => Ok(Ticket {
                    token: key.token.clone(),
                    estimate_nanos,
                    estimate_tokens,
                    budget_window: key.budget_duration,
                    id,
                    remaining_requests: u64::try_from(left_requests).ok(),
                    remaining_tokens: u64::try_from(left_tokens).ok(),
                }),
                1 => Err(limited(LimitKind::Parallel, key.max_parallel_requests)),
                2 => Err(limited(LimitKind::Requests, key.rpm_limit)),
                3 => Err(limited(LimitKind::Tokens, key.tpm_limit)),
                _ => Err(AccessError::BudgetExceeded {
                    key_alias: key.key_alias.clone(),
                    key_name: key.key_name.clone(),
                    spend_nanos: spend,
                    // The script puts the key's reservations where a wait would be.
                    reserved_nanos: wait_ms.max(0),
                    max_budget_nanos: key.max_budget.unwrap_or(0),
                    status: self.budget_exceeded_status,
                }),
            }
        })
    }

    fn settle(&self, ticket: Ticket, mut row: SpendLogRow) -> BoxFuture<'_, i64> {
        Box::pin(async move {
            row.api_key = ticket.row_api_key();
            let u = self.settlement(&ticket, row.spend.max(0), row.total_tokens);
            // While Redis is down the settlement waits for it (the row goes to the database
            // now, whatever happens).
            let settled = if self.is_up() {
                self.settler.apply(&u).await.ok()
            } else {
                None
            };
            let spend = match settled {
                Some(spend) => spend,
                None => {
                    tracing::warn!("redis is down: the settlement is applied when it answers");
                    let spend = self
                        .known_spend
                        .read()
                        .get(&ticket.token)
                        .map_or(0, |s| s + row.spend.max(0));
                    self.settler.defer(u);
                    self.mark_down();
                    spend
                }
            };
            if spend >= 0 {
                self.remember_spend(&ticket.token, spend);
            }
            self.writer.log(row).await;
            spend.max(0)
        })
    }

    fn settle_counters(&self, ticket: Ticket, spend: i64, tokens: i64) -> BoxFuture<'_, i64> {
        Box::pin(async move {
            let u = self.settlement(&ticket, spend.max(0), tokens);
            let settled = if self.is_up() {
                self.settler.apply(&u).await.ok()
            } else {
                None
            };
            match settled {
                Some(spend) => {
                    self.remember_spend(&ticket.token, spend);
                    spend.max(0)
                }
                None => {
                    self.settler.defer(u);
                    self.mark_down();
                    0
                }
            }
        })
    }

    fn release(&self, ticket: Ticket) {
        if leases::is_leased(ticket.id) {
            let back = self
                .leases
                .settled(&ticket.token, ticket.id, ticket.estimate_nanos, None);
            return self.settler.give_back(ticket.token, back);
        }
        let u = Unsettled {
            token: ticket.token,
            estimate_nanos: ticket.estimate_nanos,
            estimate_tokens: ticket.estimate_tokens,
            actual_nanos: 0,
            actual_tokens: 0,
            budget_window: None,
            id: ticket.id,
            settled: false,
            track_tokens: false,
            slot: true,
        };
        self.settler.apply_later(u, self.is_up());
    }

    fn spend(&self, token: &str) -> Option<i64> {
        self.known_spend.read().get(token).copied()
    }

    fn live<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Option<LiveSpend>> {
        Box::pin(async move {
            if !self.is_up() {
                return None;
            }
            let [state, _, _] = self.keys(token);
            let mut conn = self.conn.clone();
            let read: Result<(Option<i64>, Option<i64>), _> =
                conn.hget(state, &["spend", "reserved"]).await;
            match read {
                Ok((Some(spend), reserved)) => Some(LiveSpend {
                    spend,
                    reserved: reserved.unwrap_or(0).max(0),
                }),
                Ok((None, _)) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "redis read of a key's spend failed");
                    None
                }
            }
        })
    }

    fn reconfigure(&self, key: &KeyLimits, spend_overwritten: bool) {
        let back = self.leases.reconfigured(key, spend_overwritten);
        self.settler.give_back(key.token.clone(), back);
        if spend_overwritten {
            self.known_spend
                .write()
                .insert(key.token.clone(), key.spend);
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let [state, _, _] = self.keys(&key.token);
        let mut conn = self.conn.clone();
        let script = self.reconfigure.clone();
        let (spend, reset_at) = (key.spend, key.budget_reset_at.map(ms).unwrap_or(-1));
        handle.spawn(async move {
            let r: Result<i64, _> = script
                .key(state)
                .arg(if spend_overwritten { "1" } else { "0" })
                .arg(spend)
                .arg(reset_at)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "redis reconfigure failed");
            }
        });
    }

    fn forget(&self, token: &str) {
        self.invalidated(token);
        self.known_spend.write().remove(token);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let keys = self.keys(token);
        let mut conn = self.conn.clone();
        handle.spawn(async move {
            let r: Result<i64, _> = conn.del(&keys[..]).await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "redis forget failed");
            }
        });
    }

    fn tick(&self, _now: DateTime<Utc>) -> HashSet<String> {
        // Redis rolls windows itself; the database sweep covers every key.
        HashSet::new()
    }

    fn invalidated(&self, token: &str) {
        let back = self.leases.drop_lease(token);
        self.settler.give_back(token.to_owned(), back);
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let answers: Vec<_> = self
                .leases
                .drain()
                .into_iter()
                .map(|(token, nanos)| {
                    self.settler
                        .submit(Op::Settle(Unsettled::give_back(token, nanos)))
                })
                .collect();
            for rx in answers {
                // A lease not given back now is given back by another instance once this
                // one's heartbeats stop.
                if let Err(e) = Settler::wait(rx).await {
                    tracing::warn!(error = %e, "giving a lease back at shutdown failed");
                }
            }
        })
    }
}

impl Ledger {
    /// A ledger whose budgets and limits live in Redis (shared by a fleet), with key changes
    /// broadcast on `{prefix}invalidate` so every instance drops its cached copy at once.
    pub async fn start_with_redis(
        store: crate::Store,
        cfg: crate::LedgerConfig,
        redis_url: &str,
        prefix: &str,
    ) -> Result<(Ledger, JoinHandle<()>), StoreError> {
        let writer = SpendWriter::start(store.clone(), cfg.writer.clone());
        let limiter = RedisLimiter::connect(
            redis_url,
            prefix,
            writer.clone(),
            cfg.budget_exceeded_status,
            cfg.clock.clone(),
        )
        .await?;
        let ledger = Ledger::with_limiter(store, writer, Arc::new(limiter), cfg);
        let listener =
            subscribe_invalidations(&ledger, redis_url, &format!("{prefix}invalidate")).await?;
        Ok((ledger, listener))
    }
}

/// Longest wait between two attempts to re-subscribe after the subscription broke.
const RESUBSCRIBE_MAX_WAIT: Duration = Duration::from_secs(1);

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSub, StoreError> {
    let work = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, StoreError>(pubsub)
    };
    match tokio::time::timeout(REDIS_RESPONSE_TIMEOUT * 2, work).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Internal(
            "subscribing to key invalidations: no answer from Redis".to_string(),
        )),
    }
}

/// Publishes this ledger's key changes on `channel` and applies other instances' changes.
/// The returned task listens until aborted. When the subscription breaks (Redis restarted,
/// connection cut) it subscribes again, retrying within a second, and then re-reads every
/// key from the database: changes announced while it was gone were lost.
pub async fn subscribe_invalidations(
    ledger: &Ledger,
    redis_url: &str,
    channel: &str,
) -> Result<JoinHandle<()>, StoreError> {
    let client = redis::Client::open(redis_url)?;
    let publisher = connection_manager(client.clone()).await?;
    let first = subscribe(&client, channel).await?;
    let ch = channel.to_owned();
    ledger.on_invalidate(move |token| {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut conn = publisher.clone();
        let (ch, token) = (ch.clone(), token.to_owned());
        handle.spawn(async move {
            let r: Result<i64, _> = conn.publish(ch, token).await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "key invalidation publish failed");
            }
        });
    });
    let ledger = ledger.clone();
    let channel = channel.to_owned();
    Ok(tokio::spawn(async move {
        let mut pubsub = first;
        loop {
            {
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    if let Ok(token) = msg.get_payload::<String>() {
                        ledger.invalidate(&token);
                    }
                }
            }
            tracing::warn!(
                "key invalidation subscription lost; subscribing again (key changes on other instances wait until then)"
            );
            let mut wait = Duration::from_millis(100);
            pubsub = loop {
                tokio::time::sleep(wait).await;
                match subscribe(&client, &channel).await {
                    Ok(p) => break p,
                    Err(_) => wait = (wait * 2).min(RESUBSCRIBE_MAX_WAIT),
                }
            };
            ledger.reload_all().await;
            tracing::info!("key invalidation subscription restored; every key was re-read");
        }
    }))
}
