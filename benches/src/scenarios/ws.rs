//! The `ws` scenario: a load generator against the real `kinko serve` stack (engine thread,
//! journal, hub, WebSocket sessions) on loopback, in the same process. Two connections log in as
//! two demo customers; one sends sell orders and the other buy orders at the same price, so orders
//! fill. Latency from each order's send to its acknowledgement, and for taker orders to their fill
//! execution, at fixed offered rates, with the journal in `process` and `fsync` mode and with the
//! server spinning (`idle = "spin"`, process durability).
//!
//! Against a parking server the orders go out in 1 ms ticks (the client's timer resolution), each
//! timed from the moment it is handed to its socket. Against a spinning server the generator's
//! tasks share its one polling runtime thread: each order goes out at its scheduled time (the
//! sender yields until then) and is timed from that time, so a late send counts against the
//! server (no coordinated omission); the buyer's schedule sits half a period after the seller's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::measure::scheduled_ns;
use crate::scenarios::loopback::{
    bar_notes, echo_floor_note, run_rates, stall_probe, sustained_note, two_core_stalls, Mode,
    Sampled, RUN_SECONDS,
};
use crate::scenarios::{Length, Options, Report};

const RATES_FULL: [u64; 4] = [1_000, 10_000, 20_000, 40_000];
const RATES_QUICK: [u64; 2] = [1_000, 10_000];
const TICK: Duration = Duration::from_millis(1);
/// Issue #6's bar: send → acknowledgement at 10,000 orders per second, `process` durability.
const BAR_RATE: u64 = 10_000;
const BAR_P50_NS: u64 = 50_000;
const BAR_P99_NS: u64 = 250_000;
/// The messages the reader looks into, as the server writes their `type` (compact JSON).
const TIMED_TYPES: [&str; 3] = [
    r#""type":"ack""#,
    r#""type":"execution""#,
    r#""type":"error""#,
];

pub fn run(options: &Options) -> Report {
    let rates: &[u64] = match options.length {
        Length::Full => &RATES_FULL,
        Length::Quick => &RATES_QUICK,
    };
    let rows = run_rates("ws", rates, |runtime, served, rate, mode| {
        let pacing = match mode {
            Mode::Process | Mode::Fsync => Pacing::Ticks,
            Mode::Spin => Pacing::Schedule,
        };
        runtime.block_on(run_rate(served.http, rate, pacing))
    });
    let mut notes = vec![
            "ws: kinko serve in-process on loopback; 2 WebSocket connections (a seller and a buyer at one \
             price); each row runs 2 s; `ack` = send → acknowledgement received, `fill` = \
             send of a taker order → its fill execution received"
                .into(),
            "the load generator, the server's runtime, the engine thread and the hub share this machine's \
             two cores; `process` and `fsync` rows: orders sent in 1 ms ticks, timed from the hand-off \
             to the socket; `spin` rows: each order sent at its scheduled time and timed from it"
                .into(),
        ];
    notes.extend(bar_notes(
        "ws", "issue #6", BAR_RATE, BAR_P50_NS, BAR_P99_NS, &rows,
    ));
    notes.push(sustained_note("ws", &rows));
    notes.push(two_core_stalls(stall_probe(options.length)));
    notes.push(echo_floor_note(BAR_RATE, stall_probe(options.length)));
    Report { notes, rows }
}

/// How the generator paces its orders and where it starts each one's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pacing {
    /// Every 1 ms (tokio's timer), the orders due since the last tick, each timed from the moment
    /// it is handed to the socket.
    Ticks,
    /// Each order at its scheduled time, the sender yielding to the runtime's other tasks until
    /// then, timed from that time.
    Schedule,
}

/// The ack latencies, the fill latencies (ns) and the achieved order rate.
async fn run_rate(addr: SocketAddr, rate: u64, pacing: Pacing) -> Sampled {
    let seller = Conn::open(addr, "alice").await;
    let buyer = Conn::open(addr, "bob").await;
    let start = Instant::now();
    let sell = tokio::spawn(seller.drive(rate, 0, start, "sell", pacing));
    let buy = tokio::spawn(buyer.drive(rate, 1, start, "buy", pacing));
    let (sell, buy) = (sell.await.expect("seller"), buy.await.expect("buyer"));
    // Up to the last acknowledgement: the readers' wait for late fills after it is not load.
    let elapsed = Duration::from_nanos(sell.last_ack_at_ns.max(buy.last_ack_at_ns).max(1));
    let mut ack = sell.ack_ns;
    ack.extend(buy.ack_ns);
    let mut fill = sell.fill_ns;
    fill.extend(buy.fill_ns);
    let achieved_per_sec = ack.len() as f64 / elapsed.as_secs_f64();
    Sampled {
        series: vec![("ack", ack), ("fill", fill)],
        achieved_per_sec,
    }
}

/// A small read buffer: tungstenite zero-fills the free part of it on every read (128 KiB by
/// default), which would make the load generator pay a memset per reply.
fn client_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024)
}

struct Conn {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

struct Measured {
    ack_ns: Vec<u64>,
    fill_ns: Vec<u64>,
    /// When the last acknowledgement arrived, from the run's start.
    last_ack_at_ns: u64,
}

impl Conn {
    async fn open(addr: SocketAddr, name: &str) -> Conn {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("ws://{addr}/ws"),
            Some(client_config()),
            true,
        )
        .await
        .expect("connect");
        let key = format!("demo-{name}");
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let sig = gateway::auth::sign(&format!("demo-{name}-secret"), &key, ts, ts);
        let login =
            json!({"type": "login", "req_id": 0, "key": key, "ts": ts, "nonce": ts, "sig": sig});
        ws.send(Message::Text(login.to_string().into()))
            .await
            .expect("send login");
        loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                other => panic!("no login reply: {other:?}"),
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "logged_in" {
                break;
            }
            assert_ne!(value["type"], "error", "login refused: {value}");
        }
        Conn { ws }
    }

    /// Sends every other order of a run at `rate` orders per second (the `index`-th of each
    /// pair), while reading replies.
    async fn drive(
        self,
        rate: u64,
        index: u64,
        start: Instant,
        side: &'static str,
        pacing: Pacing,
    ) -> Measured {
        let (mut sink, mut stream) = self.ws.split();
        let total = (rate / 2 * RUN_SECONDS) as usize;
        let scheduled: Arc<Mutex<HashMap<u64, u64>>> = Arc::new(Mutex::new(HashMap::new()));
        let orders: Arc<Mutex<HashMap<String, u64>>> = Arc::new(Mutex::new(HashMap::new()));
        let reader = {
            let (scheduled, orders) = (scheduled.clone(), orders.clone());
            tokio::spawn(async move {
                let mut measured = Measured {
                    ack_ns: Vec::with_capacity(total),
                    fill_ns: Vec::new(),
                    last_ack_at_ns: 0,
                };
                loop {
                    // Until every order is acknowledged; then as long as fills keep coming.
                    let wait = if measured.ack_ns.len() < total {
                        Duration::from_secs(10)
                    } else {
                        Duration::from_millis(300)
                    };
                    let next = tokio::time::timeout(wait, stream.next()).await;
                    let text = match next {
                        Ok(Some(Ok(Message::Text(text)))) => text,
                        Ok(Some(Ok(_))) => continue,
                        _ => break,
                    };
                    let now_ns = start.elapsed().as_nanos() as u64;
                    // Balances, book and ticker messages are not timed: not parsed either, so
                    // that the generator's work on the shared cores stays small.
                    if !TIMED_TYPES.iter().any(|t| text.contains(t)) {
                        continue;
                    }
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    match value["type"].as_str() {
                        Some("ack") => {
                            let req_id = value["req_id"].as_u64().unwrap_or(0);
                            if let Some(at) = scheduled.lock().unwrap().get(&req_id).copied() {
                                measured.ack_ns.push(now_ns.saturating_sub(at));
                                measured.last_ack_at_ns = now_ns;
                                if let Some(order_id) = value["order_id"].as_str() {
                                    orders.lock().unwrap().insert(order_id.to_string(), at);
                                }
                            }
                        }
                        Some("error") => panic!("the load was refused: {value}"),
                        Some("execution")
                            if value["exec"] == "fill" && value["liquidity"] == "taker" =>
                        {
                            let order_id = value["order_id"].as_str().unwrap_or_default();
                            if let Some(at) = orders.lock().unwrap().get(order_id).copied() {
                                measured.fill_ns.push(now_ns.saturating_sub(at));
                            }
                        }
                        _ => {}
                    }
                }
                measured
            })
        };
        let due_ns = |sent: usize| scheduled_ns(2 * sent as u64 + index, rate);
        let mut ticker = tokio::time::interval(TICK);
        let mut sent = 0usize;
        // Each order's text is made before it is due: the generator's own work is not the
        // server's latency.
        let order = |sent: usize| {
            let req_id = sent as u64 + 1;
            let order = json!({
                "type": "new_order", "req_id": req_id, "instrument": "BTC/JPY", "side": side,
                "order_type": "limit", "price": "15000000", "qty": "0.0001", "client_order_id": req_id,
            });
            Message::Text(order.to_string().into())
        };
        let mut next = order(0);
        while sent < total {
            match pacing {
                Pacing::Ticks => {
                    ticker.tick().await;
                }
                Pacing::Schedule => {
                    while (start.elapsed().as_nanos() as u64) < due_ns(sent) {
                        tokio::task::yield_now().await;
                    }
                }
            }
            let now_ns = start.elapsed().as_nanos() as u64;
            while sent < total && due_ns(sent) <= now_ns {
                let req_id = sent as u64 + 1;
                let at = match pacing {
                    // From the moment the order is handed to the socket: the 1 ms tick of the
                    // sender is the load generator's resolution, not the server's latency.
                    Pacing::Ticks => start.elapsed().as_nanos() as u64,
                    Pacing::Schedule => due_ns(sent),
                };
                scheduled.lock().unwrap().insert(req_id, at);
                let message = std::mem::replace(&mut next, Message::Text(Default::default()));
                sink.send(message).await.expect("send order");
                sent += 1;
                next = order(sent);
            }
        }
        reader.await.expect("reader")
    }
}
