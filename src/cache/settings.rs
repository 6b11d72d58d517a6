//! What the cache is told by the configuration: TTLs, bounds, refresh-ahead, staleness and
//! backoff.

use std::time::Duration;

use crate::backend::Kind;
use crate::config::Config;

/// The cache's knobs, taken from `Config`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub secrets_ttl: Duration,
    pub parameters_ttl: Duration,
    pub capacity: usize,
    /// Bytes of cached values (see [`ENTRY_OVERHEAD`]); 0 is treated as 1.
    pub max_bytes: usize,
    pub refresh_ratio: f64,
    pub max_stale: Duration,
    pub serve_stale: bool,
    pub negative_ttl: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            secrets_ttl: c.secrets_ttl,
            parameters_ttl: c.parameters_ttl,
            capacity: c.cache_size,
            max_bytes: c.cache_max_bytes,
            refresh_ratio: c.refresh_ratio,
            max_stale: c.max_stale,
            serve_stale: c.ignore_transient_errors,
            negative_ttl: c.negative_ttl,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
        }
    }

    pub(super) fn ttl(&self, kind: Kind) -> Duration {
        if self.capacity == 0 {
            return Duration::ZERO;
        }
        match kind {
            Kind::Secret => self.secrets_ttl,
            Kind::Parameter => self.parameters_ttl,
            Kind::Certificate => self.secrets_ttl,
        }
    }
}
