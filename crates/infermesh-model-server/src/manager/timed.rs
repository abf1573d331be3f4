//! Every loaded servable is wrapped to learn its typical run time (an exponentially
//! weighted moving average), so requests to cheap models run inline on the request's
//! thread and only expensive ones pay for a hand-off to the blocking pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use infermesh_tfserving::{Servable, Signature, Status, Tensor};

/// `u64::MAX`: no run measured yet.
const UNKNOWN: u64 = u64::MAX;

pub(crate) struct Timed {
    inner: Arc<dyn Servable>,
    ewma_ns: AtomicU64,
}

impl Timed {
    pub(crate) fn wrap(inner: Arc<dyn Servable>) -> Arc<dyn Servable> {
        Arc::new(Timed {
            inner,
            ewma_ns: AtomicU64::new(UNKNOWN),
        })
    }

    fn observe(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX - 1);
        // Lost updates under contention only make the average a little staler.
        let old = self.ewma_ns.load(Ordering::Relaxed);
        let new = if old == UNKNOWN {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.ewma_ns.store(new, Ordering::Relaxed);
    }
}

impl Servable for Timed {
    fn signatures(&self) -> &BTreeMap<String, Signature> {
        self.inner.signatures()
    }

    fn run(
        &self,
        signature: &str,
        inputs: BTreeMap<String, Tensor>,
        output_filter: &[String],
    ) -> Result<BTreeMap<String, Tensor>, Status> {
        self.run_timed(signature, inputs, output_filter).0
    }

    /// The one clock reading pair per run: the average learns from it and the caller
    /// gets it for its runtime metric.
    fn run_timed(
        &self,
        signature: &str,
        inputs: BTreeMap<String, Tensor>,
        output_filter: &[String],
    ) -> (Result<BTreeMap<String, Tensor>, Status>, Duration) {
        let started = Instant::now();
        let result = self.inner.run(signature, inputs, output_filter);
        let took = started.elapsed();
        self.observe(took);
        (result, took)
    }

    fn typical_run_time(&self) -> Option<Duration> {
        match self.ewma_ns.load(Ordering::Relaxed) {
            UNKNOWN => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy(BTreeMap<String, Signature>, Duration);

    impl Servable for Sleepy {
        fn signatures(&self) -> &BTreeMap<String, Signature> {
            &self.0
        }
        fn run(
            &self,
            _: &str,
            _: BTreeMap<String, Tensor>,
            _: &[String],
        ) -> Result<BTreeMap<String, Tensor>, Status> {
            std::thread::sleep(self.1);
            Ok(BTreeMap::new())
        }
    }

    #[test]
    fn learns_the_typical_run_time() {
        let timed = Timed::wrap(Arc::new(Sleepy(BTreeMap::new(), Duration::from_millis(5))));
        assert_eq!(timed.typical_run_time(), None, "unknown before any run");
        timed.run("s", BTreeMap::new(), &[]).unwrap();
        let typical = timed.typical_run_time().expect("known after a run");
        assert!(typical >= Duration::from_millis(5), "{typical:?}");
    }

    /// `run_timed` reports the duration the average learned from: the first run sets
    /// the average to exactly that sample.
    #[test]
    fn run_timed_reports_the_observed_duration() {
        let timed = Timed::wrap(Arc::new(Sleepy(BTreeMap::new(), Duration::from_millis(2))));
        let (result, took) = timed.run_timed("s", BTreeMap::new(), &[]);
        assert!(result.is_ok());
        assert!(took >= Duration::from_millis(2), "{took:?}");
        assert_eq!(timed.typical_run_time(), Some(took));
    }
}
