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

/// Counted entries per namespace: field = hex namespace.
pub(super) const NS_COUNT: &str = "plexgate:nscount";
/// The store's epoch (see [`super::super`]): made by the first caching service that finds none.
pub(super) const EPOCH: &str = "plexgate:epoch";
/// Prefix of a namespace's own age index (followed by the hex namespace), for its quota.
const NS_AGE_PREFIX: &str = "plexgate:age:";

/// Shared head of the write scripts. KEYS[1..6] = count, seq, rev, feed, age, ns count;
/// ARGV[1..7] = size, eviction strategy, feed retention, revision floor (the highest revision
/// the calling process has seen), room (`counted` or `exempt`), namespace quota, hex namespace.
const HEAD: &str = r#"
local count_key, seq_key, rev_key, feed_key, age_key, ns_count_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local size, evict, retain, floor = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local room, quota, hns = ARGV[5], tonumber(ARGV[6]), ARGV[7]

-- Counted entries of namespace `h` change by `delta` (its quota's number and the store's).
local function count(h, delta)
  redis.call('INCRBY', count_key, delta)
  if redis.call('HINCRBY', ns_count_key, h, delta) <= 0 then redis.call('HDEL', ns_count_key, h) end
end

-- Removes one counted /cache entry, named by its age member `<hex ns>:<key>`.
local function evict_member(member)
  local at = string.find(member, ':', 1, true)
  local h = string.sub(member, 1, at - 1)
  redis.call('ZREM', age_key, member)
  redis.call('ZREM', '@NSAGE@' .. h, member)
  redis.call('HDEL', '@KV@' .. h, string.sub(member, at + 1))
  count(h, -1)
end

-- Room for one more counted entry of this namespace: true (and counted), or false when full.
-- Evicts at most one /cache entry per limit reached (the namespace's oldest for its quota,
-- the store's oldest for the size), never a map entry, never an exempt one.
local function make_room()
  if room == 'exempt' then return true end
  if tonumber(redis.call('HGET', ns_count_key, hns) or '0') >= quota then
    if evict ~= 'removeOldest' then return false end
    local oldest = redis.call('ZRANGE', '@NSAGE@' .. hns, 0, 0)
    if #oldest == 0 then return false end
    evict_member(oldest[1])
  end
  if tonumber(redis.call('GET', count_key) or '0') >= size then
    if evict ~= 'removeOldest' then return false end
    local oldest = redis.call('ZRANGE', age_key, 0, 0)
    if #oldest == 0 then return false end
    evict_member(oldest[1])
  end
  count(hns, 1)
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

/// KEYS[7] = kv hash; ARGV[8..11] = key, value, created millis, age member.
const CREATE: &str = r#"
if redis.call('HEXISTS', KEYS[7], ARGV[8]) == 1 then return {'conflict', 0, 0} end
if not make_room() then return {'full', 0, 0} end
if room ~= 'exempt' then
  local seq = redis.call('INCR', seq_key)
  redis.call('ZADD', age_key, seq, ARGV[11])
  redis.call('ZADD', '@NSAGE@' .. hns, seq, ARGV[11])
end
redis.call('HSET', KEYS[7], ARGV[8], ARGV[10] .. ':' .. ARGV[9])
return {'ok', 0, 1}
"#;

/// KEYS[7] = kv hash; ARGV[8..9] = key, value. Keeps the creation time and age.
const UPDATE: &str = r#"
local old = redis.call('HGET', KEYS[7], ARGV[8])
if not old then return {'notfound', 0, 0} end
local at = string.find(old, ':', 1, true)
redis.call('HSET', KEYS[7], ARGV[8], string.sub(old, 1, at) .. ARGV[9])
return {'ok', 0, 1}
"#;

/// KEYS[7] = kv hash; ARGV[8..9] = key, age member. Only a counted entry is in the age index.
const DELETE: &str = r#"
if redis.call('HDEL', KEYS[7], ARGV[8]) == 0 then return {'notfound', 0, 0} end
if redis.call('ZREM', age_key, ARGV[9]) == 1 then
  redis.call('ZREM', '@NSAGE@' .. hns, ARGV[9])
  count(hns, -1)
end
return {'ok', 0, 1}
"#;

/// KEYS[7] = kv hash.
const CLEAR: &str = r#"
local keys = redis.call('HKEYS', KEYS[7])
local batch, counted = {}, 0
for _, k in ipairs(keys) do
  batch[#batch + 1] = hns .. ':' .. k
  if #batch == 500 then
    counted = counted + redis.call('ZREM', age_key, unpack(batch))
    batch = {}
  end
end
if #batch > 0 then counted = counted + redis.call('ZREM', age_key, unpack(batch)) end
if #keys > 0 then
  redis.call('DEL', KEYS[7], '@NSAGE@' .. hns)
  if counted > 0 then count(hns, -counted) end
end
return {'ok', 0, #keys}
"#;

/// KEYS[7..8] = map hash, map-name set; ARGV[8..12] = namespace, map, hex map, key, value;
/// ARGV[13] = `overwrite` or `max` (the value then an integer, checked by the caller; the
/// larger of it and the stored one stays, and an equal or lower one changes nothing).
const MAP_PUT: &str = r#"
local old = redis.call('HGET', KEYS[7], ARGV[11])
local value = ARGV[12]
if ARGV[13] == 'max' then
  local o = tonumber(old or '') or 0
  if old and o >= tonumber(value) then return {'ok', 0, 0} end
end
if not old then
  if not make_room() then return {'full', 0, 0} end
end
redis.call('HSET', KEYS[7], ARGV[11], value)
redis.call('SADD', KEYS[8], ARGV[10])
return {'ok', record(ARGV[8], ARGV[9], 'put', ARGV[11], value), 1}
"#;

/// KEYS[7..8] = map hash, map-name set; ARGV[8..10] = namespace, map, hex map; ARGV[11..] = keys.
const MAP_REMOVE: &str = r#"
local removed, rev = 0, 0
for i = 11, #ARGV do
  if redis.call('HDEL', KEYS[7], ARGV[i]) == 1 then
    removed = removed + 1
    rev = record(ARGV[8], ARGV[9], 'delete', ARGV[i], nil)
  end
end
if removed > 0 and room ~= 'exempt' then count(hns, -removed) end
if redis.call('EXISTS', KEYS[7]) == 0 then redis.call('SREM', KEYS[8], ARGV[10]) end
return {'ok', rev, removed}
"#;

/// KEYS[7..8] = map hash, map-name set; ARGV[8..12] = namespace, map, hex map, key, the value
/// it must hold. n: 1 removed, 0 absent, 2 another value.
const MAP_REMOVE_IF: &str = r#"
local old = redis.call('HGET', KEYS[7], ARGV[11])
if not old then return {'ok', 0, 0} end
if old ~= ARGV[12] then return {'ok', 0, 2} end
redis.call('HDEL', KEYS[7], ARGV[11])
local rev = record(ARGV[8], ARGV[9], 'delete', ARGV[11], nil)
if room ~= 'exempt' then count(hns, -1) end
if redis.call('EXISTS', KEYS[7]) == 0 then redis.call('SREM', KEYS[8], ARGV[10]) end
return {'ok', rev, 1}
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

/// KEYS[1..2] = rev, epoch; KEYS[3..] = map hashes; ARGV[1] = an epoch to set when there is
/// none (a new or flushed Redis). Returns `[rev, epoch, [k, v, ...] per map]`.
const SNAPSHOT: &str = r#"
redis.call('SET', KEYS[2], ARGV[1], 'NX')
local out = {tonumber(redis.call('GET', KEYS[1]) or '0'), redis.call('GET', KEYS[2])}
for i = 3, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return out
"#;

/// KEYS[1..3] = rev, feed, epoch; ARGV[1..5] = after, limit, first wanted id, id of `after`,
/// the subscriber's epoch. Returns `[0]` (nothing new), `[1]` (too old) or `[0, entries]`.
const SINCE: &str = r#"
-- Another store's revision (a flushed Redis has no epoch, or a new one).
if redis.call('GET', KEYS[3]) ~= ARGV[5] then return {1} end
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
    pub map_remove_if: Script,
    pub maps: Script,
    pub snapshot: Script,
    pub since: Script,
}

/// The scripts, built once.
pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let write = |body: &str| Script::new(&format!("{HEAD}{body}").replace("@KV@", KV_PREFIX).replace("@NSAGE@", NS_AGE_PREFIX));
    Scripts {
        create: write(CREATE),
        update: write(UPDATE),
        delete: write(DELETE),
        clear: write(CLEAR),
        map_put: write(MAP_PUT),
        map_remove: write(MAP_REMOVE),
        map_remove_if: write(MAP_REMOVE_IF),
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
