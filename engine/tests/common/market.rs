//! A small exchange for ledger tests: BTC (8 decimals), ETH (9), JPY (0); BTC/JPY and ETH/JPY with
//! 1 JPY ticks and 0.01 lots, reference 1000 JPY, 10% band, fees 0.1% maker and 0.2% taker.
//! One lot at one tick is 0.01 JPY, so 100 lots (1 BTC) at 1000 JPY cost 1000 JPY.

use engine::custody::Address;
use engine::*;
use ledger::{AmountUnits, AssetId, AssetSpec, Pool};
use rust_decimal::Decimal;

pub const BTC: AssetId = 0;
pub const ETH: AssetId = 1;
pub const JPY: AssetId = 2;
pub const BTC_JPY: InstrumentId = 0;
pub const ETH_JPY: InstrumentId = 1;
/// Satoshi per lot of BTC/JPY.
pub const BTC_LOT_UNITS: AmountUnits = 1_000_000;

pub fn instrument(base: &str) -> InstrumentSpec {
    InstrumentSpec {
        symbol: format!("{base}/JPY"),
        base: base.into(),
        quote: "JPY".into(),
        tick_size: Decimal::ONE,
        lot_size: "0.01".parse().unwrap(),
        qty_lots_min: 1,
        qty_lots_max: 1 << 40,
        price_band_bps: 1_000,
        price_ticks_reference: 1_000,
        fee_maker_ppm: 1_000,
        fee_taker_ppm: 2_000,
        house_policy: HousePolicy::Forbidden,
    }
}

pub fn config() -> ExchangeConfig {
    let assets = vec![
        AssetSpec::coin("BTC", 8),
        AssetSpec::coin("ETH", 9),
        AssetSpec::fiat("JPY", 0),
    ];
    ExchangeConfig {
        custody: engine::defaults::custody(&assets),
        engine: EngineConfig {
            orders_max: 1 << 12,
            levels_per_side_max: 1 << 10,
            stops_per_side_max: 1 << 8,
            accounts_max: 64,
            orders_open_per_account_max: 1 << 10,
            check_invariants: true,
        },
        assets,
        instruments: vec![instrument("BTC"), instrument("ETH")],
        withdrawals_pending_max: 64,
    }
}

pub struct Venue {
    pub exchange: Exchange,
    pub seq: u64,
    pub tx_next: u64,
    pub client_order_id_next: u64,
    /// Added to every command's time (`ts_ns = clock_ns + seq`), moved by [`Venue::advance`].
    pub clock_ns: u64,
}

impl Venue {
    pub fn new() -> Venue {
        Venue::with_config(config())
    }

    pub fn with_config(config: ExchangeConfig) -> Venue {
        Venue {
            exchange: Exchange::new(config).expect("valid config"),
            seq: 0,
            tx_next: 0,
            client_order_id_next: 0,
            clock_ns: 1_700_000_000_000_000_000,
        }
    }

    pub fn apply(&mut self, command: ExchangeCommand) -> Vec<ExchangeEvent> {
        self.seq += 1;
        let mut out = Vec::new();
        self.exchange.apply(
            &Sequenced {
                seq: self.seq,
                ts_ns: self.clock_ns + self.seq,
                command,
            },
            &mut out,
        );
        out
    }

    pub fn advance(&mut self, ns: u64) {
        self.clock_ns += ns;
    }

    /// Whitelists `address` for `account` and lets its cooldown pass.
    pub fn whitelist(&mut self, account: AccountId, asset: AssetId, address: &str) -> Address {
        let address = Address::parse(address).expect("valid address");
        let events = self.apply(ExchangeCommand::AddWithdrawalAddress {
            account,
            asset,
            address,
        });
        assert!(rejected(&events).is_none(), "{events:?}");
        self.advance(self.exchange.config().custody.address_cooldown_ns);
        address
    }

    pub fn withdraw(
        &mut self,
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
        address: Address,
    ) -> Vec<ExchangeEvent> {
        self.apply(ExchangeCommand::WithdrawalRequest {
            account,
            asset,
            amount_units,
            address,
        })
    }

    /// Broadcasts and confirms a withdrawal, as the chain adapter would.
    pub fn pay(&mut self, withdrawal_id: WithdrawalId) -> Vec<ExchangeEvent> {
        let mut chain_tx = [0xcc; 32];
        chain_tx[..8].copy_from_slice(&withdrawal_id.to_le_bytes());
        let mut events = self.apply(ExchangeCommand::WithdrawalBroadcast {
            withdrawal_id,
            chain_tx,
        });
        if rejected(&events).is_none() {
            events.extend(self.apply(ExchangeCommand::WithdrawalComplete { withdrawal_id }));
        }
        events
    }

    pub fn account(&mut self, pool: Pool) -> AccountId {
        match self.apply(ExchangeCommand::CreateAccount { pool })[..] {
            [ExchangeEvent::AccountCreated { account, .. }] => account,
            ref other => panic!("{other:?}"),
        }
    }

    pub fn tx(&mut self) -> TxId {
        self.tx_next += 1;
        let mut tx = [0u8; 32];
        tx[..8].copy_from_slice(&self.tx_next.to_le_bytes());
        tx
    }

    pub fn deposit(
        &mut self,
        account: AccountId,
        asset: AssetId,
        amount_units: AmountUnits,
    ) -> Vec<ExchangeEvent> {
        let tx = self.tx();
        self.apply(ExchangeCommand::Deposit {
            account,
            asset,
            amount_units,
            tx,
        })
    }

    pub fn order(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        kind: OrderKind,
        qty_lots: QtyLots,
    ) -> Vec<ExchangeEvent> {
        self.client_order_id_next += 1;
        self.apply(ExchangeCommand::Trade(Command::NewOrder(NewOrder {
            account,
            instrument,
            client_order_id: self.client_order_id_next,
            side,
            kind,
            qty_lots,
            stp: None,
        })))
    }

    pub fn limit(
        &mut self,
        account: AccountId,
        side: Side,
        price_ticks: PriceTicks,
        qty_lots: QtyLots,
    ) -> Vec<ExchangeEvent> {
        self.order(
            account,
            BTC_JPY,
            side,
            OrderKind::limit(price_ticks, TimeInForce::Gtc),
            qty_lots,
        )
    }

    pub fn balance(&self, account: AccountId, asset: AssetId) -> (AmountUnits, AmountUnits) {
        let b = self.exchange.ledger().balance(account, asset);
        (b.available, b.held)
    }
}

pub fn rejected(events: &[ExchangeEvent]) -> Option<RejectReason> {
    events.iter().find_map(|e| match e {
        ExchangeEvent::Order(Event::Rejected { reason, .. })
        | ExchangeEvent::Rejected { reason, .. } => Some(*reason),
        _ => None,
    })
}

pub fn settlements(events: &[ExchangeEvent]) -> Vec<Settlement> {
    events
        .iter()
        .filter_map(|e| match e {
            ExchangeEvent::Settled(s) => Some(*s),
            _ => None,
        })
        .collect()
}
