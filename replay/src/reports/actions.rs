//! `actions`: the audit trail of operators, from the journal alone. Every operator action — halts
//! and resumes (per instrument and per asset), house policy changes, custody moves, cold → hot
//! requests, approvals and cancels, top-ups, API-key registrations, creations, rotations and
//! revocations — with its sequence number, time, actor and outcome. Actors are named by their
//! key: the journal's `KeyChanged` records bind each key number to its name. An approval names the
//! operator's key that brought it and, in its detail, the approver whose signature it carries; the
//! cold → hot move that follows the approvals is listed too, as the `system`'s
//! (`cold_to_hot_complete`), so that the trail of a move ends with the coins leaving cold storage. Commands of the same
//! kinds journaled without an actor (the opening sweep of a first start, commands of tools that
//! predate the audit trail; the server's opening sweep is journaled as `system`'s) are listed
//! too, as `unattributed`: nothing is left out.

use std::collections::BTreeMap;

use engine::audit::{KeyChange, KeyGrant, KeyId, OperatorCommand};
use engine::custody::OPERATOR_SYSTEM;
use engine::journal::JournalRead;
use engine::{Command, Event, ExchangeCommand, ExchangeEvent};
use ledger::{AmountUnits, AssetId, Location, Pool};
use serde::Serialize;

use crate::error::ReplayError;
use crate::money::format_units;
use crate::point::{format_ts, Window};
use crate::render::{left, right, Report, Table};
use crate::reports::{policy_name, Catalog};
use crate::walk::replay_until;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Action {
    pub seq: u64,
    pub time: String,
    /// The key's name (`demo-operator`), `system`, an approver's public key, or `unattributed`.
    pub actor: String,
    /// The key's number in the journal, when the actor is a key.
    pub actor_id: Option<KeyId>,
    pub action: &'static str,
    pub detail: String,
    /// `applied` or `refused: REASON`.
    pub outcome: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActionsReport {
    pub actions: Vec<Action>,
}

pub fn actions(read: &JournalRead) -> Result<ActionsReport, ReplayError> {
    let catalog = Catalog::new(&read.genesis.config);
    let mut names: BTreeMap<KeyId, String> = BTreeMap::new();
    let mut actions = Vec::new();
    replay_until(read, Window::ALL.to, &mut |step| {
        // Name bindings first: a registration names its own actor's key.
        for event in step.events {
            if let ExchangeEvent::KeyChanged {
                change:
                    KeyChange::Registered { key, label, .. } | KeyChange::Created { key, label, .. },
                ..
            } = event
            {
                names.insert(*key, label.as_str().to_string());
            }
        }
        let Some((actor, action, detail)) = describe(&catalog, &names, step.command) else {
            return;
        };
        let (actor, actor_id) = actor;
        actions.push(Action {
            seq: step.seq,
            time: format_ts(step.ts_ns),
            actor,
            actor_id,
            action,
            detail,
            outcome: outcome(step.events),
        });
    })?;
    Ok(ActionsReport { actions })
}

type Actor = (String, Option<KeyId>);

fn operator(names: &BTreeMap<KeyId, String>, id: KeyId) -> Actor {
    if id == OPERATOR_SYSTEM {
        return ("system".into(), None);
    }
    let name = names
        .get(&id)
        .cloned()
        .unwrap_or_else(|| format!("key #{id}"));
    (name, Some(id))
}

/// An approver by the first 16 hex digits of its ed25519 public key.
fn approver_name(approver: &[u8; 32]) -> String {
    let hex: String = approver[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}…")
}

fn unattributed() -> Actor {
    ("unattributed".into(), None)
}

fn describe(
    catalog: &Catalog<'_>,
    names: &BTreeMap<KeyId, String>,
    command: &ExchangeCommand,
) -> Option<(Actor, &'static str, String)> {
    let units = |asset: AssetId, amount: AmountUnits| match catalog.asset_get(asset) {
        Some(spec) => format!(
            "{} {}",
            format_units(i128::from(amount), spec.decimals),
            spec.code
        ),
        None => format!("{amount} units of asset #{asset}"),
    };
    let code = |asset: AssetId| {
        catalog
            .asset_get(asset)
            .map_or_else(|| format!("asset #{asset}"), |s| s.code.clone())
    };
    let symbol = |instrument: u32| {
        catalog
            .instrument_get(instrument)
            .map_or_else(|| format!("instrument #{instrument}"), |s| s.symbol.clone())
    };
    let pool = |p: Pool| match p {
        Pool::Customer => "customer",
        Pool::House => "house",
    };
    let plain = |command: &ExchangeCommand| -> Option<(&'static str, String)> {
        Some(match *command {
            ExchangeCommand::Trade(Command::Halt { instrument }) => {
                ("halt_instrument", symbol(instrument))
            }
            ExchangeCommand::Trade(Command::Resume { instrument }) => {
                ("resume_instrument", symbol(instrument))
            }
            ExchangeCommand::SetHousePolicy { instrument, policy } => (
                "set_house_policy",
                format!("{} {}", symbol(instrument), policy_name(policy)),
            ),
            ExchangeCommand::CustodyTransfer {
                pool: p,
                asset,
                source,
                target,
                amount_units,
            } => (
                "custody_transfer",
                format!(
                    "{} {} {} -> {}",
                    pool(p),
                    units(asset, amount_units),
                    location(source),
                    location(target)
                ),
            ),
            ExchangeCommand::ColdToHotCancel { request_id } => {
                ("cancel_cold_to_hot", format!("request {request_id}"))
            }
            ExchangeCommand::ColdToHotApprove {
                request_id,
                approver,
                ..
            } => (
                "cold_to_hot_approve",
                format!(
                    "request {request_id}, signed by approver {}",
                    approver_name(&approver)
                ),
            ),
            _ => return None,
        })
    };
    Some(match *command {
        ExchangeCommand::Operator {
            operator: id,
            command,
        } => {
            let actor = operator(names, id);
            match command {
                OperatorCommand::Key(change) => {
                    let (action, detail) = key_change(names, change);
                    (actor, action, detail)
                }
                other => {
                    let (action, detail) = plain(&other.plain()?)?;
                    (actor, action, detail)
                }
            }
        }
        ExchangeCommand::SetAssetHalts {
            asset,
            halts,
            operator: id,
        } => {
            let on = |flag: bool| if flag { "halted" } else { "running" };
            let detail = format!(
                "{}: deposits {}, withdrawals {}, trading {}",
                code(asset),
                on(halts.deposits),
                on(halts.withdrawals),
                on(halts.trading)
            );
            (operator(names, id), "set_asset_halts", detail)
        }
        ExchangeCommand::ColdToHotRequest {
            pool: p,
            asset,
            amount_units,
            operator: id,
        } => (
            operator(names, id),
            "cold_to_hot_request",
            format!("{} {}", pool(p), units(asset, amount_units)),
        ),
        // An approval journaled without the operator's envelope (journals written before it):
        // the approver's key is the only actor the journal knows.
        ExchangeCommand::ColdToHotApprove {
            request_id,
            approver,
            ..
        } => (
            (format!("approver {}", approver_name(&approver)), None),
            "cold_to_hot_approve",
            format!("request {request_id}"),
        ),
        // The chain adapter carried out an approved move: not an operator's act, but the moment
        // the coins left cold storage, which the trail of the approvals must end with.
        ExchangeCommand::ColdToHotComplete { request_id } => (
            ("system".into(), None),
            "cold_to_hot_complete",
            format!("request {request_id}"),
        ),
        ExchangeCommand::TopUp {
            asset,
            location: at,
            amount_units,
            operator: id,
        } => (
            operator(names, id),
            "top_up",
            format!("{} from house {}", units(asset, amount_units), location(at)),
        ),
        ref other => {
            let (action, detail) = plain(other)?;
            (unattributed(), action, detail)
        }
    })
}

fn key_change(names: &BTreeMap<KeyId, String>, change: KeyChange) -> (&'static str, String) {
    let name = |key: KeyId| {
        names
            .get(&key)
            .cloned()
            .unwrap_or_else(|| format!("key #{key}"))
    };
    match change {
        KeyChange::Registered { key, grant, .. } => (
            "key_registered",
            format!("{} {}", name(key), grant_text(grant)),
        ),
        KeyChange::Created { key, grant, .. } => (
            "key_created",
            format!("{} {}", name(key), grant_text(grant)),
        ),
        KeyChange::Rotated { key } => ("key_rotated", name(key)),
        KeyChange::Revoked { key } => ("key_revoked", name(key)),
    }
}

fn grant_text(grant: KeyGrant) -> String {
    use engine::audit::permission;
    let mut permissions = Vec::new();
    for (bit, name) in [
        (permission::READ, "read"),
        (permission::TRADE, "trade"),
        (permission::WITHDRAW, "withdraw"),
    ] {
        if grant.permissions & bit != 0 {
            permissions.push(name);
        }
    }
    let mut text = format!(
        "(account {}, {:?}, {})",
        grant.account,
        grant.role,
        permissions.join("+")
    )
    .to_lowercase();
    if grant.ip_rules > 0 {
        text += &format!(", {} ip rule(s)", grant.ip_rules);
    }
    if grant.expires_ms > 0 {
        text += &format!(
            ", expires {}",
            format_ts(grant.expires_ms.saturating_mul(1_000_000))
        );
    }
    text
}

fn location(location: Location) -> &'static str {
    match location {
        Location::Hot => "hot",
        Location::Cold => "cold",
        Location::Bank => "bank",
        Location::Lost => "lost",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

fn outcome(events: &[ExchangeEvent]) -> String {
    let refused = events.iter().find_map(|event| match event {
        ExchangeEvent::Rejected { reason, .. }
        | ExchangeEvent::Order(Event::Rejected { reason, .. }) => Some(*reason),
        _ => None,
    });
    match refused {
        Some(reason) => format!("refused: {}", reason.name()),
        None => "applied".into(),
    }
}

impl Report for ActionsReport {
    fn tables(&self) -> Vec<Table> {
        let mut table = Table::new(
            "Operator actions (audit trail)",
            &[
                right("seq"),
                left("time"),
                left("actor"),
                left("action"),
                left("detail"),
                left("outcome"),
            ],
        );
        for a in &self.actions {
            table.row(vec![
                a.seq.to_string(),
                a.time.clone(),
                a.actor.clone(),
                a.action.into(),
                a.detail.clone(),
                a.outcome.clone(),
            ]);
        }
        let unattributed = self
            .actions
            .iter()
            .filter(|a| a.actor == "unattributed")
            .count();
        table.fact("actions", self.actions.len());
        if unattributed > 0 {
            table.notes.push(format!(
                "{unattributed} action(s) journaled without an actor (tools or journals older than the audit trail)"
            ));
        }
        vec![table]
    }
}
