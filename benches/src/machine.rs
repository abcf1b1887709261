//! The machine a figure came from, and how much of it other work took while it was measured.
//!
//! On the 2-core CI and developer machines another build or test run takes a core for
//! milliseconds at a time, and the hypervisor steals time too; a fixed-rate tail measured then is
//! the machine's, not the engine's. Every row therefore says how busy the rest of the machine was.

/// What a figure depends on besides the code: printed with every run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub build: Build,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    Release,
    /// Debug assertions on: the figures mean nothing.
    Debug,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
            build: if cfg!(debug_assertions) {
                Build::Debug
            } else {
                Build::Release
            },
        }
    }

    pub fn describe(&self) -> String {
        let build = match self.build {
            Build::Release => "release build",
            Build::Debug => "DEBUG BUILD: figures are meaningless, use --release",
        };
        format!(
            "machine: {} CPUs (nproc), {}; {build}; one thread",
            self.cpus, self.cpu_model
        )
    }
}

/// The first `model name` of /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, value)| value.trim().to_string())
}

/// CPU time counters, in clock ticks (USER_HZ, 10 ms): the whole machine's and this process's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    pub total_ticks: u64,
    pub busy_ticks: u64,
    pub steal_ticks: u64,
    pub own_ticks: u64,
}

impl CpuTimes {
    /// `None` where /proc is not readable (not Linux): the rows then say nothing about it.
    pub fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let mut times = machine_times(&stat)?;
        times.own_ticks = own_ticks(&own)?;
        Some(times)
    }

    /// This process's CPU time, every thread, from `self` to `later`.
    pub fn own_secs_until(&self, later: &CpuTimes) -> f64 {
        const TICKS_PER_SEC: f64 = 100.0;
        later.own_ticks.saturating_sub(self.own_ticks) as f64 / TICKS_PER_SEC
    }

    /// The share of the machine's CPU time, from `self` to `later`, that other processes and the
    /// hypervisor took.
    pub fn others_share_until(&self, later: &CpuTimes) -> f64 {
        let total = later.total_ticks.saturating_sub(self.total_ticks);
        let busy = later.busy_ticks.saturating_sub(self.busy_ticks);
        let steal = later.steal_ticks.saturating_sub(self.steal_ticks);
        let own = later.own_ticks.saturating_sub(self.own_ticks);
        let others = (busy + steal).saturating_sub(own);
        others as f64 / total.max(1) as f64
    }
}

/// The share of the machine's CPU time that others took since `before` (see
/// [`CpuTimes::others_share_until`]); `None` where /proc is not readable.
pub fn others_share_since(before: Option<CpuTimes>) -> Option<f64> {
    Some(before?.others_share_until(&CpuTimes::now()?))
}

/// The `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ...
fn machine_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // Idle and iowait (the 4th and 5th) count only in the total.
    let &[user, nice, system, _, _, irq, softirq, steal] = fields.as_slice() else {
        return None;
    };
    Some(CpuTimes {
        total_ticks: fields.iter().sum(),
        busy_ticks: user + nice + system + irq + softirq,
        steal_ticks: steal,
        own_ticks: 0,
    })
}

/// utime + stime of /proc/self/stat: fields 14 and 15, counted after the `(comm)` field, which
/// may itself hold spaces and parentheses.
fn own_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Pauses a thread that does nothing but read the clock saw: the platform's own floor under the
/// latency percentiles. On a virtual machine the hypervisor, and the guest kernel's own threads
/// and interrupts, take a spinning thread off its core for tens of microseconds hundreds of times
/// a second; a command whose way crosses such a pause waits for it, whatever the engine does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pauses {
    /// Gaps between two consecutive clock reads longer than the threshold.
    pub count: u64,
    /// Their total length.
    pub lost_ns: u64,
    pub longest_ns: u64,
    pub elapsed_ns: u64,
}

impl Pauses {
    /// Counts the gaps longer than `threshold_ns` between consecutive clock reads `reads_ns`
    /// (ascending).
    pub fn in_reads(reads_ns: impl IntoIterator<Item = u64>, threshold_ns: u64) -> Pauses {
        let mut pauses = Pauses::default();
        let mut reads = reads_ns.into_iter();
        let Some(first) = reads.next() else {
            return pauses;
        };
        let mut last = first;
        for read in reads {
            let gap = read.saturating_sub(last);
            if gap > threshold_ns {
                pauses.count += 1;
                pauses.lost_ns += gap;
                pauses.longest_ns = pauses.longest_ns.max(gap);
            }
            last = read;
        }
        pauses.elapsed_ns = last - first;
        pauses
    }

    /// Spins on this thread for `duration`, reading the clock, and counts its pauses longer than
    /// `threshold`.
    pub fn measure(duration: std::time::Duration, threshold: std::time::Duration) -> Pauses {
        let start = std::time::Instant::now();
        let end_ns = duration.as_nanos() as u64;
        let reads = std::iter::from_fn(|| {
            let now = start.elapsed().as_nanos() as u64;
            (now <= end_ns).then_some(now)
        });
        Pauses::in_reads(reads, threshold.as_nanos() as u64)
    }

    /// The share of the time spent in pauses.
    pub fn lost_share(&self) -> f64 {
        self.lost_ns as f64 / self.elapsed_ns.max(1) as f64
    }

    pub fn per_sec(&self) -> f64 {
        self.count as f64 / (self.elapsed_ns.max(1) as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_the_gaps_between_clock_reads_over_the_threshold() {
        // Reads every 1 µs, with gaps of 5, 20 (not over) and 21 and 300 µs.
        let mut reads = Vec::new();
        let mut now = 0;
        for gap in [
            1_000, 1_000, 5_000, 1_000, 20_000, 21_000, 1_000, 300_000, 1_000,
        ] {
            now += gap;
            reads.push(now);
        }
        let pauses = Pauses::in_reads(reads.iter().copied(), 20_000);
        assert_eq!(pauses.count, 2);
        assert_eq!(pauses.lost_ns, 321_000);
        assert_eq!(pauses.longest_ns, 300_000);
        assert_eq!(pauses.elapsed_ns, now - 1_000);
        assert!((pauses.lost_share() - 321_000.0 / (now - 1_000) as f64).abs() < 1e-12);
        assert_eq!(Pauses::in_reads([], 20_000), Pauses::default());
        assert_eq!(Pauses::in_reads([7], 20_000).count, 0);
    }

    #[test]
    fn a_measured_sleep_is_a_pause() {
        // A spinning thread that sleeps once: the sleep is one of its pauses (others may come
        // from the machine).
        let start = std::time::Instant::now();
        let mut slept = false;
        let reads = std::iter::from_fn(|| {
            let now = start.elapsed();
            if !slept && now > std::time::Duration::from_millis(5) {
                slept = true;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            (now < std::time::Duration::from_millis(30)).then_some(now.as_nanos() as u64)
        });
        let pauses = Pauses::in_reads(reads, 1_000_000);
        assert!(pauses.count >= 1, "{pauses:?}");
        assert!(pauses.longest_ns >= 10_000_000, "{pauses:?}");
    }

    #[test]
    fn cpu_model_is_read_from_cpuinfo() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: fpu\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(cpu_model(""), None);
    }

    #[test]
    fn others_share_counts_busy_and_steal_but_not_our_own_time() {
        let stat_before = "cpu  100 0 50 1000 10 0 5 5 0 0\ncpu0 1 2 3\n";
        let stat_after = "cpu  300 0 70 1100 10 0 5 25 0 0\ncpu0 1 2 3\n";
        let mut before = machine_times(stat_before).unwrap();
        let mut after = machine_times(stat_after).unwrap();
        before.own_ticks = 10;
        after.own_ticks = 110;
        // 340 ticks passed; busy rose by 220 and steal by 20, of which 100 were ours.
        let share = before.others_share_until(&after);
        assert!((share - 140.0 / 340.0).abs() < 1e-9, "{share}");
    }

    #[test]
    fn own_ticks_survive_a_command_name_with_spaces() {
        let stat = "42 (kinko bench) R 1 2 3 0 -1 4194304 98 0 0 0 7 5 0 0 20 0 1 0";
        assert_eq!(own_ticks(stat), Some(12));
        assert_eq!(own_ticks("garbage"), None);
    }

    #[test]
    fn this_machine_reports_times_where_proc_exists() {
        if std::path::Path::new("/proc/stat").exists() {
            let times = CpuTimes::now().expect("readable /proc");
            assert!(times.total_ticks >= times.busy_ticks);
        }
    }
}
