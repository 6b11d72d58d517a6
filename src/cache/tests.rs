use super::*;
use crate::config::Config;
use crate::error::ServiceErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A backend that answers from a table, counting calls; `fail` switches to a transient error.
#[derive(Default)]
struct Table {
    calls: AtomicUsize,
    describes: AtomicUsize,
    version: AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
    missing: std::sync::atomic::AtomicBool,
    /// Ids AWS says do not exist (the others do).
    absent: Mutex<std::collections::HashSet<String>>,
    /// Bytes of padding added to every body.
    padding: AtomicUsize,
    /// How long each call takes.
    delay: Mutex<Duration>,
}

impl Backend for Arc<Table> {
    async fn fetch(&self, key: &Key, previous: Option<Arc<Fetched>>) -> Result<Refreshed, Error> {
        tokio::task::yield_now().await;
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::Unreachable {
                operation: "GetSecretValue",
                detail: "down".into(),
            });
        }
        if self.missing.load(Ordering::SeqCst) || self.absent.lock().unwrap().contains(&key.id) {
            return Err(Error::Service {
                kind: ServiceErrorKind::NotFound,
                status: 400,
                code: "ResourceNotFoundException".into(),
                message: "not found".into(),
            });
        }
        let v = self.version.load(Ordering::SeqCst).to_string();
        if let Some(p) = previous {
            self.describes.fetch_add(1, Ordering::SeqCst);
            if p.version.as_deref() == Some(v.as_str()) {
                return Ok(Refreshed::Unchanged);
            }
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let pad = "x".repeat(self.padding.load(Ordering::SeqCst));
        Ok(Refreshed::New(Fetched {
            body: Bytes::from(format!("{}@{v}{pad}", key.id)),
            version: Some(v),
            stages: vec![],
        }))
    }

    async fn fetch_secrets(
        &self,
        role: Option<Arc<str>>,
        ids: Vec<String>,
    ) -> Vec<(String, Result<Fetched, Error>)> {
        let mut out = Vec::new();
        for id in ids {
            let key = Key::secret(id.clone(), None, None).with_role(role.clone());
            let r = self.fetch(&key, None).await;
            out.push((
                id,
                r.map(|r| match r {
                    Refreshed::New(f) => f,
                    Refreshed::Unchanged => unreachable!(),
                }),
            ));
        }
        out
    }
}

fn setup(capacity: usize) -> (Cache<Arc<Table>>, Arc<Table>, Arc<ManualClock>) {
    setup_with(Settings {
        capacity,
        ..Settings::from_config(&Config::default())
    })
}

fn setup_with(settings: Settings) -> (Cache<Arc<Table>>, Arc<Table>, Arc<ManualClock>) {
    let table = Arc::new(Table::default());
    let clock = Arc::new(ManualClock::new());
    let cache = Cache::new(
        table.clone(),
        settings,
        clock.clone(),
        Arc::new(Metrics::default()),
    );
    (cache, table, clock)
}

fn key(id: &str) -> Key {
    Key::secret(id, None, None)
}

#[tokio::test]
async fn hit_after_miss_and_expiry_revalidates() {
    let (cache, table, clock) = setup(10);
    let a = cache.get(key("a"), false).await.unwrap();
    assert_eq!(a.status, CacheStatus::Miss);
    clock.advance(Duration::from_secs(100));
    let a = cache.get(key("a"), false).await.unwrap();
    assert_eq!(a.status, CacheStatus::Hit);
    assert_eq!(a.age, Duration::from_secs(100));
    clock.advance(Duration::from_secs(201));
    let a = cache.get(key("a"), false).await.unwrap();
    assert_eq!(a.status, CacheStatus::Miss);
    assert_eq!(table.calls.load(Ordering::SeqCst), 1);
    assert_eq!(table.describes.load(Ordering::SeqCst), 1);
}

/// `hit` answers only a fresh value with nothing to start; everything else is `get`'s.
#[tokio::test]
async fn borrowed_hit_answers_only_what_needs_no_fetch() {
    let (cache, table, clock) = setup(10);
    let a = KeyRef::current_secret("a");
    assert!(cache.hit(&a).is_none(), "a miss goes to get");
    cache.get(key("a"), false).await.unwrap();
    clock.advance(Duration::from_secs(100));
    let hit = cache.hit(&a).expect("fresh");
    assert_eq!(
        (hit.status, hit.age),
        (CacheStatus::Hit, Duration::from_secs(100))
    );
    assert_eq!(&hit.body[..], b"a@0");
    assert!(cache.hit(&KeyRef::current_secret("b")).is_none());
    assert!(
        cache
            .hit(&KeyRef {
                label: Some("AWSPREVIOUS"),
                ..a
            })
            .is_none(),
        "another stage is another entry"
    );
    // Past the refresh-ahead point: `get` starts the refresh.
    clock.advance(Duration::from_secs(150));
    assert!(cache.hit(&a).is_none());
    cache.get(key("a"), false).await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(table.describes.load(Ordering::SeqCst), 1, "refreshed once");
    assert!(cache.hit(&a).is_some(), "fresh again after the refresh");
    // Past the TTL: `get` decides (revalidate, or stale if AWS is down).
    clock.advance(Duration::from_secs(301));
    assert!(cache.hit(&a).is_none());
}

#[tokio::test]
async fn concurrent_misses_share_one_call() {
    let (cache, table, _) = setup(10);
    let reads: Vec<_> = (0..50)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.get(key("a"), false).await })
        })
        .collect();
    for r in reads {
        assert!(r.await.unwrap().is_ok());
    }
    assert_eq!(table.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn least_recently_used_is_evicted() {
    let (cache, table, _) = setup(2);
    cache.get(key("a"), false).await.unwrap();
    cache.get(key("b"), false).await.unwrap();
    cache.get(key("a"), false).await.unwrap(); // a is now more recent than b
    cache.get(key("c"), false).await.unwrap(); // evicts b
    assert_eq!(table.calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        cache.get(key("a"), false).await.unwrap().status,
        CacheStatus::Hit
    );
    assert_eq!(
        cache.get(key("b"), false).await.unwrap().status,
        CacheStatus::Miss
    );
}

/// Values counted in bytes: each read of a new 10 KiB value past the budget evicts the least
/// recently read one, and the count never exceeds the budget.
#[tokio::test]
async fn byte_budget_evicts_least_recently_used() {
    const BODY: usize = 10 * 1024;
    let (cache, table, _) = setup_with(Settings {
        capacity: 1000,
        // Room for 4 values of ~10 KiB (body + key + overhead), not 5.
        max_bytes: 4 * (BODY + 300) + 100,
        ..Settings::from_config(&Config::default())
    });
    table.padding.store(BODY, Ordering::SeqCst);
    for id in ["a", "b", "c", "d"] {
        cache.get(key(id), false).await.unwrap();
    }
    assert_eq!(cache.stored().0, 4);
    cache.get(key("a"), false).await.unwrap(); // b is now the least recently read
    cache.get(key("e"), false).await.unwrap(); // evicts b
    let (values, bytes) = cache.stored();
    assert_eq!(values, 4);
    assert!(bytes <= 4 * (BODY + 300) + 100, "{bytes}");
    let calls = table.calls.load(Ordering::SeqCst);
    for id in ["a", "c", "d", "e"] {
        let got = cache.get(key(id), false).await.unwrap();
        assert_eq!(got.status, CacheStatus::Hit, "{id}");
    }
    assert_eq!(table.calls.load(Ordering::SeqCst), calls, "all hits");
    assert_eq!(
        cache.get(key("b"), false).await.unwrap().status,
        CacheStatus::Miss
    );
}

/// 100 values of 64 KiB (the Secrets Manager maximum) under a 1 MiB budget: at most 1 MiB
/// counted, and the most recent values are the ones kept.
#[tokio::test]
async fn byte_budget_holds_with_large_secrets() {
    let (cache, table, _) = setup_with(Settings {
        capacity: 1000,
        max_bytes: 1024 * 1024,
        ..Settings::from_config(&Config::default())
    });
    table.padding.store(64 * 1024, Ordering::SeqCst);
    for i in 0..100 {
        cache.get(key(&format!("s{i}")), false).await.unwrap();
        assert!(cache.stored().1 <= 1024 * 1024, "after {i}");
    }
    let (values, _) = cache.stored();
    assert_eq!(
        values, 15,
        "1 MiB holds 15 values of 64 KiB + key + overhead"
    );
    assert_eq!(
        cache.get(key("s99"), false).await.unwrap().status,
        CacheStatus::Hit
    );
}

/// A value alone over the budget is still served and kept until something newer comes.
#[tokio::test]
async fn a_value_larger_than_the_budget_is_served() {
    let (cache, table, _) = setup_with(Settings {
        max_bytes: 1000,
        ..Settings::from_config(&Config::default())
    });
    table.padding.store(5000, Ordering::SeqCst);
    let a = cache.get(key("a"), false).await.unwrap();
    assert_eq!(a.body.len(), "a@0".len() + 5000);
    assert_eq!(cache.stored().0, 1);
    cache.get(key("b"), false).await.unwrap();
    assert_eq!(cache.stored().0, 1, "a was evicted for b");
}

/// Issue 21.5: 1,500 distinct missing ids never push a cached secret out, and the negative
/// cache itself stays bounded.
#[tokio::test]
async fn not_found_answers_never_evict_values() {
    let (cache, table, _) = setup(10);
    for i in 0..10 {
        cache.get(key(&format!("good{i}")), false).await.unwrap();
    }
    {
        let mut absent = table.absent.lock().unwrap();
        for i in 0..1500 {
            absent.insert(format!("missing{i}"));
        }
    }
    for i in 0..1500 {
        let e = cache
            .get(key(&format!("missing{i}")), false)
            .await
            .unwrap_err();
        assert!(e.is_not_found());
    }
    let calls = table.calls.load(Ordering::SeqCst);
    for i in 0..10 {
        let got = cache.get(key(&format!("good{i}")), false).await.unwrap();
        assert_eq!(got.status, CacheStatus::Hit, "good{i}");
    }
    assert_eq!(table.calls.load(Ordering::SeqCst), calls);
    assert_eq!(cache.stored().0, 10);
    assert_eq!(cache.remembered_not_found(), NEGATIVE_CAPACITY);
    // The most recent "not found" is still remembered: no call for it.
    assert!(cache.get(key("missing1499"), false).await.is_err());
    assert_eq!(table.calls.load(Ordering::SeqCst), calls);
}

/// Concurrent misses in flight do not count as values either.
#[tokio::test]
async fn fetches_in_flight_do_not_evict_values() {
    let (cache, table, _) = setup(3);
    for id in ["a", "b", "c"] {
        cache.get(key(id), false).await.unwrap();
    }
    let reads: Vec<_> = (0..20)
        .map(|i| {
            let c = cache.clone();
            tokio::spawn(async move { c.get(key(&format!("n{i}")), true).await })
        })
        .collect();
    table
        .absent
        .lock()
        .unwrap()
        .extend((0..20).map(|i| format!("n{i}")));
    for r in reads {
        let _ = r.await.unwrap();
    }
    for id in ["a", "b", "c"] {
        assert_eq!(
            cache.get(key(id), false).await.unwrap().status,
            CacheStatus::Hit,
            "{id}"
        );
    }
}

#[tokio::test]
async fn stale_served_on_transient_error_then_backoff() {
    let (cache, table, clock) = setup(10);
    cache.get(key("a"), false).await.unwrap();
    table.fail.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(301));
    let a = cache.get(key("a"), false).await.unwrap();
    assert_eq!(a.status, CacheStatus::Stale);
    // During backoff no request reaches the backend.
    let before = table.describes.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(
            cache.get(key("a"), false).await.unwrap().status,
            CacheStatus::Stale
        );
    }
    assert_eq!(table.describes.load(Ordering::SeqCst), before);
    // Past max staleness the error is returned.
    clock.advance(Duration::from_secs(3601));
    tokio::task::yield_now().await;
    assert!(cache.get(key("a"), false).await.is_err());
}

#[tokio::test]
async fn not_found_is_remembered_briefly() {
    let (cache, table, clock) = setup(10);
    table.missing.store(true, Ordering::SeqCst);
    assert!(cache.get(key("x"), false).await.unwrap_err().is_not_found());
    table.missing.store(false, Ordering::SeqCst);
    assert!(cache.get(key("x"), false).await.is_err());
    clock.advance(Duration::from_secs(6));
    assert!(cache.get(key("x"), false).await.is_ok());
}

#[tokio::test]
async fn refresh_ahead_serves_cached_value_and_refreshes_in_background() {
    let (cache, table, clock) = setup(10);
    cache.get(key("a"), false).await.unwrap();
    table.version.store(1, Ordering::SeqCst);
    clock.advance(Duration::from_secs(250)); // past 0.8 × 300
    let a = cache.get(key("a"), false).await.unwrap();
    assert_eq!(a.status, CacheStatus::Hit);
    assert_eq!(&a.body[..], b"a@0");
    // Let the background refresh finish.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let a = cache.get(key("a"), false).await.unwrap();
    assert_eq!(&a.body[..], b"a@1");
    assert_eq!(a.status, CacheStatus::Hit);
}

/// Issue 20.3: the refreshes an INVOKE starts can be waited for, within a bound.
#[tokio::test(start_paused = true)]
async fn settle_waits_for_refreshes_within_a_bound() {
    let (cache, table, clock) = setup(10);
    cache.get(key("a"), false).await.unwrap();
    table.version.store(1, Ordering::SeqCst);
    *table.delay.lock().unwrap() = Duration::from_secs(1);
    clock.advance(Duration::from_secs(250));
    assert_eq!(cache.refresh_due(), 1);
    assert!(
        cache.settle(Duration::from_secs(5)).await,
        "finished in time"
    );
    assert_eq!(table.calls.load(Ordering::SeqCst), 2, "the refresh read v1");
    clock.advance(Duration::from_secs(250));
    *table.delay.lock().unwrap() = Duration::from_secs(30);
    assert_eq!(cache.refresh_due(), 1);
    assert!(!cache.settle(Duration::from_secs(5)).await, "bounded");
}

/// Issue 20.4: SnapStart waits for the prefetch before the snapshot.
#[tokio::test(start_paused = true)]
async fn settle_waits_for_the_prefetch() {
    let (cache, table, _) = setup(10);
    *table.delay.lock().unwrap() = Duration::from_secs(2);
    cache.prefetch(vec!["a".into(), "b".into()], vec![], Duration::ZERO);
    assert!(cache.settle(Duration::from_secs(10)).await);
    assert_eq!(cache.stored().0, 2);
    assert_eq!(table.calls.load(Ordering::SeqCst), 2);
}

/// Issue 20.4: after a restore every value is revalidated before it is a hit again.
#[tokio::test]
async fn values_marked_for_revalidation_are_checked_before_a_hit() {
    let (cache, table, _) = setup(10);
    cache.get(key("a"), false).await.unwrap();
    assert_eq!(cache.revalidate_all(), 1);
    let a = cache.get(key("a"), false).await.unwrap();
    assert_eq!(a.status, CacheStatus::Miss);
    assert_eq!(table.describes.load(Ordering::SeqCst), 1);
    assert_eq!(
        table.calls.load(Ordering::SeqCst),
        1,
        "unchanged: no new read"
    );
    let a = cache.get(key("a"), false).await.unwrap();
    assert_eq!(a.status, CacheStatus::Hit);
    assert_eq!(table.describes.load(Ordering::SeqCst), 1);
}

#[test]
fn backoff_grows_and_is_capped() {
    let base = Duration::from_secs(1);
    let cap = Duration::from_secs(60);
    for attempt in 1..30 {
        let d = backoff(base, cap, attempt);
        let step = base.saturating_mul(1 << (attempt - 1).min(16)).min(cap);
        assert!(d >= step / 2 && d <= step, "{attempt}: {d:?}");
    }
}
