//! The measurement loops every scenario shares, and the rows they produce.
//!
//! A scenario hands a loop a `step(i)` closure that does the i-th unit of work (for the engine: apply
//! the i-th measured command). Three loops:
//!
//! * [`run_throughput`]: as fast as possible, no clock inside the loop; gives operations per second.
//! * [`run_latency`]: as fast as possible with one clock read after each step; a sample is the time
//!   between consecutive reads, so it holds the step, the loop and one clock read
//!   ([`clock_read_ns`] prints that cost, about 20–25 ns on a VM with a TSC clocksource).
//! * [`run_fixed_rate`]: step i is scheduled at `start + i / rate`; the loop spins until then when it
//!   is ahead, and a sample runs from the scheduled time to the end of the step. When a step stalls,
//!   the steps behind it start late and carry the delay in their samples: no coordinated omission.
//!
//! Samples go into a vector written in advance (so its pages are mapped before the loop) and into
//! a histogram afterwards, so that neither a page fault nor the histogram's own work lands in a
//! sample.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Samples above this are recorded as this: a minute means the run is broken anyway.
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// Three significant digits: a p99 of 812 ns is reported as 812, not 800.
pub const HISTOGRAM_DIGITS: u8 = 3;
const NS_PER_SEC: u64 = 1_000_000_000;
/// Clock reads timed to estimate the cost of one.
const CLOCK_CALIBRATION_READS: u32 = 1_000_000;

/// Latency percentiles of one run, in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    /// The whole distribution the percentiles were read from, for the `.hgrm` file a plotter
    /// reads; empty when the percentiles were written by hand.
    pub distribution: Distribution,
}

/// A histogram of latency samples in nanoseconds, shared rather than copied: it is written once,
/// to `target/bench/`, after the run.
#[derive(Clone, Default)]
pub struct Distribution(Option<Arc<Histogram<u64>>>);

impl Distribution {
    pub fn histogram(&self) -> Option<&Histogram<u64>> {
        self.0.as_deref()
    }
}

impl PartialEq for Distribution {
    fn eq(&self, other: &Distribution) -> bool {
        self.histogram() == other.histogram()
    }
}

impl Eq for Distribution {}

impl fmt::Debug for Distribution {
    // The counts array has thousands of entries: a failed assertion should not print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.histogram() {
            Some(histogram) => write!(f, "Distribution({} samples)", histogram.len()),
            None => write!(f, "Distribution(none)"),
        }
    }
}

impl Percentiles {
    pub fn from_samples(samples_ns: &[u64]) -> Percentiles {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, LATENCY_NS_MAX, HISTOGRAM_DIGITS)
            .expect("histogram bounds are valid");
        for &sample_ns in samples_ns {
            // The histogram's lowest value is 1: a step faster than the clock's resolution is 1 ns.
            histogram.saturating_record(sample_ns.max(1));
        }
        Percentiles {
            p50_ns: histogram.value_at_quantile(0.50),
            p90_ns: histogram.value_at_quantile(0.90),
            p99_ns: histogram.value_at_quantile(0.99),
            p999_ns: histogram.value_at_quantile(0.999),
            p9999_ns: histogram.value_at_quantile(0.9999),
            // Exact, not the histogram's bucket edge: the worst sample is the one people ask about.
            max_ns: samples_ns.iter().copied().max().unwrap_or(0),
            distribution: Distribution(Some(Arc::new(histogram))),
        }
    }
}

/// One line of a report: a scenario, or a scenario at an offered rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub scenario: String,
    pub count: u64,
    /// Achieved operations per second.
    pub ops_per_sec: f64,
    /// The offered rate of a fixed-rate run; `None` for as fast as possible.
    pub offered_per_sec: Option<u64>,
    pub latency: Percentiles,
    /// The share of the machine's CPU time that other processes and the hypervisor took during
    /// the run (see [`crate::machine`]); `None` where it cannot be read.
    pub others_cpu_share: Option<f64>,
}

/// The samples and the wall time of one run.
pub struct Timed {
    pub samples_ns: Vec<u64>,
    pub elapsed: Duration,
}

impl Timed {
    pub fn ops_per_sec(&self) -> f64 {
        ops_per_sec(self.samples_ns.len(), self.elapsed)
    }
}

pub fn ops_per_sec(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// Runs `count` steps with no clock in the loop and returns the wall time.
pub fn run_throughput(count: usize, mut step: impl FnMut(usize)) -> Duration {
    let start = Instant::now();
    for i in 0..count {
        step(i);
    }
    start.elapsed()
}

/// The engine's way of timing a replay: ops/s from a [`run_throughput`], percentiles from a
/// [`run_latency`] (so that the clock's cost does not lower the throughput figure), each on a
/// fresh state from `fresh`, and `done` called on the state after each run (a replay checks there
/// that it ended where it should).
pub fn run_throughput_then_latency<S>(
    count: usize,
    mut fresh: impl FnMut() -> S,
    mut step: impl FnMut(&mut S, usize),
    mut done: impl FnMut(&S),
) -> (Duration, Timed) {
    let mut state = fresh();
    let elapsed = run_throughput(count, |i| step(&mut state, i));
    done(&state);
    let mut state = fresh();
    let timed = run_latency(count, |i| step(&mut state, i));
    done(&state);
    (elapsed, timed)
}

/// Runs `count` steps, reading the clock once after each (see the module doc).
pub fn run_latency(count: usize, mut step: impl FnMut(usize)) -> Timed {
    let mut samples_ns = samples_buffer(count);
    let start = Instant::now();
    let mut before = start;
    for (i, sample_ns) in samples_ns.iter_mut().enumerate() {
        step(i);
        let after = Instant::now();
        *sample_ns = after.duration_since(before).as_nanos() as u64;
        before = after;
    }
    Timed {
        samples_ns,
        elapsed: before.duration_since(start),
    }
}

/// Runs `count` steps at `rate_per_sec` offered steps per second (see the module doc).
pub fn run_fixed_rate(count: usize, rate_per_sec: u64, mut step: impl FnMut(usize)) -> Timed {
    let mut schedule = Schedule::new(rate_per_sec);
    let mut samples_ns = samples_buffer(count);
    let start = Instant::now();
    let mut now_ns = 0;
    for (i, sample_ns) in samples_ns.iter_mut().enumerate() {
        let scheduled_ns = schedule.next_ns();
        // A bare spin, without `spin_loop()`: PAUSE costs up to ~140 cycles on recent Xeons, and
        // every one of them would be added to the next sample.
        while now_ns < scheduled_ns {
            now_ns = elapsed_ns(start);
        }
        step(i);
        now_ns = elapsed_ns(start);
        *sample_ns = now_ns - scheduled_ns;
    }
    Timed {
        samples_ns,
        elapsed: Duration::from_nanos(now_ns),
    }
}

/// The scheduled times `i × 10⁹ / rate` ns, exactly, without a division per step: a 64-bit
/// division costs tens of cycles and a 128-bit one a call, and both would land in every sample.
pub struct Schedule {
    rate_per_sec: u64,
    period_ns: u64,
    period_remainder: u64,
    next_ns: u64,
    remainder: u64,
}

impl Schedule {
    pub fn new(rate_per_sec: u64) -> Schedule {
        assert!(rate_per_sec > 0, "a fixed rate must be positive");
        Schedule {
            rate_per_sec,
            period_ns: NS_PER_SEC / rate_per_sec,
            period_remainder: NS_PER_SEC % rate_per_sec,
            next_ns: 0,
            remainder: 0,
        }
    }

    /// The scheduled time of the next step, from the start of the run.
    #[inline]
    pub fn next_ns(&mut self) -> u64 {
        let scheduled_ns = self.next_ns;
        self.next_ns += self.period_ns;
        self.remainder += self.period_remainder;
        if self.remainder >= self.rate_per_sec {
            self.remainder -= self.rate_per_sec;
            self.next_ns += 1;
        }
        scheduled_ns
    }
}

/// The scheduled time of step `step` at `rate_per_sec`, as [`Schedule`] gives it: for whoever
/// learns of a step's completion away from the loop that scheduled it (a reader thread).
pub fn scheduled_ns(step: u64, rate_per_sec: u64) -> u64 {
    (u128::from(step) * u128::from(NS_PER_SEC) / u128::from(rate_per_sec)) as u64
}

/// How often the platform takes the CPU away from a spinning thread (timer ticks, the hypervisor,
/// other processes): a floor under every tail percentile that no engine change can lower.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stalls {
    /// Gaps between consecutive clock reads longer than [`STALL_NS_MIN`], per second.
    pub per_sec: f64,
    /// The share of the probe's time lost in those gaps.
    pub time_share: f64,
    pub max_ns: u64,
}

/// A gap between two clock reads longer than this is a stall: an uninterrupted read takes ~25 ns.
pub const STALL_NS_MIN: u64 = 10_000;

/// Spins for `duration` reading the clock and reports the stalls it saw (like jHiccup).
pub fn probe_stalls(duration: Duration) -> Stalls {
    let start = Instant::now();
    let mut last = start;
    let (mut count, mut lost_ns, mut max_ns) = (0u64, 0u64, 0u64);
    while last.duration_since(start) < duration {
        let now = Instant::now();
        let gap_ns = now.duration_since(last).as_nanos() as u64;
        if gap_ns > STALL_NS_MIN {
            count += 1;
            lost_ns += gap_ns;
            max_ns = max_ns.max(gap_ns);
        }
        last = now;
    }
    let elapsed = last.duration_since(start);
    Stalls {
        per_sec: count as f64 / elapsed.as_secs_f64(),
        time_share: lost_ns as f64 / elapsed.as_nanos() as f64,
        max_ns,
    }
}

/// The mean cost of one `Instant::now()`, in nanoseconds.
pub fn clock_read_ns() -> f64 {
    let start = Instant::now();
    let mut last = start;
    for _ in 0..CLOCK_CALIBRATION_READS {
        last = std::hint::black_box(Instant::now());
    }
    last.duration_since(start).as_nanos() as f64 / f64::from(CLOCK_CALIBRATION_READS)
}

#[inline]
fn elapsed_ns(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// A sample vector whose pages are all written now, so that the loop never faults one in.
fn samples_buffer(count: usize) -> Vec<u64> {
    // `vec![0; n]` would come from calloc's untouched zero pages; a non-zero fill writes them.
    vec![u64::MAX; count]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let samples_ns: Vec<u64> = (1..=10_000).collect();
        let p = Percentiles::from_samples(&samples_ns);
        // Three significant digits: each percentile is within 0.1% of the exact value.
        assert!(p.p50_ns.abs_diff(5_000) <= 5, "p50 {}", p.p50_ns);
        assert!(p.p90_ns.abs_diff(9_000) <= 9, "p90 {}", p.p90_ns);
        assert!(p.p99_ns.abs_diff(9_900) <= 10, "p99 {}", p.p99_ns);
        assert!(p.p999_ns.abs_diff(9_990) <= 10, "p99.9 {}", p.p999_ns);
        assert_eq!(p.max_ns, 10_000);
    }

    #[test]
    fn percentiles_clamp_zero_and_huge_samples() {
        let p = Percentiles::from_samples(&[0, 0, LATENCY_NS_MAX * 2]);
        assert_eq!(p.p50_ns, 1);
        assert_eq!(p.max_ns, LATENCY_NS_MAX * 2);
        assert_eq!(Percentiles::from_samples(&[]).max_ns, 0);
    }

    #[test]
    fn percentiles_keep_their_distribution() {
        let p = Percentiles::from_samples(&[5, 7, 7]);
        let histogram = p.distribution.histogram().expect("kept");
        assert_eq!(histogram.len(), 3);
        assert_eq!(histogram.count_at(7), 2);
        assert_eq!(p, Percentiles::from_samples(&[7, 5, 7]));
        assert_ne!(p, Percentiles::from_samples(&[5, 7, 8]));
        assert_eq!(Percentiles::default().distribution.histogram(), None);
        assert_eq!(format!("{:?}", p.distribution), "Distribution(3 samples)");
    }

    #[test]
    fn fixed_rate_runs_every_step_and_never_ahead_of_schedule() {
        let rate_per_sec = 100_000;
        let count = 2_000;
        let mut steps = Vec::new();
        let timed = run_fixed_rate(count, rate_per_sec, |i| steps.push(i));
        assert_eq!(steps, (0..count).collect::<Vec<_>>());
        assert_eq!(timed.samples_ns.len(), count);
        assert!(timed.samples_ns.iter().all(|&s| s != u64::MAX));
        // The last step is scheduled at (count − 1) / rate: the run cannot end before it.
        let schedule_ns = (count as u64 - 1) * 1_000_000_000 / rate_per_sec;
        assert!(timed.elapsed >= Duration::from_nanos(schedule_ns));
    }

    #[test]
    fn schedule_is_exact_without_dividing_per_step() {
        for rate_per_sec in [1, 3, 125_000, 1_000_000, 7_000_001] {
            let mut schedule = Schedule::new(rate_per_sec);
            for i in 0..10_000u64 {
                let exact_ns =
                    (u128::from(i) * u128::from(NS_PER_SEC) / u128::from(rate_per_sec)) as u64;
                assert_eq!(schedule.next_ns(), exact_ns, "step {i} at {rate_per_sec}/s");
                assert_eq!(scheduled_ns(i, rate_per_sec), exact_ns);
            }
        }
    }

    #[test]
    fn a_stall_is_carried_by_the_steps_behind_it() {
        // Step 0 stalls for 2 ms at a rate of one step per 100 µs: steps 1..=19 were all due
        // during the stall, so each of them waited, and says so.
        let timed = run_fixed_rate(20, 10_000, |i| {
            if i == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let waited_ns = timed.samples_ns[10];
        assert!(waited_ns >= 1_000_000, "step 10 waited only {waited_ns} ns");
    }

    #[test]
    fn latency_loop_has_one_sample_per_step() {
        let timed = run_latency(1_000, |_| {});
        assert_eq!(timed.samples_ns.len(), 1_000);
        assert!(timed.samples_ns.iter().all(|&s| s != u64::MAX));
        assert!(timed.ops_per_sec() > 0.0);
    }
}
