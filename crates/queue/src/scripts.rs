//! The Lua scripts: every multi-step change of queue state is one script, so it is atomic.
//! Each touches only keys passed in `KEYS`, all of one hash tag.

use std::sync::LazyLock;

use redis::Script;

/// Idempotent enqueue. KEYS: job key, jobs stream. ARGV: attempt, then entry field/value pairs.
/// Returns the new entry id, or nil when the job already has a live entry.
pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return false end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
",
    )
});

/// Idempotent delayed enqueue (the reconciler restoring a lost retry that is not due yet).
/// KEYS: job key, delayed set. ARGV: attempt, due ms, entry (JSON array of field/value pairs).
/// Returns 1 when the entry was scheduled, 0 when the job already has a live entry.
pub(crate) static ENQUEUE_DELAYED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
",
    )
});

/// Finish deliveries (completed, failed, stalled) in one step: for each, drop the job key if it
/// still belongs to this attempt and append its event (if any); then ack and delete all the
/// entries; then hand the freed capacity new entries, so a busy worker needs one round trip per
/// batch instead of two.
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
for i = 1, n do
  local nf = tonumber(ARGV[pos + 2])
  ids[i] = ARGV[pos]
  if ARGV[pos + 1] ~= '' and redis.call('GET', KEYS[2 + i]) == ARGV[pos + 1] then redis.call('DEL', KEYS[2 + i]) end
  if nf > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, pos + 3, pos + 2 + nf))
  end
  pos = pos + 3 + nf
end
local acked = 0
if n > 0 then
  acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
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
/// job key at the next attempt, append the `retrying` event.
/// KEYS: jobs stream, delayed set, job key, events stream. ARGV: group, entry id, due ms, next entry
/// (JSON array of field/value pairs), next attempt, events maxlen, event field/value pairs.
pub(crate) static RETRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('SET', KEYS[3], ARGV[5])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, 7))
return acked
",
    )
});

/// Move due retries into the jobs stream. KEYS: delayed set, jobs stream. ARGV: now ms, limit.
/// Returns {promoted count, score of the next due member or false}.
pub(crate) static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(member)))
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
/// Returns the ids this consumer no longer owns (lease lost).
pub(crate) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
",
    )
});

/// Dead-letter an undecodable entry: copy it with the reason, then ack and delete it.
/// KEYS: jobs stream, dead stream. ARGV: group, entry id, reason, dead maxlen, raw field/value pairs.
pub(crate) static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'source_id', ARGV[2], 'reason', ARGV[3], unpack(ARGV, 5))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
",
    )
});
