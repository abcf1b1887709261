//! `replay-time` and `replay-price`: the arguments an auditor types into `kinko-replay`
//! (`--at`, `--from`, `--to`: a sequence number or an RFC 3339 instant; `--price`:
//! `vwap:SYM:FROM..TO` or `fixed:QUOTE:PRICE`).
//!
//! Properties: nothing panics; an instant prints back (in UTC) to text that parses to the same
//! nanosecond, and a sequence number to the same number; a fixed price is positive and prints
//! back to the same decimal.

use replay::point::{format_ts, Point};
use replay::reports::compensation::PriceSource;
use replay::Window;

use super::class;

pub const TIME_DICTIONARY: &[&[u8]] = &[
    b"T",
    b"Z",
    b"+09:00",
    b"-23:59",
    b"+24:00",
    b":60",
    b".",
    b".999999999",
    b"0000-01-01",
    b"9999-12-31",
    b"1969-12-31T23:59:59",
    b"2262-04-11T23:47:16.854775807Z",
    b"2262-04-11T23:47:16.854775808Z",
    b"-",
    b" ",
];

pub const PRICE_DICTIONARY: &[&[u8]] = &[
    b"vwap:",
    b"fixed:",
    b":",
    b"..",
    b"XEM/JPY",
    b"JPY",
    b"2018-01-26T12:09:00+09:00",
    b"0.",
    b"e",
    b"-",
];

pub fn time_seeds() -> Vec<Vec<u8>> {
    [
        "42",
        "0",
        "18446744073709551615",
        "1970-01-01T00:00:00Z",
        "2018-01-26T12:09:00+09:00",
        "2018-01-26T03:09:00.123456789Z",
        "2262-04-11T23:47:16.854775807Z",
        " 2024-02-29T23:59:59-05:30 ",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub fn time_run(bytes: &[u8]) -> u64 {
    // Arguments reach clap as OS strings and the value parser as text.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return 0;
    };
    match Point::parse(text) {
        Ok(point) => {
            assert_point_round_trips(point);
            let window = Window {
                from: Some(point),
                to: Some(point),
            };
            let _ = window.to_string();
            match point {
                Point::Seq(seq) => 1 + class(seq.leading_zeros().into()) % 8,
                Point::Time(ts_ns) => 10 + class((ts_ns % 1_000_000_000 == 0).into()) % 8,
            }
        }
        Err(e) => 100 + super::fnv(e.to_string().rsplit(": ").next().unwrap_or("").as_bytes()) % 64,
    }
}

fn assert_point_round_trips(point: Point) {
    let printed = match point {
        Point::Seq(seq) => seq.to_string(),
        Point::Time(ts_ns) => format_ts(ts_ns),
    };
    let again = Point::parse(&printed)
        .unwrap_or_else(|e| panic!("{point:?} prints as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, point, "{point:?} prints as {printed:?}");
}

pub fn price_seeds() -> Vec<Vec<u8>> {
    [
        "fixed:JPY:88.549",
        "fixed:JPY:1",
        "fixed:BTC:0.00000001",
        "vwap:XEM/JPY:2018-01-26T12:09:00+09:00..2018-01-27T23:00:00+09:00",
        "vwap:BTC/JPY:10..20",
        "vwap:XEM/JPY:5..2018-01-26T12:09:00Z",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub fn price_run(bytes: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return 0;
    };
    match PriceSource::parse(text) {
        Ok(PriceSource::Fixed { quote, price }) => {
            assert!(
                price > rust_decimal::Decimal::ZERO,
                "a price of {price} passed"
            );
            let printed = format!("fixed:{quote}:{price}");
            let again = PriceSource::parse(&printed)
                .unwrap_or_else(|e| panic!("{printed:?} does not parse back: {e}"));
            assert_eq!(again, PriceSource::Fixed { quote, price });
            1 + class(u64::from(price.scale())) % 16
        }
        Ok(PriceSource::Vwap { window, .. }) => {
            for point in [window.from, window.to].into_iter().flatten() {
                assert_point_round_trips(point);
            }
            20 + class(u64::from(matches!(window.from, Some(Point::Seq(_))))) % 4
        }
        Err(e) => 100 + super::fnv(e.to_string().rsplit(": ").next().unwrap_or("").as_bytes()) % 64,
    }
}

pub const PROOF_DICTIONARY: &[&[u8]] = &[
    b"\"path\":",
    b"\"side\":\"left\"",
    b"\"side\":\"right\"",
    b"\"sum_units\":",
    b"\"balance_units\":",
    b"\"decimals\":255",
    b"\"170141183460469231731687303715884105727\"",
    b"\"-1\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\n",
];

/// Proof documents of a real Merkle sum tree (the layout `kinko-replay liabilities` writes), each
/// after the root a customer checks it against on the first line.
pub fn proof_seeds() -> Vec<Vec<u8>> {
    use replay::merkle::{nonce, to_hex, Leaf, Tree};
    use replay::reports::liabilities::{AssetProof, PathStep, ProofDocument, PROOF_FORMAT};
    let secret = [7u8; 32];
    let assets: [(&str, u8); 2] = [("BTC", 8), ("JPY", 0)];
    let trees: Vec<Tree> = assets
        .iter()
        .map(|(asset, _)| {
            let leaves = (0..5u32)
                .map(|account| Leaf {
                    account,
                    balance_units: i128::from(account) * 1_000_000 + 1,
                    nonce: nonce(&secret, asset, account),
                })
                .collect();
            Tree::build(asset, leaves)
        })
        .collect();
    let document = |account: u32| {
        let proofs = assets.iter().zip(&trees).map(|((asset, decimals), tree)| {
            let position = tree
                .leaves()
                .iter()
                .position(|l| l.account == account)
                .expect("leaf");
            let leaf = tree.leaves()[position];
            let root = tree.root();
            AssetProof {
                asset: asset.to_string(),
                decimals: *decimals,
                balance_units: leaf.balance_units.to_string(),
                balance: replay::money::format_units(leaf.balance_units, *decimals),
                nonce: to_hex(&leaf.nonce),
                path: tree
                    .proof(position)
                    .iter()
                    .map(|s| PathStep {
                        side: s.side,
                        hash: to_hex(&s.node.hash),
                        sum_units: s.node.sum.to_string(),
                    })
                    .collect(),
                root_hash: to_hex(&root.hash),
                root_sum_units: root.sum.to_string(),
            }
        });
        ProofDocument {
            format: PROOF_FORMAT.into(),
            account,
            at_seq: 42,
            at_time: Some("2018-01-26T03:09:00Z".into()),
            proofs: proofs.collect(),
        }
    };
    [(0, 0), (3, 1), (4, 0)]
        .iter()
        .map(|&(account, tree)| {
            let root = to_hex(&trees[tree].root().hash);
            let json = serde_json::to_string_pretty(&document(account)).expect("prints");
            format!("{root}\n{json}").into_bytes()
        })
        .collect()
}

/// Input: the root a customer was given, a newline, then their proof file
/// (`kinko-replay verify-inclusion PROOF --root R`).
pub fn proof_run(bytes: &[u8]) -> u64 {
    use replay::reports::liabilities::{parse_proof, verify_inclusion};
    let Ok(text) = std::str::from_utf8(bytes) else {
        return 0;
    };
    let (root, json) = text.split_once('\n').unwrap_or((text, ""));
    let document = match parse_proof(json) {
        Ok(document) => document,
        Err(e) => {
            return 10 + super::fnv(e.to_string().split(':').next().unwrap_or("").as_bytes()) % 32
        }
    };
    match verify_inclusion(&document, root) {
        Ok(report) => {
            assert_eq!(
                report.root,
                root.trim().to_ascii_lowercase(),
                "included under another root than the one asked"
            );
            assert_eq!(report.account, document.account);
            1 + class(document.proofs.len() as u64) % 8
        }
        Err(e) => {
            100 + super::fnv(format!("{e:?}").split('{').next().unwrap_or("").as_bytes()) % 32
        }
    }
}
