//! What the simulated traders, operators and chain adapter ask of the exchange: every order type,
//! cancels, replaces, mass cancels (a disconnect with cancel-on-disconnect), deposits by bank feed
//! and by chain address, whitelisting and withdrawals, the chain broadcasting in request order and
//! confirming late in any order, operators' halts, sweeps to cold and fee sweeps. Commands that
//! must be refused (a house order on a forbidden book, a broadcast out of turn, an address still
//! cooling down, cold → hot without approvals) are asked for too, now and then.

use engine::custody::{Address, AssetHalts};
use engine::{
    AccountId, Command, ExchangeCommand, InstrumentId, NewOrder, OrderKind, OrderRef, PostOnly,
    SelfTradePrevention, Side, TimeInForce, TxId,
};
use ledger::{AmountUnits, AssetId, Location, Pool};

use crate::sim::rng::Rng;
use crate::sim::world::World;

/// The instruments traded: BTC/JPY and XEM/JPY (house trading forbidden), ETH/JPY (disclosed).
pub const INSTRUMENTS: [InstrumentId; 3] = [0, 1, 2];
pub const INSTRUMENT_DISCLOSED: InstrumentId = 1;
pub const JPY: AssetId = 5;
/// Coins whose custody is exercised (BTC, ETH, XEM).
pub const COINS: [AssetId; 3] = [0, 1, 2];
/// The operator every manual action is attributed to.
pub const OPERATOR: u32 = 1;

/// What one instrument needs for prices and sizes.
#[derive(Clone, Copy, Debug)]
pub struct Market {
    pub instrument: InstrumentId,
    pub reference_ticks: i64,
}

/// The generator's inputs besides the world: the markets and the time.
pub struct Workload<'a> {
    pub rng: &'a mut Rng,
    pub world: &'a World,
    pub markets: &'a [Market],
    pub now_ns: u64,
    /// Unique client order ids and transaction ids.
    pub counter: &'a mut u64,
    /// A custody move or a broadcast is submitted and not yet seen: the chain's balances are not
    /// known until it is, so the operator and the adapter wait before moving more coins.
    pub custody_in_flight: bool,
    /// A theft not yet reconciled. The simulator knows, the operator does not; but a fee sweep's
    /// amount comes from the ledger, and moving coins a thief took is a chain move that would
    /// fail, which the simulated chain does not model: so sweeps wait for the reconciliation.
    pub theft_pending: bool,
}

impl Workload<'_> {
    fn unique(&mut self) -> u64 {
        *self.counter += 1;
        *self.counter
    }

    fn tx(&mut self) -> TxId {
        let mut tx = [0u8; 32];
        for chunk in tx.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next().to_le_bytes());
        }
        tx
    }

    fn account(&mut self, pool: Option<Pool>) -> Option<AccountId> {
        let accounts: Vec<AccountId> = self
            .world
            .accounts
            .iter()
            .filter(|(_, p)| pool.is_none_or(|pool| *p == pool))
            .map(|(a, _)| *a)
            .collect();
        self.rng.pick(&accounts).copied()
    }

    /// One command, or none when the world offers nothing for the chosen kind yet.
    pub fn next(&mut self) -> Option<ExchangeCommand> {
        match self.rng.below(1_000) {
            0..=549 => self.new_order(),
            550..=669 => self.cancel(),
            670..=729 => self.replace(),
            730..=744 => self.mass_cancel(),
            745..=789 => self.deposit(),
            790..=819 => self.add_address(),
            820..=859 => self.withdrawal_request(),
            860..=869 => self.withdrawal_cancel(),
            870..=919 => self.chain(),
            920..=934 => self.asset_halts(),
            935..=944 => self.instrument_halt(),
            945..=969 => self.sweep_to_cold(),
            970..=979 => self.fee_sweep(),
            980..=989 => self.stp_default(),
            _ => self.new_order(),
        }
    }

    fn new_order(&mut self) -> Option<ExchangeCommand> {
        let market = *self.rng.pick(self.markets)?;
        // The house trades on the disclosed book, and now and then tries a forbidden one.
        let house = market.instrument == INSTRUMENT_DISCLOSED && self.rng.chance(300)
            || self.rng.chance(10);
        let pool = if house { Pool::House } else { Pool::Customer };
        let account = self.account(Some(pool))?;
        let side = if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let reference = market.reference_ticks;
        // Within ±2% of the reference, buys mostly below and sells mostly above, so the book
        // stays two-sided and trades often; the band (±10%) is never the limit.
        let offset = reference * self.rng.range(-50, 200) / 10_000;
        let price_ticks = match side {
            Side::Buy => reference - offset,
            Side::Sell => reference + offset,
        };
        let stop_ticks = match side {
            Side::Buy => reference + reference * self.rng.range(0, 150) / 10_000,
            Side::Sell => reference - reference * self.rng.range(0, 150) / 10_000,
        };
        let kind = match self.rng.below(100) {
            0..=44 => OrderKind::limit(price_ticks, TimeInForce::Gtc),
            45..=56 => OrderKind::limit(price_ticks, TimeInForce::Ioc),
            57..=63 => OrderKind::limit(price_ticks, TimeInForce::Fok),
            64..=73 => OrderKind::Limit {
                price_ticks,
                tif: TimeInForce::Gtc,
                post_only: PostOnly::Yes,
            },
            74..=83 => OrderKind::Market,
            84..=91 => OrderKind::StopMarket { stop_ticks },
            _ => OrderKind::StopLimit {
                stop_ticks,
                price_ticks,
                tif: if self.rng.chance(500) {
                    TimeInForce::Gtc
                } else {
                    TimeInForce::Ioc
                },
            },
        };
        let stp = match self.rng.below(5) {
            0 => None,
            1 => Some(SelfTradePrevention::CancelResting),
            2 => Some(SelfTradePrevention::CancelIncoming),
            3 => Some(SelfTradePrevention::CancelBoth),
            _ => Some(SelfTradePrevention::DecrementAndCancel),
        };
        Some(ExchangeCommand::Trade(Command::NewOrder(NewOrder {
            account,
            instrument: market.instrument,
            client_order_id: self.unique(),
            side,
            kind,
            qty_lots: self.rng.range(1, 20),
            stp,
        })))
    }

    /// A recent order, mostly by its owner, sometimes by a stranger (refused).
    fn recent_order(&mut self) -> Option<(AccountId, OrderRef)> {
        let &(owner, _, order_id) = self.rng.pick(&self.world.orders)?;
        let account = if self.rng.chance(950) {
            owner
        } else {
            self.account(None)?
        };
        Some((account, OrderRef::Id(order_id)))
    }

    fn cancel(&mut self) -> Option<ExchangeCommand> {
        let (account, order) = self.recent_order()?;
        Some(ExchangeCommand::Trade(Command::Cancel { account, order }))
    }

    fn replace(&mut self) -> Option<ExchangeCommand> {
        let &(owner, instrument, order_id) = self.rng.pick(&self.world.orders)?;
        let market = self.markets.iter().find(|m| m.instrument == instrument)?;
        let reference = market.reference_ticks;
        let price_ticks = reference + reference * self.rng.range(-200, 200) / 10_000;
        let client_order_id_new = if self.rng.chance(300) {
            Some(self.unique())
        } else {
            None
        };
        Some(ExchangeCommand::Trade(Command::Replace {
            account: owner,
            order: OrderRef::Id(order_id),
            price_ticks,
            qty_lots: self.rng.range(1, 25),
            client_order_id_new,
        }))
    }

    /// A trader disconnects with cancel-on-disconnect (all their orders), or cancels one book.
    fn mass_cancel(&mut self) -> Option<ExchangeCommand> {
        let account = self.account(None)?;
        let (instrument, side) = if self.rng.chance(500) {
            (None, None)
        } else {
            let side = if self.rng.chance(500) {
                Some(Side::Buy)
            } else {
                None
            };
            (Some(*self.rng.pick(&INSTRUMENTS)?), side)
        };
        Some(ExchangeCommand::Trade(Command::MassCancel {
            account,
            instrument,
            side,
        }))
    }

    fn fee_sweep(&mut self) -> Option<ExchangeCommand> {
        let asset = *self.rng.pick(&[0, 1, 2, JPY])?;
        if self.custody_in_flight || self.theft_pending {
            return None;
        }
        Some(ExchangeCommand::FeeSweep { asset })
    }

    fn stp_default(&mut self) -> Option<ExchangeCommand> {
        let account = self.account(None)?;
        let stp = *self.rng.pick(&[
            SelfTradePrevention::CancelResting,
            SelfTradePrevention::CancelIncoming,
            SelfTradePrevention::CancelBoth,
            SelfTradePrevention::DecrementAndCancel,
        ])?;
        Some(ExchangeCommand::Trade(Command::SetSelfTradePrevention {
            account,
            stp,
        }))
    }

    /// A bank-feed deposit, or a chain deposit to an assigned address (now and then to an
    /// unknown address or a transaction seen before: an alert, never a credit).
    fn deposit(&mut self) -> Option<ExchangeCommand> {
        if self.rng.chance(400) {
            let &(account, asset, address) = self.rng.pick(&self.world.deposit_addresses)?;
            let _ = account;
            let address = if self.rng.chance(30) {
                Address::parse("unknown-address").expect("valid")
            } else {
                address
            };
            let tx = if self.rng.chance(30) {
                [7u8; 32]
            } else {
                self.tx()
            };
            return Some(ExchangeCommand::ChainDeposit {
                address,
                asset,
                amount_units: coin_amount(self.rng, asset),
                tx,
            });
        }
        let account = self.account(None)?;
        let asset = *self.rng.pick(&[0, 1, 2, JPY])?;
        let amount_units = if asset == JPY {
            self.rng.range(10_000, 5_000_000)
        } else {
            coin_amount(self.rng, asset)
        };
        Some(ExchangeCommand::Deposit {
            account,
            asset,
            amount_units,
            tx: self.tx(),
        })
    }

    fn add_address(&mut self) -> Option<ExchangeCommand> {
        let account = self.account(None)?;
        let asset = *self.rng.pick(&[0, 1, 2, JPY])?;
        let n = self.rng.below(4);
        let address = Address::parse(&format!("wd-{account}-{asset}-{n}")).expect("valid");
        Some(ExchangeCommand::AddWithdrawalAddress {
            account,
            asset,
            address,
        })
    }

    /// Mostly to an address past its cooldown; sometimes too early (refused).
    fn withdrawal_request(&mut self) -> Option<ExchangeCommand> {
        let entries: Vec<_> = self
            .world
            .whitelist
            .iter()
            .flat_map(|(&(account, asset), list)| {
                list.iter()
                    .map(move |&(address, from_ns)| (account, asset, address, from_ns))
            })
            .collect();
        let &(account, asset, address, from_ns) = self.rng.pick(&entries)?;
        if from_ns > self.now_ns && self.rng.chance(800) {
            return None;
        }
        let amount_units = if asset == JPY {
            self.rng.range(1_000, 200_000)
        } else {
            coin_amount(self.rng, asset) / 20 + 1
        };
        Some(ExchangeCommand::WithdrawalRequest {
            account,
            asset,
            amount_units,
            address,
        })
    }

    fn withdrawal_cancel(&mut self) -> Option<ExchangeCommand> {
        let ids: Vec<u64> = self.world.withdrawals.keys().copied().collect();
        let withdrawal_id = *self.rng.pick(&ids)?;
        Some(ExchangeCommand::WithdrawalCancel { withdrawal_id })
    }

    /// The chain adapter: broadcasts the oldest withdrawal of an asset and pool (now and then one
    /// out of turn, refused), or confirms any broadcast one, late and in any order.
    fn chain(&mut self) -> Option<ExchangeCommand> {
        if self.rng.chance(500) {
            let broadcast: Vec<u64> = self
                .world
                .withdrawals
                .iter()
                .filter(|(_, w)| w.broadcast)
                .map(|(id, _)| *id)
                .collect();
            let withdrawal_id = *self.rng.pick(&broadcast)?;
            return Some(ExchangeCommand::WithdrawalComplete { withdrawal_id });
        }
        let waiting: Vec<(u64, AssetId, Pool, AmountUnits)> = self
            .world
            .withdrawals
            .iter()
            .filter(|(_, w)| !w.broadcast)
            .map(|(id, w)| (*id, w.asset, w.pool, w.amount_units))
            .collect();
        let &(any_id, asset, pool, _) = self.rng.pick(&waiting)?;
        let head = waiting
            .iter()
            .find(|(_, a, p, _)| *a == asset && *p == pool)
            .copied()
            .expect("the picked one at least");
        let withdrawal_id = if self.rng.chance(100) { any_id } else { head.0 };
        if self.custody_in_flight {
            return None;
        }
        // The adapter cannot send coins the wallet does not have.
        let wallet = (pool, asset, self.world.operating[asset as usize]);
        if self.world.wallet(wallet) < head.3 {
            return None;
        }
        Some(ExchangeCommand::WithdrawalBroadcast {
            withdrawal_id,
            chain_tx: self.tx(),
        })
    }

    /// Operators halt and resume deposits, withdrawals and trading per asset; mostly they resume.
    fn asset_halts(&mut self) -> Option<ExchangeCommand> {
        let asset = *self.rng.pick(&[0, 1, 2, JPY])?;
        let halts = if self.rng.chance(600) {
            AssetHalts::default()
        } else {
            AssetHalts {
                deposits: self.rng.chance(400),
                withdrawals: self.rng.chance(400),
                trading: self.rng.chance(300),
            }
        };
        Some(ExchangeCommand::SetAssetHalts {
            asset,
            halts,
            operator: OPERATOR,
        })
    }

    fn instrument_halt(&mut self) -> Option<ExchangeCommand> {
        let instrument = *self.rng.pick(&INSTRUMENTS)?;
        let halted = self
            .world
            .instruments_halted
            .get(&instrument)
            .copied()
            .unwrap_or(false);
        let command = if halted || self.rng.chance(200) {
            Command::Resume { instrument }
        } else {
            Command::Halt { instrument }
        };
        Some(ExchangeCommand::Trade(command))
    }

    /// An operator sweeps part of a hot wallet to cold (what is really there); now and then asks
    /// for cold → hot directly, which needs approvals and is refused.
    fn sweep_to_cold(&mut self) -> Option<ExchangeCommand> {
        let pool = if self.rng.chance(800) {
            Pool::Customer
        } else {
            Pool::House
        };
        let asset = *self.rng.pick(&COINS)?;
        let hot = self.world.wallet((pool, asset, Location::Hot));
        if self.rng.chance(30) {
            return Some(ExchangeCommand::CustodyTransfer {
                pool,
                asset,
                source: Location::Cold,
                target: Location::Hot,
                amount_units: 1,
            });
        }
        if hot <= 1 || self.custody_in_flight {
            return None;
        }
        Some(ExchangeCommand::CustodyTransfer {
            pool,
            asset,
            source: Location::Hot,
            target: Location::Cold,
            amount_units: hot * self.rng.range(10, 95) / 100,
        })
    }
}

/// A coin amount of a few lots' worth.
pub fn coin_amount(rng: &mut Rng, asset: AssetId) -> AmountUnits {
    match asset {
        0 => rng.range(100_000, 20_000_000),       // 0.001 .. 0.2 BTC
        1 => rng.range(10_000_000, 5_000_000_000), // 0.01 .. 5 ETH
        _ => rng.range(1_000_000, 5_000_000_000),  // 1 .. 5,000 XEM
    }
}
