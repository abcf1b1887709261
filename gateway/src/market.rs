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
/// Trades kept per instrument for REST (`/api/trades`). The ticker's 24 hours are kept apart, in
/// [`DayStats`], whatever the number of trades.
pub const TRADES_KEPT_MAX: usize = 10_000;
const SECOND_NS: u64 = 1_000_000_000;
const DAY_SECS: u64 = 24 * 3_600;

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
    day: DayStats,
}

/// The trades of the last 24 hours as one bucket per second: open, high, low and volume over the
/// window in O(1) amortised per trade and per ticker, in at most 86,401 buckets per instrument
/// however many trades there are (each trade expires what fell out of the window). The window is
/// whole seconds: the ticker at `now` covers the trades stamped from the start of the second 24
/// hours before `now`'s second.
#[derive(Default)]
struct DayStats {
    /// Seconds with trades, oldest first.
    buckets: VecDeque<Bucket>,
    volume: QtyLots,
    /// Candidates for the high (and the low): `(second, price)`, prices strictly falling (rising)
    /// from the front, which is the window's high (low).
    highs: VecDeque<(u64, PriceTicks)>,
    lows: VecDeque<(u64, PriceTicks)>,
}

struct Bucket {
    second: u64,
    open: PriceTicks,
    volume: QtyLots,
}

impl DayStats {
    fn record(&mut self, ts_ns: u64, price: PriceTicks, qty: QtyLots) {
        // Stamps never go backwards; a trade stamped earlier than the last bucket (a replay from
        // elsewhere) joins the last one rather than reorder the window.
        let last = self.buckets.back().map_or(0, |b| b.second);
        let second = (ts_ns / SECOND_NS).max(last);
        match self.buckets.back_mut() {
            Some(bucket) if bucket.second == second => bucket.volume += qty,
            _ => self.buckets.push_back(Bucket {
                second,
                open: price,
                volume: qty,
            }),
        }
        self.volume += qty;
        while self.highs.back().is_some_and(|&(_, p)| p <= price) {
            self.highs.pop_back();
        }
        self.highs.push_back((second, price));
        while self.lows.back().is_some_and(|&(_, p)| p >= price) {
            self.lows.pop_back();
        }
        self.lows.push_back((second, price));
    }

    /// Drops the seconds older than the window ending in `now_ns`'s second.
    fn expire(&mut self, now_ns: u64) {
        let first = (now_ns / SECOND_NS).saturating_sub(DAY_SECS);
        while self.buckets.front().is_some_and(|b| b.second < first) {
            let gone = self.buckets.pop_front().expect("a front bucket");
            self.volume -= gone.volume;
        }
        while self.highs.front().is_some_and(|&(s, _)| s < first) {
            self.highs.pop_front();
        }
        while self.lows.front().is_some_and(|&(s, _)| s < first) {
            self.lows.pop_front();
        }
    }

    fn open(&self) -> Option<PriceTicks> {
        self.buckets.front().map(|b| b.open)
    }

    fn high(&self) -> Option<PriceTicks> {
        self.highs.front().map(|&(_, p)| p)
    }

    fn low(&self) -> Option<PriceTicks> {
        self.lows.front().map(|&(_, p)| p)
    }
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
            day: DayStats::default(),
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
        // Expired here too, not only when a ticker is asked for: nobody may ever subscribe.
        self.day.expire(trade.ts_ns);
        self.day
            .record(trade.ts_ns, trade.price_ticks, trade.qty_lots);
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

    /// Last price, best bid and ask, and the 24 hours before `now_ns` (to the second, see
    /// [`DayStats`]): open, high, low, volume.
    pub fn ticker_json(&mut self, now_ns: u64) -> Value {
        self.day.expire(now_ns);
        let day = &self.day;
        let (open, high, low, volume) = (day.open(), day.high(), day.low(), day.volume);
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

    fn spec() -> InstrumentSpec {
        engine::defaults::instruments().remove(0)
    }

    fn trade(ts_ns: u64, price_ticks: PriceTicks, qty_lots: QtyLots) -> Trade {
        Trade {
            trade_id: ts_ns,
            ts_ns,
            price_ticks,
            qty_lots,
            aggressor: Side::Buy,
        }
    }

    /// The ticker's four figures computed the plain way, over every trade of the window.
    fn by_hand(trades: &[Trade], now_ns: u64) -> [Option<i64>; 4] {
        let first = (now_ns / SECOND_NS).saturating_sub(DAY_SECS);
        let day: Vec<&Trade> = trades
            .iter()
            .filter(|t| t.ts_ns / SECOND_NS >= first)
            .collect();
        [
            day.first().map(|t| t.price_ticks),
            day.iter().map(|t| t.price_ticks).max(),
            day.iter().map(|t| t.price_ticks).min(),
            Some(day.iter().map(|t| t.qty_lots).sum()),
        ]
    }

    fn figures(book: &mut BookMirror, now_ns: u64) -> [Option<i64>; 4] {
        book.day.expire(now_ns);
        [
            book.day.open(),
            book.day.high(),
            book.day.low(),
            Some(book.day.volume),
        ]
    }

    #[test]
    fn the_rolling_day_matches_a_scan_of_every_trade() {
        let mut book = BookMirror::new(spec());
        let mut trades = Vec::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut ts_ns = 0;
        for _ in 0..20_000 {
            // Steps from a nanosecond to over an hour: many trades per second, quiet hours.
            ts_ns += 1 + next(10) * 10u64.pow(next(13) as u32);
            let t = trade(ts_ns, 1_000 + next(500) as i64, 1 + next(9) as i64);
            book.record_trade(t.clone());
            trades.push(t);
            if next(7) == 0 {
                assert_eq!(
                    figures(&mut book, ts_ns),
                    by_hand(&trades, ts_ns),
                    "at {ts_ns}"
                );
            }
        }
        let later = ts_ns + 23 * 3_600 * SECOND_NS;
        assert_eq!(figures(&mut book, later), by_hand(&trades, later));
        let after_a_day = ts_ns + 25 * 3_600 * SECOND_NS;
        assert_eq!(figures(&mut book, after_a_day), [None, None, None, Some(0)]);
    }

    #[test]
    fn the_day_forgets_what_left_it_even_if_nobody_asks_for_a_ticker() {
        let mut book = BookMirror::new(spec());
        // A trade a second for 2.3 days, prices falling then rising in waves.
        for i in 0..200_000u64 {
            book.record_trade(trade(i * SECOND_NS, 1_000 + (i % 100) as i64, 1));
        }
        let day = &book.day;
        let window = DAY_SECS as usize + 1;
        assert!(day.buckets.len() <= window, "{} buckets", day.buckets.len());
        assert!(day.highs.len() <= window && day.lows.len() <= window);
        assert_eq!(day.volume, window as i64);
    }

    #[test]
    fn the_day_counts_every_trade_not_only_those_kept_for_rest() {
        let mut book = BookMirror::new(spec());
        let trades = TRADES_KEPT_MAX as u64 + 500;
        for i in 0..trades {
            book.record_trade(trade(
                1_000 * SECOND_NS + i * 1_000,
                2_000 + (i % 7) as i64,
                1,
            ));
        }
        assert_eq!(book.trades.len(), TRADES_KEPT_MAX);
        let ticker = book.ticker_json(1_001 * SECOND_NS);
        assert_eq!(ticker["volume_24h"], book.qty(trades as i64));
        assert_eq!(ticker["open_24h"], book.price(2_000));
        assert_eq!(ticker["high_24h"], book.price(2_006));
    }

    #[test]
    fn amounts_print_exactly() {
        assert_eq!(amount_text(150_000_000, 8), "1.5");
        assert_eq!(amount_text(1, 8), "0.00000001");
        assert_eq!(amount_text(1000, 0), "1000");
    }
}
