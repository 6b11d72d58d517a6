//! Counters for `GET /metrics`, in the Prometheus text format.
//!
//! Plain atomics: the hot path adds one relaxed increment per request.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the backend latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// How a read was answered. The cache reports in these terms, so the counters know no cache
/// types (no import circle between the two modules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Hit,
    Miss,
    Stale,
    Error,
}

#[derive(Default)]
pub struct Metrics {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    errors: AtomicU64,
    refresh_ahead: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    /// (operation, outcome) -> count, and per operation latency buckets. Written once per
    /// backend call, which is rare next to reads, so a mutex is fine.
    calls: Mutex<Vec<CallStats>>,
}

struct CallStats {
    operation: &'static str,
    outcomes: Vec<(&'static str, u64)>,
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Metrics {
    /// Counts one answered read by how it was answered.
    pub fn count_read(&self, read: Read) {
        let counter = match read {
            Read::Hit => &self.hits,
            Read::Miss => &self.misses,
            Read::Stale => &self.stale,
            Read::Error => &self.errors,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn count_refresh_ahead(&self) {
        self.refresh_ahead.fetch_add(1, Relaxed);
    }

    /// Values cached and the bytes they count against `cache_max_bytes`.
    pub fn set_entries(&self, n: usize, bytes: usize) {
        self.entries.store(n as u64, Relaxed);
        self.bytes.store(bytes as u64, Relaxed);
    }

    /// Records one backend call: its operation, outcome (`ok` or an error label) and latency.
    pub fn observe_call(&self, operation: &'static str, outcome: &'static str, latency: Duration) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let idx = match calls.iter().position(|c| c.operation == operation) {
            Some(i) => i,
            None => {
                calls.push(CallStats {
                    operation,
                    outcomes: Vec::new(),
                    buckets: [0; BUCKETS.len()],
                    sum: 0.0,
                    count: 0,
                });
                calls.len() - 1
            }
        };
        let c = &mut calls[idx];
        match c.outcomes.iter_mut().find(|(o, _)| *o == outcome) {
            Some((_, n)) => *n += 1,
            None => c.outcomes.push((outcome, 1)),
        }
        let secs = latency.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                c.buckets[i] += 1;
            }
        }
        c.sum += secs;
        c.count += 1;
    }

    /// Backend calls made for `operation` so far (all outcomes).
    pub fn calls(&self, operation: &str) -> u64 {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls
            .iter()
            .filter(|c| c.operation == operation)
            .map(|c| c.count)
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self, oldest_age: Duration) -> String {
        let mut out = String::new();
        let counters = [
            (
                "secrets_agent_cache_hits_total",
                "Reads answered from a fresh cache entry.",
                &self.hits,
            ),
            (
                "secrets_agent_cache_misses_total",
                "Reads that waited for the backend.",
                &self.misses,
            ),
            (
                "secrets_agent_stale_served_total",
                "Reads answered with a value past its TTL.",
                &self.stale,
            ),
            (
                "secrets_agent_read_errors_total",
                "Reads answered with an error.",
                &self.errors,
            ),
            (
                "secrets_agent_refresh_ahead_total",
                "Background refreshes started by refresh-ahead.",
                &self.refresh_ahead,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP secrets_agent_cache_entries Entries in the cache.\n# TYPE secrets_agent_cache_entries gauge\nsecrets_agent_cache_entries {}",
            self.entries.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP secrets_agent_cache_bytes Bytes of cached values, as counted against cache_max_bytes.\n# TYPE secrets_agent_cache_bytes gauge\nsecrets_agent_cache_bytes {}",
            self.bytes.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP secrets_agent_oldest_entry_age_seconds Age of the oldest cached value.\n# TYPE secrets_agent_oldest_entry_age_seconds gauge\nsecrets_agent_oldest_entry_age_seconds {}",
            oldest_age.as_secs_f64()
        );
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP secrets_agent_backend_calls_total Calls to AWS by operation and outcome.\n# TYPE secrets_agent_backend_calls_total counter"
        );
        for c in calls.iter() {
            for (outcome, n) in &c.outcomes {
                let _ = writeln!(
                    out,
                    "secrets_agent_backend_calls_total{{operation=\"{}\",outcome=\"{outcome}\"}} {n}",
                    c.operation
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP secrets_agent_backend_latency_seconds Latency of calls to AWS.\n# TYPE secrets_agent_backend_latency_seconds histogram"
        );
        for c in calls.iter() {
            let op = c.operation;
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "secrets_agent_backend_latency_seconds_bucket{{operation=\"{op}\",le=\"{le}\"}} {}",
                    c.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "secrets_agent_backend_latency_seconds_bucket{{operation=\"{op}\",le=\"+Inf\"}} {}\nsecrets_agent_backend_latency_seconds_sum{{operation=\"{op}\"}} {}\nsecrets_agent_backend_latency_seconds_count{{operation=\"{op}\"}} {}",
                c.count, c.sum, c.count
            );
        }
        out
    }
}
