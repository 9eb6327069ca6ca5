//! The arithmetic every `bench` command shares, so their figures compare: one percentile
//! (nearest rank) over latencies, and one peak memory (the process's peak resident set).

use std::time::Duration;

/// Measured times in milliseconds, sorted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latencies(Vec<f64>);

impl Latencies {
    /// Times in milliseconds, in any order (values that are not numbers are dropped).
    pub fn from_ms(ms: impl IntoIterator<Item = f64>) -> Latencies {
        let mut v: Vec<f64> = ms.into_iter().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        Latencies(v)
    }

    /// Durations, in any order.
    pub fn from_durations(times: impl IntoIterator<Item = Duration>) -> Latencies {
        Latencies::from_ms(times.into_iter().map(|d| d.as_secs_f64() * 1e3))
    }

    /// How many times were measured.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The `p` percentile (`p` in [0, 1]) by nearest rank: the smallest time with at least a
    /// share `p` of all times at or below it (`p = 0.5` is the median, the lower middle for an
    /// even count; `p = 1` the maximum). 0 when nothing was measured.
    pub fn percentile(&self, p: f64) -> f64 {
        let n = self.0.len();
        if n == 0 {
            return 0.0;
        }
        let rank = (p.clamp(0.0, 1.0) * n as f64).ceil() as usize;
        self.0[rank.clamp(1, n) - 1]
    }
}

/// The peak resident memory of this process so far, in MB (`None` if the system does not say).
pub fn peak_rss_mb() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given and reads nothing.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    if !ok {
        return None;
    }
    // SAFETY: getrusage succeeded, so the struct is initialized.
    let usage = unsafe { usage.assume_init() };
    // Linux reports kilobytes.
    Some(usage.ru_maxrss as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_over_sorted_times() {
        let l = Latencies::from_ms([5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(l.percentile(0.5), 5.0);
        assert_eq!(l.percentile(0.95), 10.0);
        assert_eq!(l.percentile(0.9), 9.0);
        assert_eq!(l.percentile(0.0), 1.0);
        assert_eq!(l.percentile(1.0), 10.0);
        let twenty = Latencies::from_ms((1..=20).map(f64::from));
        assert_eq!(twenty.percentile(0.95), 19.0, "the 19th of 20 times has 95% at or below it");
        assert_eq!(Latencies::default().percentile(0.5), 0.0);
        assert_eq!(Latencies::from_durations([Duration::from_millis(3)]).percentile(0.99), 3.0);
    }

    #[test]
    fn the_peak_memory_of_a_running_process_is_above_zero() {
        assert!(peak_rss_mb().is_some_and(|mb| mb > 0.0));
    }
}
