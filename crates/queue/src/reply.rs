//! Reading Redis replies: the loosely typed [`Value`]s of `XREADGROUP`, the reclaim script and
//! `XINFO GROUPS` into plain Rust values, in RESP2 and RESP3 shapes alike. Nothing here talks to
//! Redis or decodes job fields (that is [`entry`](crate::entry)).

use std::collections::HashMap;

use redis::Value;

use crate::QueueError;

/// An entry's field/value pairs; `None` for an entry deleted while pending (nil fields).
pub(crate) type RawFields = Option<Vec<(Vec<u8>, Vec<u8>)>>;

/// A stream entry: its id and fields.
pub(crate) type RawEntry = (String, RawFields);

/// `XREADGROUP` reply → entries. Nil (timeout) → none.
pub(crate) fn parse_read_reply(reply: Value) -> Result<Vec<RawEntry>, QueueError> {
    let streams = match reply {
        Value::Nil | Value::Boolean(false) => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        other => return Err(QueueError::Protocol(format!("XREADGROUP returned {other:?}"))),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut parts) = stream else { continue };
        let Some(Value::Array(entries)) = parts.pop() else { continue };
        for e in entries {
            let Value::Array(pair) = e else { continue };
            let mut pair = pair.into_iter();
            let id = pair.next().as_ref().and_then(as_string);
            let fields = pair.next().as_ref().and_then(fields_of);
            if let Some(id) = id {
                out.push((id, fields));
            }
        }
    }
    Ok(out)
}

/// The reply of `reclaim.lua`.
pub(crate) struct ReclaimReply {
    /// The cursor for the next call (`"0-0"` once the scan wrapped).
    pub(crate) next: String,
    /// Claimed entries with their delivery counts.
    pub(crate) claimed: Vec<(RawEntry, u64)>,
    /// Pending entries whose stream entry no longer existed.
    pub(crate) deleted: Vec<String>,
}

/// `reclaim.lua` reply (`{next cursor, {{id, fields, deliveries}...}, {deleted ids}}`) → parts.
pub(crate) fn parse_reclaim_reply(reply: Value) -> Result<ReclaimReply, QueueError> {
    let Value::Array(parts) = reply else {
        return Err(QueueError::Protocol(format!("XAUTOCLAIM script returned {reply:?}")));
    };
    let mut parts = parts.into_iter();
    let next = parts.next().and_then(|v| as_string(&v)).unwrap_or_else(|| "0-0".into());
    let mut claimed = Vec::new();
    if let Some(Value::Array(entries)) = parts.next() {
        for e in entries {
            let Value::Array(triple) = e else { continue };
            let [id, fields, deliveries] = <[Value; 3]>::try_from(triple)
                .map_err(|_| QueueError::Protocol("reclaimed entry is not {id, fields, count}".into()))?;
            let id = as_string(&id).ok_or_else(|| QueueError::Protocol("entry id is not a string".into()))?;
            let deliveries = match deliveries {
                Value::Int(n) => u64::try_from(n).unwrap_or(0),
                _ => 0,
            };
            claimed.push(((id, fields_of(&fields)), deliveries));
        }
    }
    let deleted = match parts.next() {
        Some(Value::Array(deleted)) => deleted.iter().filter_map(as_string).collect(),
        _ => Vec::new(),
    };
    Ok(ReclaimReply { next, claimed, deleted })
}

/// `XINFO GROUPS` reply → (pending, lag) of group `group`, if it is listed.
pub(crate) fn group_backlog(groups: &Value, group: &str) -> Option<(u64, Option<u64>)> {
    let Value::Array(groups) = groups else { return None };
    let mut found = None;
    for g in groups {
        let info = map_of(g);
        if info.get("name").and_then(as_string).as_deref() == Some(group) {
            found =
                Some((info.get("pending").and_then(as_u64).unwrap_or(0), info.get("lag").and_then(as_u64)));
        }
    }
    found
}

pub(crate) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => as_string(other).and_then(|s| s.parse().ok()),
    }
}

/// A flat `[k1, v1, k2, v2, …]` array (or a RESP3 map) as a map.
fn map_of(v: &Value) -> HashMap<String, Value> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => as_string(k).map(|k| (k, v.clone())),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().filter_map(|(k, v)| as_string(k).map(|k| (k, v.clone()))).collect(),
        _ => HashMap::new(),
    }
}

/// An entry's field list; `None` for a deleted entry (nil fields).
fn fields_of(v: &Value) -> RawFields {
    let bytes = |v: &Value| match v {
        Value::BulkString(b) => b.clone(),
        other => as_string(other).unwrap_or_default().into_bytes(),
    };
    match v {
        Value::Array(items) => Some(
            items
                .chunks(2)
                .filter_map(|kv| match kv {
                    [k, v] => Some((bytes(k), bytes(v))),
                    _ => None,
                })
                .collect(),
        ),
        Value::Map(pairs) => Some(pairs.iter().map(|(k, v)| (bytes(k), bytes(v))).collect()),
        _ => None,
    }
}
