//! Custody: the part of the state machine that would have saved Coincheck and Zaif
//! (DESIGN.md, "Custody").
//!
//! * Deposits arrive at addresses assigned to accounts and are credited once per transaction id;
//!   an unknown address or a repeated transaction id is an alert, never a credit.
//! * Withdrawals go only to an address on the account's whitelist for that asset, and only after
//!   the address has waited out its cooldown (a thief who changes a victim's address must wait
//!   too); each account has a daily limit per asset; funds are held at request.
//! * Withdrawals are paid per asset and pool in request order: the chain adapter may broadcast
//!   only the oldest one not yet broadcast, from that pool's hot wallet; a broadcast withdrawal is
//!   completed on confirmation and can no longer be cancelled.
//! * Cold → hot moves need M of the asset's N approver keys (ed25519 signatures over
//!   [`cold_move_message`]); the signatures are in the journal, so replay verifies them again.
//! * The adapter reports observed wallet balances. A shortfall that no broadcast withdrawal explains
//!   writes the wallet down to what is there, records the missing amount as `Location::Lost` (the
//!   pool's claim against the thief), halts the asset's withdrawals at once and opens an incident
//!   stating the pool, the wallet and the amount.
//! * Operators halt and resume deposits, withdrawals and trading per asset; the house tops up a
//!   customer loss by an explicit transfer, taking over the claim.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use ledger::{
    AccountId, AmountUnits, AssetClass, AssetId, AssetSpec, LedgerAccount, Location, Pool,
    PostingKind, PostingSet,
};
use serde::{Deserialize, Serialize};

use crate::command::{Command, Sequenced};
use crate::error::RejectReason;
use crate::exchange::{
    reject, Alert, Exchange, ExchangeCommand, ExchangeEvent, TxId, Withdrawal, WithdrawalId,
};
use crate::types::InstrumentId;

/// Who an operator action is attributed to: the operator key's number in the configuration.
/// [`OPERATOR_SYSTEM`] marks what the engine did by itself (a halt on a reconciliation shortfall).
pub type OperatorId = u32;
pub const OPERATOR_SYSTEM: OperatorId = u32::MAX;

/// One UTC day in nanoseconds: daily withdrawal limits reset at 00:00 UTC of the command's time.
const DAY_NS: u64 = 86_400_000_000_000;

/// A chain address or bank account reference: printable ASCII, 1 to 64 bytes. Fixed size so that
/// commands stay `Copy` and the engine allocates nothing to carry one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Address {
    len: u8,
    bytes: [[u8; 32]; 2],
}

impl Address {
    pub const LEN_MAX: usize = 64;

    pub fn parse(text: &str) -> Result<Address, RejectReason> {
        let ok = !text.is_empty()
            && text.len() <= Address::LEN_MAX
            && text.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(RejectReason::InvalidAddress);
        }
        let mut bytes = [[0u8; 32]; 2];
        for (i, b) in text.bytes().enumerate() {
            bytes[i / 32][i % 32] = b;
        }
        Ok(Address {
            len: text.len() as u8,
            bytes,
        })
    }

    /// Whether the address obeys [`Address::parse`]'s rules (a decoded record may not).
    pub fn is_valid(&self) -> bool {
        let flat = self.flat();
        let len = self.len as usize;
        len > 0
            && len <= Address::LEN_MAX
            && flat[..len].iter().all(|b| b.is_ascii_graphic())
            && flat[len..].iter().all(|&b| b == 0)
    }

    fn flat(&self) -> [u8; 64] {
        let mut flat = [0u8; 64];
        flat[..32].copy_from_slice(&self.bytes[0]);
        flat[32..].copy_from_slice(&self.bytes[1]);
        flat
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flat = self.flat();
        let len = (self.len as usize).min(Address::LEN_MAX);
        f.write_str(&String::from_utf8_lossy(&flat[..len]))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

/// An ed25519 signature (64 bytes, in two halves so that serde can carry it).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sig(pub [[u8; 32]; 2]);

impl Sig {
    pub fn from_bytes(bytes: &[u8; 64]) -> Sig {
        let mut halves = [[0u8; 32]; 2];
        halves[0].copy_from_slice(&bytes[..32]);
        halves[1].copy_from_slice(&bytes[32..]);
        Sig(halves)
    }

    pub fn to_bytes(self) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&self.0[0]);
        bytes[32..].copy_from_slice(&self.0[1]);
        bytes
    }
}

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig(")?;
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// The exact bytes an approver signs to approve cold → hot request `request_id`:
/// `"kinko cold-to-hot v1\n"` (21 bytes), request id (u64 big-endian), pool (0 customer,
/// 1 house), asset id (u16 big-endian), amount in units (i64 big-endian): 40 bytes.
pub fn cold_move_message(
    request_id: u64,
    pool: Pool,
    asset: AssetId,
    amount_units: AmountUnits,
) -> [u8; 40] {
    let mut m = [0u8; 40];
    m[..21].copy_from_slice(b"kinko cold-to-hot v1\n");
    m[21..29].copy_from_slice(&request_id.to_be_bytes());
    m[29] = pool.index() as u8;
    m[30..32].copy_from_slice(&asset.to_be_bytes());
    m[32..40].copy_from_slice(&amount_units.to_be_bytes());
    m
}

// ---------------------------------------------------------------------- configuration

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyConfig {
    /// A newly added withdrawal address can be used this long after it was added.
    pub address_cooldown_ns: u64,
    /// Whitelisted withdrawal addresses per account and asset.
    pub addresses_per_account_max: u32,
    /// One entry per asset, in the assets' order.
    pub assets: Vec<AssetCustody>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetCustody {
    /// Per account per UTC day, in units (requested, less what was cancelled the same day).
    pub daily_withdrawal_limit_units: AmountUnits,
    /// M: approvals a cold → hot move needs.
    pub approvals_required: u8,
    /// N: the ed25519 public keys allowed to approve.
    pub approvers: Vec<[u8; 32]>,
}

impl CustodyConfig {
    pub const COOLDOWN_DEFAULT_NS: u64 = DAY_NS;

    pub fn validate(&self, assets: &[AssetSpec]) -> Result<(), String> {
        if self.assets.len() != assets.len() {
            return Err(format!(
                "custody lists {} assets, the configuration has {}",
                self.assets.len(),
                assets.len()
            ));
        }
        for (spec, custody) in assets.iter().zip(&self.assets) {
            let n = custody.approvers.len();
            let m = usize::from(custody.approvals_required);
            if n > 32 {
                return Err(format!("{}: at most 32 approvers", spec.code));
            }
            if spec.class == AssetClass::Coin && (m == 0 || m > n) {
                return Err(format!(
                    "{}: approvals required {m} must be between 1 and the {n} approvers",
                    spec.code
                ));
            }
            for (i, key) in custody.approvers.iter().enumerate() {
                if VerifyingKey::from_bytes(key).is_err() {
                    return Err(format!("{}: approver {i} is not an ed25519 key", spec.code));
                }
                if custody.approvers[..i].contains(key) {
                    return Err(format!("{}: approver {i} is listed twice", spec.code));
                }
            }
            if custody.daily_withdrawal_limit_units <= 0 {
                return Err(format!("{}: the daily limit must be positive", spec.code));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------- state

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetHalts {
    pub deposits: bool,
    pub withdrawals: bool,
    pub trading: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhitelistEntry {
    pub address: Address,
    pub usable_from_ns: u64,
}

/// A cold → hot move waiting for approvals, or approved and waiting for the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdMove {
    pub pool: Pool,
    pub asset: AssetId,
    pub amount_units: AmountUnits,
    pub requested_by: OperatorId,
    /// Bit i: approver i of the asset has signed.
    pub approvals: u32,
}

/// What reconciliation found: a wallet holding less than the ledger says, with nothing journaled
/// to explain it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u32,
    pub seq: u64,
    pub ts_ns: u64,
    pub pool: Pool,
    pub asset: AssetId,
    pub location: Location,
    /// Written down from the wallet to `Location::Lost`.
    pub missing_units: AmountUnits,
    /// What the pool owes (its holders, and the other pool) beyond what it really holds, after
    /// the write-down.
    pub uncovered_units: AmountUnits,
}

/// The custody part of the exchange's state, canonical (ordered maps) for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyState {
    pub whitelist: BTreeMap<(AccountId, AssetId), Vec<WhitelistEntry>>,
    /// (UTC day, units requested that day) per account and asset.
    pub withdrawn_today: BTreeMap<(AccountId, AssetId), (u64, AmountUnits)>,
    /// Per asset.
    pub halts: Vec<AssetHalts>,
    pub cold_moves: BTreeMap<u64, ColdMove>,
    pub cold_move_next: u64,
    pub deposit_addresses: BTreeMap<Address, (AccountId, AssetId)>,
    pub incidents: Vec<Incident>,
}

impl CustodyState {
    pub fn new(assets: usize) -> CustodyState {
        CustodyState {
            halts: vec![AssetHalts::default(); assets],
            cold_move_next: 1,
            ..CustodyState::default()
        }
    }
}

/// The custody commands' events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustodyEvent {
    AddressAdded {
        account: AccountId,
        asset: AssetId,
        address: Address,
        usable_from_ns: u64,
    },
    AddressRemoved {
        account: AccountId,
        asset: AssetId,
        address: Address,
    },
    DepositAddressAssigned {
        account: AccountId,
        asset: AssetId,
        address: Address,
    },
    WithdrawalBroadcast {
        withdrawal_id: WithdrawalId,
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
        chain_tx: TxId,
    },
    ColdMoveRequested {
        request_id: u64,
        pool: Pool,
        asset: AssetId,
        amount_units: AmountUnits,
        operator: OperatorId,
    },
    ColdMoveApproval {
        request_id: u64,
        approver: u8,
        approvals: u8,
        required: u8,
    },
    /// M approvals reached: the adapter may now move the coins on chain.
    ColdMoveApproved {
        request_id: u64,
    },
    ColdMoveCancelled {
        request_id: u64,
    },
    /// Followed by the `CustodyMoved` it caused.
    ColdMoveCompleted {
        request_id: u64,
    },
    Reconciled {
        pool: Pool,
        asset: AssetId,
        location: Location,
        ledger_units: AmountUnits,
        in_flight_units: AmountUnits,
        observed_units: AmountUnits,
    },
    IncidentOpened(Incident),
    HaltsSet {
        asset: AssetId,
        halts: AssetHalts,
        operator: OperatorId,
    },
    /// The house replaced `amount_units` of the customer pool's recorded loss with real custody at
    /// `location`, taking over the claim.
    ToppedUp {
        asset: AssetId,
        location: Location,
        amount_units: AmountUnits,
        customer_lost_units: AmountUnits,
        operator: OperatorId,
    },
}

// ---------------------------------------------------------------------- commands

impl Exchange {
    pub fn custody_state(&self) -> &CustodyState {
        &self.custody
    }

    /// Applies the custody commands (those not handled in `exchange.rs`).
    pub(crate) fn apply_custody(
        &mut self,
        record: &Sequenced<ExchangeCommand>,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let ts = record.ts_ns;
        match record.command {
            ExchangeCommand::AddWithdrawalAddress {
                account,
                asset,
                address,
            } => self.add_address(ts, account, asset, address, out),
            ExchangeCommand::RemoveWithdrawalAddress {
                account,
                asset,
                address,
            } => self.remove_address(account, asset, address, out),
            ExchangeCommand::AssignDepositAddress {
                account,
                asset,
                address,
            } => self.assign_deposit_address(account, asset, address, out),
            ExchangeCommand::ChainDeposit {
                address,
                asset,
                amount_units,
                tx,
            } => self.chain_deposit(address, asset, amount_units, tx, out),
            ExchangeCommand::WithdrawalRequest {
                account,
                asset,
                amount_units,
                address,
            } => self.withdrawal_request(ts, account, asset, amount_units, address, out),
            ExchangeCommand::WithdrawalBroadcast {
                withdrawal_id,
                chain_tx,
            } => self.withdrawal_broadcast(withdrawal_id, chain_tx, out),
            ExchangeCommand::WithdrawalComplete { withdrawal_id } => {
                self.withdrawal_complete(withdrawal_id, out)
            }
            ExchangeCommand::WithdrawalCancel { withdrawal_id } => {
                self.withdrawal_cancel(withdrawal_id, out)
            }
            ExchangeCommand::CustodyTransfer {
                pool,
                asset,
                source,
                target,
                amount_units,
            } => self.custody_transfer(pool, asset, source, target, amount_units, out),
            ExchangeCommand::ColdToHotRequest {
                pool,
                asset,
                amount_units,
                operator,
            } => self.cold_move_request(pool, asset, amount_units, operator, out),
            ExchangeCommand::ColdToHotApprove {
                request_id,
                approver,
                signature,
            } => self.cold_move_approve(request_id, approver, signature, out),
            ExchangeCommand::ColdToHotComplete { request_id } => {
                self.cold_move_complete(request_id, out)
            }
            ExchangeCommand::ColdToHotCancel { request_id } => {
                if self.custody.cold_moves.remove(&request_id).is_none() {
                    return reject(out, None, RejectReason::UnknownColdMove);
                }
                out.push(ExchangeEvent::Custody(CustodyEvent::ColdMoveCancelled {
                    request_id,
                }));
            }
            ExchangeCommand::WalletObserved {
                pool,
                asset,
                location,
                observed_units,
            } => self.wallet_observed(record, pool, asset, location, observed_units, out),
            ExchangeCommand::SetAssetHalts {
                asset,
                halts,
                operator,
            } => self.set_asset_halts(record, asset, halts, operator, out),
            ExchangeCommand::TopUp {
                asset,
                location,
                amount_units,
                operator,
            } => self.top_up(asset, location, amount_units, operator, out),
            _ => unreachable!("exchange.rs applies the other commands"),
        }
    }

    fn add_address(
        &mut self,
        ts_ns: u64,
        account: AccountId,
        asset: AssetId,
        address: Address,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if let Err(reason) = self.account_asset_address(account, asset, address) {
            return reject(out, Some(account), reason);
        }
        let max = self.config.custody.addresses_per_account_max as usize;
        let entries = self.custody.whitelist.entry((account, asset)).or_default();
        if entries.iter().any(|e| e.address == address) {
            return reject(out, Some(account), RejectReason::AddressAlreadyWhitelisted);
        }
        if entries.len() >= max {
            return reject(out, Some(account), RejectReason::WhitelistFull);
        }
        let usable_from_ns = ts_ns.saturating_add(self.config.custody.address_cooldown_ns);
        entries.push(WhitelistEntry {
            address,
            usable_from_ns,
        });
        out.push(ExchangeEvent::Custody(CustodyEvent::AddressAdded {
            account,
            asset,
            address,
            usable_from_ns,
        }));
    }

    fn remove_address(
        &mut self,
        account: AccountId,
        asset: AssetId,
        address: Address,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let entries = self.custody.whitelist.get_mut(&(account, asset));
        let Some(entries) = entries.filter(|e| e.iter().any(|e| e.address == address)) else {
            return reject(out, Some(account), RejectReason::AddressNotWhitelisted);
        };
        entries.retain(|e| e.address != address);
        if entries.is_empty() {
            self.custody.whitelist.remove(&(account, asset));
        }
        out.push(ExchangeEvent::Custody(CustodyEvent::AddressRemoved {
            account,
            asset,
            address,
        }));
    }

    fn assign_deposit_address(
        &mut self,
        account: AccountId,
        asset: AssetId,
        address: Address,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if let Err(reason) = self.account_asset_address(account, asset, address) {
            return reject(out, Some(account), reason);
        }
        if self.custody.deposit_addresses.contains_key(&address) {
            return reject(out, Some(account), RejectReason::AddressInUse);
        }
        self.custody
            .deposit_addresses
            .insert(address, (account, asset));
        out.push(ExchangeEvent::Custody(
            CustodyEvent::DepositAddressAssigned {
                account,
                asset,
                address,
            },
        ));
    }

    /// A deposit the chain adapter observed at `address`: credited to the address's account once
    /// per transaction id. Anything else is an alert, not a credit.
    fn chain_deposit(
        &mut self,
        address: Address,
        asset: AssetId,
        amount_units: AmountUnits,
        tx: TxId,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if self.deposits_seen.contains(&tx) {
            out.push(ExchangeEvent::Alert(Alert::DuplicateDepositTx {
                asset,
                amount_units,
                tx,
            }));
            return;
        }
        match self.custody.deposit_addresses.get(&address) {
            Some(&(account, owned)) if owned == asset => {
                self.deposit(account, asset, amount_units, tx, out)
            }
            _ => out.push(ExchangeEvent::Alert(Alert::UnknownDepositAddress {
                asset,
                amount_units,
                tx,
            })),
        }
    }

    pub(crate) fn deposits_halted(&self, asset: AssetId) -> bool {
        self.custody
            .halts
            .get(asset as usize)
            .is_some_and(|h| h.deposits)
    }

    fn withdrawal_request(
        &mut self,
        ts_ns: u64,
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
        address: Address,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if let Err(reason) = self.account_and_asset(account, asset) {
            return reject(out, Some(account), reason);
        }
        if amount_units <= 0 {
            return reject(out, Some(account), RejectReason::AmountNotPositive);
        }
        if self.custody.halts[asset as usize].withdrawals {
            return reject(out, Some(account), RejectReason::WithdrawalsHalted);
        }
        let entry = self
            .custody
            .whitelist
            .get(&(account, asset))
            .and_then(|entries| entries.iter().find(|e| e.address == address));
        let Some(entry) = entry else {
            return reject(out, Some(account), RejectReason::AddressNotWhitelisted);
        };
        if ts_ns < entry.usable_from_ns {
            return reject(out, Some(account), RejectReason::AddressCoolingDown);
        }
        let day = ts_ns / DAY_NS;
        let limit = self.config.custody.assets[asset as usize].daily_withdrawal_limit_units;
        let today = match self.custody.withdrawn_today.get(&(account, asset)) {
            Some(&(d, units)) if d == day => units,
            _ => 0,
        };
        if i128::from(today) + i128::from(amount_units) > i128::from(limit) {
            return reject(out, Some(account), RejectReason::DailyLimitExceeded);
        }
        if self.withdrawals.len() >= self.withdrawals_pending_max {
            return reject(out, Some(account), RejectReason::WithdrawalsFull);
        }
        let mut set = PostingSet::new(PostingKind::Reserve);
        set.decrease(LedgerAccount::available(account), asset, amount_units);
        set.increase(LedgerAccount::held(account), asset, amount_units);
        if self.ledger.apply(&set).is_err() {
            return reject(out, Some(account), RejectReason::InsufficientBalance);
        }
        self.custody
            .withdrawn_today
            .insert((account, asset), (day, today + amount_units));
        let withdrawal_id = self.withdrawal_id_next;
        self.withdrawal_id_next += 1;
        self.withdrawals.insert(
            withdrawal_id,
            Withdrawal {
                account,
                asset,
                amount_units,
                address,
                day,
                broadcast: None,
            },
        );
        out.push(ExchangeEvent::WithdrawalRequested {
            withdrawal_id,
            account,
            asset,
            amount_units,
            address,
        });
    }

    /// What `pool` has broadcast in `asset` and not yet seen confirmed: gone from the wallet,
    /// still in the ledger's custody until completion.
    fn in_flight(&self, pool: Pool, asset: AssetId) -> AmountUnits {
        self.withdrawals
            .values()
            .filter(|w| w.asset == asset && w.broadcast.is_some())
            .filter(|w| self.ledger.pool_of(w.account) == Some(pool))
            .map(|w| w.amount_units)
            .sum()
    }

    fn withdrawal_broadcast(
        &mut self,
        withdrawal_id: WithdrawalId,
        chain_tx: TxId,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let Some(&w) = self.withdrawals.get(&withdrawal_id) else {
            return reject(out, None, RejectReason::UnknownWithdrawal);
        };
        if w.broadcast.is_some() {
            return reject(
                out,
                Some(w.account),
                RejectReason::WithdrawalAlreadyBroadcast,
            );
        }
        if self.custody.halts[w.asset as usize].withdrawals {
            return reject(out, Some(w.account), RejectReason::WithdrawalsHalted);
        }
        let pool = self
            .ledger
            .pool_of(w.account)
            .expect("withdrawals belong to accounts");
        let ahead = self.withdrawals.range(..withdrawal_id).any(|(_, other)| {
            other.asset == w.asset
                && other.broadcast.is_none()
                && self.ledger.pool_of(other.account) == Some(pool)
        });
        if ahead {
            return reject(out, Some(w.account), RejectReason::WithdrawalNotNext);
        }
        // Paid from the account's own pool's operating wallet, never the other pool's; the house
        // may not spend what it holds earmarked for customers.
        let location = self
            .ledger
            .asset(w.asset)
            .expect("known")
            .operating_location();
        let custody = self
            .ledger
            .get(LedgerAccount::Custody { pool, location }, w.asset);
        let earmarked = match pool {
            Pool::House => self.ledger.row(pool, w.asset).due_to,
            Pool::Customer => 0,
        };
        let spendable =
            i128::from(custody) - i128::from(earmarked) - i128::from(self.in_flight(pool, w.asset));
        if spendable < i128::from(w.amount_units) {
            return reject(out, Some(w.account), RejectReason::InsufficientCustody);
        }
        self.withdrawals
            .get_mut(&withdrawal_id)
            .expect("found above")
            .broadcast = Some(chain_tx);
        out.push(ExchangeEvent::Custody(CustodyEvent::WithdrawalBroadcast {
            withdrawal_id,
            account: w.account,
            asset: w.asset,
            amount_units: w.amount_units,
            chain_tx,
        }));
    }

    fn withdrawal_complete(&mut self, withdrawal_id: WithdrawalId, out: &mut Vec<ExchangeEvent>) {
        let Some(&w) = self.withdrawals.get(&withdrawal_id) else {
            return reject(out, None, RejectReason::UnknownWithdrawal);
        };
        if w.broadcast.is_none() {
            return reject(out, Some(w.account), RejectReason::WithdrawalNotBroadcast);
        }
        let pool = self
            .ledger
            .pool_of(w.account)
            .expect("withdrawals belong to accounts");
        let location = self
            .ledger
            .asset(w.asset)
            .expect("known")
            .operating_location();
        let mut set = PostingSet::new(PostingKind::WithdrawalComplete);
        set.decrease(LedgerAccount::held(w.account), w.asset, w.amount_units);
        set.decrease(
            LedgerAccount::Custody { pool, location },
            w.asset,
            w.amount_units,
        );
        if self.ledger.apply(&set).is_err() {
            return reject(out, Some(w.account), RejectReason::InsufficientCustody);
        }
        self.withdrawals.remove(&withdrawal_id);
        out.push(ExchangeEvent::WithdrawalCompleted {
            withdrawal_id,
            account: w.account,
            asset: w.asset,
            amount_units: w.amount_units,
        });
    }

    fn withdrawal_cancel(&mut self, withdrawal_id: WithdrawalId, out: &mut Vec<ExchangeEvent>) {
        let Some(&w) = self.withdrawals.get(&withdrawal_id) else {
            return reject(out, None, RejectReason::UnknownWithdrawal);
        };
        if w.broadcast.is_some() {
            return reject(
                out,
                Some(w.account),
                RejectReason::WithdrawalAlreadyBroadcast,
            );
        }
        self.withdrawals.remove(&withdrawal_id);
        let mut set = PostingSet::new(PostingKind::Release);
        set.decrease(LedgerAccount::held(w.account), w.asset, w.amount_units);
        set.increase(LedgerAccount::available(w.account), w.asset, w.amount_units);
        if let Err(violation) = self.ledger.apply(&set) {
            panic!("withdrawal {withdrawal_id} release failed: {violation:?}");
        }
        if let Some(today) = self.custody.withdrawn_today.get_mut(&(w.account, w.asset)) {
            if today.0 == w.day {
                today.1 -= w.amount_units;
            }
        }
        out.push(ExchangeEvent::WithdrawalCancelled {
            withdrawal_id,
            account: w.account,
            asset: w.asset,
            amount_units: w.amount_units,
        });
    }

    /// Whether putting `amount_units` more of `pool`'s coins into the hot wallet keeps customer
    /// coins there within the cap.
    fn hot_cap_allows(&self, pool: Pool, asset: AssetId, amount_units: AmountUnits) -> bool {
        if pool != Pool::Customer {
            return true;
        }
        let spec = self.ledger.asset(asset).expect("known asset");
        let customer = self.ledger.totals(Pool::Customer, asset);
        let hot_after = customer.hot + i128::from(amount_units);
        hot_after * 10_000 <= customer.owed * i128::from(spec.hot_cap_bps)
    }

    /// Moves custody within one pool. Cold → hot needs approvals (a cold-to-hot request); `Lost`
    /// is neither a source nor a target.
    fn custody_transfer(
        &mut self,
        pool: Pool,
        asset: AssetId,
        source: Location,
        target: Location,
        amount_units: AmountUnits,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let Some(spec) = self.ledger.asset(asset) else {
            return reject(out, None, RejectReason::UnknownAsset);
        };
        if source == target || !spec.holds_at(source) || !spec.holds_at(target) {
            return reject(out, None, RejectReason::InvalidLocation);
        }
        if source == Location::Cold && target == Location::Hot {
            return reject(out, None, RejectReason::ApprovalsRequired);
        }
        self.move_custody(pool, asset, source, target, amount_units, out);
    }

    fn move_custody(
        &mut self,
        pool: Pool,
        asset: AssetId,
        source: Location,
        target: Location,
        amount_units: AmountUnits,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if amount_units <= 0 {
            return reject(out, None, RejectReason::AmountNotPositive);
        }
        if target == Location::Hot && !self.hot_cap_allows(pool, asset, amount_units) {
            return reject(out, None, RejectReason::HotWalletCapExceeded);
        }
        let mut set = PostingSet::new(PostingKind::CustodyMove);
        set.decrease(
            LedgerAccount::Custody {
                pool,
                location: source,
            },
            asset,
            amount_units,
        );
        set.increase(
            LedgerAccount::Custody {
                pool,
                location: target,
            },
            asset,
            amount_units,
        );
        if self.ledger.apply(&set).is_err() {
            return reject(out, None, RejectReason::InsufficientCustody);
        }
        out.push(ExchangeEvent::CustodyMoved {
            pool,
            asset,
            source,
            target,
            amount_units,
        });
    }

    fn cold_move_request(
        &mut self,
        pool: Pool,
        asset: AssetId,
        amount_units: AmountUnits,
        operator: OperatorId,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let Some(spec) = self.ledger.asset(asset) else {
            return reject(out, None, RejectReason::UnknownAsset);
        };
        if spec.class != AssetClass::Coin {
            return reject(out, None, RejectReason::InvalidLocation);
        }
        if amount_units <= 0 {
            return reject(out, None, RejectReason::AmountNotPositive);
        }
        let cold = self.ledger.get(
            LedgerAccount::Custody {
                pool,
                location: Location::Cold,
            },
            asset,
        );
        if cold < amount_units {
            return reject(out, None, RejectReason::InsufficientCustody);
        }
        if !self.hot_cap_allows(pool, asset, amount_units) {
            return reject(out, None, RejectReason::HotWalletCapExceeded);
        }
        let request_id = self.custody.cold_move_next;
        self.custody.cold_move_next += 1;
        self.custody.cold_moves.insert(
            request_id,
            ColdMove {
                pool,
                asset,
                amount_units,
                requested_by: operator,
                approvals: 0,
            },
        );
        out.push(ExchangeEvent::Custody(CustodyEvent::ColdMoveRequested {
            request_id,
            pool,
            asset,
            amount_units,
            operator,
        }));
    }

    fn cold_move_approve(
        &mut self,
        request_id: u64,
        approver: [u8; 32],
        signature: Sig,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let Some(&request) = self.custody.cold_moves.get(&request_id) else {
            return reject(out, None, RejectReason::UnknownColdMove);
        };
        let custody = &self.config.custody.assets[request.asset as usize];
        let required = custody.approvals_required;
        let Some(index) = custody.approvers.iter().position(|k| *k == approver) else {
            return reject(out, None, RejectReason::ApproverNotInSet);
        };
        if request.approvals & (1 << index) != 0 {
            return reject(out, None, RejectReason::DuplicateApproval);
        }
        if request.approvals.count_ones() >= u32::from(required) {
            return reject(out, None, RejectReason::AlreadyApproved);
        }
        let message = cold_move_message(
            request_id,
            request.pool,
            request.asset,
            request.amount_units,
        );
        let verified = VerifyingKey::from_bytes(&approver).is_ok_and(|key| {
            key.verify_strict(&message, &Signature::from_bytes(&signature.to_bytes()))
                .is_ok()
        });
        if !verified {
            return reject(out, None, RejectReason::BadSignature);
        }
        let approvals = request.approvals | (1 << index);
        self.custody
            .cold_moves
            .get_mut(&request_id)
            .expect("found above")
            .approvals = approvals;
        let count = approvals.count_ones() as u8;
        out.push(ExchangeEvent::Custody(CustodyEvent::ColdMoveApproval {
            request_id,
            approver: index as u8,
            approvals: count,
            required,
        }));
        if count == required {
            out.push(ExchangeEvent::Custody(CustodyEvent::ColdMoveApproved {
                request_id,
            }));
        }
    }

    /// The chain adapter moved an approved request's coins: the ledger follows.
    fn cold_move_complete(&mut self, request_id: u64, out: &mut Vec<ExchangeEvent>) {
        let Some(&request) = self.custody.cold_moves.get(&request_id) else {
            return reject(out, None, RejectReason::UnknownColdMove);
        };
        let required = self.config.custody.assets[request.asset as usize].approvals_required;
        if request.approvals.count_ones() < u32::from(required) {
            return reject(out, None, RejectReason::NotApproved);
        }
        let mut moved = Vec::with_capacity(1);
        self.move_custody(
            request.pool,
            request.asset,
            Location::Cold,
            Location::Hot,
            request.amount_units,
            &mut moved,
        );
        if matches!(moved[0], ExchangeEvent::CustodyMoved { .. }) {
            self.custody.cold_moves.remove(&request_id);
            out.push(ExchangeEvent::Custody(CustodyEvent::ColdMoveCompleted {
                request_id,
            }));
        }
        out.extend(moved);
    }

    /// Reconciliation: the adapter saw `observed_units` in `pool`'s wallet at `location`.
    fn wallet_observed(
        &mut self,
        record: &Sequenced<ExchangeCommand>,
        pool: Pool,
        asset: AssetId,
        location: Location,
        observed_units: AmountUnits,
        out: &mut Vec<ExchangeEvent>,
    ) {
        let spec = match self.asset_held_at(asset, location) {
            Ok(spec) => spec,
            Err(reason) => return reject(out, None, reason),
        };
        if observed_units < 0 {
            return reject(out, None, RejectReason::AmountNotPositive);
        }
        let ledger_units = self
            .ledger
            .get(LedgerAccount::Custody { pool, location }, asset);
        let in_flight_units = if location == spec.operating_location() {
            self.in_flight(pool, asset)
        } else {
            0
        };
        out.push(ExchangeEvent::Custody(CustodyEvent::Reconciled {
            pool,
            asset,
            location,
            ledger_units,
            in_flight_units,
            observed_units,
        }));
        let expected = ledger_units - in_flight_units;
        if observed_units > expected {
            out.push(ExchangeEvent::Alert(Alert::WalletSurplus {
                pool,
                asset,
                location,
                extra_units: observed_units - expected,
            }));
            return;
        }
        let missing_units = expected - observed_units;
        if missing_units == 0 {
            return;
        }
        let mut set = PostingSet::new(PostingKind::CustodyMove);
        set.decrease(
            LedgerAccount::Custody { pool, location },
            asset,
            missing_units,
        );
        set.increase(
            LedgerAccount::Custody {
                pool,
                location: Location::Lost,
            },
            asset,
            missing_units,
        );
        if let Err(violation) = self.ledger.apply(&set) {
            panic!("write-down at seq {} refused: {violation:?}", record.seq);
        }
        out.push(ExchangeEvent::Alert(Alert::WalletShortfall {
            pool,
            asset,
            location,
            missing_units,
        }));
        let uncovered = self.ledger.totals(pool, asset).uncovered();
        let incident = Incident {
            id: self.custody.incidents.len() as u32 + 1,
            seq: record.seq,
            ts_ns: record.ts_ns,
            pool,
            asset,
            location,
            missing_units,
            uncovered_units: AmountUnits::try_from(uncovered).unwrap_or(AmountUnits::MAX),
        };
        self.custody.incidents.push(incident);
        out.push(ExchangeEvent::Custody(CustodyEvent::IncidentOpened(
            incident,
        )));
        let halts = self.custody.halts[asset as usize];
        if !halts.withdrawals {
            let halts = AssetHalts {
                withdrawals: true,
                ..halts
            };
            self.set_asset_halts(record, asset, halts, OPERATOR_SYSTEM, out);
        }
    }

    fn set_asset_halts(
        &mut self,
        record: &Sequenced<ExchangeCommand>,
        asset: AssetId,
        halts: AssetHalts,
        operator: OperatorId,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if self.ledger.asset(asset).is_none() {
            return reject(out, None, RejectReason::UnknownAsset);
        }
        let before = self.custody.halts[asset as usize];
        self.custody.halts[asset as usize] = halts;
        out.push(ExchangeEvent::Custody(CustodyEvent::HaltsSet {
            asset,
            halts,
            operator,
        }));
        // Trading follows the halts of both assets of each instrument that uses this one.
        for i in 0..self.markets.len() {
            let market = self.markets[i];
            if market.base != asset && market.quote != asset {
                continue;
            }
            let instrument = i as InstrumentId;
            let halted_by_assets = [market.base, market.quote]
                .iter()
                .any(|&a| self.custody.halts[a as usize].trading);
            let halted = self.matcher.trading(instrument) == crate::matcher::Trading::Halted;
            let command = match (halted_by_assets, halted) {
                (true, false) => Command::Halt { instrument },
                // Resume only what this command un-halted, not an instrument an operator halted.
                (false, true) if before.trading && !halts.trading => Command::Resume { instrument },
                _ => continue,
            };
            self.run_matcher(record.seq, record.ts_ns, command, out);
        }
    }

    /// The house replaces part of the customer pool's recorded loss with its own custody at
    /// `location`, and takes over the claim on what was lost: each pool's books still balance on
    /// their own, and the customer pool is covered again by real assets.
    fn top_up(
        &mut self,
        asset: AssetId,
        location: Location,
        amount_units: AmountUnits,
        operator: OperatorId,
        out: &mut Vec<ExchangeEvent>,
    ) {
        if let Err(reason) = self.asset_held_at(asset, location) {
            return reject(out, None, reason);
        }
        if amount_units <= 0 {
            return reject(out, None, RejectReason::AmountNotPositive);
        }
        let lost = |pool| LedgerAccount::Custody {
            pool,
            location: Location::Lost,
        };
        let custody = |pool| LedgerAccount::Custody { pool, location };
        if self.ledger.get(lost(Pool::Customer), asset) < amount_units {
            return reject(out, None, RejectReason::TopUpExceedsLoss);
        }
        let house = self.ledger.get(custody(Pool::House), asset);
        let earmarked = self.ledger.row(Pool::House, asset).due_to;
        if i128::from(house) - i128::from(earmarked) < i128::from(amount_units) {
            return reject(out, None, RejectReason::InsufficientCustody);
        }
        let mut set = PostingSet::new(PostingKind::TopUp);
        set.decrease(custody(Pool::House), asset, amount_units);
        set.increase(custody(Pool::Customer), asset, amount_units);
        set.decrease(lost(Pool::Customer), asset, amount_units);
        set.increase(lost(Pool::House), asset, amount_units);
        if self.ledger.apply(&set).is_err() {
            return reject(out, None, RejectReason::InsufficientCustody);
        }
        out.push(ExchangeEvent::Custody(CustodyEvent::ToppedUp {
            asset,
            location,
            amount_units,
            customer_lost_units: self.ledger.get(lost(Pool::Customer), asset),
            operator,
        }));
        if let Some(alert) = self.hot_cap_alert(asset) {
            out.push(ExchangeEvent::Alert(alert));
        }
    }

    /// The asset's spec, if it exists and can be held at `location`.
    fn asset_held_at(
        &self,
        asset: AssetId,
        location: Location,
    ) -> Result<&AssetSpec, RejectReason> {
        let spec = self.ledger.asset(asset).ok_or(RejectReason::UnknownAsset)?;
        if !spec.holds_at(location) {
            return Err(RejectReason::InvalidLocation);
        }
        Ok(spec)
    }

    /// The account and asset exist and the address is well formed.
    fn account_asset_address(
        &self,
        account: AccountId,
        asset: AssetId,
        address: Address,
    ) -> Result<(), RejectReason> {
        self.account_and_asset(account, asset)?;
        if !address.is_valid() {
            return Err(RejectReason::InvalidAddress);
        }
        Ok(())
    }

    fn account_and_asset(&self, account: AccountId, asset: AssetId) -> Result<(), RejectReason> {
        if self.ledger.pool_of(account).is_none() {
            return Err(RejectReason::UnknownAccount);
        }
        if self.ledger.asset(asset).is_none() {
            return Err(RejectReason::UnknownAsset);
        }
        Ok(())
    }
}
