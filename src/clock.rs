//! Wall-clock time, behind a trait so tests move it by hand. Shared by the cache (TTLs) and
//! the roles (credential renewal).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Wall-clock time. TTLs must survive a Lambda freeze, so they are not measured on a monotonic
/// clock that stops while the process is frozen.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (tests, benchmarks).
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    pub fn new() -> Self {
        ManualClock(Mutex::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ))
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
