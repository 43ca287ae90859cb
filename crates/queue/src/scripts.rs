//! The Lua scripts: every multi-step change of queue state is one script, so it is atomic.
//! Each touches only keys of one hash tag (all passed in `KEYS`, but for the job keys `PROMOTE`
//! updates, which it names from the promoted entries).
//!
//! Every script is safe to run twice (a cluster client retries a call after an I/O error without
//! knowing whether the first run happened): a second run finds its entries no longer pending, or
//! its keys already set, and changes nothing.
//!
//! A job's presence key holds `<attempt>:<entry id>` while the job has an entry in the stream, and
//! `<attempt>:d` while it waits in the delayed set. A key whose entry is gone from the stream
//! (deleted while pending, or dead-lettered) is no trace: [`TRACE_LUA`] sees through it, so the
//! reconciler restores the job and an enqueue replaces the key.

use std::sync::LazyLock;

use redis::Script;

/// Lua: whether job key `KEYS[1]` is a live trace of its job in jobs stream `KEYS[2]` (a local
/// function `live()` for the scripts below). A key from before entry ids were recorded (a bare
/// attempt) counts as live.
const TRACE_LUA: &str = r"
local function live()
  local v = redis.call('GET', KEYS[1])
  if not v then return false end
  local id = string.match(v, '^%d+:(.+)$')
  if id == nil or id == 'd' then return true end
  return #redis.call('XRANGE', KEYS[2], id, id) > 0
end
";

/// Idempotent enqueue. KEYS: job key, jobs stream. ARGV: attempt, then entry field/value pairs.
/// Returns the new entry id, or nil when the job already has a live entry.
pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TRACE_LUA}{}",
        r"
if live() then return false end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. id)
return id
"
    ))
});

/// Idempotent delayed enqueue (the reconciler restoring a lost retry that is not due yet).
/// KEYS: job key, jobs stream, delayed set. ARGV: attempt, due ms, entry (JSON array of
/// field/value pairs). Returns 1 when the entry was scheduled, 0 when the job already has a live
/// entry.
pub(crate) static ENQUEUE_DELAYED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TRACE_LUA}{}",
        r"
if live() then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. ':d')
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
return 1
"
    ))
});

/// Whether a job has a live trace. KEYS: job key, jobs stream. Returns 1 or 0.
pub(crate) static HAS_TRACE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{TRACE_LUA}{}", "\nif live() then return 1 end\nreturn 0\n")));

/// Finish deliveries (completed, failed, stalled) in one step: for each entry still pending, ack
/// it, drop the job key if it still belongs to this attempt (when releasing) or names this very
/// entry (always: the entry is gone), and append its event (if any); delete
/// every entry; then hand the freed capacity new entries, so a busy worker needs one round trip
/// per batch instead of two. An entry no longer pending (a second run) gets no second event.
/// KEYS: jobs stream, events stream, one job key per delivery. ARGV: group, events maxlen, count,
/// consumer, entries to take, then per delivery: entry id, attempt ("" to keep the job key),
/// number of event arguments, event field/value pairs.
/// Returns {entries still pending that were acked, new entries or false}.
pub(crate) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = tonumber(ARGV[3])
local ids = {}
local pos = 6
local acked = 0
for i = 1, n do
  local nf = tonumber(ARGV[pos + 2])
  ids[i] = ARGV[pos]
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[pos]) == 1 then
    acked = acked + 1
    local v = redis.call('GET', KEYS[2 + i])
    if v and ((ARGV[pos + 1] ~= '' and string.match(v, '^%d+') == ARGV[pos + 1])
        or string.sub(v, -(#ARGV[pos] + 1)) == ':' .. ARGV[pos]) then
      redis.call('DEL', KEYS[2 + i])
    end
    if nf > 0 then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, pos + 3, pos + 2 + nf))
    end
  end
  pos = pos + 3 + nf
end
if n > 0 then
  redis.call('XDEL', KEYS[1], unpack(ids))
end
local taken = false
if tonumber(ARGV[5]) > 0 then
  taken = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[4], 'COUNT', ARGV[5], 'STREAMS', KEYS[1], '>')
end
return {acked, taken}
",
    )
});

/// Schedule a retry: ack and delete the entry, put the next entry in the delayed set, point the
/// job key at the next attempt, append the `retrying` event — only if the entry is still pending
/// (else a first run, or another worker, already did).
/// KEYS: jobs stream, delayed set, job key, events stream. ARGV: group, entry id, due ms, next entry
/// (JSON array of field/value pairs), next attempt, events maxlen, event field/value pairs.
/// Returns 1 when scheduled, 0 when the entry was no longer pending.
pub(crate) static RETRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('SET', KEYS[3], ARGV[5] .. ':d')
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, 7))
return 1
",
    )
});

/// Move due retries into the jobs stream, pointing each job's key (`<job key prefix><job id>`, of
/// this queue's hash tag) at its new entry if it still marks this attempt as delayed.
/// KEYS: delayed set, jobs stream. ARGV: now ms, limit, job key prefix.
/// Returns {promoted count, score of the next due member or false}.
pub(crate) static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local fields = cjson.decode(member)
  local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
  local job, attempt
  for i = 1, #fields - 1, 2 do
    if fields[i] == 'j' then job = fields[i + 1] elseif fields[i] == 'a' then attempt = fields[i + 1] end
  end
  if job and attempt then
    local key = ARGV[3] .. job
    if redis.call('GET', key) == attempt .. ':d' then redis.call('SET', key, attempt .. ':' .. id) end
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, nxt[2] or false}
",
    )
});

/// Reclaim entries idle longer than the lease, with their delivery counts.
/// KEYS: jobs stream. ARGV: group, consumer, min idle ms, count, cursor.
/// Returns {next cursor, {{id, fields, deliveries}...}, {deleted ids}}.
pub(crate) static RECLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[5], 'COUNT', ARGV[4])
local out = {}
for i, e in ipairs(r[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
  local deliveries = 0
  if p[1] then deliveries = p[1][4] end
  out[i] = {e[1], e[2], deliveries}
end
return {r[1], out, r[3] or {}}
",
    )
});

/// Heartbeat: reset the idle time of the entries this consumer still owns, without bumping their
/// delivery counts. KEYS: jobs stream. ARGV: group, consumer, ids...
/// Returns {ids another consumer owns now, ids no longer pending at all}.
pub(crate) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local taken, gone = {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  elseif p[1] then
    taken[#taken + 1] = ARGV[i]
  else
    gone[#gone + 1] = ARGV[i]
  end
end
return {taken, gone}
",
    )
});

/// Dead-letter an undecodable entry still pending: ack it, copy it with the reason, delete it.
/// KEYS: jobs stream, dead stream. ARGV: group, entry id, reason, dead maxlen, raw field/value pairs.
/// Returns 1, or 0 when the entry was no longer pending (a second run).
pub(crate) static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'source_id', ARGV[2], 'reason', ARGV[3], unpack(ARGV, 5))
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
",
    )
});

/// Hand entries back: make entries this consumer still owns idle for the whole lease, so any
/// worker's next reclaim takes them at once (their delivery counts unchanged). For entries a
/// worker will not run: read while it was shutting down, or stranded (delivered in a reply that
/// was lost). Only entries idle at least `min idle` ms are handed back, so one delivered again
/// meanwhile is kept. KEYS: jobs stream. ARGV: group, consumer, lease ms, min idle ms, ids...
/// Returns how many.
pub(crate) static HAND_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for i = 5, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] and p[1][3] >= tonumber(ARGV[4]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
",
    )
});
