//! Custody at the edge: the hub's mirror of the custody state (withdrawal queue, deposit
//! addresses, halts, incidents, alerts, cold → hot requests, the last reconciliation of every
//! wallet), the WebSocket requests of traders and operators, and the driver task that stands
//! between the engine and the chain adapter.
//!
//! The driver is the only submitter of chain-facing commands, and it does one thing at a time,
//! waiting for each acknowledgement: the ledger and the chain then never disagree because of an
//! interleaving (a wallet observation never lands between a ledger move and the chain move it
//! stands for). Each interval it: records new deposits; completes confirmed withdrawals; carries
//! out approved cold → hot moves and queued sweeps to cold; broadcasts the head of each
//! withdrawal queue (asset × pool) unless the asset's withdrawals are halted; and reports every
//! wallet's observed balance, which is what turns a theft into a halt within one interval.

pub mod chain;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use engine::custody::{
    cold_move_message, Address, AssetHalts, CustodyEvent, Incident, OperatorId, Sig,
};
use engine::{Alert, ExchangeCommand, ExchangeConfig, ExchangeEvent, ExchangeSnapshot, TxId};
use ledger::{AccountId, AmountUnits, AssetClass, AssetId, Location, Pool, Ratio};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::config::Role;
use crate::hub::{Outgoing, SessionEntry, Shared, Wire};
use crate::protocol::ApiError;
use chain::ChainAdapter;

/// A pending withdrawal as the hub knows it from events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WithdrawalView {
    pub account: AccountId,
    pub asset: AssetId,
    pub amount_units: AmountUnits,
    pub address: Address,
    pub broadcast: Option<TxId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColdMoveView {
    pub pool: Pool,
    pub asset: AssetId,
    pub amount_units: AmountUnits,
    pub approvals: u8,
    pub approved: bool,
}

/// The last reconciliation of one wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletView {
    pub seq: u64,
    pub ledger_units: AmountUnits,
    pub in_flight_units: AmountUnits,
    pub observed_units: AmountUnits,
}

const ALERTS_KEPT: usize = 256;

#[derive(Debug, Default)]
pub struct CustodyMirror {
    pub pools: Vec<Pool>,
    pub withdrawals: BTreeMap<u64, WithdrawalView>,
    pub deposit_addresses: BTreeMap<(AccountId, AssetId), Address>,
    pub halts: Vec<AssetHalts>,
    pub incidents: Vec<Incident>,
    pub alerts: VecDeque<(u64, Alert)>,
    pub cold_moves: BTreeMap<u64, ColdMoveView>,
    pub wallets: BTreeMap<(Pool, AssetId, Location), WalletView>,
    /// Written down by reconciliation and not yet replaced, per pool and asset (a top-up moves
    /// the customers' to the house).
    pub lost: BTreeMap<(Pool, AssetId), AmountUnits>,
}

impl CustodyMirror {
    pub fn new(start: &ExchangeSnapshot) -> CustodyMirror {
        let custody = &start.custody;
        let required =
            |asset: AssetId| start.config.custody.assets[asset as usize].approvals_required;
        CustodyMirror {
            pools: start.ledger.pools.clone(),
            withdrawals: start
                .withdrawals
                .iter()
                .map(|(id, w)| {
                    let view = WithdrawalView {
                        account: w.account,
                        asset: w.asset,
                        amount_units: w.amount_units,
                        address: w.address,
                        broadcast: w.broadcast,
                    };
                    (*id, view)
                })
                .collect(),
            deposit_addresses: custody
                .deposit_addresses
                .iter()
                .map(|(address, key)| (*key, *address))
                .collect(),
            halts: custody.halts.clone(),
            incidents: custody.incidents.clone(),
            alerts: VecDeque::new(),
            cold_moves: custody
                .cold_moves
                .iter()
                .map(|(id, m)| {
                    let approvals = m.approvals.count_ones() as u8;
                    let view = ColdMoveView {
                        pool: m.pool,
                        asset: m.asset,
                        amount_units: m.amount_units,
                        approvals,
                        approved: approvals >= required(m.asset),
                    };
                    (*id, view)
                })
                .collect(),
            wallets: BTreeMap::new(),
            lost: start
                .ledger
                .rows
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    let assets = start.ledger.assets.len();
                    let key = (Pool::ALL[i / assets], (i % assets) as AssetId);
                    (key, row.custody[Location::Lost.index()])
                })
                .collect(),
        }
    }

    pub fn pool_of(&self, account: AccountId) -> Option<Pool> {
        self.pools.get(account as usize).copied()
    }

    /// Follows one command's events.
    pub fn apply(&mut self, seq: u64, events: &[ExchangeEvent]) {
        for event in events {
            match *event {
                ExchangeEvent::AccountCreated { pool, .. } => self.pools.push(pool),
                ExchangeEvent::WithdrawalRequested {
                    withdrawal_id,
                    account,
                    asset,
                    amount_units,
                    address,
                } => {
                    let view = WithdrawalView {
                        account,
                        asset,
                        amount_units,
                        address,
                        broadcast: None,
                    };
                    self.withdrawals.insert(withdrawal_id, view);
                }
                ExchangeEvent::WithdrawalCompleted { withdrawal_id, .. }
                | ExchangeEvent::WithdrawalCancelled { withdrawal_id, .. } => {
                    self.withdrawals.remove(&withdrawal_id);
                }
                ExchangeEvent::Alert(alert) => {
                    if self.alerts.len() == ALERTS_KEPT {
                        self.alerts.pop_front();
                    }
                    self.alerts.push_back((seq, alert));
                }
                ExchangeEvent::Custody(c) => self.apply_custody(seq, c),
                _ => {}
            }
        }
    }

    fn apply_custody(&mut self, seq: u64, event: CustodyEvent) {
        match event {
            CustodyEvent::WithdrawalBroadcast {
                withdrawal_id,
                chain_tx,
                ..
            } => {
                if let Some(w) = self.withdrawals.get_mut(&withdrawal_id) {
                    w.broadcast = Some(chain_tx);
                }
            }
            CustodyEvent::DepositAddressAssigned {
                account,
                asset,
                address,
            } => {
                self.deposit_addresses.insert((account, asset), address);
            }
            CustodyEvent::HaltsSet { asset, halts, .. } => {
                if let Some(slot) = self.halts.get_mut(asset as usize) {
                    *slot = halts;
                }
            }
            CustodyEvent::IncidentOpened(incident) => {
                *self
                    .lost
                    .entry((incident.pool, incident.asset))
                    .or_insert(0) += incident.missing_units;
                self.incidents.push(incident);
            }
            CustodyEvent::ToppedUp {
                asset,
                amount_units,
                ..
            } => {
                *self.lost.entry((Pool::Customer, asset)).or_insert(0) -= amount_units;
                *self.lost.entry((Pool::House, asset)).or_insert(0) += amount_units;
            }
            CustodyEvent::ColdMoveRequested {
                request_id,
                pool,
                asset,
                amount_units,
                ..
            } => {
                let view = ColdMoveView {
                    pool,
                    asset,
                    amount_units,
                    approvals: 0,
                    approved: false,
                };
                self.cold_moves.insert(request_id, view);
            }
            CustodyEvent::ColdMoveApproval {
                request_id,
                approvals,
                ..
            } => {
                if let Some(m) = self.cold_moves.get_mut(&request_id) {
                    m.approvals = approvals;
                }
            }
            CustodyEvent::ColdMoveApproved { request_id } => {
                if let Some(m) = self.cold_moves.get_mut(&request_id) {
                    m.approved = true;
                }
            }
            CustodyEvent::ColdMoveCancelled { request_id }
            | CustodyEvent::ColdMoveCompleted { request_id } => {
                self.cold_moves.remove(&request_id);
            }
            CustodyEvent::Reconciled {
                pool,
                asset,
                location,
                ledger_units,
                in_flight_units,
                observed_units,
            } => {
                let view = WalletView {
                    seq,
                    ledger_units,
                    in_flight_units,
                    observed_units,
                };
                self.wallets.insert((pool, asset, location), view);
            }
            _ => {}
        }
    }

    /// The operator's and auditor's view: per asset, each wallet's last reconciliation, halts,
    /// the withdrawal queue, incidents (with the loss per pool), recent alerts, cold → hot requests.
    pub fn status_json(
        &self,
        exchange: &ExchangeConfig,
        balances: &BTreeMap<(AccountId, AssetId), ledger::Balance>,
    ) -> Value {
        let amount = |asset: AssetId, units: AmountUnits| show(exchange, asset, units);
        // What each pool owes its holders (available + held), from the mirrored balances.
        let mut owed: BTreeMap<(Pool, AssetId), i128> = BTreeMap::new();
        for (&(account, asset), b) in balances {
            if let Some(pool) = self.pool_of(account) {
                *owed.entry((pool, asset)).or_insert(0) += b.total();
            }
        }
        let assets: Vec<Value> = exchange
            .assets
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let asset = i as AssetId;
                let wallets: Vec<Value> = self
                    .wallets
                    .iter()
                    .filter(|((_, a, _), _)| *a == asset)
                    .map(|((pool, _, location), w)| {
                        json!({
                            "pool": pool_name(*pool), "wallet": location_name(*location), "seq": w.seq,
                            "ledger": amount(asset, w.ledger_units), "in_flight": amount(asset, w.in_flight_units),
                            "observed": amount(asset, w.observed_units),
                            "matches": w.observed_units == w.ledger_units - w.in_flight_units,
                        })
                    })
                    .collect();
                let lost = |pool: Pool| -> AmountUnits {
                    self.incidents
                        .iter()
                        .filter(|x| x.asset == asset && x.pool == pool)
                        .map(|x| x.missing_units)
                        .sum()
                };
                let pools: serde_json::Map<String, Value> = [Pool::Customer, Pool::House]
                    .into_iter()
                    .map(|pool| {
                        let at = |location| {
                            self.wallets
                                .get(&(pool, asset, location))
                                .map_or(0, |w| w.ledger_units)
                        };
                        let (hot, cold, bank) = (at(Location::Hot), at(Location::Cold), at(Location::Bank));
                        let owed = owed.get(&(pool, asset)).copied().unwrap_or(0);
                        let lost = self.lost.get(&(pool, asset)).copied().unwrap_or(0);
                        // Hot share in basis points, rounded up: never understated.
                        let hot_share_bps = (owed > 0).then(|| (i128::from(hot) * 10_000 + owed - 1) / owed);
                        let cap_bps = i128::from(spec.hot_cap_bps);
                        let over_cap = pool == Pool::Customer
                            && spec.class == AssetClass::Coin
                            && i128::from(hot) * 10_000 > owed * cap_bps;
                        let value = json!({
                            "hot": amount(asset, hot), "cold": amount(asset, cold), "bank": amount(asset, bank),
                            "owed": amount(asset, AmountUnits::try_from(owed).unwrap_or(AmountUnits::MAX)),
                            "lost": amount(asset, lost),
                            "hot_share_pct": hot_share_bps.map(|b| rust_decimal::Decimal::new(b as i64, 2).normalize().to_string()),
                            "hot_cap_pct": rust_decimal::Decimal::new(cap_bps as i64, 2).normalize().to_string(),
                            "over_cap": over_cap,
                        });
                        (pool_name(pool).to_string(), value)
                    })
                    .collect();
                let halts = self.halts.get(i).copied().unwrap_or_default();
                let still_lost = |pool| amount(asset, self.lost.get(&(pool, asset)).copied().unwrap_or(0));
                json!({
                    "asset": spec.code, "wallets": wallets, "pools": pools,
                    "lost": {"customer": still_lost(Pool::Customer), "house": still_lost(Pool::House)},
                    "halted": {"deposits": halts.deposits, "withdrawals": halts.withdrawals, "trading": halts.trading},
                    "stolen_from_customer_pool": amount(asset, lost(Pool::Customer)),
                    "stolen_from_house_pool": amount(asset, lost(Pool::House)),
                })
            })
            .collect();
        let queue: Vec<Value> = self
            .withdrawals
            .iter()
            .map(|(id, w)| {
                json!({
                    "withdrawal_id": id.to_string(), "account": w.account,
                    "asset": exchange.assets[w.asset as usize].code,
                    "amount": amount(w.asset, w.amount_units), "address": w.address.to_string(),
                    "state": if w.broadcast.is_some() { "broadcast" } else { "queued" },
                })
            })
            .collect();
        let incidents: Vec<Value> = self
            .incidents
            .iter()
            .map(|x| incident_json(exchange, x))
            .collect();
        let alerts: Vec<Value> = self
            .alerts
            .iter()
            .rev()
            .map(|(seq, a)| alert_json(exchange, *seq, a))
            .collect();
        let cold_moves: Vec<Value> = self
            .cold_moves
            .iter()
            .map(|(id, m)| {
                json!({
                    "request_id": id.to_string(), "pool": pool_name(m.pool),
                    "asset": exchange.assets[m.asset as usize].code, "amount": amount(m.asset, m.amount_units),
                    "asset_id": m.asset, "amount_units": m.amount_units.to_string(),
                    "message": message_hex(*id, m.pool, m.asset, m.amount_units),
                    "approvals": m.approvals,
                    "required": exchange.custody.assets[m.asset as usize].approvals_required,
                    "approved": m.approved,
                })
            })
            .collect();
        json!({
            "type": "custody_status", "assets": assets, "withdrawal_queue": queue,
            "incidents": incidents, "alerts": alerts, "cold_to_hot": cold_moves,
        })
    }
}

pub fn incident_json(exchange: &ExchangeConfig, x: &Incident) -> Value {
    json!({
        "incident_id": x.id, "seq": x.seq, "ts_ns": x.ts_ns.to_string(), "pool": pool_name(x.pool),
        "asset": exchange.assets[x.asset as usize].code, "wallet": location_name(x.location),
        "missing": show(exchange, x.asset, x.missing_units),
        "uncovered": show(exchange, x.asset, x.uncovered_units),
    })
}

fn alert_json(exchange: &ExchangeConfig, seq: u64, alert: &Alert) -> Value {
    let code = |asset: AssetId| exchange.assets[asset as usize].code.clone();
    match *alert {
        Alert::HotWalletOverCap {
            asset,
            excess_units,
            ..
        } => json!({"seq": seq, "alert": "hot_wallet_over_cap", "asset": code(asset),
            "suggested_sweep_to_cold": show(exchange, asset, excess_units)}),
        Alert::WalletShortfall {
            pool,
            asset,
            location,
            missing_units,
        } => {
            json!({"seq": seq, "alert": "wallet_shortfall", "pool": pool_name(pool), "asset": code(asset),
            "wallet": location_name(location), "missing": show(exchange, asset, missing_units)})
        }
        Alert::WalletSurplus {
            pool,
            asset,
            location,
            extra_units,
        } => {
            json!({"seq": seq, "alert": "wallet_surplus", "pool": pool_name(pool), "asset": code(asset),
            "wallet": location_name(location), "extra": show(exchange, asset, extra_units)})
        }
        Alert::UnknownDepositAddress {
            asset,
            amount_units,
            ..
        } => json!({"seq": seq, "alert": "unknown_deposit_address", "asset": code(asset),
            "amount": show(exchange, asset, amount_units)}),
        Alert::DuplicateDepositTx {
            asset,
            amount_units,
            ..
        } => json!({"seq": seq, "alert": "duplicate_deposit_tx", "asset": code(asset),
            "amount": show(exchange, asset, amount_units)}),
    }
}

/// Units as a decimal string in the asset's precision.
pub fn show(exchange: &ExchangeConfig, asset: AssetId, units: AmountUnits) -> String {
    let decimals = exchange.assets[asset as usize].decimals;
    rust_decimal::Decimal::new(units, u32::from(decimals))
        .normalize()
        .to_string()
}

pub fn pool_name(pool: Pool) -> &'static str {
    match pool {
        Pool::Customer => "customer",
        Pool::House => "house",
    }
}

pub fn location_name(location: Location) -> &'static str {
    match location {
        Location::Hot => "hot",
        Location::Cold => "cold",
        Location::Bank => "bank",
        Location::Lost => "lost",
    }
}

// ---------------------------------------------------------------------- WebSocket requests

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetAmount {
    pub req_id: Option<u64>,
    pub asset: String,
    pub amount: String,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub pool: Option<crate::config::PoolName>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetAddress {
    pub req_id: Option<u64>,
    pub asset: String,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ById {
    pub req_id: Option<u64>,
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaltsMsg {
    pub req_id: Option<u64>,
    pub asset: String,
    pub deposits: bool,
    pub withdrawals: bool,
    pub trading: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveMsg {
    pub req_id: Option<u64>,
    pub request_id: String,
    /// Hex, 32 bytes.
    pub approver: String,
    /// Hex, 64 bytes.
    pub signature: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plain {
    pub req_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustodyRequest {
    Withdraw(AssetAmount),
    CancelWithdrawal(ById),
    AddWithdrawalAddress(AssetAddress),
    RemoveWithdrawalAddress(AssetAddress),
    DepositAddress(AssetAddress),
    SetAssetHalts(HaltsMsg),
    ColdToHot(AssetAmount),
    ApproveColdToHot(ApproveMsg),
    SweepToCold(AssetAmount),
    TopUp(AssetAmount),
    Status(Plain),
}

impl CustodyRequest {
    /// The custody message types; `None` for any other type.
    pub fn parse(kind: &str, body: Value) -> Option<Result<CustodyRequest, ApiError>> {
        use crate::protocol::typed;
        Some(match kind {
            "withdraw" => typed(body).map(CustodyRequest::Withdraw),
            "cancel_withdrawal" => typed(body).map(CustodyRequest::CancelWithdrawal),
            "add_withdrawal_address" => typed(body).map(CustodyRequest::AddWithdrawalAddress),
            "remove_withdrawal_address" => typed(body).map(CustodyRequest::RemoveWithdrawalAddress),
            "deposit_address" => typed(body).map(CustodyRequest::DepositAddress),
            "set_asset_halts" => typed(body).map(CustodyRequest::SetAssetHalts),
            "cold_to_hot" => typed(body).map(CustodyRequest::ColdToHot),
            "approve_cold_to_hot" => typed(body).map(CustodyRequest::ApproveColdToHot),
            "sweep_to_cold" => typed(body).map(CustodyRequest::SweepToCold),
            "top_up" => typed(body).map(CustodyRequest::TopUp),
            "custody_status" => typed(body).map(CustodyRequest::Status),
            _ => return None,
        })
    }

    pub fn req_id(&self) -> Option<u64> {
        match self {
            CustodyRequest::Withdraw(m)
            | CustodyRequest::ColdToHot(m)
            | CustodyRequest::SweepToCold(m)
            | CustodyRequest::TopUp(m) => m.req_id,
            CustodyRequest::CancelWithdrawal(m) => m.req_id,
            CustodyRequest::AddWithdrawalAddress(m)
            | CustodyRequest::RemoveWithdrawalAddress(m)
            | CustodyRequest::DepositAddress(m) => m.req_id,
            CustodyRequest::SetAssetHalts(m) => m.req_id,
            CustodyRequest::ApproveColdToHot(m) => m.req_id,
            CustodyRequest::Status(m) => m.req_id,
        }
    }
}

/// What a session does with a custody request.
pub enum Action {
    Submit(ExchangeCommand),
    Reply(Value),
    /// Handed to the driver, which replies when it has carried it out.
    Queued,
}

/// Asset, source wallet, target wallet, amount.
type ChainMove = (AssetId, (Pool, Location), (Pool, Location), AmountUnits);

/// A custody move an operator asked for, carried out by the driver: the ledger first (it checks
/// and records), then the chain, with nothing in between. The reply goes to `session`.
#[derive(Clone, Copy, Debug)]
pub struct DriverOrder {
    pub session: u64,
    pub req_id: Option<u64>,
    pub command: ExchangeCommand,
}

impl DriverOrder {
    /// The chain move that mirrors the command once the ledger accepted it.
    fn chain_move(&self) -> Option<ChainMove> {
        let command = match self.command {
            ExchangeCommand::Operator { command, .. } => command.plain()?,
            plain => plain,
        };
        match command {
            ExchangeCommand::CustodyTransfer {
                pool,
                asset,
                source,
                target,
                amount_units,
            } => Some((asset, (pool, source), (pool, target), amount_units)),
            ExchangeCommand::TopUp {
                asset,
                location,
                amount_units,
                ..
            } => Some((
                asset,
                (Pool::House, location),
                (Pool::Customer, location),
                amount_units,
            )),
            _ => None,
        }
    }
}

fn asset_of(exchange: &ExchangeConfig, code: &str) -> Result<AssetId, ApiError> {
    exchange
        .assets
        .iter()
        .position(|a| a.code.eq_ignore_ascii_case(code))
        .map(|i| i as AssetId)
        .ok_or_else(|| ApiError::reject(engine::RejectReason::UnknownAsset))
}

fn units(exchange: &ExchangeConfig, asset: AssetId, text: &str) -> Result<AmountUnits, ApiError> {
    let value: rust_decimal::Decimal = text.parse().map_err(|_| {
        ApiError::new(
            "invalid_field",
            format!("field `amount` must be a decimal string, got {text:?}"),
        )
    })?;
    if value <= rust_decimal::Decimal::ZERO {
        return Err(ApiError::reject(engine::RejectReason::AmountNotPositive));
    }
    let decimals = exchange.assets[asset as usize].decimals;
    let units = Ratio::from_decimal(value, decimals)
        .and_then(Ratio::whole)
        .map_err(|_| {
            ApiError::new(
                "invalid_field",
                format!("amount {text} has more than {decimals} decimals"),
            )
        })?;
    Ok(units)
}

fn address(text: Option<&str>) -> Result<Address, ApiError> {
    let text = text.ok_or_else(|| ApiError::new("missing_field", "missing field `address`"))?;
    Address::parse(text).map_err(ApiError::reject)
}

fn hex_bytes<const N: usize>(field: &str, text: &str) -> Result<[u8; N], ApiError> {
    let bad = || {
        ApiError::new(
            "invalid_field",
            format!("field `{field}` must be {N} bytes in hex"),
        )
    };
    // Hex digits only: `u8::from_str_radix` also takes a sign ("+f" is 15).
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The operator's number in the journal: its key's ([`engine::audit`]).
fn operator_id(principal: &Principal) -> OperatorId {
    principal.id
}

/// Checks who may do what and turns a request into a command (or an immediate reply).
pub fn handle(
    shared: &Shared,
    session: u64,
    principal: Option<&Principal>,
    request: CustodyRequest,
) -> Result<Action, ApiError> {
    let exchange = &shared.exchange;
    let principal = principal
        .ok_or_else(|| ApiError::new("not_logged_in", "log in before custody requests"))?;
    let role = || match principal.role {
        Role::Trader => Ok(principal.account),
        _ => Err(ApiError::new(
            "forbidden",
            "only a trader key acts on its own account's deposits and withdrawals",
        )),
    };
    // Withdrawals and the whitelist they are paid to need `withdraw`: a leaked trading key
    // cannot move coins out, nor point the account at an attacker's address.
    let trader = || {
        let account = role()?;
        crate::session::permitted(principal, crate::config::Permission::Withdraw)?;
        Ok::<_, ApiError>(account)
    };
    let operator = || match principal.role {
        Role::Operator => Ok(operator_id(principal)),
        _ => Err(ApiError::new(
            "forbidden",
            "only an operator key may halt, move custody or top up",
        )),
    };
    let pool = |p: Option<crate::config::PoolName>| p.map_or(Pool::Customer, |p| p.pool());
    Ok(match request {
        CustodyRequest::Withdraw(m) => {
            let account = trader()?;
            let asset = asset_of(exchange, &m.asset)?;
            Action::Submit(ExchangeCommand::WithdrawalRequest {
                account,
                asset,
                amount_units: units(exchange, asset, &m.amount)?,
                address: address(m.address.as_deref())?,
            })
        }
        CustodyRequest::CancelWithdrawal(m) => {
            let account = trader()?;
            let withdrawal_id: u64 = m.id.parse().map_err(|_| {
                ApiError::new("invalid_field", "field `id` must be a withdrawal id")
            })?;
            let owner = shared
                .inner
                .lock()
                .custody
                .withdrawals
                .get(&withdrawal_id)
                .map(|w| w.account);
            if owner != Some(account) {
                return Err(ApiError::reject(engine::RejectReason::UnknownWithdrawal));
            }
            Action::Submit(ExchangeCommand::WithdrawalCancel { withdrawal_id })
        }
        CustodyRequest::AddWithdrawalAddress(m) => {
            Action::Submit(ExchangeCommand::AddWithdrawalAddress {
                account: trader()?,
                asset: asset_of(exchange, &m.asset)?,
                address: address(m.address.as_deref())?,
            })
        }
        CustodyRequest::RemoveWithdrawalAddress(m) => {
            Action::Submit(ExchangeCommand::RemoveWithdrawalAddress {
                account: trader()?,
                asset: asset_of(exchange, &m.asset)?,
                address: address(m.address.as_deref())?,
            })
        }
        CustodyRequest::DepositAddress(m) => {
            let account = role()?;
            crate::session::permitted(principal, crate::config::Permission::Read)?;
            let asset = asset_of(exchange, &m.asset)?;
            let found = shared
                .inner
                .lock()
                .custody
                .deposit_addresses
                .get(&(account, asset))
                .copied();
            let address = found.ok_or_else(|| {
                ApiError::new("no_deposit_address", "this asset has no deposit address")
            })?;
            Action::Reply(json!({
                "type": "deposit_address", "req_id": m.req_id, "asset": exchange.assets[asset as usize].code,
                "address": address.to_string(),
            }))
        }
        CustodyRequest::SetAssetHalts(m) => Action::Submit(ExchangeCommand::SetAssetHalts {
            operator: operator()?,
            asset: asset_of(exchange, &m.asset)?,
            halts: AssetHalts {
                deposits: m.deposits,
                withdrawals: m.withdrawals,
                trading: m.trading,
            },
        }),
        CustodyRequest::ColdToHot(m) => {
            let operator = operator()?;
            let asset = asset_of(exchange, &m.asset)?;
            Action::Submit(ExchangeCommand::ColdToHotRequest {
                pool: pool(m.pool),
                asset,
                amount_units: units(exchange, asset, &m.amount)?,
                operator,
            })
        }
        CustodyRequest::ApproveColdToHot(m) => {
            let operator = operator()?;
            let request_id: u64 = m.request_id.parse().map_err(|_| {
                ApiError::new("invalid_field", "field `request_id` must be a request id")
            })?;
            // The signature names the approver; the envelope names the operator's key that
            // brought it, so that the audit trail says both.
            Action::Submit(ExchangeCommand::Operator {
                operator,
                command: engine::audit::OperatorCommand::ColdToHotApprove {
                    request_id,
                    approver: hex_bytes::<32>("approver", &m.approver)?,
                    signature: Sig::from_bytes(&hex_bytes::<64>("signature", &m.signature)?),
                },
            })
        }
        CustodyRequest::SweepToCold(m) => {
            let operator = operator()?;
            let asset = asset_of(exchange, &m.asset)?;
            if exchange.assets[asset as usize].class != AssetClass::Coin {
                return Err(ApiError::reject(engine::RejectReason::InvalidLocation));
            }
            let command = ExchangeCommand::Operator {
                operator,
                command: engine::audit::OperatorCommand::CustodyTransfer {
                    pool: pool(m.pool),
                    asset,
                    source: Location::Hot,
                    target: Location::Cold,
                    amount_units: units(exchange, asset, &m.amount)?,
                },
            };
            shared.orders.lock().push(DriverOrder {
                session,
                req_id: m.req_id,
                command,
            });
            Action::Queued
        }
        CustodyRequest::TopUp(m) => {
            let operator = operator()?;
            let asset = asset_of(exchange, &m.asset)?;
            let location = match exchange.assets[asset as usize].class {
                AssetClass::Coin => Location::Cold,
                AssetClass::Fiat => Location::Bank,
            };
            let command = ExchangeCommand::TopUp {
                asset,
                location,
                amount_units: units(exchange, asset, &m.amount)?,
                operator,
            };
            shared.orders.lock().push(DriverOrder {
                session,
                req_id: m.req_id,
                command,
            });
            Action::Queued
        }
        CustodyRequest::Status(m) => {
            if principal.role == Role::Trader {
                return Err(ApiError::new(
                    "forbidden",
                    "the custody status is for operator and auditor keys",
                ));
            }
            let inner = shared.inner.lock();
            let mut status = inner.custody.status_json(exchange, &inner.balances);
            drop(inner);
            status["req_id"] = json!(m.req_id);
            Action::Reply(status)
        }
    })
}

/// Fields of an acknowledgement that name what a custody command made.
pub fn ack_fields(exchange: &ExchangeConfig, events: &[ExchangeEvent], reply: &mut Value) {
    for event in events {
        match *event {
            ExchangeEvent::WithdrawalRequested {
                withdrawal_id,
                asset,
                amount_units,
                ..
            } => {
                reply["withdrawal_id"] = json!(withdrawal_id.to_string());
                reply["amount"] = json!(show(exchange, asset, amount_units));
            }
            ExchangeEvent::Custody(CustodyEvent::AddressAdded { usable_from_ns, .. }) => {
                reply["usable_from_ns"] = json!(usable_from_ns.to_string());
            }
            ExchangeEvent::Custody(CustodyEvent::ColdMoveRequested { request_id, .. }) => {
                reply["request_id"] = json!(request_id.to_string());
            }
            ExchangeEvent::Custody(CustodyEvent::ColdMoveApproval {
                approvals,
                required,
                ..
            }) => {
                reply["approvals"] = json!(approvals);
                reply["required"] = json!(required);
            }
            ExchangeEvent::Custody(CustodyEvent::ToppedUp {
                asset,
                customer_lost_units,
                ..
            }) => {
                reply["customer_lost"] = json!(show(exchange, asset, customer_lost_units));
            }
            _ => {}
        }
    }
}

/// The bytes an approver signs for a request, in hex (what `kinko admin` and the docs show).
pub fn message_hex(
    request_id: u64,
    pool: Pool,
    asset: AssetId,
    amount_units: AmountUnits,
) -> String {
    cold_move_message(request_id, pool, asset, amount_units)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------- the driver

/// Submits commands one at a time on behalf of the driver, through the hub like a session.
struct Caller {
    shared: Arc<Shared>,
    id: u64,
    rx: mpsc::Receiver<Outgoing>,
    token_next: u32,
}

impl Caller {
    fn new(shared: Arc<Shared>) -> Caller {
        let id = shared
            .session_next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(1_024);
        shared.inner.lock().sessions.insert(
            id,
            SessionEntry {
                tx,
                account: None,
                channels: Default::default(),
                wire: Wire::Json,
                kill: Default::default(),
                key: None,
            },
        );
        Caller {
            shared,
            id,
            rx,
            token_next: 0,
        }
    }

    /// The command's events once journaled (`None` if the engine stopped).
    async fn call(&mut self, command: ExchangeCommand) -> Option<Vec<ExchangeEvent>> {
        self.call_seq(command).await.map(|(_, events)| events)
    }

    async fn call_seq(&mut self, command: ExchangeCommand) -> Option<(u64, Vec<ExchangeEvent>)> {
        self.token_next = self.token_next.wrapping_add(1);
        let token = (self.id << 32) | u64::from(self.token_next);
        loop {
            match self.shared.submitter.submit(token, command) {
                Ok(()) => break,
                Err(engine::runtime::Refused::Busy) => {
                    tokio::time::sleep(Duration::from_millis(1)).await
                }
                Err(engine::runtime::Refused::Stopped) => return None,
            }
        }
        loop {
            match self.rx.recv().await? {
                Outgoing::Ack {
                    token: t,
                    seq,
                    events,
                    ..
                } if t == token => return Some((seq, events)),
                Outgoing::Close(_) => return None,
                _ => {}
            }
        }
    }
}

fn accepted(events: &[ExchangeEvent]) -> bool {
    !events
        .iter()
        .any(|e| matches!(e, ExchangeEvent::Rejected { .. }))
}

/// Runs the custody driver until the engine stops.
pub async fn drive(shared: Arc<Shared>) {
    let mut caller = Caller::new(shared.clone());
    let interval = Duration::from_millis(shared.config.custody.reconcile_interval_ms);
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if tick(&shared, &mut caller).await.is_none() {
            return;
        }
    }
}

async fn tick(shared: &Shared, caller: &mut Caller) -> Option<()> {
    let exchange = &shared.exchange;
    // Deposits the chain saw.
    let deposits = shared.chain.lock().poll_deposits();
    for d in deposits {
        caller
            .call(ExchangeCommand::ChainDeposit {
                address: d.address,
                asset: d.asset,
                amount_units: d.amount_units,
                tx: d.tx,
            })
            .await?;
    }
    // Confirmations.
    let broadcast: Vec<(u64, TxId)> = {
        let inner = shared.inner.lock();
        inner
            .custody
            .withdrawals
            .iter()
            .filter_map(|(id, w)| w.broadcast.map(|tx| (*id, tx)))
            .collect()
    };
    for (withdrawal_id, tx) in broadcast {
        if shared.chain.lock().confirmed(&tx) {
            caller
                .call(ExchangeCommand::WithdrawalComplete { withdrawal_id })
                .await?;
        }
    }
    // Approved cold → hot moves: the chain moves, then the ledger; undone on the chain if the
    // ledger refuses.
    let approved: Vec<(u64, ColdMoveView)> = {
        let inner = shared.inner.lock();
        inner
            .custody
            .cold_moves
            .iter()
            .filter(|(_, m)| m.approved)
            .map(|(id, m)| (*id, *m))
            .collect()
    };
    for (request_id, m) in approved {
        let (cold, hot) = ((m.pool, Location::Cold), (m.pool, Location::Hot));
        let moved = shared
            .chain
            .lock()
            .transfer(m.asset, cold, hot, m.amount_units);
        if moved.is_ok() {
            let events = caller
                .call(ExchangeCommand::ColdToHotComplete { request_id })
                .await?;
            if !accepted(&events) {
                let _ = shared
                    .chain
                    .lock()
                    .transfer(m.asset, hot, cold, m.amount_units);
            }
        }
    }
    // Operators' sweeps and top-ups: the ledger first (it checks), then the chain.
    let orders = std::mem::take(&mut *shared.orders.lock());
    for order in orders {
        let (seq, events) = caller.call_seq(order.command).await?;
        if accepted(&events) {
            if let Some((asset, source, target, units)) = order.chain_move() {
                if let Err(e) = shared.chain.lock().transfer(asset, source, target, units) {
                    tracing::error!("custody move recorded at seq {seq} but not made: {e}");
                }
            }
        }
        let reply = crate::session::ack_json(exchange, order.req_id, seq, &events);
        let inner = shared.inner.lock();
        if let Some(entry) = inner.sessions.get(&order.session) {
            let _ = entry.tx.try_send(Outgoing::Text(reply.to_string().into()));
        }
    }
    // The head of each withdrawal queue (asset × pool).
    let heads: Vec<(u64, WithdrawalView, Pool)> = {
        let inner = shared.inner.lock();
        let mut seen = Vec::new();
        let mut heads = Vec::new();
        for (id, w) in &inner.custody.withdrawals {
            let Some(pool) = inner.custody.pool_of(w.account) else {
                continue;
            };
            if seen.contains(&(w.asset, pool)) {
                continue;
            }
            seen.push((w.asset, pool));
            let halted = inner
                .custody
                .halts
                .get(w.asset as usize)
                .is_some_and(|h| h.withdrawals);
            if w.broadcast.is_none() && !halted {
                heads.push((*id, *w, pool));
            }
        }
        heads
    };
    for (withdrawal_id, w, pool) in heads {
        let chain_tx =
            *blake3::hash(format!("sim withdrawal {withdrawal_id}").as_bytes()).as_bytes();
        let events = caller
            .call(ExchangeCommand::WithdrawalBroadcast {
                withdrawal_id,
                chain_tx,
            })
            .await?;
        if accepted(&events) {
            let location = exchange.assets[w.asset as usize].operating_location();
            if let Err(e) = shared.chain.lock().send(
                pool,
                w.asset,
                location,
                w.amount_units,
                w.address,
                chain_tx,
            ) {
                tracing::error!(
                    "withdrawal {withdrawal_id} recorded as broadcast but not sent: {e}"
                );
            }
        }
    }
    // Reconciliation of every wallet.
    for (i, spec) in exchange.assets.iter().enumerate() {
        let asset = i as AssetId;
        for pool in [Pool::Customer, Pool::House] {
            for location in [Location::Hot, Location::Cold, Location::Bank] {
                if !spec.holds_at(location) {
                    continue;
                }
                let observed_units = shared.chain.lock().balance(pool, asset, location);
                let events = caller
                    .call(ExchangeCommand::WalletObserved {
                        pool,
                        asset,
                        location,
                        observed_units,
                    })
                    .await?;
                for e in &events {
                    if let ExchangeEvent::Custody(CustodyEvent::IncidentOpened(x)) = e {
                        tracing::error!(
                            "INCIDENT {}: {} {} wallet of the {} pool is short by {}; withdrawals halted",
                            x.id,
                            spec.code,
                            location_name(x.location),
                            pool_name(x.pool),
                            show(exchange, asset, x.missing_units)
                        );
                    }
                }
            }
        }
    }
    Some(())
}
