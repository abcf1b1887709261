//! `kinko demo`: drives the matching core in-process through a short trading session and prints
//! every command with the events it produced, then the book. No server, no files.

use std::io::{self, Write};

use engine::*;
use rust_decimal::Decimal;

use crate::defaults;

struct Demo<'w, W: Write> {
    matcher: Matcher,
    seq: u64,
    client_order_id: ClientOrderId,
    out: &'w mut W,
}

impl<W: Write> Demo<'_, W> {
    fn spec(&self) -> &InstrumentSpec {
        self.matcher.instrument(0).expect("BTC/JPY is instrument 0")
    }

    fn price(&self, text: &str) -> PriceTicks {
        let price: Decimal = text.parse().expect("demo price");
        self.spec()
            .price_to_ticks(price)
            .expect("demo price on tick")
    }

    fn qty(&self, text: &str) -> QtyLots {
        let qty: Decimal = text.parse().expect("demo quantity");
        self.spec().qty_to_lots(qty).expect("demo quantity on lot")
    }

    fn order(
        &mut self,
        account: AccountId,
        side: Side,
        qty: &str,
        kind: OrderKind,
    ) -> io::Result<()> {
        self.client_order_id += 1;
        let order = NewOrder {
            account,
            instrument: 0,
            client_order_id: self.client_order_id,
            side,
            kind,
            qty_lots: self.qty(qty),
            stp: None,
        };
        self.send(Command::NewOrder(order))
    }

    fn send(&mut self, command: Command) -> io::Result<()> {
        self.seq += 1;
        let mut events = Vec::new();
        let record = Sequenced {
            seq: self.seq,
            ts_ns: self.seq * 1_000_000,
            command,
        };
        self.matcher.apply(&record, &mut events);
        writeln!(self.out, "#{:<3} {command:?}", self.seq)?;
        for event in &events {
            writeln!(self.out, "       -> {}", describe(self.spec(), event))?;
        }
        Ok(())
    }

    fn print_book(&mut self) -> io::Result<()> {
        let spec = self.spec().clone();
        writeln!(
            self.out,
            "\n{} book (price, quantity, orders):",
            spec.symbol
        )?;
        let asks: Vec<_> = self.matcher.levels(0, Side::Sell).collect();
        for (price, qty, count) in asks.iter().rev() {
            let (p, q) = (spec.ticks_to_price(*price), spec.lots_to_qty(*qty));
            writeln!(self.out, "  ask {p:>12} {q:>10} {count:>3}")?;
        }
        for (price, qty, count) in self.matcher.levels(0, Side::Buy) {
            let (p, q) = (spec.ticks_to_price(price), spec.lots_to_qty(qty));
            writeln!(self.out, "  bid {p:>12} {q:>10} {count:>3}")?;
        }
        let last = self.matcher.last_price(0).map(|t| spec.ticks_to_price(t));
        writeln!(
            self.out,
            "  last trade price: {}",
            last.map_or("none".into(), |p| p.to_string())
        )
    }
}

/// Human-readable text of one event, in decimal prices and quantities.
pub fn describe(spec: &InstrumentSpec, event: &Event) -> String {
    let p = |t: PriceTicks| spec.ticks_to_price(t);
    let q = |l: QtyLots| spec.lots_to_qty(l);
    match *event {
        Event::Accepted { order_id, account, side, qty_lots, .. } => {
            format!("accepted order {order_id} of account {account}: {side:?} {}", q(qty_lots))
        }
        Event::Rejected { reason, .. } => format!("rejected: {reason}"),
        Event::Fill { maker_order_id, taker_order_id, price_ticks, qty_lots, aggressor, .. } => format!(
            "TRADE {} @ {} (maker {maker_order_id}, taker {taker_order_id}, aggressor {aggressor:?})",
            q(qty_lots),
            p(price_ticks)
        ),
        Event::Rested { order_id, side, price_ticks, qty_lots, .. } => {
            format!("order {order_id} rests: {side:?} {} @ {}", q(qty_lots), p(price_ticks))
        }
        Event::Cancelled { order_id, qty_lots, qty_open, reason, .. } => {
            format!("order {order_id} cancelled {} ({reason:?}), {} left", q(qty_lots), q(qty_open))
        }
        Event::Expired { order_id, qty_lots, .. } => format!("order {order_id} expired {}", q(qty_lots)),
        Event::Triggered { order_id, stop_ticks, last_ticks, .. } => format!(
            "stop order {order_id} triggered (stop {}, last {})",
            p(stop_ticks),
            p(last_ticks)
        ),
        ref other => format!("{other:?}"),
    }
}

/// Runs the scripted session, writing to `out`.
pub fn run<W: Write>(out: &mut W) -> io::Result<()> {
    let config = EngineConfig {
        orders_max: 1_024,
        accounts_max: 16,
        ..EngineConfig::default()
    };
    let mut demo = Demo {
        matcher: Matcher::new(config, defaults::instruments()),
        seq: 0,
        client_order_id: 0,
        out,
    };
    writeln!(
        demo.out,
        "Kinko matching core demo: BTC/JPY, in-process, deterministic.\n"
    )?;
    let limit = |demo: &Demo<W>, price: &str| OrderKind::limit(demo.price(price), TimeInForce::Gtc);
    let ask_1 = limit(&demo, "15010000");
    let ask_2 = limit(&demo, "15020000");
    let bid_1 = limit(&demo, "14990000");
    demo.order(1, Side::Sell, "0.5", ask_1)?;
    demo.order(2, Side::Sell, "0.3", ask_2)?;
    demo.order(3, Side::Buy, "0.2", bid_1)?;
    let stop = OrderKind::StopMarket {
        stop_ticks: demo.price("15015000"),
    };
    demo.order(4, Side::Buy, "0.1", stop)?;
    demo.order(5, Side::Buy, "0.6", OrderKind::Market)?;
    let (price_ticks, qty_lots) = (demo.price("14990000"), demo.qty("0.1"));
    demo.send(Command::Replace {
        account: 3,
        order: OrderRef::Id(3),
        price_ticks,
        qty_lots,
        client_order_id_new: None,
    })?;
    let off_band = OrderKind::limit(demo.price("20000000"), TimeInForce::Gtc);
    demo.order(6, Side::Buy, "0.1", off_band)?;
    demo.send(Command::Halt { instrument: 0 })?;
    let during_halt = limit(&demo, "15000000");
    demo.order(6, Side::Buy, "0.1", during_halt)?;
    demo.send(Command::Resume { instrument: 0 })?;
    demo.print_book()
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_trades_triggers_and_rejects() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("TRADE 0.5 @ 15010000"), "{text}");
        assert!(text.contains("stop order 4 triggered"), "{text}");
        assert!(text.contains("rejected: OutsidePriceBand"), "{text}");
        assert!(text.contains("rejected: InstrumentHalted"), "{text}");
        assert!(text.contains("bid     14990000        0.1   1"), "{text}");
    }
}
