//! The hub: one thread that reads the engine's published batches, routes each acknowledgement to
//! the session that sent the command, fans execution reports and balance updates out to every
//! session logged in to the account concerned, and publishes market data (level-2 updates with
//! sequence numbers and checksums, trades, tickers) to subscribers. It mirrors books and balances
//! from events; it never touches the engine's state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::Receiver;
use engine::audit::KeyChange;
use engine::runtime::{Published, Submitter};
use engine::{
    AccountId, Event, ExchangeConfig, ExchangeEvent, ExchangeSnapshot, OrderKind, PriceTicks,
    QtyLots, Side,
};
use ledger::{AssetId, Balance, Location};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::auth::Keys;
use crate::config::ServeConfig;
use crate::market::{amount_text, side_name, BookMirror, Trade};
use crate::metrics::Metrics;
use crate::protocol::{executions, snake};

/// What the hub hands a session.
#[derive(Debug)]
pub enum Outgoing {
    /// A pre-serialized message (market data, executions, balances).
    Text(Arc<str>),
    /// The outcome of one of the session's own commands, with the engine's timestamp.
    Ack {
        token: u64,
        seq: u64,
        ts_ns: u64,
        events: Vec<ExchangeEvent>,
        /// For a key change: what the hub made of its journal record (the fields of the reply,
        /// the new secret among them), already applied to the key store.
        key: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    },
    /// An order event of the session's account, raw, for sessions that speak another wire format
    /// than JSON (FIX). `fee` is `(maker units, taker units, quote decimals)` for a fill.
    Event {
        seq: u64,
        ts_ns: u64,
        index: usize,
        event: Event,
        fee: Option<(i64, i64, u8)>,
    },
    /// The server closes the connection with this reason.
    Close(&'static str),
}

/// How a session wants its account's executions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// JSON text (WebSocket).
    Json,
    /// Raw events (FIX sessions encode them themselves).
    Raw,
}

pub struct SessionEntry {
    pub tx: mpsc::Sender<Outgoing>,
    pub account: Option<AccountId>,
    pub channels: BTreeSet<String>,
    pub wire: Wire,
    /// Told when the session must close and its queue is full (it stopped reading, or is behind):
    /// the close cannot travel through the full queue itself.
    pub kill: Arc<Kill>,
    /// The API key the session logged in with (a FIX session: its SenderCompID); revoking,
    /// rotating or the expiry of that key closes the session.
    pub key: Option<String>,
}

/// A session's kill switch: the close that a full queue could not carry, with its reason. The
/// first reason given is the one the session closes with.
#[derive(Debug, Default)]
pub struct Kill {
    notify: tokio::sync::Notify,
    reason: std::sync::OnceLock<&'static str>,
}

impl Kill {
    pub fn fire(&self, reason: &'static str) {
        let _ = self.reason.set(reason);
        self.notify.notify_one();
    }

    /// Waits until the switch is fired (at once if it was already) and returns the reason.
    pub async fn fired(&self) -> &'static str {
        self.notify.notified().await;
        self.reason
            .get()
            .copied()
            .expect("a reason is set before the notification")
    }
}

/// Closes every open session (WebSocket and FIX) logged in with `key`; `reason` is the close
/// reason (WebSocket) or the Logout text (FIX). Returns how many were told.
pub fn close_sessions_of_key(shared: &Shared, key: &str, reason: &'static str) -> usize {
    let inner = shared.inner.lock();
    let mut told = 0;
    for entry in inner.sessions.values() {
        if entry.key.as_deref() == Some(key) {
            if entry.tx.try_send(Outgoing::Close(reason)).is_err() {
                // A full queue cannot carry the close: the kill switch does.
                entry.kill.fire(reason);
            }
            told += 1;
        }
    }
    told
}

/// Everything the hub and the sessions share, under one lock so that a book snapshot taken at
/// subscription and the updates after it never leave a gap.
/// An open order as the hub knows it from events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderInfo {
    pub account: AccountId,
    pub instrument: u32,
    pub client_order_id: u64,
    pub side: Side,
    /// The limit price (none for a market or stop-market order).
    pub price_ticks: Option<PriceTicks>,
    pub qty_open: QtyLots,
}

pub struct Inner {
    pub sessions: HashMap<u64, SessionEntry>,
    pub orders: HashMap<u64, OrderInfo>,
    pub orders_by_client: HashMap<(AccountId, u64), u64>,
    pub books: Vec<BookMirror>,
    pub balances: BTreeMap<(AccountId, AssetId), Balance>,
    pub last_ts_ns: u64,
    /// The last sequence number whose batch the hub has published (and mirrored).
    pub seq_published: u64,
    pub custody: crate::custody::CustodyMirror,
}

pub struct Shared {
    pub config: ServeConfig,
    pub exchange: ExchangeConfig,
    pub keys: Keys,
    pub submitter: Submitter,
    pub inner: Mutex<Inner>,
    pub metrics: Metrics,
    pub session_next: AtomicU64,
    pub account_buckets: Mutex<HashMap<AccountId, crate::session::TokenBucket>>,
    /// The chain adapter: the simulated chain (gateway::custody::chain).
    pub chain: Mutex<crate::custody::chain::SimulatedChain>,
    /// Operators' custody moves (sweeps to cold, top-ups), waiting for the custody driver.
    pub orders: Mutex<Vec<crate::custody::DriverOrder>>,
    /// Key changes submitted to the engine, waiting for their journal record (token → change).
    /// The hub applies each when its record is published, whether or not the operator's session
    /// is still there to hear of it: the journal and the key store must never disagree.
    pub key_changes: Mutex<HashMap<u64, crate::auth::Pending>>,
    /// Notified (once, a permit kept until someone waits) when the engine thread has stopped on
    /// an error and every session has been told.
    pub engine_stopped: tokio::sync::Notify,
}

impl Shared {
    pub fn new(
        config: ServeConfig,
        keys: Keys,
        submitter: Submitter,
        start: &ExchangeSnapshot,
    ) -> Shared {
        let exchange = config.exchange();
        let mut books: Vec<BookMirror> = start
            .matcher
            .books
            .iter()
            .map(|b| BookMirror::new(b.spec.clone()))
            .collect();
        for (mirror, book) in books.iter_mut().zip(&start.matcher.books) {
            for order in &book.orders {
                mirror.apply(order.side, order.price_ticks, order.qty_open);
            }
            mirror.last_ticks = book.last_ticks;
        }
        let assets = start.ledger.assets.len();
        let balances = start
            .ledger
            .balances
            .iter()
            .enumerate()
            .map(|(i, b)| (((i / assets) as AccountId, (i % assets) as AssetId), *b))
            .collect();
        let mut orders = HashMap::new();
        let mut orders_by_client = HashMap::new();
        for (instrument, book) in start.matcher.books.iter().enumerate() {
            for o in book.orders.iter().chain(&book.stops) {
                let info = OrderInfo {
                    account: o.account,
                    instrument: instrument as u32,
                    client_order_id: o.client_order_id,
                    side: o.side,
                    price_ticks: limit_price(o.kind),
                    qty_open: o.qty_open,
                };
                orders.insert(o.order_id, info);
                orders_by_client.insert((o.account, o.client_order_id), o.order_id);
            }
        }
        Shared {
            keys,
            config,
            exchange,
            submitter,
            inner: Mutex::new(Inner {
                sessions: HashMap::new(),
                orders,
                orders_by_client,
                books,
                balances,
                last_ts_ns: 0,
                seq_published: 0,
                custody: crate::custody::CustodyMirror::new(start),
            }),
            metrics: Metrics::default(),
            session_next: AtomicU64::new(1),
            account_buckets: Mutex::new(HashMap::new()),
            chain: Mutex::new(simulated_chain(start)),
            orders: Mutex::new(Vec::new()),
            key_changes: Mutex::new(HashMap::new()),
            engine_stopped: tokio::sync::Notify::new(),
        }
    }

    /// The balance message of one account and asset.
    pub fn balance_json(&self, account: AccountId, asset: AssetId, balance: Balance) -> Value {
        let spec = &self.exchange.assets[asset as usize];
        json!({
            "type": "balance",
            "account": account,
            "asset": spec.code,
            "available": amount_text(balance.available, spec.decimals),
            "held": amount_text(balance.held, spec.decimals),
        })
    }
}

/// Sends to one session; a full queue marks it a slow consumer, which is then closed.
fn deliver(entry: &SessionEntry, message: Outgoing, slow: &mut Vec<Slow>) {
    if let Err(mpsc::error::TrySendError::Full(_)) = entry.tx.try_send(message) {
        slow.push(Slow {
            tx: entry.tx.clone(),
            kill: entry.kill.clone(),
            wire: entry.wire,
        });
    }
}

/// A session whose queue was full.
pub struct Slow {
    tx: mpsc::Sender<Outgoing>,
    kill: Arc<Kill>,
    wire: Wire,
}

/// A JSON session that cannot keep up is closed with `slow_consumer` and leaves the registry at
/// once, so that nothing more is queued for it and no message is lost unannounced. FIX sessions
/// are only counted: their store and resend logic answer for gaps.
fn close_slow(shared: &Shared, slow: Vec<Slow>) {
    if slow.is_empty() {
        return;
    }
    let mut inner = shared.inner.lock();
    for s in slow {
        shared
            .metrics
            .slow_consumers
            .fetch_add(1, Ordering::Relaxed);
        if s.wire == Wire::Json {
            inner.sessions.retain(|_, e| !e.tx.same_channel(&s.tx));
            s.kill.fire("slow_consumer");
        }
    }
}

/// Runs until the engine's outbound channel closes.
/// The simulated chain at start: every wallet holds what the ledger says, less what was broadcast
/// and not yet confirmed (gone from the wallet, still in the ledger until completion).
fn simulated_chain(start: &ExchangeSnapshot) -> crate::custody::chain::SimulatedChain {
    let mut chain = crate::custody::chain::SimulatedChain::new();
    let assets = start.ledger.assets.len();
    for (i, row) in start.ledger.rows.iter().enumerate() {
        let pool = ledger::Pool::ALL[i / assets];
        let asset = (i % assets) as AssetId;
        for location in [Location::Hot, Location::Cold, Location::Bank] {
            chain.credit(pool, asset, location, row.custody[location.index()]);
        }
    }
    for (_, w) in &start.withdrawals {
        if w.broadcast.is_some() {
            let pool = start.ledger.pools[w.account as usize];
            let location = start.ledger.assets[w.asset as usize].operating_location();
            chain.credit(pool, w.asset, location, -w.amount_units);
        }
    }
    chain
}

/// The hub as a task of a spinning runtime (`idle = "spin"`): polls the engine's output and
/// yields between polls, so that the runtime's thread never sleeps and each batch is published
/// within one round of the runtime's other tasks. Runs until the outbound channel closes.
pub async fn run_polling(shared: Arc<Shared>, outbound: Receiver<Published>) {
    loop {
        match outbound.try_recv() {
            Ok(batch) => {
                let rest = publish_acks(&shared, &batch);
                // The sessions write the acknowledgements before market data and balances are
                // formatted: those are not on an order's path to its answer.
                tokio::task::yield_now().await;
                publish_rest(&shared, &batch, rest);
            }
            Err(crossbeam::channel::TryRecvError::Empty) => tokio::task::yield_now().await,
            Err(crossbeam::channel::TryRecvError::Disconnected) => return engine_gone(&shared),
        }
    }
}

pub fn run(shared: Arc<Shared>, outbound: Receiver<Published>) {
    loop {
        let batch = match outbound.recv_timeout(Duration::from_millis(200)) {
            Ok(batch) => batch,
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam::channel::RecvTimeoutError::Disconnected) => return engine_gone(&shared),
        };
        publish(&shared, &batch);
    }
}

/// The engine's outbound channel closed. At a shutdown, nothing to do. If the engine thread
/// stopped on an error, every session is closed with `engine_stopped`: their requests in flight
/// will never be answered (a batch whose commit failed is not in the journal, or only partly,
/// as after a crash), and the process is told to exit (`Running::engine_stopped`).
fn engine_gone(shared: &Shared) {
    let Some(failure) = shared.submitter.failure() else {
        return;
    };
    let told = {
        let inner = shared.inner.lock();
        for entry in inner.sessions.values() {
            if entry
                .tx
                .try_send(Outgoing::Close("engine_stopped"))
                .is_err()
            {
                entry.kill.fire("engine_stopped");
            }
        }
        inner.sessions.len()
    };
    tracing::error!(
        "the engine stopped: {failure}; {told} session(s) closed with engine_stopped, nothing \
         more is taken until a restart"
    );
    shared.engine_stopped.notify_one();
}

/// Applies the key changes this batch journaled, before the acknowledgements go out (and before
/// the hub's lock is taken: a rotation closes sessions, which takes it). Returns the fields of
/// each one's reply, by token, and the keys rotated, whose sessions are closed once the replies
/// are on their way.
fn key_changes_journaled(
    shared: &Shared,
    batch: &Published,
) -> (HashMap<u64, KeyOutcome>, Vec<String>) {
    let (mut outcomes, mut rotated) = (HashMap::new(), Vec::new());
    let mut pending = shared.key_changes.lock();
    if pending.is_empty() {
        return (outcomes, rotated);
    }
    for ack in &batch.acks {
        if let Some(change) = pending.remove(&ack.token) {
            let outcome =
                crate::operator::key_change_journaled(shared, &change, batch.events_of(ack));
            if outcome.is_ok() && matches!(change.change, KeyChange::Rotated { .. }) {
                rotated.push(change.name.clone());
            }
            outcomes.insert(ack.token, Box::new(outcome.unwrap_or_else(|error| error)));
        }
    }
    (outcomes, rotated)
}

type KeyOutcome = Box<serde_json::Map<String, serde_json::Value>>;

fn publish(shared: &Shared, batch: &Published) {
    let rest = publish_acks(shared, batch);
    publish_rest(shared, batch, rest);
}

/// What a batch has left to publish once its acknowledgements and executions are out.
struct Rest {
    slow: Vec<Slow>,
}

/// The first half of publishing a batch: each acknowledgement to its session and each execution
/// to the sessions of its account, in sequence, with the open-order, custody and balance mirrors
/// moved along, and the sessions of rotated keys closed. Market data and balance messages follow
/// in [`publish_rest`]; a spinning hub lets the sessions
/// write their acknowledgements in between. Either way each session receives its messages in
/// sequence order, and a book's snapshot and updates stay in step (the book mirror moves in the
/// second half, under the same lock as its updates are formatted).
fn publish_acks(shared: &Shared, batch: &Published) -> Rest {
    let (mut key_outcomes, rotated) = key_changes_journaled(shared, batch);
    let mut slow = Vec::new();
    let mut inner = shared.inner.lock();
    if let Some(ack) = batch.acks.last() {
        inner.last_ts_ns = ack.ts_ns;
        inner.seq_published = ack.seq;
    }
    for ack in &batch.acks {
        let events = batch.events_of(ack);
        count_rejects(&shared.metrics, events);
        // The acknowledging session is woken last: a runtime thread runs the task it woke last
        // first (tokio's LIFO slot), and the acknowledgement is what its client waits for.
        let own = ack.token >> 32;
        let (mine, others): (Vec<_>, Vec<_>) =
            executions_to_deliver(shared, &inner, (ack.seq, ack.ts_ns), events)
                .into_iter()
                .partition(|(id, _)| *id == own);
        for (session, message) in others {
            if let Some(entry) = inner.sessions.get(&session) {
                deliver(entry, message, &mut slow);
            }
        }
        if let Some(entry) = inner.sessions.get(&own) {
            let message = Outgoing::Ack {
                token: ack.token,
                seq: ack.seq,
                ts_ns: ack.ts_ns,
                events: events.to_vec(),
                key: key_outcomes.remove(&ack.token),
            };
            deliver(entry, message, &mut slow);
            for (_, message) in mine {
                deliver(entry, message, &mut slow);
            }
        }
        track_orders(&mut inner, events);
        inner.custody.apply(ack.seq, events);
    }
    // The balance mirror moves with `seq_published` and the order mirror (a login, the account
    // API and the custody status read them together); their messages follow in the second half.
    for &(account, asset, balance) in &batch.balances {
        inner.balances.insert((account, asset), balance);
    }
    drop(inner);
    for key in rotated {
        let closed = close_sessions_of_key(shared, &key, "key_rotated");
        tracing::warn!("key {key} rotated; {closed} open session(s) closed");
    }
    Rest { slow }
}

/// The second half: level-2 updates, trades and tickers, and balances.
fn publish_rest(shared: &Shared, batch: &Published, rest: Rest) {
    let Rest { mut slow } = rest;
    let mut inner = shared.inner.lock();
    publish_market(&mut inner, batch, &mut slow);
    for &(account, asset, balance) in &batch.balances {
        // Balances go to WebSocket sessions only (FIX 4.4 order entry has no message for them).
        let mut listeners = inner
            .sessions
            .values()
            .filter(|e| e.account == Some(account) && e.wire == Wire::Json)
            .peekable();
        if listeners.peek().is_none() {
            continue;
        }
        let text: Arc<str> = shared
            .balance_json(account, asset, balance)
            .to_string()
            .into();
        for entry in listeners {
            deliver(entry, Outgoing::Text(text.clone()), &mut slow);
        }
    }
    drop(inner);
    close_slow(shared, slow);
}

fn limit_price(kind: OrderKind) -> Option<PriceTicks> {
    match kind {
        OrderKind::Limit { price_ticks, .. } | OrderKind::StopLimit { price_ticks, .. } => {
            Some(price_ticks)
        }
        OrderKind::Market | OrderKind::StopMarket { .. } => None,
    }
}

/// One account's open orders, oldest first, as the `open_orders` reply lists them.
pub fn open_orders_json(
    inner: &Inner,
    exchange: &ExchangeConfig,
    account: AccountId,
) -> Vec<Value> {
    let mut mine: Vec<(&u64, &OrderInfo)> = inner
        .orders
        .iter()
        .filter(|(_, o)| o.account == account)
        .collect();
    mine.sort_unstable_by_key(|(id, _)| **id);
    mine.into_iter()
        .map(|(id, o)| {
            let book = &inner.books[o.instrument as usize];
            json!({
                "order_id": id.to_string(), "instrument": exchange.instruments[o.instrument as usize].symbol,
                "client_order_id": o.client_order_id, "side": side_name(o.side),
                "price": o.price_ticks.map(|p| book.price(p)), "qty": book.qty(o.qty_open),
            })
        })
        .collect()
}

/// Keeps the open-order mirror (id → account, instrument, client id) in step with the events.
fn track_orders(inner: &mut Inner, events: &[ExchangeEvent]) {
    let close = |inner: &mut Inner, order_id: u64| {
        if let Some(info) = inner.orders.remove(&order_id) {
            inner
                .orders_by_client
                .remove(&(info.account, info.client_order_id));
        }
    };
    for event in events {
        let ExchangeEvent::Order(e) = event else {
            continue;
        };
        match *e {
            Event::Accepted {
                order_id,
                account,
                instrument,
                client_order_id,
                side,
                kind,
                qty_lots,
                ..
            } => {
                inner.orders.insert(
                    order_id,
                    OrderInfo {
                        account,
                        instrument,
                        client_order_id,
                        side,
                        price_ticks: limit_price(kind),
                        qty_open: qty_lots,
                    },
                );
                inner
                    .orders_by_client
                    .insert((account, client_order_id), order_id);
            }
            Event::Fill {
                maker_order_id,
                taker_order_id,
                maker_qty_open,
                taker_qty_open,
                ..
            } => {
                for (order_id, open) in [
                    (maker_order_id, maker_qty_open),
                    (taker_order_id, taker_qty_open),
                ] {
                    if open == 0 {
                        close(inner, order_id);
                    } else if let Some(info) = inner.orders.get_mut(&order_id) {
                        info.qty_open = open;
                    }
                }
            }
            Event::Rested {
                order_id,
                price_ticks,
                qty_lots,
                ..
            } => {
                if let Some(info) = inner.orders.get_mut(&order_id) {
                    info.price_ticks = Some(price_ticks);
                    info.qty_open = qty_lots;
                }
            }
            Event::Cancelled {
                order_id,
                qty_open: 0,
                ..
            }
            | Event::Expired { order_id, .. } => close(inner, order_id),
            Event::Cancelled {
                order_id, qty_open, ..
            } => {
                if let Some(info) = inner.orders.get_mut(&order_id) {
                    info.qty_open = qty_open;
                }
            }
            Event::Replaced {
                order_id,
                account,
                client_order_id,
                price_ticks_new,
                qty_lots_new,
                ..
            } => {
                if let Some(info) = inner.orders.get_mut(&order_id) {
                    info.price_ticks = Some(price_ticks_new);
                    info.qty_open = qty_lots_new;
                    let old = std::mem::replace(&mut info.client_order_id, client_order_id);
                    inner.orders_by_client.remove(&(account, old));
                    inner
                        .orders_by_client
                        .insert((account, client_order_id), order_id);
                }
            }
            _ => {}
        }
    }
}

fn count_rejects(metrics: &Metrics, events: &[ExchangeEvent]) {
    for event in events {
        match event {
            ExchangeEvent::Order(Event::Rejected { reason, .. })
            | ExchangeEvent::Rejected { reason, .. } => {
                metrics.reject(&snake(reason.name()));
            }
            _ => {}
        }
    }
}

/// The fees of the fill at `events[index]`, from the settlement that follows it:
/// `(maker units, taker units, quote decimals)`; `None` for any other event.
pub fn fill_fee(
    exchange: &ExchangeConfig,
    events: &[ExchangeEvent],
    index: usize,
) -> Option<(i64, i64, u8)> {
    match (events.get(index)?, events.get(index + 1)) {
        (ExchangeEvent::Order(Event::Fill { aggressor, .. }), Some(ExchangeEvent::Settled(s))) => {
            let decimals = exchange.assets[s.quote as usize].decimals;
            let (maker, taker) = match aggressor {
                Side::Buy => (s.fee_seller_units, s.fee_buyer_units),
                Side::Sell => (s.fee_buyer_units, s.fee_seller_units),
            };
            Some((maker, taker, decimals))
        }
        _ => None,
    }
}

/// The execution reports of one command's events, by session: JSON to the WebSocket sessions of
/// each account concerned, the raw event to its FIX sessions; in event order.
fn executions_to_deliver(
    shared: &Shared,
    inner: &Inner,
    (seq, ts_ns): (u64, u64),
    events: &[ExchangeEvent],
) -> Vec<(u64, Outgoing)> {
    let mut out = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let ExchangeEvent::Order(order_event) = event else {
            continue;
        };
        let fee = fill_fee(&shared.exchange, events, index);
        let listens = |account: AccountId| {
            inner
                .sessions
                .values()
                .any(|e| e.account == Some(account) && e.wire == Wire::Json)
        };
        let reports = executions(&shared.exchange, seq, index, order_event, fee, listens);
        let accounts: BTreeSet<AccountId> = reports.iter().map(|(account, _)| *account).collect();
        for (account, message) in reports {
            let Some(message) = message else { continue };
            let text: Arc<str> = message.to_string().into();
            out.extend(
                inner
                    .sessions
                    .iter()
                    .filter(|(_, e)| e.account == Some(account) && e.wire == Wire::Json)
                    .map(|(&id, _)| (id, Outgoing::Text(text.clone()))),
            );
        }
        for account in accounts {
            for (&id, _) in inner
                .sessions
                .iter()
                .filter(|(_, e)| e.account == Some(account) && e.wire == Wire::Raw)
            {
                let raw = Outgoing::Event {
                    seq,
                    ts_ns,
                    index,
                    event: *order_event,
                    fee,
                };
                out.push((id, raw));
            }
        }
    }
    out
}

fn publish_market(inner: &mut Inner, batch: &Published, slow: &mut Vec<Slow>) {
    let mut changed: BTreeMap<u32, BTreeMap<(Side, PriceTicks), QtyLots>> = BTreeMap::new();
    let mut trades: BTreeMap<u32, Vec<Trade>> = BTreeMap::new();
    for ack in &batch.acks {
        for (index, event) in batch.events_of(ack).iter().enumerate() {
            let ExchangeEvent::Order(order_event) = event else {
                continue;
            };
            if let Some(d) = order_event.level_delta() {
                let total =
                    inner.books[d.instrument as usize].apply(d.side, d.price_ticks, d.delta_lots);
                changed
                    .entry(d.instrument)
                    .or_default()
                    .insert((d.side, d.price_ticks), total);
            }
            if let Event::Fill {
                instrument,
                price_ticks,
                qty_lots,
                aggressor,
                ..
            } = *order_event
            {
                let trade = Trade {
                    trade_id: ack.seq * 65_536 + index as u64,
                    ts_ns: ack.ts_ns,
                    price_ticks,
                    qty_lots,
                    aggressor,
                };
                trades.entry(instrument).or_default().push(trade);
            }
        }
    }
    let now_ns = inner.last_ts_ns;
    let instruments: BTreeSet<u32> = changed.keys().chain(trades.keys()).copied().collect();
    for instrument in instruments {
        // Messages only for channels someone listens to: the checksum formats the top levels,
        // and a venue without market-data subscribers should not pay for them on every batch.
        let symbol = inner.books[instrument as usize].spec.symbol.clone();
        let wanted = |channel: &String| {
            inner
                .sessions
                .values()
                .any(|e| e.channels.contains(channel))
        };
        let [book_channel, trades_channel, ticker_channel] =
            ["book", "trades", "ticker"].map(|kind| format!("{kind}:{symbol}"));
        let (want_book, want_trades, want_ticker) = (
            wanted(&book_channel),
            wanted(&trades_channel),
            wanted(&ticker_channel),
        );
        let book = &mut inner.books[instrument as usize];
        let mut messages: Vec<(String, Value)> = Vec::new();
        if changed.contains_key(&instrument) {
            // The sequence moves whether or not anyone listens: a later snapshot carries it.
            book.seq += 1;
        }
        if let Some(levels) = changed.get(&instrument).filter(|_| want_book) {
            let changes: Vec<[String; 3]> = levels
                .iter()
                .map(|((side, price), qty)| {
                    [
                        side_name(*side).to_string(),
                        book.price(*price),
                        book.qty(*qty),
                    ]
                })
                .collect();
            let update = json!({
                "type": "book_update", "instrument": symbol, "seq": book.seq, "changes": changes, "checksum": book.checksum(),
            });
            messages.push((book_channel, update));
        }
        for trade in trades.remove(&instrument).unwrap_or_default() {
            if want_trades {
                messages.push((trades_channel.clone(), book.trade_json(&trade)));
            }
            book.record_trade(trade);
        }
        if want_ticker {
            messages.push((ticker_channel, book.ticker_json(now_ns)));
        }
        for (channel, message) in messages {
            let text: Arc<str> = message.to_string().into();
            for entry in inner
                .sessions
                .values()
                .filter(|e| e.channels.contains(&channel))
            {
                deliver(entry, Outgoing::Text(text.clone()), slow);
            }
        }
    }
}

/// Heartbeats: every subscriber of a book hears its current sequence number now and then, so a
/// quiet book is told apart from a dead connection.
pub fn heartbeat(shared: &Shared) {
    let inner = shared.inner.lock();
    let mut slow = Vec::new();
    for book in &inner.books {
        let channel = format!("book:{}", book.spec.symbol);
        let text: Arc<str> =
            json!({"type": "heartbeat", "instrument": book.spec.symbol, "seq": book.seq})
                .to_string()
                .into();
        for entry in inner
            .sessions
            .values()
            .filter(|e| e.channels.contains(&channel))
        {
            deliver(entry, Outgoing::Text(text.clone()), &mut slow);
        }
    }
    drop(inner);
    close_slow(shared, slow);
}

#[cfg(test)]
mod tests {
    use super::Kill;
    use std::time::Duration;

    #[tokio::test]
    async fn a_kill_switch_fired_before_anyone_waits_closes_with_the_first_reason_given() {
        let kill = Kill::default();
        kill.fire("engine_stopped");
        kill.fire("slow_consumer");
        let reason = tokio::time::timeout(Duration::from_secs(5), kill.fired()).await;
        assert_eq!(reason, Ok("engine_stopped"));
    }

    #[tokio::test]
    async fn a_kill_switch_wakes_a_session_already_waiting_and_stays_quiet_until_fired() {
        let kill = std::sync::Arc::new(Kill::default());
        let quiet = tokio::time::timeout(Duration::from_millis(50), kill.fired()).await;
        assert!(quiet.is_err(), "fired without a reason given");
        let waiting = tokio::spawn({
            let kill = kill.clone();
            async move { kill.fired().await }
        });
        tokio::task::yield_now().await;
        kill.fire("key_revoked");
        let reason = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(reason.expect("woken").expect("no panic"), "key_revoked");
    }
}
