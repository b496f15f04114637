//! A local, always-current copy of chosen maps of the caching service, fed by its change
//! feed: the gateway's revocation view (and sticky routes) without a network call per request.
//!
//! The view loads a full snapshot before it reports loaded, then applies every change in
//! order. After a disconnect it resumes from the last revision it applied, with the store's
//! epoch, at the next caching-service URL if the first is down; a store of another epoch
//! answers with a fresh snapshot, so a revision of one store is never resumed on another.
//! Every event refreshes its age, so [`MapView::staleness`] tells how old the view may be; a
//! heartbeat counts only when it names the view's epoch and a revision not behind the view's
//! (the caching service sends one only after its store confirmed that revision is its
//! latest), otherwise the feed is dropped and followed afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use crate::client::{CacheClient, describe};

/// A change of the view, for caches that derive from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapChange {
    /// A snapshot replaced everything.
    Reset,
    /// `key` of `map` is now `value`.
    Put {
        /// The map.
        map: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// `key` of `map` is gone.
    Delete {
        /// The map.
        map: String,
        /// The key.
        key: String,
    },
}

/// The state of a view, for health endpoints and logs.
#[derive(Debug, Clone)]
pub struct ViewStatus {
    /// A snapshot has been loaded.
    pub loaded: bool,
    /// The feed is connected now.
    pub connected: bool,
    /// The last revision applied.
    pub revision: Option<u64>,
    /// The epoch of the store the view follows.
    pub epoch: Option<String>,
    /// Time since the last event (snapshot, change or heartbeat).
    pub age: Option<Duration>,
    /// The caching service the feed comes from.
    pub url: Option<String>,
    /// Why the feed last failed.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct State {
    revision: Option<u64>,
    epoch: Option<String>,
    last_event: Option<Instant>,
    connected: bool,
    url: Option<String>,
    last_error: Option<String>,
}

struct Inner {
    maps: RwLock<HashMap<String, HashMap<String, String>>>,
    state: Mutex<State>,
    changes: broadcast::Sender<MapChange>,
    loaded: watch::Sender<bool>,
}

/// The view; dropping it stops its feed task.
pub struct MapView {
    inner: Arc<Inner>,
    task: tokio::task::AbortHandle,
}

impl Drop for MapView {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One line of the feed.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Event {
    Snapshot { epoch: String, revision: u64, maps: HashMap<String, HashMap<String, String>> },
    Change { revision: u64, map: String, op: String, key: String, value: Option<String> },
    Heartbeat { epoch: String, revision: u64 },
    Error { message: String },
}

impl MapView {
    /// Starts following `maps` through `client`. `idle_timeout`: a feed silent this long
    /// (heartbeats come every second by default) is treated as dead and reconnected.
    pub fn start(client: CacheClient, maps: &[&str], idle_timeout: Duration) -> MapView {
        let (changes, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            maps: RwLock::new(HashMap::new()),
            state: Mutex::new(State::default()),
            changes,
            loaded: watch::channel(false).0,
        });
        let names: Vec<String> = maps.iter().map(|m| m.to_string()).collect();
        let task = tokio::spawn(follow(client, names, idle_timeout, inner.clone())).abort_handle();
        MapView { inner, task }
    }

    /// Waits until the first snapshot is loaded, at most `timeout`; whether it is.
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.loaded.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|l| *l)).await.is_ok_and(|r| r.is_ok())
    }

    /// Whether a snapshot has been loaded.
    pub fn is_loaded(&self) -> bool {
        *self.inner.loaded.borrow()
    }

    /// The value of `key` in `map`.
    pub fn get(&self, map: &str, key: &str) -> Option<String> {
        self.read().get(map).and_then(|m| m.get(key)).cloned()
    }

    /// Every entry of `map`, copied out (empty when the view has no such map).
    pub fn entries(&self, map: &str) -> HashMap<String, String> {
        self.read().get(map).cloned().unwrap_or_default()
    }

    /// Whether `map` has `key`.
    pub fn contains(&self, map: &str, key: &str) -> bool {
        self.read().get(map).is_some_and(|m| m.contains_key(key))
    }

    /// Applies a write this process just made, before the feed echoes it back.
    pub fn apply_local(&self, map: &str, key: &str, value: &str) {
        apply(&self.inner, MapChange::Put { map: map.to_owned(), key: key.to_owned(), value: value.to_owned() });
    }

    /// Applies a removal this process just made, before the feed echoes it back.
    pub fn remove_local(&self, map: &str, key: &str) {
        apply(&self.inner, MapChange::Delete { map: map.to_owned(), key: key.to_owned() });
    }

    /// The epoch of the store the view follows, once a snapshot is loaded.
    pub fn epoch(&self) -> Option<String> {
        self.lock_state().epoch.clone()
    }

    /// Time since the last event, `None` before the first.
    pub fn staleness(&self) -> Option<Duration> {
        self.lock_state().last_event.map(|t| t.elapsed())
    }

    /// Changes as they are applied.
    pub fn subscribe(&self) -> broadcast::Receiver<MapChange> {
        self.inner.changes.subscribe()
    }

    /// The state, for health endpoints.
    pub fn status(&self) -> ViewStatus {
        let s = self.lock_state();
        ViewStatus {
            loaded: self.is_loaded(),
            connected: s.connected,
            revision: s.revision,
            epoch: s.epoch.clone(),
            age: s.last_event.map(|t| t.elapsed()),
            url: s.url.clone(),
            last_error: s.last_error.clone(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, HashMap<String, String>>> {
        self.inner.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn state(inner: &Inner) -> std::sync::MutexGuard<'_, State> {
    inner.state.lock().unwrap_or_else(|p| p.into_inner())
}

fn apply(inner: &Inner, change: MapChange) {
    {
        let mut maps = inner.maps.write().unwrap_or_else(|p| p.into_inner());
        match &change {
            MapChange::Put { map, key, value } => {
                maps.entry(map.clone()).or_default().insert(key.clone(), value.clone());
            }
            MapChange::Delete { map, key } => {
                if let Some(m) = maps.get_mut(map) {
                    m.remove(key);
                }
            }
            MapChange::Reset => {}
        }
    }
    let _ = inner.changes.send(change);
}

/// Follows the feed forever: every URL in turn, resuming from the last revision.
async fn follow(client: CacheClient, maps: Vec<String>, idle_timeout: Duration, inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        for url in client.urls() {
            match follow_one(&client, &url, &maps, idle_timeout, &inner).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(url, error = %e, "change feed lost; reconnecting");
                    let mut s = state(&inner);
                    s.connected = false;
                    s.last_error = Some(e);
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// One connection to one caching service's feed, until it ends.
async fn follow_one(client: &CacheClient, url: &str, maps: &[String], idle_timeout: Duration, inner: &Inner) -> Result<(), String> {
    let (since, epoch) = {
        let s = state(inner);
        (s.revision, s.epoch.clone())
    };
    let mut req = client.stream_client().get(format!("{url}/cachingservice/api/v1/feed")).query(&[("maps", maps.join(","))]);
    if let (Some(r), Some(e)) = (since, &epoch) {
        req = req.query(&[("since", r.to_string()), ("epoch", e.clone())]);
    }
    let resp = tokio::time::timeout(idle_timeout, req.send())
        .await
        .map_err(|_| "no answer to the feed request".to_owned())?
        .map_err(|e| describe(&e))?;
    if !resp.status().is_success() {
        return Err(format!("feed answered HTTP {}", resp.status()));
    }
    client.mark_good(url);
    {
        let mut s = state(inner);
        s.connected = true;
        s.url = Some(url.to_owned());
        s.last_error = None;
    }
    tracing::info!(url, ?since, "change feed connected");
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(idle_timeout, body.next()).await {
            Err(_) => return Err(format!("no event for {idle_timeout:?}")),
            Ok(None) => return Err("the feed ended".to_owned()),
            Ok(Some(Err(e))) => return Err(describe(&e)),
            Ok(Some(Ok(c))) => c,
        };
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            handle(&line[..line.len() - 1], maps, inner)?;
        }
    }
}

fn handle(line: &[u8], wanted: &[String], inner: &Inner) -> Result<(), String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let event: Event = serde_json::from_slice(line).map_err(|e| format!("unreadable feed event: {e}"))?;
    match event {
        Event::Snapshot { epoch, revision, maps } => {
            {
                let mut local = inner.maps.write().unwrap_or_else(|p| p.into_inner());
                for name in wanted {
                    local.insert(name.clone(), maps.get(name).cloned().unwrap_or_default());
                }
            }
            {
                let mut s = state(inner);
                if s.epoch.as_ref().is_some_and(|e| *e != epoch) {
                    tracing::warn!(old = ?s.epoch, new = %epoch, "the caching service's store has another epoch (restarted, flushed or another store): view reloaded");
                }
                s.epoch = Some(epoch);
                // A snapshot sets the revision, lower too (a new store starts again).
                s.revision = Some(revision);
            }
            let _ = inner.changes.send(MapChange::Reset);
            touch(inner, Some(revision));
            inner.loaded.send_replace(true);
        }
        Event::Change { revision, map, op, key, value } => {
            let change = match (op.as_str(), value) {
                ("put", Some(value)) => MapChange::Put { map, key, value },
                ("delete", _) => MapChange::Delete { map, key },
                (other, _) => return Err(format!("unknown feed operation `{other}`")),
            };
            apply(inner, change);
            touch(inner, Some(revision));
        }
        Event::Heartbeat { epoch, revision } => {
            let s = state(inner);
            if s.epoch.as_deref() != Some(epoch.as_str()) {
                return Err(format!("heartbeat of another store (epoch {epoch}, view {:?})", s.epoch));
            }
            if s.revision.is_some_and(|r| revision < r) {
                return Err(format!("heartbeat at revision {revision}, behind the view's {:?}: the store lost changes", s.revision));
            }
            drop(s);
            // Every change of the followed maps up to `revision` was sent before it.
            touch(inner, Some(revision));
        }
        Event::Error { message } => return Err(format!("the caching service ended the feed: {message}")),
    }
    Ok(())
}

fn touch(inner: &Inner, revision: Option<u64>) {
    let mut s = state(inner);
    s.last_event = Some(Instant::now());
    if revision.is_some() {
        s.revision = revision;
    }
}
