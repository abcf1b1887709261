//! Proof of liabilities: a customer's proof verifies against the published root, and changing the
//! balance, the nonce, the account or any sibling's hash, sum or side breaks it.

mod common;

use common::*;
use replay::merkle::{self, root_of, Leaf, Node, Sibling, Side, Tree};
use replay::reports::liabilities::{
    liabilities, parse_proof, proof_file_name, verify_inclusion, write_proofs, InclusionError,
    ProofDocument, RootInfo, ROOTS_FILE,
};

fn journal_proofs() -> (Vec<RootInfo>, Vec<ProofDocument>) {
    let dir = TempDir::new("inclusion");
    coincheck(dir.path());
    let read = replay::open_journal(dir.path()).unwrap();
    let report = liabilities(&read, None, &[3; 32]).unwrap();
    (report.roots, report.documents)
}

fn root<'a>(roots: &'a [RootInfo], asset: &str) -> &'a str {
    &roots.iter().find(|r| r.asset == asset).unwrap().hash
}

/// Bob's document with only his XEM proof.
fn bob_xem(documents: &[ProofDocument]) -> ProofDocument {
    let mut bob = documents.iter().find(|d| d.account == 1).unwrap().clone();
    bob.proofs.retain(|p| p.asset == "XEM");
    assert_eq!(bob.proofs.len(), 1);
    bob
}

#[track_caller]
fn broken(document: &ProofDocument, root: &str) -> InclusionError {
    match verify_inclusion(document, root) {
        Ok(report) => panic!("an altered proof verified: {report:?}"),
        Err(e) => e,
    }
}

fn flip_hex(hex: &str) -> String {
    let mut chars: Vec<char> = hex.chars().collect();
    chars[10] = if chars[10] == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

#[test]
fn a_valid_proof_verifies_and_says_what_it_proves() {
    let (roots, documents) = journal_proofs();
    let bob = bob_xem(&documents);
    let report = verify_inclusion(&bob, root(&roots, "XEM")).expect("Bob is in the XEM tree");
    assert_eq!(report.account, 1);
    assert_eq!(report.asset, "XEM");
    assert_eq!(report.balance, "6000.000000");
    assert_eq!(report.root_sum, "12500.000000");
    // Bob's proof is not under the JPY root.
    assert!(matches!(
        broken(&bob, root(&roots, "JPY")),
        InclusionError::NotUnderRoot { .. }
    ));
}

#[test]
fn changing_the_balance_breaks_the_proof() {
    let (roots, documents) = journal_proofs();
    let root = root(&roots, "XEM");
    let mut richer = bob_xem(&documents);
    richer.proofs[0].balance_units = "7000000000".into();
    richer.proofs[0].balance = "7000.000000".into();
    assert!(matches!(
        broken(&richer, root),
        InclusionError::Inconsistent { .. }
    ));
    // Even with the stated root changed to match, it is not under the published root.
    let computed = match broken(&richer, root) {
        InclusionError::Inconsistent { computed, .. } => computed,
        other => panic!("{other:?}"),
    };
    richer.proofs[0].root_hash = computed;
    richer.proofs[0].root_sum_units = "13500000000".into();
    assert!(matches!(
        broken(&richer, root),
        InclusionError::NotUnderRoot { .. }
    ));
    // A displayed balance that is not the hashed one is refused.
    let mut lying = bob_xem(&documents);
    lying.proofs[0].balance = "7000.000000".into();
    assert!(matches!(broken(&lying, root), InclusionError::Malformed(_)));
}

#[test]
fn changing_any_sibling_breaks_the_proof() {
    let (roots, documents) = journal_proofs();
    let root = root(&roots, "XEM");
    let bob = bob_xem(&documents);
    assert!(!bob.proofs[0].path.is_empty());
    for level in 0..bob.proofs[0].path.len() {
        let mut hash = bob.clone();
        hash.proofs[0].path[level].hash = flip_hex(&hash.proofs[0].path[level].hash);
        assert!(
            verify_inclusion(&hash, root).is_err(),
            "hash at level {level}"
        );
        let mut sum = bob.clone();
        let units: i128 = sum.proofs[0].path[level].sum_units.parse().unwrap();
        sum.proofs[0].path[level].sum_units = (units + 1).to_string();
        assert!(
            verify_inclusion(&sum, root).is_err(),
            "sum at level {level}"
        );
        let mut negative = bob.clone();
        negative.proofs[0].path[level].sum_units = "-1".into();
        assert!(
            matches!(broken(&negative, root), InclusionError::Invalid { .. }),
            "negative sum at level {level}"
        );
        let mut side = bob.clone();
        let step = &mut side.proofs[0].path[level];
        step.side = match step.side {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        };
        assert!(
            verify_inclusion(&side, root).is_err(),
            "side at level {level}"
        );
    }
    let mut nonce = bob.clone();
    nonce.proofs[0].nonce = flip_hex(&nonce.proofs[0].nonce);
    assert!(verify_inclusion(&nonce, root).is_err());
    let mut account = bob.clone();
    account.account = 2;
    assert!(verify_inclusion(&account, root).is_err());
    let mut shorter = bob;
    shorter.proofs[0].path.pop();
    assert!(verify_inclusion(&shorter, root).is_err());
}

#[test]
fn proof_files_round_trip_and_reveal_no_other_account() {
    let dir = TempDir::new("inclusion-files");
    let out = TempDir::new("inclusion-out");
    coincheck(dir.path());
    let read = replay::open_journal(dir.path()).unwrap();
    let report = liabilities(&read, None, &[3; 32]).unwrap();
    assert_eq!(write_proofs(&report, out.path()).unwrap(), 4);
    assert!(out.path().join(ROOTS_FILE).exists());
    let text = std::fs::read_to_string(out.path().join(proof_file_name(2))).unwrap();
    let carol = parse_proof(&text).unwrap();
    for root in &report.roots {
        let holds = carol.proofs.iter().any(|p| p.asset == root.asset);
        assert_eq!(
            verify_inclusion(&carol, &root.hash).is_ok(),
            holds,
            "{}",
            root.asset
        );
    }
    // Carol's file names only her own account; siblings are hashes and sums.
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["account"], 2);
    assert!(!text.contains("\"account\": 0"));
    assert!(!text.contains("\"account\": 1"));
}

#[test]
fn the_tree_itself_refuses_negative_sums_and_counts_every_unit() {
    let leaves: Vec<Leaf> = (0..5)
        .map(|account| Leaf {
            account,
            balance_units: 100 * i128::from(account + 1),
            nonce: merkle::nonce(&[1; 32], "BTC", account),
        })
        .collect();
    let tree = Tree::build("BTC", leaves.clone());
    assert_eq!(tree.root().sum, 1_500);
    // A prover who slips a negative sibling under a leaf to shrink the total is caught.
    let leaf = tree.leaves()[0];
    let forged = [Sibling {
        side: Side::Right,
        node: Node {
            hash: [0; 32],
            sum: -100,
        },
    }];
    assert!(root_of("BTC", &leaf, &forged).is_err());
    // The same leaf hashed for another asset is another leaf.
    let proof = tree.proof(0);
    assert_eq!(root_of("BTC", &leaf, &proof), Ok(tree.root()));
    assert_ne!(root_of("BCH", &leaf, &proof).unwrap(), tree.root());
}
