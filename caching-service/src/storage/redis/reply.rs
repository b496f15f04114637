//! Replies of Redis and of the scripts, turned into the storage's types.

use ::redis::Value;

use crate::error::CacheError;
use crate::storage::{Change, Entry, MapEntries, Op};

pub(super) fn bad_reply(what: &str, v: &Value) -> CacheError {
    CacheError::Internal(format!("redis ({what}): unexpected reply {v:?}"))
}

pub(super) fn text(v: &Value) -> Result<String, CacheError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| bad_reply("text", v)),
        Value::SimpleString(s) => Ok(s.clone()),
        _ => Err(bad_reply("text", v)),
    }
}

pub(super) fn int(v: &Value) -> Result<u64, CacheError> {
    match v {
        Value::Int(i) => Ok((*i).max(0) as u64),
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or_else(|| bad_reply("number", v)),
        _ => Err(bad_reply("number", v)),
    }
}

pub(super) fn array(v: &Value) -> Result<&[Value], CacheError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(&[]),
        _ => Err(bad_reply("array", v)),
    }
}

/// A flat `[k, v, k, v, ...]` reply (HGETALL in a script) as entries.
pub(super) fn pairs(v: &Value) -> Result<MapEntries, CacheError> {
    array(v)?
        .chunks(2)
        .map(|kv| match kv {
            [k, v] => Ok((text(k)?, text(v)?)),
            _ => Err(bad_reply("pairs", v)),
        })
        .collect()
}

/// A `/cache` hash value: `<created millis>:<value>`.
pub(super) fn entry(key: String, stored: &str) -> Result<Entry, CacheError> {
    let (created, value) = stored.split_once(':').ok_or_else(|| CacheError::Internal(format!("redis: corrupt entry of key '{key}'")))?;
    let created = created.parse().map_err(|_| CacheError::Internal(format!("redis: corrupt entry of key '{key}'")))?;
    Ok(Entry { key, value: value.to_owned(), created })
}

/// One feed stream entry `[id, [field, value, ...]]` as a change.
pub(super) fn change(v: &Value) -> Result<Change, CacheError> {
    let [id, fields] = array(v)? else { return Err(bad_reply("feed entry", v)) };
    let id = text(id)?;
    let revision = id.split_once('-').and_then(|(r, _)| r.parse().ok()).ok_or_else(|| bad_reply("feed id", v))?;
    let mut f = pairs(fields)?;
    let mut take = |name: &str| f.remove(name).ok_or_else(|| bad_reply("feed entry", v));
    let (namespace, map, op, key) = (take("n")?, take("m")?, take("o")?, take("k")?);
    let op = match op.as_str() {
        "put" => Op::Put { key, value: take("v")? },
        "delete" => Op::Delete { key },
        _ => return Err(bad_reply("feed op", v)),
    };
    Ok(Change { revision, namespace, map, op })
}
