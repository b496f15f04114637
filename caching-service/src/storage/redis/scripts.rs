//! Key names and the Lua scripts: every mutation is one script, so its checks, eviction,
//! write, counters and feed entry happen atomically; the multi-key reads are scripts too so
//! they see one moment.
//!
//! The write scripts do every check before their first write: Redis does not roll back a
//! script that fails half way, so nothing after the first write may be able to fail.

use std::sync::LazyLock;

use ::redis::Script;

/// Prefix of every key plexgate writes.
pub(super) const PREFIX: &str = "plexgate:";
/// Entries held (the counting rule's number).
pub(super) const COUNT: &str = "plexgate:count";
/// Last creation sequence of a `/cache` entry.
pub(super) const SEQ: &str = "plexgate:seq";
/// Last revision of the change feed.
pub(super) const REV: &str = "plexgate:rev";
/// The change feed: a stream whose entry ids are `<revision>-0`.
pub(super) const FEED: &str = "plexgate:feed";
/// Age index of `/cache` entries: member `<hex ns>:<key>`, score the creation sequence.
pub(super) const AGE: &str = "plexgate:age";
/// Prefix of the hash of one namespace's `/cache` entries (followed by the hex namespace).
const KV_PREFIX: &str = "plexgate:kv:";

/// Lowercase hex of the UTF-8 bytes: never contains `:`, so names built from it cannot
/// collide whatever the namespace or map name holds.
pub(super) fn hex(s: &str) -> String {
    use std::fmt::Write;
    s.bytes().fold(String::with_capacity(s.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The inverse of [`hex`]; `None` for anything [`hex`] does not produce.
pub(super) fn unhex(h: &[u8]) -> Option<String> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    let bytes = h.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok()).collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Hash of `/cache` entries of `ns`: field = key, value = `<created millis>:<value>`.
pub(super) fn kv(ns: &str) -> String {
    format!("{KV_PREFIX}{}", hex(ns))
}

/// Member of [`AGE`] for `key` of `ns`.
pub(super) fn age_member(ns: &str, key: &str) -> String {
    format!("{}:{key}", hex(ns))
}

/// Prefix of the map hashes of `ns` (followed by the hex map name).
pub(super) fn map_prefix(ns: &str) -> String {
    format!("{PREFIX}map:{}:", hex(ns))
}

/// Hash of `map` of `ns`: field = key, value = value.
pub(super) fn map(ns: &str, map: &str) -> String {
    format!("{}{}", map_prefix(ns), hex(map))
}

/// Set of the hex names of the maps `ns` has.
pub(super) fn maps(ns: &str) -> String {
    format!("{PREFIX}maps:{}", hex(ns))
}

/// Shared head of the write scripts. KEYS[1..5] = count, seq, rev, feed, age; ARGV[1..4] =
/// size, eviction strategy, feed retention, revision floor (the highest revision the calling
/// process has seen).
const HEAD: &str = r#"
local count_key, seq_key, rev_key, feed_key, age_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local size, evict, retain, floor = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])

-- Room for one more entry: true, or false when full. Evicts at most the one oldest /cache
-- entry, never a map entry.
local function make_room()
  local count = tonumber(redis.call('GET', count_key) or '0')
  if count < size then return true end
  if evict ~= 'removeOldest' then return false end
  local oldest = redis.call('ZPOPMIN', age_key)
  if #oldest == 0 then return false end
  local member = oldest[1]
  local at = string.find(member, ':', 1, true)
  redis.call('HDEL', '@KV@' .. string.sub(member, 1, at - 1), string.sub(member, at + 1))
  redis.call('DECR', count_key)
  return true
end

-- Appends one change to the feed; returns its revision. Never one at or below the floor: after
-- a failover lost changes, their numbers are skipped rather than given to other changes, so a
-- subscriber that saw a lost change cannot mistake a new one for it.
local function record(ns, map, op, key, value)
  local rev = redis.call('INCR', rev_key)
  if rev <= floor then
    rev = floor + 1
    redis.call('SET', rev_key, string.format('%d', rev))
  end
  local id = string.format('%d-0', rev)
  if value then
    redis.call('XADD', feed_key, 'MAXLEN', '~', retain, id, 'n', ns, 'm', map, 'o', op, 'k', key, 'v', value)
  else
    redis.call('XADD', feed_key, 'MAXLEN', '~', retain, id, 'n', ns, 'm', map, 'o', op, 'k', key)
  end
  return rev
end
"#;

/// KEYS[6] = kv hash; ARGV[5..8] = key, value, created millis, age member.
const CREATE: &str = r#"
if redis.call('HEXISTS', KEYS[6], ARGV[5]) == 1 then return {'conflict', 0, 0} end
if not make_room() then return {'full', 0, 0} end
local seq = redis.call('INCR', seq_key)
redis.call('INCR', count_key)
redis.call('HSET', KEYS[6], ARGV[5], ARGV[7] .. ':' .. ARGV[6])
redis.call('ZADD', age_key, seq, ARGV[8])
return {'ok', 0, 1}
"#;

/// KEYS[6] = kv hash; ARGV[5..6] = key, value. Keeps the creation time and age.
const UPDATE: &str = r#"
local old = redis.call('HGET', KEYS[6], ARGV[5])
if not old then return {'notfound', 0, 0} end
local at = string.find(old, ':', 1, true)
redis.call('HSET', KEYS[6], ARGV[5], string.sub(old, 1, at) .. ARGV[6])
return {'ok', 0, 1}
"#;

/// KEYS[6] = kv hash; ARGV[5..6] = key, age member.
const DELETE: &str = r#"
if redis.call('HDEL', KEYS[6], ARGV[5]) == 0 then return {'notfound', 0, 0} end
redis.call('ZREM', age_key, ARGV[6])
redis.call('DECR', count_key)
return {'ok', 0, 1}
"#;

/// KEYS[6] = kv hash; ARGV[5] = hex namespace.
const CLEAR: &str = r#"
local keys = redis.call('HKEYS', KEYS[6])
local batch = {}
for _, k in ipairs(keys) do
  batch[#batch + 1] = ARGV[5] .. ':' .. k
  if #batch == 500 then
    redis.call('ZREM', age_key, unpack(batch))
    batch = {}
  end
end
if #batch > 0 then redis.call('ZREM', age_key, unpack(batch)) end
if #keys > 0 then
  redis.call('DEL', KEYS[6])
  redis.call('DECRBY', count_key, #keys)
end
return {'ok', 0, #keys}
"#;

/// KEYS[6..7] = map hash, map-name set; ARGV[5..9] = namespace, map, hex map, key, value.
const MAP_PUT: &str = r#"
if redis.call('HEXISTS', KEYS[6], ARGV[8]) == 0 then
  if not make_room() then return {'full', 0, 0} end
  redis.call('INCR', count_key)
end
redis.call('HSET', KEYS[6], ARGV[8], ARGV[9])
redis.call('SADD', KEYS[7], ARGV[7])
return {'ok', record(ARGV[5], ARGV[6], 'put', ARGV[8], ARGV[9]), 1}
"#;

/// KEYS[6..7] = map hash, map-name set; ARGV[5..7] = namespace, map, hex map; ARGV[8..] = keys.
const MAP_REMOVE: &str = r#"
local removed, rev = 0, 0
for i = 8, #ARGV do
  if redis.call('HDEL', KEYS[6], ARGV[i]) == 1 then
    removed = removed + 1
    rev = record(ARGV[5], ARGV[6], 'delete', ARGV[i], nil)
  end
end
if removed > 0 then redis.call('DECRBY', count_key, removed) end
if redis.call('EXISTS', KEYS[6]) == 0 then redis.call('SREM', KEYS[7], ARGV[7]) end
return {'ok', rev, removed}
"#;

/// KEYS[1] = map-name set; ARGV[1] = map hash prefix. Returns `[hex name, [k, v, ...], ...]`.
const MAPS: &str = r#"
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. m)
end
return out
"#;

/// KEYS[1] = rev; KEYS[2..] = map hashes. Returns `[rev, [k, v, ...] per map]`.
const SNAPSHOT: &str = r#"
local out = {tonumber(redis.call('GET', KEYS[1]) or '0')}
for i = 2, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return out
"#;

/// KEYS[1..2] = rev, feed; ARGV[1..4] = after, limit, first wanted id, id of `after`. Returns
/// `[0]` (nothing new), `[1]` (too old) or `[0, entries]`.
const SINCE: &str = r#"
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local after = tonumber(ARGV[1])
if after == last then return {0} end
-- Past the last revision: the store lost changes (a failover, a flush); start over.
if after > last then return {1} end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first == 0 then return {1} end
local id = first[1][1]
local first_rev = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
if first_rev > after + 1 then return {1} end
-- Within the log, `after` itself must be there: if not, it was lost in a failover (its number
-- skipped since) and what the subscriber holds is not what Redis holds.
if first_rev <= after and #redis.call('XRANGE', KEYS[2], ARGV[4], ARGV[4]) == 0 then return {1} end
return {0, redis.call('XRANGE', KEYS[2], ARGV[3], '+', 'COUNT', ARGV[2])}
"#;

/// The compiled scripts.
pub(super) struct Scripts {
    pub create: Script,
    pub update: Script,
    pub delete: Script,
    pub clear: Script,
    pub map_put: Script,
    pub map_remove: Script,
    pub maps: Script,
    pub snapshot: Script,
    pub since: Script,
}

/// The scripts, built once.
pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let write = |body: &str| Script::new(&format!("{}{body}", HEAD.replace("@KV@", KV_PREFIX)));
    Scripts {
        create: write(CREATE),
        update: write(UPDATE),
        delete: write(DELETE),
        clear: write(CLEAR),
        map_put: write(MAP_PUT),
        map_remove: write(MAP_REMOVE),
        maps: Script::new(MAPS),
        snapshot: Script::new(SNAPSHOT),
        since: Script::new(SINCE),
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_do_not_collide() {
        assert_ne!(kv("a:b"), kv("a"));
        assert_ne!(map("a", "b:c"), map("a:b", "c"));
        assert_ne!(age_member("a", "b:c"), age_member("a:b", "c"));
        assert!(!hex("{x}:🚀").contains(':'));
    }

    #[test]
    fn hex_round_trips() {
        for s in ["", "plain", "CN=x, O=y:{z}/ 🚀"] {
            assert_eq!(unhex(hex(s).as_bytes()).as_deref(), Some(s));
        }
        assert_eq!(unhex(b"zz"), None);
        assert_eq!(unhex(b"abc"), None);
    }
}
