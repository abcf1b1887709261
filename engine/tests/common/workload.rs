//! A deterministic mixed workload over one instrument (reference 10_000, 20% band): every order
//! type, cancels, replaces and mass cancels, with self-trades among 50 accounts.

use engine::*;
use rust_decimal::Decimal;

/// A small deterministic generator (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn spec() -> InstrumentSpec {
    InstrumentSpec {
        symbol: "BTC/JPY".into(),
        base: "BTC".into(),
        quote: "JPY".into(),
        tick_size: Decimal::ONE,
        lot_size: Decimal::ONE,
        qty_lots_min: 1,
        qty_lots_max: 1_000,
        price_band_bps: 2_000,
        price_ticks_reference: 10_000,
        fee_maker_ppm: 0,
        fee_taker_ppm: 0,
        house_policy: HousePolicy::Forbidden,
    }
}

/// Commands of every kind around a stable mid price: limits, IOC, FOK, post-only, market, stops,
/// cancels, replaces, mass cancels, with self-trades among 50 accounts.
pub fn command(rng: &mut Rng, matcher: &Matcher) -> Command {
    let order_id_next = matcher.order_id_next();
    let recent = order_id_next.saturating_sub(1 + rng.below(300)).max(1);
    // Cancels and replaces mostly come from the order's owner, sometimes from a stranger.
    let account = match matcher.order(recent) {
        Some(order) if rng.below(10) > 0 => order.account,
        _ => rng.below(50) as AccountId,
    };
    let side = if rng.below(2) == 0 {
        Side::Buy
    } else {
        Side::Sell
    };
    let offset = rng.below(40) as PriceTicks;
    // Buys mostly below the mid, sells mostly above: the book stays two-sided and trades often.
    let price_ticks = match side {
        Side::Buy => 10_005 - offset,
        Side::Sell => 9_995 + offset,
    };
    let qty_lots = 1 + rng.below(20) as QtyLots;
    let kind = match rng.below(100) {
        0..=39 => OrderKind::limit(price_ticks, TimeInForce::Gtc),
        40..=44 => OrderKind::limit(price_ticks, TimeInForce::Ioc),
        45..=46 => OrderKind::limit(price_ticks, TimeInForce::Fok),
        47..=48 => OrderKind::post_only(price_ticks),
        49 => OrderKind::Market,
        50 => OrderKind::StopMarket {
            stop_ticks: match side {
                Side::Buy => 10_050,
                Side::Sell => 9_950,
            },
        },
        51..=64 => {
            return Command::Cancel {
                account,
                order: OrderRef::Id(recent),
            }
        }
        65 => {
            return Command::MassCancel {
                account,
                instrument: Some(0),
                side: Some(side),
            }
        }
        _ => {
            return Command::Replace {
                account,
                order: OrderRef::Id(recent),
                price_ticks,
                qty_lots,
                client_order_id_new: None,
            }
        }
    };
    Command::NewOrder(NewOrder {
        account,
        instrument: 0,
        client_order_id: rng.next(),
        side,
        kind,
        qty_lots,
        stp: Some(match rng.below(4) {
            0 => SelfTradePrevention::CancelResting,
            1 => SelfTradePrevention::CancelIncoming,
            2 => SelfTradePrevention::CancelBoth,
            _ => SelfTradePrevention::DecrementAndCancel,
        }),
    })
}
