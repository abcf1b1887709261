//! The regression guard: not a timed test. Each guarded figure (ops/s) is divided by a reference
//! point measured in the same run on the same machine (a memcpy of the same bytes, the same work
//! on one thread without the threads around it, a published order book on the same stream, the
//! offered rate), and only that ratio, the row's standing, is judged: against a floor at about a
//! fifth of its usual value. A busy or slow machine moves a figure and its reference together,
//! and a standing may still fall more than four times and pass; a change that makes a figure ten
//! times slower fails `kinko-bench` (a non-zero exit), and so CI.
//! docs/PERFORMANCE.md, "Regression guard", gives each rule's reasoning and the standings seen.
//!
//! Rules name rows, so a scenario added later is guarded by the rules that match its rows (every
//! fixed-rate row by the offered-rate rule) and listed as not guarded otherwise.

use std::fmt::Write as _;

use crate::measure::Row;

/// What a figure is held against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The ops/s of another row of the same run, named exactly.
    Row(&'static str),
    /// The row's own offered rate: a fixed-rate row must keep up with most of it.
    OfferedRate,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    /// The rows guarded: a name, or a prefix and `*`.
    pub rows: &'static str,
    pub reference: Reference,
    /// The row's ops/s ÷ the reference's (its standing) must be at least this.
    pub floor: f64,
    /// The standing seen on the reference machine (docs/PERFORMANCE.md), printed beside it.
    pub typical: f64,
}

/// Every rule. Floors sit between 1/4.4 and 1/5.5 of the typical standing: a standing may fall
/// 4.4 times (twice the most noise seen in quick runs on a shared machine) and pass, and a 10×
/// regression lands at least 1.8 times under its floor, room for the reference's own noise.
pub const RULES: &[Rule] = &[
    // The matching core against a published order book on the same commands in the same run.
    Rule {
        rows: "engine",
        reference: Reference::Row("peers:lobster"),
        floor: 0.5,
        typical: 2.3,
    },
    Rule {
        rows: "peers:kinko",
        reference: Reference::Row("peers:lobster"),
        floor: 0.5,
        typical: 2.3,
    },
    // The ledger on top of the matching core it runs: the core's own throughput.
    Rule {
        rows: "ledger",
        reference: Reference::Row("ledger:matching-only"),
        floor: 0.1,
        typical: 0.45,
    },
    // The journal against a memcpy of the same bytes in the same batches.
    Rule {
        rows: "journal:append",
        reference: Reference::Row("journal:memcpy"),
        floor: 0.027,
        typical: 0.13,
    },
    Rule {
        rows: "journal:process",
        reference: Reference::Row("journal:memcpy"),
        floor: 0.025,
        typical: 0.12,
    },
    // The engine thread against the same work on one thread, without the producer, the queue, the
    // publishing and the consumer around it.
    Rule {
        rows: "pipeline:process",
        reference: Reference::Row("pipeline:in-process"),
        floor: 0.19,
        typical: 0.9,
    },
    // Verifying a journal against writing it: the same work backwards, plus the checks.
    Rule {
        rows: "replay:every-batch",
        reference: Reference::Row("replay:write"),
        floor: 0.23,
        typical: 1.1,
    },
    Rule {
        rows: "replay:every-command",
        reference: Reference::Row("replay:write"),
        floor: 0.19,
        typical: 0.9,
    },
    // Every fixed-rate row, today's and tomorrow's: achieved against offered.
    Rule {
        rows: "*",
        reference: Reference::OfferedRate,
        floor: 0.2,
        typical: 0.9,
    },
];

impl Rule {
    pub fn matches(&self, row: &str) -> bool {
        match self.rows.strip_suffix('*') {
            Some(prefix) => row.starts_with(prefix),
            None => row == self.rows,
        }
    }

    /// What the rule says about `row`, given every row of the run; `None` where it does not apply.
    fn judge(&self, row: &Row, rows: &[Row]) -> Option<Verdict> {
        if !self.matches(&row.scenario) {
            return None;
        }
        let (reference_name, reference_value) = match self.reference {
            Reference::OfferedRate => ("offered rate".to_string(), row.offered_per_sec? as f64),
            Reference::Row(name) => {
                let value = rows
                    .iter()
                    .find(|other| other.scenario == name)
                    .map(|other| other.ops_per_sec);
                (name.to_string(), value.unwrap_or(f64::NAN))
            }
        };
        let standing = row.ops_per_sec / reference_value;
        let outcome = if reference_value.is_nan() {
            Outcome::Skipped
        } else if !(reference_value.is_finite() && reference_value > 0.0) {
            // A reference that measured nothing cannot vouch for anything.
            Outcome::Fail
        } else if standing >= self.floor {
            Outcome::Pass
        } else {
            // Below the floor, and also a standing that is not a number (a row with no figure).
            Outcome::Fail
        };
        Some(Verdict {
            row: row.scenario.clone(),
            reference: reference_name,
            standing,
            typical: self.typical,
            floor: self.floor,
            outcome,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// The reference row is not in this run (its scenario was not chosen).
    Skipped,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub row: String,
    pub reference: String,
    pub standing: f64,
    pub typical: f64,
    pub floor: f64,
    pub outcome: Outcome,
}

/// Every rule against every row of the run, in row order.
pub fn check(rules: &[Rule], rows: &[Row]) -> Vec<Verdict> {
    rows.iter()
        .flat_map(|row| rules.iter().filter_map(|rule| rule.judge(row, rows)))
        .collect()
}

/// The rows of the run that no rule applies to.
pub fn unguarded<'a>(rules: &[Rule], rows: &'a [Row]) -> Vec<&'a str> {
    rows.iter()
        .filter(|row| rules.iter().all(|rule| rule.judge(row, rows).is_none()))
        .map(|row| row.scenario.as_str())
        .collect()
}

pub fn passed(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|v| v.outcome != Outcome::Fail)
}

/// The verdicts as a table, with a closing line that counts them.
pub fn table(verdicts: &[Verdict], unguarded: &[&str]) -> String {
    let header = [
        "row",
        "ops/s against",
        "standing",
        "typical",
        "floor",
        "verdict",
    ];
    let cells: Vec<[String; 6]> = verdicts
        .iter()
        .map(|v| {
            [
                v.row.clone(),
                v.reference.clone(),
                match v.outcome {
                    Outcome::Skipped => "-".into(),
                    _ => format!("{:.3}", v.standing),
                },
                format!("{:.3}", v.typical),
                format!("{:.3}", v.floor),
                match v.outcome {
                    Outcome::Pass => "ok".into(),
                    Outcome::Fail => "FAIL".into(),
                    Outcome::Skipped => "skipped (reference not run)".into(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header.map(String::from)).chain(&cells) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (cell, width))| match column {
                2..=4 => format!("{cell:>width$}"),
                _ => format!("{cell:<width$}"),
            })
            .collect();
        let _ = writeln!(text, "{}", line.join("  ").trim_end());
    }
    if !unguarded.is_empty() {
        let _ = writeln!(text, "not guarded: {}", unguarded.join(", "));
    }
    let count = |outcome| verdicts.iter().filter(|v| v.outcome == outcome).count();
    let _ = writeln!(
        text,
        "guard: {} passed, {} failed, {} skipped",
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Skipped)
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Percentiles;

    fn row(name: &str, ops_per_sec: f64, offered: Option<u64>) -> Row {
        Row {
            scenario: name.into(),
            count: 1_000,
            ops_per_sec,
            offered_per_sec: offered,
            latency: Percentiles::default(),
            others_cpu_share: None,
        }
    }

    const JOURNAL: Rule = Rule {
        rows: "journal:append",
        reference: Reference::Row("journal:memcpy"),
        floor: 0.03,
        typical: 0.13,
    };

    fn outcomes(rules: &[Rule], rows: &[Row]) -> Vec<(String, Outcome)> {
        check(rules, rows)
            .into_iter()
            .map(|v| (v.row, v.outcome))
            .collect()
    }

    #[test]
    fn a_ratio_passes_at_and_above_its_floor_and_fails_below() {
        let memcpy = row("journal:memcpy", 100.0, None);
        for (append_ops, expected) in [
            (13.0, Outcome::Pass),
            (3.0, Outcome::Pass),
            (2.9, Outcome::Fail),
        ] {
            let rows = [row("journal:append", append_ops, None), memcpy.clone()];
            let verdicts = check(&[JOURNAL], &rows);
            assert_eq!(verdicts.len(), 1);
            assert_eq!(verdicts[0].outcome, expected, "{append_ops}");
            assert!((verdicts[0].standing - append_ops / 100.0).abs() < 1e-12);
        }
    }

    #[test]
    fn every_floor_fails_a_tenfold_regression_and_passes_fourfold_noise() {
        for rule in RULES {
            assert!(
                rule.floor > rule.typical / 10.0,
                "{}: 10× must fail",
                rule.rows
            );
            assert!(
                rule.floor <= rule.typical / 3.5,
                "{}: room for noise",
                rule.rows
            );
        }
    }

    #[test]
    fn offered_rate_rule_applies_to_fixed_rate_rows_of_any_scenario() {
        let rule = RULES.last().copied().unwrap();
        assert_eq!(rule.reference, Reference::OfferedRate);
        let rows = [
            row("engine", 7e6, None),
            row("fix:process@10000", 9_500.0, Some(10_000)),
            row("anything@1000", 150.0, Some(1_000)),
        ];
        assert_eq!(
            outcomes(&[rule], &rows),
            vec![
                ("fix:process@10000".into(), Outcome::Pass),
                ("anything@1000".into(), Outcome::Fail),
            ]
        );
    }

    #[test]
    fn a_missing_reference_skips_and_a_missing_figure_fails() {
        let alone = [row("journal:append", 10.0, None)];
        assert_eq!(
            outcomes(&[JOURNAL], &alone),
            vec![("journal:append".into(), Outcome::Skipped)]
        );
        let broken = [
            row("journal:append", f64::NAN, None),
            row("journal:memcpy", 100.0, None),
        ];
        assert_eq!(
            outcomes(&[JOURNAL], &broken),
            vec![("journal:append".into(), Outcome::Fail)]
        );
        assert!(!passed(&check(&[JOURNAL], &broken)));
        let broken_reference = [
            row("journal:append", 10.0, None),
            row("journal:memcpy", 0.0, None),
        ];
        assert_eq!(
            outcomes(&[JOURNAL], &broken_reference),
            vec![("journal:append".into(), Outcome::Fail)]
        );
        assert!(passed(&check(&[JOURNAL], &alone)));
    }

    #[test]
    fn rows_no_rule_applies_to_are_listed() {
        let rows = [
            row("journal:append", 10.0, None),
            row("journal:fsync", 10.0, None),
            row("new:thing", 1.0, None),
        ];
        assert_eq!(
            unguarded(&[JOURNAL], &rows),
            vec!["journal:fsync", "new:thing"]
        );
        let text = table(&check(&[JOURNAL], &rows), &unguarded(&[JOURNAL], &rows));
        assert!(
            text.contains("not guarded: journal:fsync, new:thing"),
            "{text}"
        );
        assert!(
            text.ends_with("guard: 0 passed, 0 failed, 1 skipped\n"),
            "{text}"
        );
    }

    #[test]
    fn patterns_match_exact_names_or_prefixes() {
        assert!(JOURNAL.matches("journal:append"));
        assert!(!JOURNAL.matches("journal:append2"));
        let prefix = Rule {
            rows: "ws:process:ack@*",
            ..JOURNAL
        };
        assert!(prefix.matches("ws:process:ack@10000"));
        assert!(!prefix.matches("ws:fsync:ack@10000"));
    }
}
