//! The time source of outlier detection: nanoseconds since the endpoint set was
//! built, as a plain `u64` so ejection deadlines fit in an atomic. Tests drive a
//! manual clock instead of sleeping.

use std::time::{Duration, Instant};

#[cfg(test)]
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// Monotonic time in nanoseconds since an epoch.
#[derive(Clone, Debug)]
pub(crate) enum Clock {
    /// The process's monotonic clock.
    System(Instant),
    /// A clock that only moves when a test advances it.
    #[cfg(test)]
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub(crate) fn system() -> Self {
        Self::System(Instant::now())
    }

    /// Nanoseconds since the epoch (saturating; `u64` nanoseconds last 584 years).
    pub(crate) fn now(&self) -> u64 {
        match self {
            Self::System(epoch) => nanos(epoch.elapsed()),
            #[cfg(test)]
            Self::Manual(now) => now.load(Ordering::Relaxed),
        }
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX`.
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A manual clock and the handle that advances it.
#[cfg(test)]
pub(crate) fn manual() -> (Clock, ManualClock) {
    let now = Arc::new(AtomicU64::new(0));
    (Clock::Manual(now.clone()), ManualClock(now))
}

#[cfg(test)]
#[derive(Clone, Debug)]
pub(crate) struct ManualClock(Arc<AtomicU64>);

#[cfg(test)]
impl ManualClock {
    pub(crate) fn advance(&self, by: Duration) {
        self.0.fetch_add(nanos(by), Ordering::Relaxed);
    }
}
