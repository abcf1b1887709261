//! A compact text form for commands and events, so that each test reads like data:
//! commands in, events out.
#![allow(dead_code)]

pub mod dirs;
pub mod market;
pub mod workload;

use engine::*;
use rust_decimal::Decimal;

/// Two instruments: i0 with reference 1000 and a 10% band ([900, 1100]), i1 the same.
pub fn spec(symbol: &str) -> InstrumentSpec {
    let (base, quote) = symbol.split_once('/').unwrap();
    InstrumentSpec {
        symbol: symbol.into(),
        base: base.into(),
        quote: quote.into(),
        tick_size: Decimal::ONE,
        lot_size: Decimal::ONE,
        qty_lots_min: 1,
        qty_lots_max: 1_000,
        price_band_bps: 1_000,
        price_ticks_reference: 1_000,
        fee_maker_ppm: 0,
        fee_taker_ppm: 0,
        house_policy: HousePolicy::Forbidden,
    }
}

pub fn config() -> EngineConfig {
    EngineConfig {
        orders_max: 64,
        levels_per_side_max: 8,
        stops_per_side_max: 4,
        accounts_max: 8,
        orders_open_per_account_max: 16,
        check_invariants: true,
    }
}

pub struct Harness {
    pub matcher: Matcher,
    seq: u64,
    client_order_id_next: ClientOrderId,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(config())
    }

    pub fn with_config(config: EngineConfig) -> Harness {
        Harness {
            matcher: Matcher::new(config, vec![spec("BTC/JPY"), spec("ETH/JPY")]),
            seq: 0,
            client_order_id_next: 1_000,
        }
    }

    /// Applies one command written in the text form and returns its events in the text form.
    pub fn run(&mut self, text: &str) -> Vec<String> {
        let command = self.parse(text);
        self.apply(command).iter().map(show).collect()
    }

    pub fn apply(&mut self, command: Command) -> Vec<Event> {
        self.seq += 1;
        let mut out = Vec::new();
        let record = Sequenced {
            seq: self.seq,
            ts_ns: self.seq * 1_000,
            command,
        };
        self.matcher.apply(&record, &mut out);
        out
    }

    /// Runs `text` and asserts its events, in order.
    #[track_caller]
    pub fn check(&mut self, text: &str, expected: &[&str]) {
        let actual = self.run(text);
        assert_eq!(actual, expected, "command: {text}");
    }

    /// Levels of one side, best first, as `qty@price` strings.
    pub fn ladder(&self, instrument: InstrumentId, side: Side) -> Vec<String> {
        self.matcher
            .levels(instrument, side)
            .map(|(price, qty, _)| format!("{qty}@{price}"))
            .collect()
    }

    pub fn parse(&mut self, text: &str) -> Command {
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut instrument = 0;
        let mut rest: Vec<&str> = Vec::new();
        for w in &words {
            if let Some(n) = w.strip_prefix('i').and_then(|n| n.parse().ok()) {
                instrument = n;
            } else {
                rest.push(w);
            }
        }
        match rest[0] {
            "halt" => return Command::Halt { instrument },
            "resume" => return Command::Resume { instrument },
            _ => {}
        }
        let account: AccountId = rest[0].strip_prefix('a').unwrap().parse().unwrap();
        let args = &rest[1..];
        match args[0] {
            "buy" | "sell" => self.parse_order(account, instrument, args),
            "cancel" => Command::Cancel {
                account,
                order: order_ref(args[1]),
            },
            "replace" => {
                let (qty_lots, price_ticks) = qty_at_price(args[2]);
                Command::Replace {
                    account,
                    order: order_ref(args[1]),
                    price_ticks,
                    qty_lots,
                    client_order_id_new: args.get(3).map(|c| client_id(c)),
                }
            }
            "masscancel" => Command::MassCancel {
                account,
                instrument: words
                    .iter()
                    .any(|w| w.starts_with('i'))
                    .then_some(instrument),
                side: args.get(1).map(|s| side(s)),
            },
            "stp" => Command::SetSelfTradePrevention {
                account,
                stp: stp(args[1]),
            },
            other => panic!("unknown command word {other}"),
        }
    }

    fn parse_order(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        args: &[&str],
    ) -> Command {
        let side = side(args[0]);
        let qty_lots: QtyLots = args[1].parse().unwrap();
        let mut kind = OrderKind::Market;
        let mut client_order_id = None;
        let mut mode = None;
        let mut i = 2;
        while i < args.len() {
            let w = args[i];
            if let Some(price) = w.strip_prefix('@') {
                let price_ticks = price.parse().unwrap();
                let tif = args[i + 1];
                i += 1;
                kind = match (kind, tif) {
                    (OrderKind::StopMarket { stop_ticks }, _) => OrderKind::StopLimit {
                        stop_ticks,
                        price_ticks,
                        tif: tif_of(tif),
                    },
                    (_, "post") => OrderKind::post_only(price_ticks),
                    (_, "ioc-post") => OrderKind::Limit {
                        price_ticks,
                        tif: TimeInForce::Ioc,
                        post_only: PostOnly::Yes,
                    },
                    _ => OrderKind::limit(price_ticks, tif_of(tif)),
                };
            } else if w == "market" {
                kind = OrderKind::Market;
            } else if w == "stop" {
                kind = OrderKind::StopMarket {
                    stop_ticks: args[i + 1].parse().unwrap(),
                };
                i += 1;
            } else if w.starts_with('c') {
                client_order_id = Some(client_id(w));
            } else if let Some(m) = w.strip_prefix("stp:") {
                mode = Some(stp(m));
            } else {
                panic!("unknown order word {w}");
            }
            i += 1;
        }
        let client_order_id = client_order_id.unwrap_or_else(|| {
            self.client_order_id_next += 1;
            self.client_order_id_next
        });
        Command::NewOrder(NewOrder {
            account,
            instrument,
            client_order_id,
            side,
            kind,
            qty_lots,
            stp: mode,
        })
    }
}

fn side(w: &str) -> Side {
    match w {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        _ => panic!("side {w}"),
    }
}

fn tif_of(w: &str) -> TimeInForce {
    match w {
        "gtc" => TimeInForce::Gtc,
        "ioc" => TimeInForce::Ioc,
        "fok" => TimeInForce::Fok,
        _ => panic!("time in force {w}"),
    }
}

fn stp(w: &str) -> SelfTradePrevention {
    match w {
        "cr" => SelfTradePrevention::CancelResting,
        "ci" => SelfTradePrevention::CancelIncoming,
        "cb" => SelfTradePrevention::CancelBoth,
        "dc" => SelfTradePrevention::DecrementAndCancel,
        _ => panic!("stp {w}"),
    }
}

fn client_id(w: &str) -> ClientOrderId {
    w.strip_prefix('c').unwrap().parse().unwrap()
}

fn order_ref(w: &str) -> OrderRef {
    match w.strip_prefix('#') {
        Some(id) => OrderRef::Id(id.parse().unwrap()),
        None => OrderRef::Client(client_id(w)),
    }
}

fn qty_at_price(w: &str) -> (QtyLots, PriceTicks) {
    let (q, p) = w.split_once('@').unwrap();
    (q.parse().unwrap(), p.parse().unwrap())
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn kind_name(kind: OrderKind) -> String {
    let tif = |t: TimeInForce| format!("{t:?}").to_lowercase();
    match kind {
        OrderKind::Limit {
            price_ticks,
            post_only: PostOnly::Yes,
            ..
        } => format!("@{price_ticks} post"),
        OrderKind::Limit {
            price_ticks,
            tif: t,
            ..
        } => format!("@{price_ticks} {}", tif(t)),
        OrderKind::Market => "market".into(),
        OrderKind::StopMarket { stop_ticks } => format!("stop {stop_ticks}"),
        OrderKind::StopLimit {
            stop_ticks,
            price_ticks,
            tif: t,
        } => format!("stop {stop_ticks} @{price_ticks} {}", tif(t)),
    }
}

/// The text form of an event.
pub fn show(event: &Event) -> String {
    match *event {
        Event::Accepted {
            order_id,
            account,
            side,
            kind,
            qty_lots,
            ..
        } => format!("accepted #{order_id} a{account} {} {qty_lots} {}", side_name(side), kind_name(kind)),
        Event::Rejected { reason, .. } => format!("rejected {}", reason.name()),
        Event::Fill {
            maker_order_id,
            taker_order_id,
            price_ticks,
            qty_lots,
            maker_qty_open,
            taker_qty_open,
            ..
        } => format!(
            "fill #{maker_order_id}<-#{taker_order_id} {qty_lots}@{price_ticks} left {maker_qty_open}/{taker_qty_open}"
        ),
        Event::Rested {
            order_id,
            side,
            price_ticks,
            qty_lots,
            ..
        } => format!("rested #{order_id} {} {qty_lots}@{price_ticks}", side_name(side)),
        Event::Cancelled {
            order_id,
            qty_lots,
            qty_open,
            reason,
            origin,
            ..
        } => format!("cancelled #{order_id} {qty_lots} left {qty_open} {reason:?} {origin:?}"),
        Event::Replaced {
            order_id,
            price_ticks_old,
            qty_lots_old,
            price_ticks_new,
            qty_lots_new,
            priority,
            ..
        } => format!(
            "replaced #{order_id} {qty_lots_old}@{price_ticks_old} -> {qty_lots_new}@{price_ticks_new} {priority:?}"
        ),
        Event::Expired { order_id, qty_lots, .. } => format!("expired #{order_id} {qty_lots}"),
        Event::Triggered {
            order_id,
            stop_ticks,
            last_ticks,
            ..
        } => format!("triggered #{order_id} stop {stop_ticks} last {last_ticks}"),
        Event::Halted { instrument } => format!("halted i{instrument}"),
        Event::Resumed { instrument } => format!("resumed i{instrument}"),
        Event::MassCancelled { account, count, .. } => format!("masscancelled a{account} {count}"),
        Event::SelfTradePreventionSet { account, stp } => format!("stp a{account} {stp:?}"),
    }
}
