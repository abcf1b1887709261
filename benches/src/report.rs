//! How figures are shown and kept: one summary table for people, JSON lines for tools, and an
//! HdrHistogram percentile distribution (`.hgrm`) per row for plotters, written under
//! `target/bench/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::measure::{Row, HISTOGRAM_DIGITS};

const TABLE_HEADER: [&str; 8] = [
    "scenario", "count", "ops/s", "p50", "p99", "p99.9", "max", "others%",
];
/// `.hgrm` values are in milliseconds, the unit HdrHistogram's plotters label their axis with;
/// six decimals keep the nanosecond the samples were taken in.
const HGRM_NS_PER_UNIT: f64 = 1e6;
const HGRM_DECIMALS: usize = 6;
/// Percentile ticks per half distance to 100%, as HdrHistogram's own tools write them.
const HGRM_TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The rows as one aligned table: latencies in the unit that suits each (ns, µs, ms, s).
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 8]> = rows.iter().map(row_cells).collect();
    let mut widths = TABLE_HEADER.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header = TABLE_HEADER.map(String::from);
    for row in std::iter::once(&header).chain(&cells) {
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            // The scenario name reads left to right; numbers line up on their last character.
            if column == 0 {
                let _ = write!(text, "{cell:<width$}");
            } else {
                let _ = write!(text, "  {cell:>width$}");
            }
        }
        text.push('\n');
    }
    text.push_str(
        "(others%: the machine's CPU time other processes and the hypervisor took during the row, \
         50% = a whole core of two; p90 and p99.99 are in the JSON lines)\n",
    );
    text
}

fn row_cells(row: &Row) -> [String; 8] {
    let p = &row.latency;
    [
        row.scenario.clone(),
        row.count.to_string(),
        format!("{:.0}", row.ops_per_sec),
        duration_text(p.p50_ns),
        duration_text(p.p99_ns),
        duration_text(p.p999_ns),
        duration_text(p.max_ns),
        row.others_cpu_share
            .map_or_else(|| "-".into(), |share| format!("{:.1}", 100.0 * share)),
    ]
}

/// A duration with three significant digits in the largest unit it reaches (ns, µs, ms, s).
pub fn duration_text(ns: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000, "µs"), (1_000_000, "ms"), (1_000_000_000, "s")];
    let Some((per_unit, unit)) = UNITS.iter().rev().copied().find(|&(u, _)| ns >= u) else {
        return format!("{ns} ns");
    };
    let value = ns as f64 / per_unit as f64;
    let decimals = match value {
        v if v < 10.0 => 2,
        v if v < 100.0 => 1,
        _ => 0,
    };
    format!("{value:.decimals$} {unit}")
}

/// One JSON object, on one line, for `row`.
pub fn json_line(row: &Row) -> String {
    let p = &row.latency;
    json!({
        "scenario": row.scenario,
        "count": row.count,
        "ops_per_sec": row.ops_per_sec.round() as u64,
        "offered_per_sec": row.offered_per_sec,
        "p50_ns": p.p50_ns,
        "p90_ns": p.p90_ns,
        "p99_ns": p.p99_ns,
        "p999_ns": p.p999_ns,
        "p9999_ns": p.p9999_ns,
        "max_ns": p.max_ns,
        "others_cpu_pct": row.others_cpu_share.map(|share| (1_000.0 * share).round() / 10.0),
    })
    .to_string()
}

/// The histogram in HdrHistogram's classic percentile distribution format (what
/// `outputPercentileDistribution` prints and the `.hgrm` plotters read), values in milliseconds.
pub fn percentile_distribution(histogram: &Histogram<u64>) -> String {
    let mut text = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let value = |ns: f64| ns / HGRM_NS_PER_UNIT;
    let decimals = HGRM_DECIMALS;
    let mut total_count = 0u64;
    for step in histogram.iter_quantiles(HGRM_TICKS_PER_HALF_DISTANCE) {
        total_count += step.count_since_last_iteration();
        let quantile = step.quantile_iterated_to();
        let value_ms = value(step.value_iterated_to() as f64);
        // The last line, at 100%, has no 1/(1-Percentile): it would be infinite.
        if quantile < 1.0 {
            let inverse = 1.0 / (1.0 - quantile);
            let _ = writeln!(
                text,
                "{value_ms:12.decimals$} {quantile:2.12} {total_count:10} {inverse:14.2}"
            );
        } else {
            let _ = writeln!(
                text,
                "{value_ms:12.decimals$} {quantile:2.12} {total_count:10}"
            );
        }
    }
    // HdrHistogram's sub-bucket count: the power of two that holds 2 × 10^digits.
    let sub_buckets = (2 * 10u64.pow(u32::from(HISTOGRAM_DIGITS))).next_power_of_two();
    let _ = writeln!(
        text,
        "#[Mean    = {:12.decimals$}, StdDeviation   = {:12.decimals$}]",
        value(histogram.mean()),
        value(histogram.stdev())
    );
    let _ = writeln!(
        text,
        "#[Max     = {:12.decimals$}, Total count    = {:12}]",
        value(histogram.max() as f64),
        histogram.len()
    );
    let _ = writeln!(
        text,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        sub_buckets
    );
    text
}

/// Where `kinko-bench` keeps its files: `bench/` in the target directory, `CARGO_TARGET_DIR` when
/// it is set, else the target directory the binary was built in (the one holding cargo's
/// `CACHEDIR.TAG`), else `target/` under the working directory.
pub fn output_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("bench");
    }
    let exe = std::env::current_exe().ok();
    let target = exe.as_deref().and_then(|exe| {
        exe.ancestors()
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
    });
    target.unwrap_or(Path::new("target")).join("bench")
}

/// Writes `DIR/SCENARIO.jsonl` (one line per row) and `DIR/SCENARIO/ROW.hgrm` for every row with
/// a distribution, replacing what an earlier run left there. Returns the files written.
pub fn write_files(dir: &Path, scenario: &str, rows: &[Row]) -> std::io::Result<Vec<PathBuf>> {
    let hgrm_dir = dir.join(scenario);
    // A row an earlier run had and this one has not must not leave a stale file behind.
    if hgrm_dir.exists() {
        std::fs::remove_dir_all(&hgrm_dir)?;
    }
    std::fs::create_dir_all(&hgrm_dir)?;
    let jsonl = dir.join(format!("{scenario}.jsonl"));
    let lines: String = rows.iter().map(|row| json_line(row) + "\n").collect();
    std::fs::write(&jsonl, lines)?;
    let mut written = vec![jsonl];
    for row in rows {
        let Some(histogram) = row.latency.distribution.histogram() else {
            continue;
        };
        let path = hgrm_dir.join(format!("{}.hgrm", file_stem(&row.scenario)));
        std::fs::write(&path, percentile_distribution(histogram))?;
        written.push(path);
    }
    Ok(written)
}

/// A row name as a file name: `engine@1000000` stays, `journal:append` becomes `journal-append`.
fn file_stem(row: &str) -> String {
    row.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '@' | '-' => c,
            _ => '-',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Percentiles;

    fn row() -> Row {
        Row {
            scenario: "engine@1000000".into(),
            count: 3,
            ops_per_sec: 999_999.6,
            offered_per_sec: Some(1_000_000),
            latency: Percentiles {
                p50_ns: 1,
                p90_ns: 2,
                p99_ns: 3,
                p999_ns: 4,
                p9999_ns: 5,
                max_ns: 6,
                ..Percentiles::default()
            },
            others_cpu_share: Some(0.123),
        }
    }

    #[test]
    fn json_line_has_the_documented_fields() {
        let line = json_line(&row());
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["scenario"], "engine@1000000");
        assert_eq!(value["count"], 3);
        assert_eq!(value["ops_per_sec"], 1_000_000);
        assert_eq!(value["offered_per_sec"], 1_000_000);
        let fields = [
            "p50_ns", "p90_ns", "p99_ns", "p999_ns", "p9999_ns", "max_ns",
        ];
        for (expected, field) in (1..).zip(fields) {
            assert_eq!(value[field], expected, "{field}");
        }
        assert_eq!(value["others_cpu_pct"], 12.3);
    }

    #[test]
    fn table_aligns_header_and_rows() {
        let text = table(&[row()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("scenario"));
        assert!(lines[2].starts_with("(others%"));
        assert_eq!(lines[0].chars().count(), lines[1].chars().count());
        assert!(lines[1].starts_with("engine@1000000"));
        assert!(lines[1].ends_with(" 12.3"));
        assert!(lines[1].contains(" 1 ns "), "{}", lines[1]);
    }

    #[test]
    fn durations_read_in_the_unit_that_suits_them() {
        let check = |ns: u64, expected: &str| assert_eq!(duration_text(ns), expected, "{ns} ns");
        check(0, "0 ns");
        check(812, "812 ns");
        check(999, "999 ns");
        check(1_000, "1.00 µs");
        check(15_340, "15.3 µs");
        check(443_500, "444 µs");
        check(1_949_700, "1.95 ms");
        check(23_400_000, "23.4 ms");
        check(12_345_000_000, "12.3 s");
    }

    /// The data lines of a `.hgrm` text: (value, percentile, total count, 1/(1-percentile)).
    fn hgrm_lines(text: &str) -> Vec<Vec<f64>> {
        text.lines()
            .skip(2)
            .take_while(|line| !line.starts_with('#'))
            .map(|line| {
                line.split_whitespace()
                    .map(|f| f.parse().unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn percentile_distribution_is_hdrhistograms_classic_format() {
        let samples_ns: Vec<u64> = (1..=10_000).map(|i| i * 1_000).collect();
        let p = crate::measure::Percentiles::from_samples(&samples_ns);
        let text = percentile_distribution(p.distribution.histogram().unwrap());
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        assert_eq!(lines.next(), Some(""));
        let data = hgrm_lines(&text);
        assert!(data.len() > 50, "{} lines", data.len());
        // Values in milliseconds: the first sample is 1 µs, the last 10 ms.
        assert_eq!(data[0][0], 0.001);
        assert_eq!(data[0][2], 1.0);
        for pair in data.windows(2) {
            assert!(pair[0][0] <= pair[1][0], "values ascend");
            assert!(pair[0][1] < pair[1][1], "percentiles ascend");
            assert!(pair[0][2] <= pair[1][2], "counts ascend");
        }
        let median = data.iter().find(|line| line[1] == 0.5).expect("a 50% line");
        assert!((median[0] - 5.0).abs() <= 0.005, "{median:?}");
        assert_eq!(median[3], 2.0);
        let last = data.last().unwrap();
        assert_eq!(last.len(), 3, "the 100% line has no 1/(1-Percentile)");
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 10_000.0);
        let footer: Vec<&str> = text.lines().filter(|l| l.starts_with("#[")).collect();
        assert_eq!(footer.len(), 3);
        assert!(
            footer[0].starts_with("#[Mean    =     5.00"),
            "{}",
            footer[0]
        );
        assert!(
            footer[1].ends_with("Total count    =        10000]"),
            "{}",
            footer[1]
        );
        assert!(
            footer[2].ends_with("SubBuckets     =         2048]"),
            "{}",
            footer[2]
        );
    }

    #[test]
    fn row_names_become_file_names() {
        assert_eq!(file_stem("engine@1000000"), "engine@1000000");
        assert_eq!(file_stem("journal:append"), "journal-append");
        assert_eq!(file_stem("ws:fsync:ack@10000"), "ws-fsync-ack@10000");
        assert_eq!(file_stem("a/b c"), "a-b-c");
    }

    #[test]
    fn files_are_written_and_stale_ones_removed() {
        let dir = std::env::temp_dir().join(format!("kinko-bench-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut measured = row();
        measured.scenario = "engine".into();
        measured.latency = crate::measure::Percentiles::from_samples(&[100, 200, 300]);
        std::fs::create_dir_all(dir.join("engine")).unwrap();
        std::fs::write(dir.join("engine").join("stale.hgrm"), "old").unwrap();

        let written = write_files(&dir, "engine", &[measured, row()]).unwrap();
        // Hand-written percentiles have no distribution: JSON only.
        assert_eq!(
            written,
            vec![dir.join("engine.jsonl"), dir.join("engine/engine.hgrm")]
        );
        let jsonl = std::fs::read_to_string(&written[0]).unwrap();
        assert_eq!(jsonl.lines().count(), 2);
        assert!(jsonl.lines().all(|line| line.starts_with('{')));
        let hgrm = std::fs::read_to_string(&written[1]).unwrap();
        assert_eq!(hgrm_lines(&hgrm).last().unwrap()[2], 3.0);
        assert!(!dir.join("engine").join("stale.hgrm").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
