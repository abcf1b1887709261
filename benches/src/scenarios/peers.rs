//! The `peers` scenario: the `engine` scenario's exact command stream (same seed, same warm-up,
//! same measured commands) through Kinko's matching core and through two order books published on
//! crates.io, [`orderbook-rs`](https://crates.io/crates/orderbook-rs) and
//! [`lobster`](https://crates.io/crates/lobster), each driven through its own public API, in this
//! process, one after the other, in alternating rounds. Then a check that the books trade alike
//! where their rules agree.
//!
//! Fairness. Every run starts from a fresh book warmed up with the same commands, untimed. The
//! stream is translated into each book's calls before any clock starts. Ops/s comes from a run
//! with no clock in the loop and the percentiles from a second run reading the clock once per
//! command, as in `engine`. Where the books differ, the choice favours the peers: orderbook-rs gets
//! a stub clock (Kinko's core reads none; by default orderbook-rs reads the wall clock per order)
//! and neither peer does self-trade prevention, which Kinko's core always does.
//!
//! Feature mapping. orderbook-rs has every command of the mix: limit orders with GTC and IOC,
//! cancel, and a re-price (`update_order(UpdatePrice)`), which like Kinko's move cancels and
//! re-adds the order at the new price with its open quantity, loses time priority and may trade.
//! lobster has limit orders and cancels only: an IOC becomes a limit order and a cancel of whatever
//! rested, a move becomes a cancel and a new limit order with the same id, price and open quantity.
//!
//! The trade check. On the engine stream a taker now and then meets a resting order of its own
//! account: Kinko cancels that order (self-trade prevention) where the peers trade, so the books'
//! trades part there. The check therefore runs on the same generator's stream with
//! [`Accounts::BySide`] (even accounts buy, odd accounts sell), where no order can meet its own
//! account's and the three books' rules agree: every fill (maker id, taker id, price, quantity),
//! command by command, must be the same. Ids map one to one: each book is given Kinko's order id.
//! The engine stream's fill counts are printed too, with their differences.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use engine::{Command, Event, Matcher, OrderKind, OrderRef, Sequenced, Side, TimeInForce};
use orderbook_rs::prelude::{Clock, StubClock, TradeResult};
use orderbook_rs::{Id, OrderBookError};
use pricelevel::{OrderUpdate, Price};

use crate::machine::{others_share_since, CpuTimes};
use crate::measure::{ops_per_sec, run_throughput_then_latency, Percentiles, Row};
use crate::report::duration_text;
use crate::scenarios::engine::Replay;
use crate::scenarios::{Length, Options, Report};
use crate::workload::{
    matcher_new, Accounts, Workload, WorkloadSpec, COMMANDS_MEASURED_DEFAULT,
    COMMANDS_MEASURED_QUICK, COMMANDS_WARMUP_DEFAULT,
};

pub const ROUNDS_FULL: usize = 3;
pub const ROUNDS_QUICK: usize = 2;
/// Measured commands of the by-side stream the trades are compared on (after the same warm-up).
const CHECK_COMMANDS_FULL: usize = 1_000_000;
const CHECK_COMMANDS_QUICK: usize = 100_000;
/// Issue #9's bar: Kinko's matching core at least this many times the faster peer.
pub const BAR_RATIO: f64 = 2.0;
/// The versions in Cargo.lock, printed with the figures.
const ORDERBOOK_RS: &str = "orderbook-rs 0.15.3";
const LOBSTER: &str = "lobster 0.7.0";
const SYMBOL: &str = "BTC/JPY";

/// One command of the stream in the words every order book here knows. Ids are Kinko's order ids,
/// which it numbers from 1 in the order it accepts new orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerOp {
    /// A limit order: what does not trade at once rests (GTC) or expires (IOC).
    Limit {
        id: u64,
        side: Side,
        price_ticks: u64,
        qty_lots: u64,
        tif: TimeInForce,
    },
    Cancel {
        id: u64,
    },
    /// A resting order re-priced with its open quantity: it loses time priority and may trade.
    Move {
        id: u64,
        side: Side,
        price_ticks: u64,
        qty_lots: u64,
    },
}

/// One trade as every book here can report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    pub maker_id: u64,
    pub taker_id: u64,
    pub price_ticks: u64,
    pub qty_lots: u64,
}

/// The workload's commands as [`PeerOp`]s: translated once, before any clock starts.
pub fn translate(commands: &[Sequenced]) -> Vec<PeerOp> {
    let mut order_id_next = 1;
    let mut sides = HashMap::new();
    let unsigned = |value: i64| u64::try_from(value).expect("prices and quantities are positive");
    let translate_one = |record: &Sequenced| match record.command {
        Command::NewOrder(order) => {
            let OrderKind::Limit {
                price_ticks, tif, ..
            } = order.kind
            else {
                panic!("the workload sends limit orders only: {order:?}");
            };
            assert_ne!(tif, TimeInForce::Fok, "the workload sends no fill-or-kill");
            let id = order_id_next;
            order_id_next += 1;
            sides.insert(id, order.side);
            PeerOp::Limit {
                id,
                side: order.side,
                price_ticks: unsigned(price_ticks),
                qty_lots: unsigned(order.qty_lots),
                tif,
            }
        }
        Command::Cancel {
            order: OrderRef::Id(id),
            ..
        } => PeerOp::Cancel { id },
        Command::Replace {
            order: OrderRef::Id(id),
            price_ticks,
            qty_lots,
            ..
        } => PeerOp::Move {
            id,
            side: sides[&id],
            price_ticks: unsigned(price_ticks),
            qty_lots: unsigned(qty_lots),
        },
        other => panic!("the workload has no {other:?}"),
    };
    commands.iter().map(translate_one).collect()
}

/// Whether a book hands its fills back (the trade check) or drops them (the timed runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fills {
    Dropped,
    Kept,
}

/// A peer order book driven through its public API.
pub trait PeerBook {
    fn new(fills: Fills) -> Self;
    /// Applies one command; with [`Fills::Kept`], appends its fills to `out` in the book's order.
    fn apply(&mut self, op: &PeerOp, out: &mut Vec<Fill>);
    /// What the book answered that the stream did not expect of it.
    fn misses(&self) -> Misses;
}

/// Answers a book gave that Kinko's core would not have given on the same command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Misses {
    /// A cancel or a move of an order the book no longer has.
    pub not_found: u64,
    /// Any other error (an IOC's unfilled rest expiring is not one).
    pub errors: u64,
}

/// orderbook-rs: a concurrent book (skip lists of price levels, lock-free queues, a sharded map
/// of order locations), here used from one thread.
pub struct OrderbookRs {
    book: orderbook_rs::OrderBook<()>,
    kept: Option<Arc<Mutex<Vec<Fill>>>>,
    misses: Misses,
}

impl PeerBook for OrderbookRs {
    fn new(fills: Fills) -> OrderbookRs {
        // The stub clock spares it a wall-clock read per order: Kinko's core reads no clock.
        let clock = Arc::new(StubClock::new()) as Arc<dyn Clock>;
        let mut book = orderbook_rs::OrderBook::with_clock(SYMBOL, clock);
        // Trades reach the caller only through a listener; the timed runs install none.
        let kept = (fills == Fills::Kept).then(|| {
            let kept = Arc::new(Mutex::new(Vec::new()));
            let sink = kept.clone();
            book.set_trade_listener(Arc::new(move |result: &TradeResult| {
                let mut sink = sink.lock().expect("listener lock");
                for trade in result.match_result.trades().as_vec() {
                    sink.push(Fill {
                        maker_id: sequential(trade.maker_order_id()),
                        taker_id: sequential(trade.taker_order_id()),
                        price_ticks: u64::try_from(trade.price().as_u128()).expect("a tick price"),
                        qty_lots: trade.quantity().as_u64(),
                    });
                }
            }));
            kept
        });
        OrderbookRs {
            book,
            kept,
            misses: Misses::default(),
        }
    }

    #[inline]
    fn apply(&mut self, op: &PeerOp, out: &mut Vec<Fill>) {
        let found = match *op {
            PeerOp::Limit {
                id,
                side,
                price_ticks,
                qty_lots,
                tif,
            } => self
                .book
                .add_limit_order(
                    Id::Sequential(id),
                    u128::from(price_ticks),
                    qty_lots,
                    orderbook_side(side),
                    orderbook_tif(tif),
                    None,
                )
                .map(|_| true)
                .or_else(|error| match error {
                    // An IOC's rest expires by way of this error, after its trades.
                    OrderBookError::InsufficientLiquidity { .. } if tif == TimeInForce::Ioc => {
                        Ok(true)
                    }
                    error => Err(error),
                }),
            PeerOp::Cancel { id } => self
                .book
                .cancel_order(Id::Sequential(id))
                .map(|order| order.is_some()),
            PeerOp::Move {
                id, price_ticks, ..
            } => self
                .book
                .update_order(OrderUpdate::UpdatePrice {
                    order_id: Id::Sequential(id),
                    new_price: Price::new(u128::from(price_ticks)),
                })
                .map(|order| order.is_some()),
        };
        match found {
            Ok(true) => {}
            Ok(false) => self.misses.not_found += 1,
            Err(_) => self.misses.errors += 1,
        }
        if let Some(kept) = &self.kept {
            out.append(&mut kept.lock().expect("listener lock"));
        }
    }

    fn misses(&self) -> Misses {
        self.misses
    }
}

fn sequential(id: Id) -> u64 {
    match id {
        Id::Sequential(id) => id,
        other => panic!("orders are given sequential ids, not {other:?}"),
    }
}

fn orderbook_side(side: Side) -> orderbook_rs::Side {
    match side {
        Side::Buy => orderbook_rs::Side::Buy,
        Side::Sell => orderbook_rs::Side::Sell,
    }
}

fn orderbook_tif(tif: TimeInForce) -> orderbook_rs::TimeInForce {
    match tif {
        TimeInForce::Gtc => orderbook_rs::TimeInForce::Gtc,
        TimeInForce::Ioc => orderbook_rs::TimeInForce::Ioc,
        TimeInForce::Fok => orderbook_rs::TimeInForce::Fok,
    }
}

/// lobster: one thread, price levels in B-trees of vectors, orders in an arena.
pub struct Lobster {
    book: lobster::OrderBook,
    fills: Fills,
}

impl Lobster {
    fn limit(
        &mut self,
        id: u64,
        side: Side,
        price_ticks: u64,
        qty_lots: u64,
    ) -> lobster::OrderEvent {
        let side = match side {
            Side::Buy => lobster::Side::Bid,
            Side::Sell => lobster::Side::Ask,
        };
        self.book.execute(lobster::OrderType::Limit {
            id: u128::from(id),
            side,
            qty: qty_lots,
            price: price_ticks,
        })
    }

    fn cancel(&mut self, id: u64) {
        self.book
            .execute(lobster::OrderType::Cancel { id: u128::from(id) });
    }

    fn keep(&self, event: &lobster::OrderEvent, out: &mut Vec<Fill>) {
        if self.fills == Fills::Dropped {
            return;
        }
        let (lobster::OrderEvent::Filled { fills, .. }
        | lobster::OrderEvent::PartiallyFilled { fills, .. }) = event
        else {
            return;
        };
        let id = |id: u128| u64::try_from(id).expect("ids given were u64");
        out.extend(fills.iter().map(|fill| Fill {
            maker_id: id(fill.order_2),
            taker_id: id(fill.order_1),
            price_ticks: fill.price,
            qty_lots: fill.qty,
        }));
    }
}

impl PeerBook for Lobster {
    fn new(fills: Fills) -> Lobster {
        Lobster {
            book: lobster::OrderBook::default(),
            fills,
        }
    }

    #[inline]
    fn apply(&mut self, op: &PeerOp, out: &mut Vec<Fill>) {
        match *op {
            PeerOp::Limit {
                id,
                side,
                price_ticks,
                qty_lots,
                tif,
            } => {
                let event = self.limit(id, side, price_ticks, qty_lots);
                self.keep(&event, out);
                // No IOC in lobster: whatever rested is cancelled at once.
                let rested = matches!(
                    event,
                    lobster::OrderEvent::Placed { .. }
                        | lobster::OrderEvent::PartiallyFilled { .. }
                );
                if tif == TimeInForce::Ioc && rested {
                    self.cancel(id);
                }
            }
            PeerOp::Cancel { id } => self.cancel(id),
            // No replace in lobster: cancel, then the same id anew at the new price.
            PeerOp::Move {
                id,
                side,
                price_ticks,
                qty_lots,
            } => {
                self.cancel(id);
                let event = self.limit(id, side, price_ticks, qty_lots);
                self.keep(&event, out);
            }
        }
    }

    fn misses(&self) -> Misses {
        // lobster answers a cancel of an unknown id like any other and has no errors: nothing to
        // count.
        Misses::default()
    }
}

/// Kinko's matching core on the workload's own commands, its fills in the same words.
struct KinkoBook {
    matcher: Matcher,
    events: Vec<Event>,
}

impl KinkoBook {
    fn new() -> KinkoBook {
        KinkoBook {
            matcher: matcher_new(),
            events: Vec::new(),
        }
    }

    fn apply(&mut self, record: &Sequenced, out: &mut Vec<Fill>) {
        self.events.clear();
        self.matcher.apply(record, &mut self.events);
        let unsigned = |value: i64| u64::try_from(value).expect("positive");
        out.extend(self.events.iter().filter_map(|event| match *event {
            Event::Fill {
                maker_order_id,
                taker_order_id,
                price_ticks,
                qty_lots,
                ..
            } => Some(Fill {
                maker_id: maker_order_id,
                taker_id: taker_order_id,
                price_ticks: unsigned(price_ticks),
                qty_lots: unsigned(qty_lots),
            }),
            _ => None,
        }));
    }
}

/// How far a peer's trades agree with Kinko's, command by command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Agreement {
    pub commands: u64,
    pub fills_kinko: u64,
    pub fills_peer: u64,
    /// Commands after which the two books reported different fills.
    pub commands_differing: u64,
    pub first_difference: Option<Difference>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub command: usize,
    pub kinko: Vec<Fill>,
    pub peer: Vec<Fill>,
}

impl Agreement {
    pub fn record(&mut self, command: usize, kinko: &[Fill], peer: &[Fill]) {
        self.commands += 1;
        self.fills_kinko += kinko.len() as u64;
        self.fills_peer += peer.len() as u64;
        if kinko != peer {
            self.commands_differing += 1;
            self.first_difference.get_or_insert_with(|| Difference {
                command,
                kinko: kinko.to_vec(),
                peer: peer.to_vec(),
            });
        }
    }

    pub fn agrees(&self) -> bool {
        self.commands_differing == 0
    }

    pub fn describe(&self, peer: &str) -> String {
        let mut text = format!(
            "{peer}: {} commands, {} fills against Kinko's {}, {} commands with different fills",
            self.commands, self.fills_peer, self.fills_kinko, self.commands_differing
        );
        if let Some(first) = &self.first_difference {
            text.push_str(&format!(
                "; the first at command {}: Kinko {:?}, {peer} {:?}",
                first.command, first.kinko, first.peer
            ));
        }
        text
    }
}

/// Runs every command through Kinko and both peers in step, comparing their fills.
pub fn compare_trades(workload: &Workload) -> (Agreement, Agreement) {
    let ops = translate(&workload.commands);
    let mut kinko = KinkoBook::new();
    let mut orderbook = OrderbookRs::new(Fills::Kept);
    let mut lobster = Lobster::new(Fills::Kept);
    let (mut agreement_orderbook, mut agreement_lobster) =
        (Agreement::default(), Agreement::default());
    let (mut fills_kinko, mut fills_peer) = (Vec::new(), Vec::new());
    for (i, (record, op)) in workload.commands.iter().zip(&ops).enumerate() {
        fills_kinko.clear();
        kinko.apply(record, &mut fills_kinko);
        fills_peer.clear();
        orderbook.apply(op, &mut fills_peer);
        agreement_orderbook.record(i, &fills_kinko, &fills_peer);
        fills_peer.clear();
        lobster.apply(op, &mut fills_peer);
        agreement_lobster.record(i, &fills_kinko, &fills_peer);
    }
    (agreement_orderbook, agreement_lobster)
}

/// The three books of a round, in the order the first round runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    Kinko,
    OrderbookRs,
    Lobster,
}

impl Contender {
    const ALL: [Contender; 3] = [Contender::Kinko, Contender::OrderbookRs, Contender::Lobster];

    fn name(self) -> &'static str {
        match self {
            Contender::Kinko => "kinko",
            Contender::OrderbookRs => "orderbook-rs",
            Contender::Lobster => "lobster",
        }
    }
}

/// Every round's figures of one book.
#[derive(Default)]
struct Runs {
    ops_per_sec: Vec<f64>,
    samples_ns: Vec<u64>,
    others_share: Option<f64>,
    /// The same in every run: the stream is fixed.
    misses: Misses,
}

impl Runs {
    fn median_ops_per_sec(&self) -> f64 {
        median(&self.ops_per_sec)
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The stream every book replays: Kinko's recorded commands and the same as peer calls.
struct Stream<'a> {
    workload: &'a Workload,
    warmup: &'a [PeerOp],
    measured: &'a [PeerOp],
}

fn time_kinko(stream: &Stream) -> (f64, Vec<u64>, Misses) {
    let count = stream.workload.measured().len();
    let (elapsed, timed) = run_throughput_then_latency(
        count,
        || Replay::new(stream.workload),
        |replay, i| replay.step(i),
        |replay| replay.check_complete(),
    );
    (
        ops_per_sec(count, elapsed),
        timed.samples_ns,
        Misses::default(),
    )
}

fn time_peer<B: PeerBook>(stream: &Stream) -> (f64, Vec<u64>, Misses) {
    let count = stream.measured.len();
    let mut unused = Vec::new();
    let fresh = || {
        let mut book = B::new(Fills::Dropped);
        let mut out = Vec::new();
        for op in stream.warmup {
            book.apply(op, &mut out);
        }
        book
    };
    let mut misses = Misses::default();
    let (elapsed, timed) = run_throughput_then_latency(
        count,
        fresh,
        |book, i| book.apply(&stream.measured[i], &mut unused),
        |book| misses = book.misses(),
    );
    (ops_per_sec(count, elapsed), timed.samples_ns, misses)
}

pub fn run(options: &Options) -> Report {
    let (commands_measured, rounds, check_commands) = match options.length {
        Length::Full => (COMMANDS_MEASURED_DEFAULT, ROUNDS_FULL, CHECK_COMMANDS_FULL),
        Length::Quick => (COMMANDS_MEASURED_QUICK, ROUNDS_QUICK, CHECK_COMMANDS_QUICK),
    };
    let spec = WorkloadSpec {
        seed: options.seed,
        commands_warmup: COMMANDS_WARMUP_DEFAULT,
        commands_measured: options.commands_measured.unwrap_or(commands_measured),
    };
    let workload = Workload::generate(spec);
    let ops = translate(&workload.commands);
    let (warmup, measured) = ops.split_at(workload.commands_warmup);
    let stream = Stream {
        workload: &workload,
        warmup,
        measured,
    };
    let mut runs: [Runs; 3] = Default::default();
    let mut notes = vec![
        format!(
            "stream: the engine scenario's commands, seed {:#x}: {} warm-up (untimed, on every fresh \
             book) + {} measured; {rounds} rounds, the books' order rotating each round; ops/s is \
             the median round's, latencies (one clock read per command, included) over all rounds",
            spec.seed,
            warmup.len(),
            measured.len()
        ),
        mapping_note(),
    ];
    for round in 0..rounds {
        let mut line = format!("round {}:", round + 1);
        for k in 0..Contender::ALL.len() {
            let index = (round + k) % Contender::ALL.len();
            let contender = Contender::ALL[index];
            let cpu_before = CpuTimes::now();
            let (ops_per_sec, samples_ns, misses) = match contender {
                Contender::Kinko => time_kinko(&stream),
                Contender::OrderbookRs => time_peer::<OrderbookRs>(&stream),
                Contender::Lobster => time_peer::<Lobster>(&stream),
            };
            let run = &mut runs[index];
            let others = others_share_since(cpu_before);
            // The most disturbed round: the column is there to flag a figure taken on a busy machine.
            run.others_share = match (run.others_share, others) {
                (Some(worst), Some(share)) => Some(worst.max(share)),
                (worst, share) => worst.or(share),
            };
            run.ops_per_sec.push(ops_per_sec);
            run.samples_ns.extend(samples_ns);
            run.misses = misses;
            line.push_str(&format!(
                " {} {:.2} M/s",
                contender.name(),
                ops_per_sec / 1e6
            ));
        }
        notes.push(line);
    }
    let rows: Vec<Row> = Contender::ALL
        .iter()
        .zip(&runs)
        .map(|(contender, run)| Row {
            scenario: format!("peers:{}", contender.name()),
            count: measured.len() as u64,
            ops_per_sec: run.median_ops_per_sec(),
            offered_per_sec: None,
            latency: Percentiles::from_samples(&run.samples_ns),
            others_cpu_share: run.others_share,
        })
        .collect();
    notes.extend(ratio_notes(&runs, &rows));
    let misses = runs[1].misses;
    notes.push(format!(
        "orderbook-rs answered 'no such order' to {} cancels and moves of a timed run and an \
         error to {} other calls: the orders Kinko's self-trade prevention kept (see the trades on \
         the timed stream below); lobster gives no such answers",
        misses.not_found, misses.errors
    ));
    notes.extend(trade_notes(&workload, options.seed, check_commands));
    Report { notes, rows }
}

fn mapping_note() -> String {
    format!(
        "books: Kinko's Matcher::apply on the recorded commands (self-trade prevention on, events \
         into a reused vector); {ORDERBOOK_RS} (GTC and IOC limit orders, cancel_order, \
         update_order(UpdatePrice) for a move: all native; stub clock, no self-trade prevention, no \
         listener); {LOBSTER} (limit orders and cancels only: an IOC is a limit order and a cancel \
         of what rested, a move is a cancel and a limit order with the same id, open quantity and \
         the new price: the nearest equivalents; its default book, no stats)"
    )
}

fn ratio_notes(runs: &[Runs; 3], rows: &[Row]) -> Vec<String> {
    let (kinko, kinko_row) = (&runs[0], &rows[0]);
    let mut notes = Vec::new();
    let mut ratio_to_faster = f64::INFINITY;
    let mut faster = "";
    for ((contender, run), row) in Contender::ALL.iter().zip(runs).zip(rows).skip(1) {
        let ratio = kinko.median_ops_per_sec() / run.median_ops_per_sec();
        let per_round = kinko.ops_per_sec.iter().zip(&run.ops_per_sec);
        let (low, high) = per_round
            .map(|(k, p)| k / p)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
                (lo.min(r), hi.max(r))
            });
        notes.push(format!(
            "Kinko ÷ {}: {ratio:.2}× the ops/s (rounds {low:.2}–{high:.2}×); p50 {} against {}, \
             p99 {} against {}, p99.9 {} against {}",
            contender.name(),
            duration_text(kinko_row.latency.p50_ns),
            duration_text(row.latency.p50_ns),
            duration_text(kinko_row.latency.p99_ns),
            duration_text(row.latency.p99_ns),
            duration_text(kinko_row.latency.p999_ns),
            duration_text(row.latency.p999_ns),
        ));
        if ratio < ratio_to_faster {
            ratio_to_faster = ratio;
            faster = contender.name();
        }
    }
    let verdict = if ratio_to_faster >= BAR_RATIO {
        "met"
    } else {
        "NOT met"
    };
    notes.push(format!(
        "bar (issue #9): Kinko's matching core at least {BAR_RATIO}× the faster peer on the same \
         stream in the same run: {verdict} ({ratio_to_faster:.2}× {faster})"
    ));
    notes
}

fn trade_notes(engine_stream: &Workload, seed: u64, check_commands: usize) -> Vec<String> {
    let spec = WorkloadSpec {
        seed,
        commands_warmup: COMMANDS_WARMUP_DEFAULT,
        commands_measured: check_commands,
    };
    let by_side = Workload::generate_with(spec, Accounts::BySide);
    let (orderbook, lobster) = compare_trades(&by_side);
    let verdict = if orderbook.agrees() && lobster.agrees() {
        "the same fills, command by command"
    } else {
        "DIVERGENCE, see below"
    };
    let (orderbook_engine, lobster_engine) = compare_trades(engine_stream);
    vec![
        format!(
            "trades where the rules agree (the same generator with even accounts buying and odd \
             accounts selling, so that no self-trade prevention applies; every command from the \
             first, warm-up included; fills compared by maker id, taker id, price and quantity): \
             {verdict}"
        ),
        format!("  {}", orderbook.describe("orderbook-rs")),
        format!("  {}", lobster.describe("lobster")),
        "trades on the timed stream itself, where Kinko's self-trade prevention cancels a resting \
         order of the taker's own account that the peers trade with, after which their books differ:"
            .into(),
        format!("  {}", orderbook_engine.describe("orderbook-rs")),
        format!("  {}", lobster_engine.describe("lobster")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::NewOrder;

    fn record(seq: u64, command: Command) -> Sequenced {
        Sequenced {
            seq,
            ts_ns: seq,
            command,
        }
    }

    fn limit(side: Side, price_ticks: i64, qty_lots: i64, tif: TimeInForce) -> Command {
        Command::NewOrder(NewOrder {
            account: 1,
            instrument: 0,
            client_order_id: 7,
            side,
            kind: OrderKind::limit(price_ticks, tif),
            qty_lots,
            stp: None,
        })
    }

    #[test]
    fn translation_numbers_orders_as_kinko_does_and_moves_keep_their_side() {
        let commands = [
            record(1, limit(Side::Buy, 99, 5, TimeInForce::Gtc)),
            record(2, limit(Side::Sell, 101, 3, TimeInForce::Ioc)),
            record(
                3,
                Command::Replace {
                    account: 1,
                    order: OrderRef::Id(1),
                    price_ticks: 98,
                    qty_lots: 5,
                    client_order_id_new: None,
                },
            ),
            record(
                4,
                Command::Cancel {
                    account: 1,
                    order: OrderRef::Id(1),
                },
            ),
        ];
        let expected = [
            PeerOp::Limit {
                id: 1,
                side: Side::Buy,
                price_ticks: 99,
                qty_lots: 5,
                tif: TimeInForce::Gtc,
            },
            PeerOp::Limit {
                id: 2,
                side: Side::Sell,
                price_ticks: 101,
                qty_lots: 3,
                tif: TimeInForce::Ioc,
            },
            PeerOp::Move {
                id: 1,
                side: Side::Buy,
                price_ticks: 98,
                qty_lots: 5,
            },
            PeerOp::Cancel { id: 1 },
        ];
        assert_eq!(translate(&commands), expected);
    }

    fn fill(maker_id: u64, taker_id: u64, price_ticks: u64, qty_lots: u64) -> Fill {
        Fill {
            maker_id,
            taker_id,
            price_ticks,
            qty_lots,
        }
    }

    /// The ops through a peer, one fill list per op.
    fn fills_of<B: PeerBook>(ops: &[PeerOp]) -> Vec<Vec<Fill>> {
        let mut book = B::new(Fills::Kept);
        ops.iter()
            .map(|op| {
                let mut out = Vec::new();
                book.apply(op, &mut out);
                out
            })
            .collect()
    }

    /// A small book walked through each mapping: price-time priority, an IOC that must not rest,
    /// a move that loses priority, a move that trades, a cancel.
    fn mapping_cases() -> (Vec<PeerOp>, Vec<Vec<Fill>>) {
        let gtc = |id, side, price_ticks, qty_lots| PeerOp::Limit {
            id,
            side,
            price_ticks,
            qty_lots,
            tif: TimeInForce::Gtc,
        };
        let move_to = |id, side, price_ticks, qty_lots| PeerOp::Move {
            id,
            side,
            price_ticks,
            qty_lots,
        };
        let ops = vec![
            gtc(1, Side::Sell, 101, 5),
            gtc(2, Side::Sell, 101, 5),
            gtc(3, Side::Sell, 102, 5),
            // Takes 1 fully and 2 in part, in time order at the better price first.
            gtc(4, Side::Buy, 101, 7),
            // An IOC for more than there is at its limit: its rest must not stay on the book.
            PeerOp::Limit {
                id: 5,
                side: Side::Buy,
                price_ticks: 101,
                qty_lots: 9,
                tif: TimeInForce::Ioc,
            },
            // Nothing rests at 101 now; had the IOC rested, this sell would trade with it.
            gtc(6, Side::Sell, 101, 4),
            // 3 moves to 101 behind 6: it loses its place.
            move_to(3, Side::Sell, 101, 5),
            gtc(7, Side::Buy, 101, 6),
            PeerOp::Cancel { id: 3 },
            // A buy resting at 100, then a sell moved onto it trades.
            gtc(8, Side::Buy, 100, 2),
            gtc(9, Side::Sell, 103, 2),
            move_to(9, Side::Sell, 100, 2),
        ];
        let expected = vec![
            vec![],
            vec![],
            vec![],
            vec![fill(1, 4, 101, 5), fill(2, 4, 101, 2)],
            vec![fill(2, 5, 101, 3)],
            vec![],
            vec![],
            vec![fill(6, 7, 101, 4), fill(3, 7, 101, 2)],
            vec![],
            vec![],
            vec![],
            vec![fill(8, 9, 100, 2)],
        ];
        (ops, expected)
    }

    #[test]
    fn orderbook_rs_mapping_trades_as_expected() {
        let (ops, expected) = mapping_cases();
        assert_eq!(fills_of::<OrderbookRs>(&ops), expected);
    }

    #[test]
    fn lobster_mapping_trades_as_expected() {
        let (ops, expected) = mapping_cases();
        assert_eq!(fills_of::<Lobster>(&ops), expected);
    }

    #[test]
    fn agreement_counts_and_keeps_the_first_difference() {
        let mut agreement = Agreement::default();
        agreement.record(0, &[], &[]);
        agreement.record(1, &[fill(1, 2, 100, 3)], &[fill(1, 2, 100, 3)]);
        assert!(agreement.agrees());
        agreement.record(2, &[fill(1, 3, 100, 1)], &[fill(1, 3, 100, 2)]);
        agreement.record(3, &[], &[fill(4, 5, 99, 1)]);
        assert!(!agreement.agrees());
        assert_eq!(agreement.commands, 4);
        assert_eq!(agreement.fills_kinko, 2);
        assert_eq!(agreement.fills_peer, 3);
        assert_eq!(agreement.commands_differing, 2);
        let first = agreement.first_difference.as_ref().unwrap();
        assert_eq!(first.command, 2);
        assert_eq!(first.kinko, vec![fill(1, 3, 100, 1)]);
        assert_eq!(first.peer, vec![fill(1, 3, 100, 2)]);
        assert!(agreement.describe("x").contains("the first at command 2"));
    }

    #[test]
    fn peers_trade_like_kinko_where_the_rules_agree() {
        let workload = Workload::generate_with(
            WorkloadSpec {
                seed: 21,
                commands_warmup: 5_000,
                commands_measured: 20_000,
            },
            Accounts::BySide,
        );
        let (orderbook, lobster) = compare_trades(&workload);
        assert!(orderbook.fills_kinko > 500, "{orderbook:?}");
        assert!(orderbook.agrees(), "{}", orderbook.describe("orderbook-rs"));
        assert!(lobster.agrees(), "{}", lobster.describe("lobster"));
        // Where the books agree, orderbook-rs finds every order the stream names.
        let mut book = OrderbookRs::new(Fills::Dropped);
        for op in translate(&workload.commands) {
            book.apply(&op, &mut Vec::new());
        }
        assert_eq!(book.misses(), Misses::default());
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
