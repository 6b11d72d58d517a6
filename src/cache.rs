//! The cache: one entry per key, single flight, TTL in wall-clock time, least-recently-used
//! eviction under two bounds (entries and bytes), refresh-ahead, stale-if-error with backoff,
//! and a short negative cache in its own small space.
//!
//! Bounds: at most `capacity` values and at most `max_bytes` counted bytes (each body, its key
//! and a fixed [`ENTRY_OVERHEAD`]); the least recently read value goes first when either is
//! passed. "Not found" answers live in a separate map of at most [`NEGATIVE_CAPACITY`] entries
//! that evicts only among themselves, so a flood of missing ids never pushes a real secret out.
//!
//! `Cache` is a cheap handle over `Arc<Inner>`. The state sits behind a `std::sync::Mutex`: it is
//! held only to read or update the map, never across an `.await`, and critical sections are a
//! few map operations, so a blocking mutex beats an async one. Every backend call runs in a task
//! the cache spawns and owns: a caller that gives up (client disconnect) does not cancel the fetch
//! the other waiters depend on, and `shutdown` aborts what is left.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::{Backend, Fetched, Key, KeyRef, Refreshed};
use crate::error::Error;
use crate::metrics::{Metrics, Read};

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use settings::Settings;

mod prefetch;
mod settings;

/// How an answer was produced, for the `X-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Stale,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
        }
    }
}

/// A response body with how it was produced and how old it is.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Bytes,
    pub status: CacheStatus,
    pub age: Duration,
}

type Outcome = Option<Result<Stored, Error>>;

#[derive(Clone)]
struct Stored {
    data: Arc<Fetched>,
    fetched_at: SystemTime,
}

/// Consecutive transient failures and when the next attempt may go out.
struct Failure {
    count: u32,
    retry_at: SystemTime,
}

/// What one cached value counts against `max_bytes` besides its body and key: the slot, the
/// `Arc`'d fetch with its version and stages, and the map's bucket (measured order of magnitude,
/// so thousands of tiny values cannot hide behind a byte budget).
pub const ENTRY_OVERHEAD: usize = 256;

/// "Not found" answers remembered at once. They live apart from values and evict only each
/// other: a scan of missing ids must not push real secrets out.
pub const NEGATIVE_CAPACITY: usize = 128;

#[derive(Default)]
struct Slot {
    value: Option<Stored>,
    inflight: Option<watch::Receiver<Outcome>>,
    failure: Option<Failure>,
    /// The value may be out of date whatever its age (the process was restored from a
    /// snapshot): it is revalidated before it is served as a hit.
    suspect: bool,
    /// Logical time of the last read, for LRU eviction.
    used: u64,
}

struct State {
    /// FNV rather than SipHash: a hit hashes its key once, and SipHash was 5 % of a hit's
    /// instructions (callgrind). Flooding is not a concern: keys come only from token holders,
    /// and eviction keeps the map near `cache_size` entries (plus fetches in flight).
    /// hashbrown's map rather than std's: [`Cache::hit`] looks up a [`KeyRef`].
    map: hashbrown::HashMap<Key, Slot, fnv::FnvBuildHasher>,
    /// Slots that hold a value: what `capacity` bounds. Slots with only a fetch in flight do
    /// not count, so concurrent misses cannot evict values.
    values: usize,
    /// Counted bytes of the values held (see [`cost`]).
    bytes: usize,
    /// "Not found" answers and until when each is repeated without asking AWS.
    negative: HashMap<Key, (Error, SystemTime), fnv::FnvBuildHasher>,
    tick: u64,
}

impl State {
    /// Replaces the value of `key`'s slot, keeping the counts right.
    fn set_value(&mut self, key: &Key, value: Option<Stored>) {
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        if let Some(old) = slot.value.take() {
            self.values -= 1;
            self.bytes -= cost(key, &old);
        }
        if let Some(new) = value {
            self.values += 1;
            self.bytes += cost(key, &new);
            slot.value = Some(new);
        }
    }

    /// Removes `key`'s slot, keeping the counts right.
    fn remove(&mut self, key: &Key) {
        self.set_value(key, None);
        self.map.remove(key);
    }

    /// The remembered "not found" for `key`, if still current (an expired one is dropped).
    fn not_found(&mut self, key: &Key, now: SystemTime) -> Option<Error> {
        let (err, until) = self.negative.get(key)?;
        if now < *until {
            return Some(err.clone());
        }
        self.negative.remove(key);
        None
    }

    /// Remembers a "not found" for `key`, dropping the one closest to expiry when full.
    fn remember_not_found(&mut self, key: &Key, err: Error, until: SystemTime) {
        if !self.negative.contains_key(key) && self.negative.len() >= NEGATIVE_CAPACITY {
            let first = self
                .negative
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| k.clone());
            if let Some(k) = first {
                self.negative.remove(&k);
            }
        }
        self.negative.insert(key.clone(), (err, until));
    }
}

/// What a value counts against the byte budget.
fn cost(key: &Key, stored: &Stored) -> usize {
    stored.data.body.len()
        + key.id.len()
        + key.version.as_ref().map_or(0, String::len)
        + key.label.as_ref().map_or(0, String::len)
        + key.role.as_ref().map_or(0, |r| r.len())
        + ENTRY_OVERHEAD
}

struct Inner<B> {
    backend: B,
    clock: Arc<dyn Clock>,
    settings: Settings,
    state: Mutex<State>,
    tasks: Mutex<JoinSet<()>>,
    /// Prefetch jobs not finished yet (the secrets batch, each parameter), for [`Cache::settle`].
    prefetching: watch::Sender<usize>,
    /// Whether a read past the refresh-ahead point starts a background refresh. Off in Lambda
    /// (not Managed Instances): there the INVOKE handler starts refreshes and waits for them,
    /// while a refresh started by a read could be frozen mid-flight.
    refresh_on_read: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
}

/// A handle to the cache; clones share it.
pub struct Cache<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Cache<B> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

/// What a read decided to do while it held the lock.
enum Plan {
    Done(Result<Answer, Error>),
    Wait(watch::Receiver<Outcome>),
}

/// A secret fetch claimed for a batch: its id and key, the sender that answers its waiters, and
/// the receiver that marks the slot's fetch as this one.
type Claimed = (
    String,
    Key,
    watch::Sender<Outcome>,
    watch::Receiver<Outcome>,
);

impl<B: Backend> Cache<B> {
    pub fn new(
        backend: B,
        settings: Settings,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Cache {
            inner: Arc::new(Inner {
                backend,
                clock,
                settings,
                state: Mutex::new(State {
                    map: Default::default(),
                    values: 0,
                    bytes: 0,
                    negative: HashMap::default(),
                    tick: 0,
                }),
                tasks: Mutex::new(JoinSet::new()),
                prefetching: watch::Sender::new(0),
                refresh_on_read: std::sync::atomic::AtomicBool::new(true),
                metrics,
            }),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the map consistent (every update is a single
        // assignment), so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fresh value of `key` with nothing else to do: no fetch to start or join, no stale
    /// value to weigh. `None` sends the read to [`Cache::get`], which decides the rest (a miss,
    /// a value past its TTL or the refresh-ahead point, a remembered "not found"). A hit this way
    /// copies nothing of the request and probes the map once.
    pub fn hit(&self, key: &KeyRef<'_>) -> Option<Answer> {
        let s = &self.inner.settings;
        let now = self.inner.clock.now();
        let ttl = s.ttl(key.kind);
        let mut guard = self.state();
        let st = &mut *guard;
        let slot = st.map.get_mut(key)?;
        let (answer, refresh) = self.fresh_hit(slot, now, ttl)?;
        if refresh {
            // `get` starts the refresh, which needs the owned key.
            return None;
        }
        st.tick += 1;
        slot.used = st.tick;
        drop(guard);
        self.inner.metrics.count_read(Read::Hit);
        Some(answer)
    }

    /// The hit a read of `slot` gets when its value is fresh (younger than the TTL and not
    /// suspect), and whether that read should start a refresh ahead of expiry.
    fn fresh_hit(&self, slot: &Slot, now: SystemTime, ttl: Duration) -> Option<(Answer, bool)> {
        let v = slot.value.as_ref()?;
        let age = age(now, v.fetched_at);
        if age >= ttl || slot.suspect {
            return None;
        }
        let refresh = past_refresh_point(age, ttl, self.inner.settings.refresh_ratio)
            && self.inner.refresh_on_read.load(Relaxed)
            && slot.inflight.is_none()
            && !backing_off(slot, now);
        let answer = Answer {
            body: v.data.body.clone(),
            status: CacheStatus::Hit,
            age,
        };
        Some((answer, refresh))
    }

    /// Answers a read: from the cache when fresh, otherwise from one shared backend call.
    pub async fn get(&self, key: Key, refresh_now: bool) -> Result<Answer, Error> {
        let plan = self.plan(&key, refresh_now, None);
        self.answer(&key, plan).await
    }

    /// Reads many secrets (AWSCURRENT), as `role` or with the agent's own credentials, one
    /// answer per id in order. Each id is planned as [`Cache::get`] plans it (a hit, a stale
    /// value, or a fetch already in flight is joined); the ids that need a new fetch are fetched
    /// together, by BatchGetSecretValue (20 ids per call), and a concurrent `get` of one of them
    /// joins that fetch.
    pub async fn get_secrets(
        &self,
        role: Option<Arc<str>>,
        ids: Vec<String>,
    ) -> Vec<(String, Result<Answer, Error>)> {
        let mut claimed = Vec::new();
        let plans: Vec<(Key, Plan)> = ids
            .into_iter()
            .map(|id| {
                let key = Key::secret(id, None, None).with_role(role.clone());
                let plan = self.plan(&key, false, Some(&mut claimed));
                (key, plan)
            })
            .collect();
        if !claimed.is_empty() {
            let cache = self.clone();
            self.spawn(async move { cache.fetch_claimed(role, claimed).await });
        }
        let mut answers = Vec::with_capacity(plans.len());
        for (key, plan) in plans {
            let answer = self.answer(&key, plan).await;
            answers.push((key.id, answer));
        }
        answers
    }

    /// Fetches claimed secrets together, as `role` (or the agent's own credentials), and
    /// answers each one's waiters.
    async fn fetch_claimed(&self, role: Option<Arc<str>>, claimed: Vec<Claimed>) {
        let ids = claimed.iter().map(|(id, ..)| id.clone()).collect();
        let mut results = self.inner.backend.fetch_secrets(role.clone(), ids).await;
        for (id, key, tx, marker) in claimed {
            let result = match results.iter().position(|(r, _)| *r == id) {
                Some(i) => results.swap_remove(i).1.map(Refreshed::New),
                None => Err(Error::Unreachable {
                    operation: "BatchGetSecretValue",
                    detail: "no answer for this id".into(),
                }),
            };
            if let Err(e) = &result {
                tracing::warn!(
                    secret_id = ?id,
                    role = ?role.as_deref(),
                    error = ?e.to_string(),
                    "batch fetch failed"
                );
            }
            let outcome = self.finish(&key, &marker, result, None);
            let _ = tx.send(Some(outcome));
        }
    }

    /// Carries out a plan: the answer it holds, or the one its fetch brings.
    async fn answer(&self, key: &Key, plan: Plan) -> Result<Answer, Error> {
        let rx = match plan {
            Plan::Done(answer) => {
                self.inner.metrics.count_read(read_of(&answer));
                return answer;
            }
            Plan::Wait(rx) => rx,
        };
        let answer = match wait(rx).await {
            Ok(stored) => Ok(Answer {
                body: stored.data.body.clone(),
                status: CacheStatus::Miss,
                age: Duration::ZERO,
            }),
            Err(e) if e.is_transient() => self.stale_or(key, e),
            Err(e) => Err(e),
        };
        self.inner.metrics.count_read(read_of(&answer));
        answer
    }

    /// Decides, under the lock, how `key` is answered. With `batch`, a new fetch is not started
    /// but claimed there, for the caller to fetch with others.
    fn plan(&self, key: &Key, refresh_now: bool, batch: Option<&mut Vec<Claimed>>) -> Plan {
        let s = &self.inner.settings;
        let now = self.inner.clock.now();
        let ttl = s.ttl(key.kind);
        let mut st = self.state();
        st.tick += 1;
        let tick = st.tick;
        // A hit must not clone the key (an allocation per read): insert only when missing.
        if !st.map.contains_key(key) {
            if !refresh_now {
                if let Some(err) = st.not_found(key, now) {
                    return Plan::Done(Err(err));
                }
            }
            st.map.insert(key.clone(), Slot::default());
        }
        let Some(slot) = st.map.get_mut(key) else {
            // Cannot happen: inserted just above, under the same lock.
            return Plan::Done(Err(Error::Unreachable {
                operation: "cache",
                detail: "entry missing right after insert".into(),
            }));
        };
        slot.used = tick;
        if refresh_now {
            return Plan::Wait(self.start_fetch(slot, key, false));
        }
        if let Some((answer, refresh)) = self.fresh_hit(slot, now, ttl) {
            if refresh {
                self.inner.metrics.count_refresh_ahead();
                self.start_fetch(slot, key, true);
            }
            return Plan::Done(Ok(answer));
        }
        if let Some(v) = &slot.value {
            let age = age(now, v.fetched_at);
            let body = v.data.body.clone();
            let servable = s.serve_stale && age < ttl + s.max_stale;
            // AWS is failing, or a refresh is already on its way: serve what we have rather
            // than make the reader wait for the backend.
            if servable && (slot.failure.is_some() || slot.inflight.is_some()) {
                if slot.inflight.is_none() && !backing_off(slot, now) {
                    self.start_fetch(slot, key, true);
                }
                return Plan::Done(Ok(Answer {
                    body,
                    status: CacheStatus::Stale,
                    age,
                }));
            }
        }
        if let Some(rx) = &slot.inflight {
            return Plan::Wait(rx.clone());
        }
        match batch {
            Some(batch) => {
                let (tx, rx) = watch::channel(None);
                slot.inflight = Some(rx.clone());
                batch.push((key.id.clone(), key.clone(), tx, rx.clone()));
                Plan::Wait(rx)
            }
            None => Plan::Wait(self.start_fetch(slot, key, true)),
        }
    }

    /// After a transient failure: the last good value if it may still be served.
    fn stale_or(&self, key: &Key, err: Error) -> Result<Answer, Error> {
        let s = &self.inner.settings;
        let now = self.inner.clock.now();
        let ttl = s.ttl(key.kind);
        let st = self.state();
        match st.map.get(key).and_then(|slot| slot.value.as_ref()) {
            Some(v) if s.serve_stale && age(now, v.fetched_at) < ttl + s.max_stale => Ok(Answer {
                body: v.data.body.clone(),
                status: CacheStatus::Stale,
                age: age(now, v.fetched_at),
            }),
            _ => Err(err),
        }
    }

    /// Starts the one backend call for `key` and records it in the slot. `revalidate` lets a
    /// secret ask DescribeSecret first when a value is already held.
    fn start_fetch(
        &self,
        slot: &mut Slot,
        key: &Key,
        revalidate: bool,
    ) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        slot.inflight = Some(rx.clone());
        let previous = if revalidate {
            slot.value.as_ref().map(|v| v.data.clone())
        } else {
            None
        };
        let cache = self.clone();
        let key = key.clone();
        let marker = rx.clone();
        self.spawn(async move {
            let result = cache.inner.backend.fetch(&key, previous.clone()).await;
            let outcome = cache.finish(&key, &marker, result, previous);
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }

    /// Records the result of a fetch in the slot and returns what waiters get.
    fn finish(
        &self,
        key: &Key,
        marker: &watch::Receiver<Outcome>,
        result: Result<Refreshed, Error>,
        previous: Option<Arc<Fetched>>,
    ) -> Result<Stored, Error> {
        let s = &self.inner.settings;
        let now = self.inner.clock.now();
        let keep = !s.ttl(key.kind).is_zero();
        let mut st = self.state();
        let slot = st.map.entry(key.clone()).or_default();
        if slot
            .inflight
            .as_ref()
            .is_some_and(|rx| rx.same_channel(marker))
        {
            slot.inflight = None;
        }
        // What the slot's value becomes; `None` leaves it as it is.
        let mut replace: Option<Option<Stored>> = None;
        let outcome = match result {
            Ok(refreshed) => {
                let data = match refreshed {
                    Refreshed::New(f) => Arc::new(f),
                    Refreshed::Unchanged => match previous {
                        Some(p) => p,
                        None => {
                            // Unreachable by contract: Unchanged needs a previous value.
                            return Err(Error::Unreachable {
                                operation: "refresh",
                                detail: "no previous value".into(),
                            });
                        }
                    },
                };
                if slot.failure.take().is_some() {
                    tracing::info!(id = ?key.id, "backend recovered; serving fresh values again");
                }
                slot.suspect = false;
                let stored = Stored {
                    data,
                    fetched_at: now,
                };
                if keep {
                    replace = Some(Some(stored.clone()));
                }
                Ok(stored)
            }
            Err(e) if e.is_transient() => {
                let count = slot.failure.as_ref().map_or(0, |f| f.count) + 1;
                let delay = backoff(s.backoff_base, s.backoff_cap, count);
                // One log line per backoff step, not one per request.
                // Ids and errors in Debug form: escaped, as they may carry request text.
                tracing::warn!(
                    id = ?key.id,
                    error = ?e.to_string(),
                    attempt = count,
                    retry_in_ms = delay.as_millis() as u64,
                    "backend call failed; serving the cached value where there is one"
                );
                slot.failure = Some(Failure {
                    count,
                    retry_at: now + delay,
                });
                Err(e)
            }
            Err(e) => {
                // A "no" from AWS: the secret is gone or we may no longer read it.
                slot.failure = None;
                replace = Some(None);
                Err(e)
            }
        };
        if let Some(value) = replace {
            st.set_value(key, value);
        }
        match &outcome {
            Ok(_) => {
                st.negative.remove(key);
            }
            Err(e) if e.is_not_found() && !s.negative_ttl.is_zero() => {
                st.remember_not_found(key, e.clone(), now + s.negative_ttl);
            }
            Err(_) => {}
        }
        if st
            .map
            .get(key)
            .is_some_and(|slot| slot.value.is_none() && slot.inflight.is_none())
        {
            st.remove(key);
        }
        evict(&mut st, s.capacity, s.max_bytes);
        self.inner.metrics.set_entries(st.values, st.bytes);
        outcome
    }

    /// Starts background refreshes of every entry past its refresh-ahead point. In Lambda this
    /// runs when an INVOKE arrives, since no timer runs while the process is frozen.
    pub fn refresh_due(&self) -> usize {
        let s = &self.inner.settings;
        let now = self.inner.clock.now();
        let mut st = self.state();
        let due: Vec<Key> = st
            .map
            .iter()
            .filter(|(key, slot)| {
                let ttl = s.ttl(key.kind);
                slot.inflight.is_none()
                    && !backing_off(slot, now)
                    && slot.value.as_ref().is_some_and(|v| {
                        past_refresh_point(age(now, v.fetched_at), ttl, s.refresh_ratio)
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &due {
            if let Some(slot) = st.map.get_mut(key) {
                self.inner.metrics.count_refresh_ahead();
                self.start_fetch(slot, key, true);
            }
        }
        due.len()
    }

    /// Waits, at most `limit`, until the prefetch and every backend call in flight now have
    /// finished. Lambda freezes the process once the extension asks for the next event, and a
    /// fetch frozen mid-flight times out after the thaw; in SnapStart, the snapshot must not
    /// capture a prefetch half done. Returns false when `limit` passed first.
    pub async fn settle(&self, limit: Duration) -> bool {
        let inflight: Vec<watch::Receiver<Outcome>> = self
            .state()
            .map
            .values()
            .filter_map(|s| s.inflight.clone())
            .collect();
        let mut prefetching = self.inner.prefetching.subscribe();
        let all = async move {
            let _ = prefetching.wait_for(|n| *n == 0).await;
            for rx in inflight {
                let _ = wait(rx).await;
            }
        };
        tokio::time::timeout(limit, all).await.is_ok()
    }

    /// Marks every cached value as possibly out of date: each is revalidated (DescribeSecret,
    /// or a new read) before it is served as a hit again, and served stale meanwhile only if
    /// AWS fails. For a process restored from a snapshot. Returns the number of values marked.
    pub fn revalidate_all(&self) -> usize {
        let mut st = self.state();
        let mut n = 0;
        for slot in st.map.values_mut().filter(|s| s.value.is_some()) {
            slot.suspect = true;
            n += 1;
        }
        n
    }

    /// Whether a read past the refresh-ahead point starts a background refresh (default on).
    pub fn set_refresh_on_read(&self, on: bool) {
        self.inner.refresh_on_read.store(on, Relaxed);
    }

    /// For a process restored from a snapshot (SnapStart): new AWS clients (the pooled
    /// connections are dead, credentials may be stale) and every value revalidated before it
    /// is a hit again. Returns the number of values marked.
    pub fn after_restore(&self) -> usize {
        self.inner.backend.renew();
        self.revalidate_all()
    }

    /// Values held and their counted bytes.
    pub fn stored(&self) -> (usize, usize) {
        let st = self.state();
        (st.values, st.bytes)
    }

    /// "Not found" answers remembered (expired ones included until they are looked at).
    pub fn remembered_not_found(&self) -> usize {
        self.state().negative.len()
    }

    /// Age of the oldest cached value.
    pub fn oldest_age(&self) -> Duration {
        let now = self.inner.clock.now();
        self.state()
            .map
            .values()
            .filter_map(|s| s.value.as_ref())
            .map(|v| age(now, v.fetched_at))
            .max()
            .unwrap_or_default()
    }

    /// Stops every background fetch.
    pub fn shutdown(&self) {
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.abort_all();
    }
}

async fn wait(mut rx: watch::Receiver<Outcome>) -> Result<Stored, Error> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or_else(unreachable_fetch),
        Err(_) => unreachable_fetch(),
    }
}

fn unreachable_fetch() -> Result<Stored, Error> {
    Err(Error::Unreachable {
        operation: "fetch",
        detail: "the backend call was cancelled (agent shutting down)".into(),
    })
}

/// The counters' name for how a read was answered.
fn read_of(answer: &Result<Answer, Error>) -> Read {
    match answer {
        Ok(a) => match a.status {
            CacheStatus::Hit => Read::Hit,
            CacheStatus::Miss => Read::Miss,
            CacheStatus::Stale => Read::Stale,
        },
        Err(_) => Read::Error,
    }
}

/// Counts a prefetch job as finished when dropped (also when the task is aborted).
struct PrefetchDone<'a>(&'a watch::Sender<usize>);

impl Drop for PrefetchDone<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    // A clock stepped backwards makes an entry look new; never negative.
    now.duration_since(then).unwrap_or_default()
}

/// Whether a value of this age is past the refresh-ahead point (`ratio` of the TTL). In
/// floating point rather than with `Duration::mul_f64`, which costs a hit about 100
/// instructions to build a `Duration` only to compare it.
fn past_refresh_point(age: Duration, ttl: Duration, ratio: f64) -> bool {
    age.as_secs_f64() >= ttl.as_secs_f64() * ratio
}

fn backing_off(slot: &Slot, now: SystemTime) -> bool {
    slot.failure.as_ref().is_some_and(|f| now < f.retry_at)
}

/// Exponential backoff with equal jitter: half the step fixed, half random.
fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let step = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(cap);
    step / 2 + (step / 2).mul_f64(random_unit())
}

/// A random number in [0, 1] from the OS RNG (0.5 if it fails; jitter is not security).
pub(crate) fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::getrandom(&mut b).is_ok() {
        u32::from_le_bytes(b) as f64 / u32::MAX as f64
    } else {
        0.5
    }
}

/// Drops the least recently read values while more than `capacity` values or more than
/// `max_bytes` counted bytes are held, sparing those with a fetch in flight. The newest value
/// always stays, even alone over the byte budget: a value that was just fetched is served.
fn evict(st: &mut State, capacity: usize, max_bytes: usize) {
    while st.values > capacity.max(1) || (st.bytes > max_bytes.max(1) && st.values > 1) {
        let victim = st
            .map
            .iter()
            .filter(|(_, s)| s.inflight.is_none() && s.value.is_some())
            .min_by_key(|(_, s)| s.used)
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => st.remove(&k),
            None => break,
        }
    }
}

#[cfg(test)]
mod tests;
