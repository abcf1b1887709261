//! How figures are shown: a table for people, JSON lines for tools.

use std::fmt::Write as _;

use serde_json::json;

use crate::measure::Row;

const TABLE_HEADER: [&str; 10] = [
    "scenario", "count", "ops/s", "p50", "p90", "p99", "p99.9", "p99.99", "max", "others%",
];

/// The rows as an aligned table; latencies in nanoseconds.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 10]> = rows.iter().map(row_cells).collect();
    let mut widths = TABLE_HEADER.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    let header = TABLE_HEADER.map(String::from);
    for row in std::iter::once(&header).chain(&cells) {
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            // The scenario name reads left to right; numbers line up on their last digit.
            if column == 0 {
                let _ = write!(text, "{cell:<width$}");
            } else {
                let _ = write!(text, "  {cell:>width$}");
            }
        }
        text.push('\n');
    }
    text.push_str(
        "(latencies in ns; others%: the machine's CPU time other processes and the hypervisor \
         took during the row, 50% = a whole core of two)\n",
    );
    text
}

fn row_cells(row: &Row) -> [String; 10] {
    let p = row.latency;
    [
        row.scenario.clone(),
        row.count.to_string(),
        format!("{:.0}", row.ops_per_sec),
        p.p50_ns.to_string(),
        p.p90_ns.to_string(),
        p.p99_ns.to_string(),
        p.p999_ns.to_string(),
        p.p9999_ns.to_string(),
        p.max_ns.to_string(),
        row.others_cpu_share
            .map_or_else(|| "-".into(), |share| format!("{:.1}", 100.0 * share)),
    ]
}

/// One JSON object, on one line, for `row`.
pub fn json_line(row: &Row) -> String {
    let p = row.latency;
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
        assert!(lines[2].starts_with("(latencies in ns"));
        assert!(lines[0].starts_with("scenario"));
        assert_eq!(lines[0].len(), lines[1].len());
        assert!(lines[1].ends_with(" 12.3"));
    }
}
