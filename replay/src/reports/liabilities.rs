//! `liabilities`: a proof of liabilities at an instant — one Merkle sum tree per asset over every
//! customer's balance (available plus held; customers with nothing in an asset are not leaves of
//! its tree), the roots to publish, and one proof file per customer. `verify-inclusion` is the
//! customer's side: it checks one proof file against a published root. See [`crate::merkle`] for
//! the tree.
//!
//! Files written to the output directory: `roots.json` (what the exchange publishes) and
//! `account-NNNNNNNNNN.json` per customer (handed to that customer only; it holds their proof in
//! every asset they hold).

use std::fs;
use std::path::Path;

use engine::journal::JournalRead;
use engine::AccountId;
use ledger::Pool;
use serde::{Deserialize, Serialize};

use crate::error::ReplayError;
use crate::merkle::{self, from_hex, root_of, to_hex, Hash, Leaf, Node, Sibling, Side, Tree};
use crate::money::format_units;
use crate::point::{Point, Reached};
use crate::render::{left, right, Report, Table};
use crate::reports::Catalog;
use crate::walk::replay_until;

/// The `format` field of every proof file.
pub const PROOF_FORMAT: &str = "kinko-liabilities-proof/1";
pub const ROOTS_FILE: &str = "roots.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootInfo {
    pub asset: String,
    pub decimals: u8,
    pub hash: String,
    pub sum_units: String,
    pub sum: String,
    pub leaves: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStep {
    pub side: Side,
    pub hash: String,
    pub sum_units: String,
}

/// One customer's proof in one asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetProof {
    pub asset: String,
    pub decimals: u8,
    pub balance_units: String,
    pub balance: String,
    pub nonce: String,
    pub path: Vec<PathStep>,
    pub root_hash: String,
    pub root_sum_units: String,
}

/// What one customer receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofDocument {
    pub format: String,
    pub account: AccountId,
    pub at_seq: u64,
    pub at_time: Option<String>,
    pub proofs: Vec<AssetProof>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiabilitiesReport {
    /// The point asked for (`None`: the end).
    pub requested: Option<String>,
    /// The last command applied at that point.
    pub at: Reached,
    pub time: Option<String>,
    pub roots: Vec<RootInfo>,
    /// Every customer's proofs (not printed: written one file per customer).
    #[serde(skip)]
    pub documents: Vec<ProofDocument>,
}

/// Builds one tree per asset over customer balances at `at` (the end when `None`).
pub fn liabilities(
    read: &JournalRead,
    at: Option<Point>,
    secret: &Hash,
) -> Result<LiabilitiesReport, ReplayError> {
    let catalog = Catalog::new(&read.genesis.config);
    let (exchange, reached) = replay_until(read, at, &mut |_| {})?;
    let ledger = exchange.ledger();
    let customers: Vec<AccountId> = (0..ledger.accounts() as AccountId)
        .filter(|&a| ledger.pool_of(a) == Some(Pool::Customer))
        .collect();
    let mut documents: Vec<ProofDocument> = customers
        .iter()
        .map(|&account| ProofDocument {
            format: PROOF_FORMAT.into(),
            account,
            at_seq: reached.seq,
            at_time: reached.time(),
            proofs: Vec::new(),
        })
        .collect();
    let mut roots = Vec::new();
    for (asset, spec) in catalog.assets() {
        let leaves: Vec<Leaf> = customers
            .iter()
            .map(|&account| Leaf {
                account,
                balance_units: ledger.balance(account, asset).total(),
                nonce: merkle::nonce(secret, &spec.code, account),
            })
            .filter(|leaf| leaf.balance_units > 0)
            .collect();
        let tree = Tree::build(&spec.code, leaves);
        let root = tree.root();
        assert_eq!(
            root.sum,
            ledger.totals(Pool::Customer, asset).owed,
            "the tree of {} sums to what customers are owed",
            spec.code
        );
        for (position, leaf) in tree.leaves().iter().enumerate() {
            let document = documents
                .iter_mut()
                .find(|d| d.account == leaf.account)
                .expect("leaves are customers");
            document.proofs.push(asset_proof(
                &spec.code,
                spec.decimals,
                leaf,
                &tree.proof(position),
                &root,
            ));
        }
        roots.push(RootInfo {
            asset: spec.code.clone(),
            decimals: spec.decimals,
            hash: to_hex(&root.hash),
            sum_units: root.sum.to_string(),
            sum: format_units(root.sum, spec.decimals),
            leaves: tree.leaves().len() as u64,
        });
    }
    documents.retain(|d| !d.proofs.is_empty());
    Ok(LiabilitiesReport {
        requested: at.map(|p| p.to_string()),
        at: reached,
        time: reached.time(),
        roots,
        documents,
    })
}

fn asset_proof(
    asset: &str,
    decimals: u8,
    leaf: &Leaf,
    path: &[Sibling],
    root: &Node,
) -> AssetProof {
    AssetProof {
        asset: asset.into(),
        decimals,
        balance_units: leaf.balance_units.to_string(),
        balance: format_units(leaf.balance_units, decimals),
        nonce: to_hex(&leaf.nonce),
        path: path
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
}

/// Writes `roots.json` and one `account-NNNNNNNNNN.json` per customer into `dir`.
pub fn write_proofs(report: &LiabilitiesReport, dir: &Path) -> Result<usize, ReplayError> {
    fs::create_dir_all(dir)?;
    let roots = serde_json::to_string_pretty(report).expect("serializes");
    fs::write(dir.join(ROOTS_FILE), roots + "\n")?;
    for document in &report.documents {
        let text = serde_json::to_string_pretty(document).expect("serializes");
        fs::write(dir.join(proof_file_name(document.account)), text + "\n")?;
    }
    Ok(report.documents.len())
}

pub fn proof_file_name(account: AccountId) -> String {
    format!("account-{account:010}.json")
}

impl Report for LiabilitiesReport {
    fn tables(&self) -> Vec<Table> {
        let columns = [left("asset"), right("leaves"), right("sum"), left("root")];
        let mut table = Table::new("Proof of liabilities: Merkle sum tree roots", &columns);
        table.fact(
            "requested",
            self.requested.as_deref().unwrap_or("end of journal"),
        );
        table.fact("at", self.at);
        table.fact("customers with a proof", self.documents.len());
        for root in &self.roots {
            table.row(vec![
                root.asset.clone(),
                root.leaves.to_string(),
                root.sum.clone(),
                root.hash.clone(),
            ]);
        }
        vec![table]
    }
}

/// A proof checked against a published root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InclusionReport {
    pub account: AccountId,
    pub asset: String,
    pub balance: String,
    pub root: String,
    pub root_sum: String,
    pub at_seq: u64,
    pub at_time: Option<String>,
}

impl Report for InclusionReport {
    fn tables(&self) -> Vec<Table> {
        let mut table = Table::new("Inclusion verified", &[]);
        table.fact("account", self.account);
        table.fact("asset", &self.asset);
        table.fact("balance", &self.balance);
        table.fact("root", &self.root);
        table.fact("total of the tree", &self.root_sum);
        table.fact("at seq", self.at_seq);
        if let Some(time) = &self.at_time {
            table.fact("at time", time);
        }
        vec![table]
    }
}

/// Why an inclusion proof does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InclusionError {
    Malformed(String),
    /// The proof's path is invalid (a negative sum, an overflow).
    Invalid {
        asset: String,
        detail: String,
    },
    /// The proof leads to another root than the one it states: it was altered.
    Inconsistent {
        asset: String,
        computed: String,
        stated: String,
    },
    /// No proof in the file leads to the published root.
    NotUnderRoot {
        root: String,
        computed: Vec<(String, String)>,
    },
}

impl std::fmt::Display for InclusionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InclusionError::Malformed(e) => write!(f, "malformed proof: {e}"),
            InclusionError::Invalid { asset, detail } => {
                write!(f, "{asset} proof invalid: {detail}")
            }
            InclusionError::Inconsistent {
                asset,
                computed,
                stated,
            } => write!(
                f,
                "{asset} proof leads to root {computed}, not to the root it states ({stated}): \
                 the proof or the balance was altered"
            ),
            InclusionError::NotUnderRoot { root, computed } => {
                write!(f, "no proof leads to root {root}")?;
                for (asset, hash) in computed {
                    write!(f, "; the {asset} proof leads to {hash}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for InclusionError {}

/// Parses a proof file: a customer's document, or a single asset proof with its account.
pub fn parse_proof(text: &str) -> Result<ProofDocument, InclusionError> {
    let document: ProofDocument =
        serde_json::from_str(text).map_err(|e| InclusionError::Malformed(e.to_string()))?;
    if document.format != PROOF_FORMAT {
        return Err(InclusionError::Malformed(format!(
            "format {}, expected {PROOF_FORMAT}",
            document.format
        )));
    }
    Ok(document)
}

/// Checks that one of the document's proofs leads to `root` (64 hex digits).
pub fn verify_inclusion(
    document: &ProofDocument,
    root: &str,
) -> Result<InclusionReport, InclusionError> {
    let root_hash = from_hex(root)
        .ok_or_else(|| InclusionError::Malformed(format!("root {root} is not 64 hex digits")))?;
    let mut computed = Vec::new();
    for proof in &document.proofs {
        let node = proof_root(document.account, proof)?;
        let stated = from_hex(&proof.root_hash);
        if stated != Some(node.hash) || proof.root_sum_units != node.sum.to_string() {
            return Err(InclusionError::Inconsistent {
                asset: proof.asset.clone(),
                computed: to_hex(&node.hash),
                stated: proof.root_hash.clone(),
            });
        }
        if node.hash == root_hash {
            return Ok(InclusionReport {
                account: document.account,
                asset: proof.asset.clone(),
                balance: proof.balance.clone(),
                root: to_hex(&node.hash),
                root_sum: format_units(node.sum, proof.decimals),
                at_seq: document.at_seq,
                at_time: document.at_time.clone(),
            });
        }
        computed.push((proof.asset.clone(), to_hex(&node.hash)));
    }
    Err(InclusionError::NotUnderRoot {
        root: root.into(),
        computed,
    })
}

fn proof_root(account: AccountId, proof: &AssetProof) -> Result<Node, InclusionError> {
    let malformed =
        |what: &str| InclusionError::Malformed(format!("{} proof: bad {what}", proof.asset));
    let balance_units: i128 = proof
        .balance_units
        .parse()
        .map_err(|_| malformed("balance_units"))?;
    // The balance a customer reads must be the one that is hashed.
    if proof.balance != format_units(balance_units, proof.decimals) {
        return Err(malformed("balance: it differs from balance_units"));
    }
    let leaf = Leaf {
        account,
        balance_units,
        nonce: from_hex(&proof.nonce).ok_or_else(|| malformed("nonce"))?,
    };
    let path = proof
        .path
        .iter()
        .map(|step| {
            Ok(Sibling {
                side: step.side,
                node: Node {
                    hash: from_hex(&step.hash).ok_or_else(|| malformed("sibling hash"))?,
                    sum: step
                        .sum_units
                        .parse()
                        .map_err(|_| malformed("sibling sum"))?,
                },
            })
        })
        .collect::<Result<Vec<_>, InclusionError>>()?;
    root_of(&proof.asset, &leaf, &path).map_err(|e| InclusionError::Invalid {
        asset: proof.asset.clone(),
        detail: e.to_string(),
    })
}
