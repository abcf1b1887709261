//! The outside world as the simulator sees it: traders, operators and the chain, who know only
//! what the exchange told them (acknowledged events) and, after a restart, what its journal holds.
//!
//! The chain's wallets are the real-world balances: every custody change the exchange journals
//! stands for a chain or bank move that the simulated adapter makes, and a thief moves coins
//! without any journaled command. Reconciliation must therefore find every wallet exact, except
//! one a thief drained, which it must find short by exactly what was taken.

use std::collections::BTreeMap;

use engine::custody::{Address, AssetHalts, CustodyEvent};
use engine::{AccountId, Event, ExchangeEvent, InstrumentId, OrderId, WithdrawalId};
use ledger::{AmountUnits, AssetId, Location, Pool};

/// A wallet: whose (pool), of what (asset), where (hot, cold, bank).
pub type Wallet = (Pool, AssetId, Location);

#[derive(Clone, Copy, Debug)]
pub struct PendingWithdrawal {
    pub asset: AssetId,
    pub amount_units: AmountUnits,
    pub pool: Pool,
    pub broadcast: bool,
}

/// A theft not yet reconciled.
#[derive(Clone, Copy, Debug)]
pub struct Theft {
    pub wallet: Wallet,
    pub amount_units: AmountUnits,
    /// The step it happened at.
    pub step: u64,
}

/// Recent order ids kept for cancels and replaces.
const ORDERS_RECENT_MAX: usize = 512;

pub struct World {
    /// Each asset's operating wallet: hot for coins, the bank for fiat.
    pub operating: Vec<Location>,
    /// The last seq whose events were absorbed.
    pub seq: u64,
    pub accounts: Vec<(AccountId, Pool)>,
    /// The chain's (or bank's) real balances.
    pub wallets: BTreeMap<Wallet, AmountUnits>,
    pub withdrawals: BTreeMap<WithdrawalId, PendingWithdrawal>,
    pub whitelist: BTreeMap<(AccountId, AssetId), Vec<(Address, u64)>>,
    pub deposit_addresses: Vec<(AccountId, AssetId, Address)>,
    pub orders: Vec<(AccountId, InstrumentId, OrderId)>,
    pub halts: BTreeMap<AssetId, AssetHalts>,
    pub instruments_halted: BTreeMap<InstrumentId, bool>,
    pub thefts: Vec<Theft>,
    /// Reconciliation findings of the last absorbed commands: (wallet, missing, surplus).
    pub shortfalls: Vec<(Wallet, AmountUnits)>,
    pub surpluses: Vec<(Wallet, AmountUnits)>,
    pub incidents: u64,
}

impl World {
    pub fn new(operating: Vec<Location>) -> World {
        World {
            operating,
            seq: 0,
            accounts: Vec::new(),
            wallets: BTreeMap::new(),
            withdrawals: BTreeMap::new(),
            whitelist: BTreeMap::new(),
            deposit_addresses: Vec::new(),
            orders: Vec::new(),
            halts: BTreeMap::new(),
            instruments_halted: BTreeMap::new(),
            thefts: Vec::new(),
            shortfalls: Vec::new(),
            surpluses: Vec::new(),
            incidents: 0,
        }
    }

    pub fn pool_of(&self, account: AccountId) -> Option<Pool> {
        self.accounts
            .iter()
            .find(|(a, _)| *a == account)
            .map(|(_, p)| *p)
    }

    pub fn wallet(&self, wallet: Wallet) -> AmountUnits {
        self.wallets.get(&wallet).copied().unwrap_or(0)
    }

    fn add(&mut self, wallet: Wallet, delta: AmountUnits) {
        *self.wallets.entry(wallet).or_insert(0) += delta;
    }

    /// Takes in one command's events, in seq order. Each seq is absorbed once.
    pub fn absorb(&mut self, seq: u64, events: &[ExchangeEvent]) {
        assert_eq!(seq, self.seq + 1, "events absorbed out of order");
        self.seq = seq;
        for event in events {
            self.absorb_one(event);
        }
    }

    fn absorb_one(&mut self, event: &ExchangeEvent) {
        match *event {
            ExchangeEvent::AccountCreated { account, pool } => self.accounts.push((account, pool)),
            ExchangeEvent::Deposited {
                account,
                asset,
                amount_units,
                location,
                ..
            } => {
                let pool = self.pool_of(account).expect("deposit to a known account");
                self.add((pool, asset, location), amount_units);
            }
            ExchangeEvent::WithdrawalRequested {
                withdrawal_id,
                account,
                asset,
                amount_units,
                ..
            } => {
                let pool = self.pool_of(account).expect("known account");
                self.withdrawals.insert(
                    withdrawal_id,
                    PendingWithdrawal {
                        asset,
                        amount_units,
                        pool,
                        broadcast: false,
                    },
                );
            }
            ExchangeEvent::WithdrawalCompleted { withdrawal_id, .. }
            | ExchangeEvent::WithdrawalCancelled { withdrawal_id, .. } => {
                self.withdrawals.remove(&withdrawal_id);
            }
            ExchangeEvent::CustodyMoved {
                pool,
                asset,
                source,
                target,
                amount_units,
            } => {
                self.add((pool, asset, source), -amount_units);
                self.add((pool, asset, target), amount_units);
            }
            ExchangeEvent::Swept {
                asset,
                location,
                customer_to_house_units,
            } => {
                self.add((Pool::Customer, asset, location), -customer_to_house_units);
                self.add((Pool::House, asset, location), customer_to_house_units);
            }
            ExchangeEvent::Order(event) => self.absorb_order(event),
            ExchangeEvent::Custody(event) => self.absorb_custody(event),
            ExchangeEvent::Alert(engine::Alert::WalletShortfall {
                pool,
                asset,
                location,
                missing_units,
            }) => self
                .shortfalls
                .push(((pool, asset, location), missing_units)),
            ExchangeEvent::Alert(engine::Alert::WalletSurplus {
                pool,
                asset,
                location,
                extra_units,
            }) => self.surpluses.push(((pool, asset, location), extra_units)),
            _ => {}
        }
    }

    fn absorb_order(&mut self, event: Event) {
        match event {
            Event::Accepted {
                order_id,
                account,
                instrument,
                ..
            } => {
                if self.orders.len() >= ORDERS_RECENT_MAX {
                    self.orders.remove(0);
                }
                self.orders.push((account, instrument, order_id));
            }
            Event::Halted { instrument } => {
                self.instruments_halted.insert(instrument, true);
            }
            Event::Resumed { instrument } => {
                self.instruments_halted.insert(instrument, false);
            }
            _ => {}
        }
    }

    fn absorb_custody(&mut self, event: CustodyEvent) {
        match event {
            CustodyEvent::AddressAdded {
                account,
                asset,
                address,
                usable_from_ns,
            } => self
                .whitelist
                .entry((account, asset))
                .or_default()
                .push((address, usable_from_ns)),
            CustodyEvent::DepositAddressAssigned {
                account,
                asset,
                address,
            } => self.deposit_addresses.push((account, asset, address)),
            CustodyEvent::WithdrawalBroadcast {
                withdrawal_id,
                asset,
                amount_units,
                ..
            } => {
                // The coins leave the operating wallet on chain when the adapter broadcasts.
                let w = self
                    .withdrawals
                    .get_mut(&withdrawal_id)
                    .expect("broadcast of a known withdrawal");
                w.broadcast = true;
                let wallet = (w.pool, asset, self.operating[asset as usize]);
                self.add(wallet, -amount_units);
            }
            CustodyEvent::HaltsSet { asset, halts, .. } => {
                self.halts.insert(asset, halts);
            }
            CustodyEvent::IncidentOpened(_) => self.incidents += 1,
            _ => {}
        }
    }
}
