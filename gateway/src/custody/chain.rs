//! The chain boundary. Kinko has no network access to real chains or banks, so everything it
//! learns from them comes through a [`ChainAdapter`], and everything the adapter reports enters
//! the engine as a journaled command (deposits, wallet observations, broadcasts, confirmations).
//!
//! [`SimulatedChain`] is the one implementation shipped: in-process, deterministic, and clearly a
//! simulation. It keeps a balance per wallet (pool × asset × hot/cold/bank), accepts deposits and
//! thefts from its `/sim/...` HTTP endpoints, confirms a broadcast on the next poll, and is what
//! `kinko serve`'s default configuration and the tests run on.

use std::collections::BTreeMap;

use engine::custody::Address;
use engine::TxId;
use ledger::{AmountUnits, AssetId, Location, Pool};

/// A deposit the chain saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObservedDeposit {
    pub address: Address,
    pub asset: AssetId,
    pub amount_units: AmountUnits,
    pub tx: TxId,
}

pub trait ChainAdapter: Send {
    /// Deposits seen since the last call, in the order they arrived.
    fn poll_deposits(&mut self) -> Vec<ObservedDeposit>;
    /// A wallet's balance as the chain (or bank) sees it.
    fn balance(&self, pool: Pool, asset: AssetId, location: Location) -> AmountUnits;
    /// Sends `amount_units` from `pool`'s operating wallet to `address` as transaction `tx`.
    fn send(
        &mut self,
        pool: Pool,
        asset: AssetId,
        location: Location,
        amount_units: AmountUnits,
        address: Address,
        tx: TxId,
    ) -> Result<(), String>;
    /// Whether transaction `tx` is confirmed.
    fn confirmed(&mut self, tx: &TxId) -> bool;
    /// Moves coins between two wallets of the exchange: within a pool (a sweep to cold, an
    /// approved cold → hot) or from the house's to the customers' (a top-up).
    fn transfer(
        &mut self,
        asset: AssetId,
        source: (Pool, Location),
        target: (Pool, Location),
        amount_units: AmountUnits,
    ) -> Result<(), String>;
    /// The deposit address the chain makes for `account` in `asset`.
    fn deposit_address(&self, code: &str, account: u32) -> Address;
}

/// The simulated chain (not a real one: see the module documentation).
#[derive(Debug, Default)]
pub struct SimulatedChain {
    wallets: BTreeMap<(Pool, AssetId, Location), AmountUnits>,
    deposits: Vec<ObservedDeposit>,
    /// Broadcast transactions, confirmed at the next poll after they were sent.
    sent: BTreeMap<TxId, bool>,
    tx_next: u64,
}

impl SimulatedChain {
    pub fn new() -> SimulatedChain {
        SimulatedChain::default()
    }

    /// Puts coins in a wallet without a deposit (the chain's genesis: what the ledger already holds
    /// at start).
    pub fn credit(&mut self, pool: Pool, asset: AssetId, location: Location, units: AmountUnits) {
        *self.wallets.entry((pool, asset, location)).or_insert(0) += units;
    }

    /// A customer sends coins to `address`; they land in `pool`'s operating wallet (or nowhere the
    /// exchange knows of, when `pool` is `None`: an unknown address).
    pub fn receive(
        &mut self,
        pool: Option<Pool>,
        asset: AssetId,
        location: Location,
        address: Address,
        amount_units: AmountUnits,
    ) -> TxId {
        self.tx_next += 1;
        let tx = *blake3::hash(format!("sim deposit {}", self.tx_next).as_bytes()).as_bytes();
        if let Some(pool) = pool {
            self.credit(pool, asset, location, amount_units);
        }
        self.deposits.push(ObservedDeposit {
            address,
            asset,
            amount_units,
            tx,
        });
        tx
    }

    /// The thief: takes coins out of a wallet behind the exchange's back. Returns what was taken
    /// (at most what the wallet holds).
    pub fn drain(
        &mut self,
        pool: Pool,
        asset: AssetId,
        location: Location,
        amount_units: AmountUnits,
    ) -> AmountUnits {
        let wallet = self.wallets.entry((pool, asset, location)).or_insert(0);
        let taken = amount_units.min(*wallet).max(0);
        *wallet -= taken;
        taken
    }
}

impl ChainAdapter for SimulatedChain {
    fn poll_deposits(&mut self) -> Vec<ObservedDeposit> {
        for confirmed in self.sent.values_mut() {
            *confirmed = true;
        }
        std::mem::take(&mut self.deposits)
    }

    fn balance(&self, pool: Pool, asset: AssetId, location: Location) -> AmountUnits {
        self.wallets
            .get(&(pool, asset, location))
            .copied()
            .unwrap_or(0)
    }

    fn send(
        &mut self,
        pool: Pool,
        asset: AssetId,
        location: Location,
        amount_units: AmountUnits,
        _address: Address,
        tx: TxId,
    ) -> Result<(), String> {
        let wallet = self.wallets.entry((pool, asset, location)).or_insert(0);
        if *wallet < amount_units {
            return Err(format!("wallet holds {wallet}, cannot send {amount_units}"));
        }
        *wallet -= amount_units;
        self.sent.insert(tx, false);
        Ok(())
    }

    fn confirmed(&mut self, tx: &TxId) -> bool {
        // A transaction the simulation does not know was sent before a restart: confirmed.
        self.sent.get(tx).copied().unwrap_or(true)
    }

    fn transfer(
        &mut self,
        asset: AssetId,
        source: (Pool, Location),
        target: (Pool, Location),
        amount_units: AmountUnits,
    ) -> Result<(), String> {
        let from = self.balance(source.0, asset, source.1);
        if from < amount_units {
            return Err(format!("wallet holds {from}, cannot move {amount_units}"));
        }
        self.credit(source.0, asset, source.1, -amount_units);
        self.credit(target.0, asset, target.1, amount_units);
        Ok(())
    }

    fn deposit_address(&self, code: &str, account: u32) -> Address {
        let digest = blake3::hash(format!("sim address {code} {account}").as_bytes());
        let hex: String = digest.as_bytes()[..10]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Address::parse(&format!("sim-{}-{hex}", code.to_ascii_lowercase()))
            .expect("printable and short")
    }
}
