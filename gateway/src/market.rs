//! Public market data mirrored from the engine's events: a level-2 ladder per instrument with a
//! per-book sequence number and a CRC32 checksum of the top levels, recent trades, and a 24-hour
//! ticker. The mirror is rebuilt from events alone (`Event::level_delta`): it never reads the
//! engine's books.

use std::collections::{BTreeMap, VecDeque};

use engine::{ExchangeEvent, InstrumentSpec, PriceTicks, QtyLots, Side};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Levels covered by the checksum (and sent in a snapshot by default).
pub const CHECKSUM_LEVELS: usize = 10;
/// Trades kept per instrument for REST and the 24-hour ticker.
pub const TRADES_KEPT_MAX: usize = 10_000;
const DAY_NS: u64 = 24 * 3_600 * 1_000_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trade {
    pub trade_id: u64,
    pub ts_ns: u64,
    pub price_ticks: PriceTicks,
    pub qty_lots: QtyLots,
    /// The taker's side.
    pub aggressor: Side,
}

pub struct BookMirror {
    pub spec: InstrumentSpec,
    /// Price → quantity; bids read from the highest, asks from the lowest.
    pub bids: BTreeMap<PriceTicks, QtyLots>,
    pub asks: BTreeMap<PriceTicks, QtyLots>,
    /// Bumped once per published change set.
    pub seq: u64,
    pub trades: VecDeque<Trade>,
    pub last_ticks: Option<PriceTicks>,
}

impl BookMirror {
    pub fn new(spec: InstrumentSpec) -> BookMirror {
        BookMirror {
            spec,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            seq: 0,
            trades: VecDeque::new(),
            last_ticks: None,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<PriceTicks, QtyLots> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Applies a level delta; returns the level's new total.
    pub fn apply(&mut self, side: Side, price_ticks: PriceTicks, delta_lots: QtyLots) -> QtyLots {
        let levels = self.side_mut(side);
        let total = levels.get(&price_ticks).copied().unwrap_or(0) + delta_lots;
        assert!(
            total >= 0,
            "level {price_ticks} on {side:?} went negative: events out of order"
        );
        if total == 0 {
            levels.remove(&price_ticks);
        } else {
            levels.insert(price_ticks, total);
        }
        total
    }

    pub fn top(&self, side: Side, depth: usize) -> Vec<(PriceTicks, QtyLots)> {
        match side {
            Side::Buy => self
                .bids
                .iter()
                .rev()
                .take(depth)
                .map(|(p, q)| (*p, *q))
                .collect(),
            Side::Sell => self
                .asks
                .iter()
                .take(depth)
                .map(|(p, q)| (*p, *q))
                .collect(),
        }
    }

    pub fn price(&self, ticks: PriceTicks) -> String {
        self.spec.ticks_to_price(ticks).to_string()
    }

    pub fn qty(&self, lots: QtyLots) -> String {
        self.spec.lots_to_qty(lots).to_string()
    }

    /// CRC32 (IEEE) of the top levels, as documented in docs/API.md: the text
    /// `ASKS|BIDS` where each side is its top ten levels, best first, as `price:qty` joined by
    /// `,`, prices and quantities in their canonical decimal form.
    pub fn checksum(&self) -> u32 {
        checksum_of(&self.levels_text(Side::Sell), &self.levels_text(Side::Buy))
    }

    fn levels_text(&self, side: Side) -> Vec<(String, String)> {
        self.top(side, CHECKSUM_LEVELS)
            .into_iter()
            .map(|(p, q)| (self.price(p), self.qty(q)))
            .collect()
    }

    pub fn snapshot_json(&self, depth: usize) -> Value {
        let side = |s| -> Vec<[String; 2]> {
            self.top(s, depth)
                .into_iter()
                .map(|(p, q)| [self.price(p), self.qty(q)])
                .collect()
        };
        json!({
            "type": "book_snapshot",
            "instrument": self.spec.symbol,
            "seq": self.seq,
            "bids": side(Side::Buy),
            "asks": side(Side::Sell),
            "checksum": self.checksum(),
        })
    }

    pub fn record_trade(&mut self, trade: Trade) {
        self.last_ticks = Some(trade.price_ticks);
        self.trades.push_back(trade);
        while self.trades.len() > TRADES_KEPT_MAX {
            self.trades.pop_front();
        }
    }

    pub fn trade_json(&self, t: &Trade) -> Value {
        json!({
            "type": "trade",
            "instrument": self.spec.symbol,
            "trade_id": t.trade_id,
            "price": self.price(t.price_ticks),
            "qty": self.qty(t.qty_lots),
            "aggressor": side_name(t.aggressor),
            "ts_ns": t.ts_ns,
        })
    }

    /// Last price, best bid and ask, and the 24 hours before `now_ns`: open, high, low, volume.
    pub fn ticker_json(&self, now_ns: u64) -> Value {
        let since = now_ns.saturating_sub(DAY_NS);
        let day: Vec<&Trade> = self.trades.iter().filter(|t| t.ts_ns >= since).collect();
        let volume: QtyLots = day.iter().map(|t| t.qty_lots).sum();
        let high = day.iter().map(|t| t.price_ticks).max();
        let low = day.iter().map(|t| t.price_ticks).min();
        let open = day.first().map(|t| t.price_ticks);
        let opt = |v: Option<PriceTicks>| v.map(|p| self.price(p));
        json!({
            "type": "ticker",
            "instrument": self.spec.symbol,
            "last": opt(self.last_ticks),
            "best_bid": opt(self.bids.keys().next_back().copied()),
            "best_ask": opt(self.asks.keys().next().copied()),
            "open_24h": opt(open),
            "high_24h": opt(high),
            "low_24h": opt(low),
            "volume_24h": self.qty(volume),
        })
    }
}

/// The checksum over already formatted levels (used by clients' tests too).
pub fn checksum_of(asks: &[(String, String)], bids: &[(String, String)]) -> u32 {
    let join = |levels: &[(String, String)]| {
        levels
            .iter()
            .map(|(p, q)| format!("{p}:{q}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    crc32fast::hash(format!("{}|{}", join(asks), join(bids)).as_bytes())
}

pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// Decimal text of an amount in an asset with `decimals`.
pub fn amount_text(units: i64, decimals: u8) -> String {
    Decimal::new(units, u32::from(decimals))
        .normalize()
        .to_string()
}

/// The changes one batch made to one book: `(side, price, new total)` per touched level.
pub fn level_changes(
    mirror: &mut BookMirror,
    events: &[ExchangeEvent],
    instrument: u32,
) -> Vec<(Side, PriceTicks, QtyLots)> {
    let mut touched: BTreeMap<(Side, PriceTicks), QtyLots> = BTreeMap::new();
    for event in events {
        if let ExchangeEvent::Order(e) = event {
            if let Some(d) = e.level_delta() {
                if d.instrument == instrument {
                    let total = mirror.apply(d.side, d.price_ticks, d.delta_lots);
                    touched.insert((d.side, d.price_ticks), total);
                }
            }
        }
    }
    touched.into_iter().map(|((s, p), q)| (s, p, q)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_follows_the_documented_text() {
        let asks = vec![
            ("101".to_string(), "2".to_string()),
            ("102".to_string(), "0.5".to_string()),
        ];
        let bids = vec![("100".to_string(), "1".to_string())];
        assert_eq!(
            checksum_of(&asks, &bids),
            crc32fast::hash(b"101:2,102:0.5|100:1")
        );
    }

    #[test]
    fn amounts_print_exactly() {
        assert_eq!(amount_text(150_000_000, 8), "1.5");
        assert_eq!(amount_text(1, 8), "0.00000001");
        assert_eq!(amount_text(1000, 0), "1000");
    }
}
