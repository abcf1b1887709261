//! The `kinko-replay` binary end to end: exit codes, the seq in a failure, JSON that parses, CSV,
//! and a customer checking their proof file.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use engine::ExchangeEvent;

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinko-replay"))
        .args(args)
        .output()
        .expect("kinko-replay runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

#[test]
fn verify_succeeds_fails_with_the_seq_and_speaks_json() {
    let dir = TempDir::new("cli-verify");
    let seqs = coincheck(dir.path());
    let ok = replay(&["verify", path(dir.path())]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = stdout(&ok);
    assert!(text.contains("Journal verified"), "{text}");
    assert!(text.contains("final state hash"), "{text}");
    // Not a terminal: progress comes as plain lines on standard error.
    assert!(String::from_utf8_lossy(&ok.stderr).contains("kinko-replay: re-executing"));

    let json = replay(&["verify", path(dir.path()), "--json", "--quiet"]);
    assert_eq!(json.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(value["ok"], true);
    assert_eq!(value["summary"]["commands"], seqs.last);
    assert!(json.stderr.is_empty());

    let forged = TempDir::new("cli-forged");
    forge(dir.path(), forged.path(), |batches| {
        for record in batches.iter_mut().flatten() {
            if let (true, Payload::Events(events)) =
                (record.seq == seqs.alice_buys_3000, &mut record.payload)
            {
                for event in events.iter_mut() {
                    if let ExchangeEvent::Settled(s) = event {
                        s.notional_units += 1;
                    }
                }
            }
        }
    });
    let failed = replay(&["verify", path(forged.path()), "--quiet"]);
    assert_eq!(failed.status.code(), Some(1));
    let text = stdout(&failed);
    assert!(
        text.contains(&format!("seq {}", seqs.alice_buys_3000)),
        "{text}"
    );
    assert!(text.contains("divergence"), "{text}");
    let failed = replay(&["verify", path(forged.path()), "--quiet", "--json"]);
    assert_eq!(failed.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_str(&stdout(&failed)).unwrap();
    assert_eq!(value["ok"], false);
    assert_eq!(value["failure"]["location"]["seq"], seqs.alice_buys_3000);
    assert_eq!(value["failure"]["findings"][0]["code"], "divergence");
}

#[test]
fn reports_as_tables_json_and_csv() {
    let dir = TempDir::new("cli-reports");
    coincheck(dir.path());
    let d = path(dir.path());
    let window = "vwap:XEM/JPY:2018-01-26T10:30:00+09:00..2018-01-26T12:09:00+09:00";
    let out = replay(&[
        "compensation",
        d,
        "--asset",
        "XEM",
        "--at",
        "2018-01-26T12:30:00+09:00",
        "--price",
        window,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(value["owed_total"], "1106863");
    assert_eq!(value["price"], "88.549");

    let table = replay(&[
        "compensation",
        d,
        "--asset",
        "XEM",
        "--at",
        "19",
        "--price",
        "fixed:JPY:88.549",
    ]);
    let text = stdout(&table);
    assert!(text.contains("132824"), "{text}");
    assert!(text.contains("1106863"), "{text}");

    let csv = replay(&[
        "vwap",
        d,
        "--instrument",
        "XEM/JPY",
        "--from",
        "14",
        "--to",
        "17",
        "--csv",
    ]);
    assert!(stdout(&csv).contains("vwap,88.549\r\n"), "{}", stdout(&csv));
    let csv = replay(&["trades", d, "--account", "2", "--csv"]);
    let text = stdout(&csv);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.starts_with("seq,time,instrument,price"), "{text}");

    for args in [
        vec!["balances", d, "--at", "2018-01-26T11:30:00+09:00", "--json"],
        vec!["segregation", d, "--json"],
        vec!["internalization", d, "--json"],
        vec!["trades", d, "--instrument", "XEM/JPY", "--json"],
    ] {
        let out = replay(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).expect("JSON parses");
    }
    let segregation = replay(&["segregation", d, "--at", "10"]);
    assert!(stdout(&segregation).contains("VIOLATION: XEM customer pool: hot_over_cap"));
}

#[test]
fn a_customer_checks_their_proof_file() {
    let dir = TempDir::new("cli-liabilities");
    let out = TempDir::new("cli-proofs");
    coincheck(dir.path());
    let made = replay(&[
        "liabilities",
        path(dir.path()),
        "--out",
        path(out.path()),
        "--json",
    ]);
    assert_eq!(
        made.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let roots: serde_json::Value = serde_json::from_str(&stdout(&made)).unwrap();
    let xem_root = roots["roots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["asset"] == "XEM")
        .unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let bob = out.path().join("account-0000000001.json");
    let checked = replay(&[
        "verify-inclusion",
        bob.to_str().unwrap(),
        "--root",
        &xem_root,
    ]);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(stdout(&checked).contains("6000.000000"));
    let text = std::fs::read_to_string(&bob).unwrap();
    std::fs::write(&bob, text.replace("6000000000", "6000000001")).unwrap();
    let refused = replay(&[
        "verify-inclusion",
        bob.to_str().unwrap(),
        "--root",
        &xem_root,
    ]);
    assert_eq!(refused.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    let empty = TempDir::new("cli-empty");
    let out = replay(&["verify", path(empty.path()), "--quiet"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no journal is a failed verification"
    );
    let out = replay(&["balances", path(empty.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no journal"));
    let out = replay(&["balances", path(empty.path()), "--at", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn actions_lists_the_operators_acts_with_their_names_from_the_journal() {
    use engine::audit::{KeyChange, KeyGrant, KeyLabel, KeyRole, OperatorCommand};
    use engine::ExchangeCommand;
    let dir = TempDir::new("cli-actions");
    let mut exchange = Exchange::start(dir.path(), &config(), "2026-01-26T00:00:00Z");
    let grant = KeyGrant {
        account: 0,
        role: KeyRole::Operator,
        permissions: engine::audit::permission::READ,
        expires_ms: 0,
        ip_rules: 0,
    };
    let operator = 7;
    let key = |change| ExchangeCommand::Operator {
        operator,
        command: OperatorCommand::Key(change),
    };
    exchange.run(create(ledger::Pool::Customer));
    exchange.run(key(KeyChange::Registered {
        key: operator,
        label: KeyLabel::new("desk-operator").unwrap(),
        grant,
    }));
    exchange
        .at("2026-01-26T12:09:00Z")
        .run(ExchangeCommand::Operator {
            operator,
            command: OperatorCommand::HaltInstrument {
                instrument: XEM_JPY,
            },
        });
    exchange.run(key(KeyChange::Revoked { key: operator }));
    exchange.shutdown();

    let table = replay(&["actions", path(dir.path())]);
    assert_eq!(
        table.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = stdout(&table);
    assert!(text.contains("Operator actions (audit trail)"), "{text}");
    let json = replay(&["actions", path(dir.path()), "--json"]);
    assert_eq!(json.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let rows: Vec<(String, String, String)> = value["actions"]
        .as_array()
        .expect("a list of actions")
        .iter()
        .map(|a| {
            let field = |name: &str| a[name].as_str().unwrap_or_default().to_string();
            (field("actor"), field("action"), field("time"))
        })
        .collect();
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("desk-operator", "key_registered", "2026-01-26T00:00:00Z"),
            ("desk-operator", "halt_instrument", "2026-01-26T12:09:00Z"),
            ("desk-operator", "key_revoked", "2026-01-26T12:09:00Z"),
        ]
    );
}
