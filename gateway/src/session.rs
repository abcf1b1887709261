//! One WebSocket connection: parse each request, check it (login, role, rate limits), hand orders
//! to the engine with a token that routes the acknowledgement back here, and write whatever the hub
//! sends. Bad input gets a specific error and the connection stays open; only an oversized frame
//! (1009), a flood far past the rate limit, idleness or a slow reader close it.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use engine::audit::OperatorCommand;
use engine::runtime::Refused;
use engine::{
    AccountId, Command, Event, ExchangeCommand, ExchangeEvent, NewOrder, OrderRef, RejectReason,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::auth::Principal;
use crate::config::{Permission, Role};
use crate::hub::{Kill, Outgoing, SessionEntry, Shared, Wire};
use crate::protocol::{self, ApiError, Request};

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_sec: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst),
            rate: f64::from(rate_per_sec),
            burst: f64::from(burst),
            at: Instant::now(),
        }
    }

    /// Takes a token, or says in how many milliseconds one will be there.
    pub fn take(&mut self, now: Instant) -> Result<(), u64> {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err((((1.0 - self.tokens) / self.rate) * 1_000.0).ceil() as u64)
    }

    /// Whole requests that could be made now without waiting (takes nothing).
    pub fn remaining(&self, now: Instant) -> u64 {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * self.rate).min(self.burst).floor() as u64
    }
}

struct Session {
    id: u64,
    /// The client's address (TCP peer; behind a proxy, the proxy's): logins check it against the
    /// key's allowlist and count failures by it.
    peer: SocketAddr,
    shared: Arc<Shared>,
    principal: Option<Principal>,
    cancel_on_disconnect: bool,
    /// Token → (request id, when it was received).
    pending: HashMap<u64, (Option<u64>, Instant)>,
    token_next: u32,
    bucket: TokenBucket,
    violations: u32,
    /// The dead-man's switch: when it expires, every open order of the account is cancelled.
    cancel_all_at: Option<tokio::time::Instant>,
}

enum Flow {
    Continue,
    Close(u16, &'static str),
}

/// One WebSocket connection from `peer` until it closes.
pub async fn run(socket: WebSocket, shared: Arc<Shared>, peer: SocketAddr) {
    let id = shared.session_next.fetch_add(1, Ordering::Relaxed);
    let limits = shared.config.limits.clone();
    let (tx, mut rx) = mpsc::channel(limits.outbound_messages_max);
    let kill = Arc::new(Kill::default());
    shared.inner.lock().sessions.insert(
        id,
        SessionEntry {
            tx,
            account: None,
            channels: BTreeSet::new(),
            wire: Wire::Json,
            kill: kill.clone(),
            key: None,
        },
    );
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let mut session = Session {
        id,
        peer,
        shared: shared.clone(),
        principal: None,
        cancel_on_disconnect: false,
        pending: HashMap::new(),
        token_next: 0,
        bucket: TokenBucket::new(limits.connection_rate_per_sec, limits.connection_burst),
        violations: 0,
        cancel_all_at: None,
    };
    let (mut sink, mut stream) = socket.split();
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let mut ping = tokio::time::interval(idle / 4);
    let mut heard = Instant::now();
    // The peer broke the protocol: its stream reads no further.
    let mut broken = false;
    let close = loop {
        tokio::select! {
            message = stream.next() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    // The peer broke the protocol (an oversized frame among others): say so with
                    // the matching close code rather than dropping the connection.
                    Some(Err(error)) => {
                        broken = true;
                        break Some(read_error_close(&error.to_string()));
                    }
                    None => break None,
                };
                heard = Instant::now();
                let (replies, flow) = match message {
                    Message::Text(text) => session.handle(text.as_str()),
                    Message::Binary(_) => (vec![ApiError::new("bad_json", "binary frames are not supported; send JSON text").json()], Flow::Continue),
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => (Vec::new(), Flow::Continue),
                };
                match timed(send_all(&mut sink, replies)).await {
                    Sent::Done => {}
                    Sent::Failed => break None,
                    Sent::Stalled => break Some((1008, "slow_consumer")),
                }
                if let Flow::Close(code, reason) = flow {
                    break Some((code, reason));
                }
            }
            outgoing = rx.recv() => {
                // This message and whatever else the hub has queued already, in one write.
                let mut next = outgoing;
                let mut replies = Vec::new();
                let mut end = None;
                loop {
                    match next {
                        Some(Outgoing::Text(text)) => replies.push(Message::Text(Utf8Bytes::from(text.as_ref()))),
                        Some(Outgoing::Ack { token, seq, events, key, .. }) => replies.push(Message::Text(session.on_ack(token, seq, &events, key).to_string().into())),
                        Some(Outgoing::Close(reason)) => end = Some(Some((1008, reason))),
                        Some(Outgoing::Event { .. }) => {}
                        None => end = Some(None),
                    }
                    if end.is_some() || replies.len() >= OUTGOING_BATCH_MAX {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(outgoing) => next = Some(outgoing),
                        Err(_) => break,
                    }
                }
                if !replies.is_empty() {
                    match timed(send_messages(&mut sink, replies)).await {
                        Sent::Done => {}
                        Sent::Failed => break None,
                        Sent::Stalled => break Some((1008, "slow_consumer")),
                    }
                }
                if let Some(close) = end {
                    break close;
                }
            }
            reason = kill.fired() => break Some((1008, reason)),
            _ = until(session.cancel_all_at) => {
                session.cancel_all_at = None;
                let notice = session.dead_man_fired();
                match timed(sink.send(Message::Text(notice.to_string().into()))).await {
                    Sent::Done => {}
                    Sent::Failed => break None,
                    Sent::Stalled => break Some((1008, "slow_consumer")),
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > idle {
                    break Some((1001, "idle_timeout"));
                }
                match timed(sink.send(Message::Ping(Default::default()))).await {
                    Sent::Done => {}
                    Sent::Failed => break None,
                    Sent::Stalled => break Some((1008, "slow_consumer")),
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        tracing::debug!(
            "ws {} ({}): closed {code} {reason}",
            session.id,
            session.peer
        );
        let error = ApiError::new(reason, close_message(reason)).json();
        // A peer that stopped reading may never take these: they get the same bounded wait.
        let _ = timed(sink.send(Message::Text(error.to_string().into()))).await;
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        let _ = timed(sink.send(Message::Close(Some(frame)))).await;
        // Out of the hub and its cancel-on-disconnect done now: neither waits for the peer.
        session.finish();
        if broken {
            // Nothing more can be read, and a socket closed with unread bytes (the rest of an
            // oversized frame) resets the connection, which can discard the error and the close
            // frame before the peer reads them: linger first.
            tokio::time::sleep(CLOSE_LINGER).await;
        } else {
            // Keep reading until the peer answers the close, so the handshake completes.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
        }
    } else {
        session.finish();
    }
}

/// One request of the private HTTP API, as a session that lives for that request: the same
/// checks (rate limits, permissions, instrument rules) and the same replies as over the socket.
/// `principal` was authenticated by the HTTP layer. No pushes reach it (no account routing).
pub async fn one_shot(
    shared: Arc<Shared>,
    principal: Principal,
    peer: std::net::SocketAddr,
    request: Value,
) -> Value {
    let id = shared.session_next.fetch_add(1, Ordering::Relaxed);
    let limits = shared.config.limits.clone();
    let (tx, mut rx) = mpsc::channel(64);
    shared.inner.lock().sessions.insert(
        id,
        SessionEntry {
            tx,
            account: None,
            channels: BTreeSet::new(),
            wire: Wire::Json,
            kill: Default::default(),
            key: Some(principal.key.clone()),
        },
    );
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let mut session = Session {
        id,
        peer,
        shared: shared.clone(),
        principal: Some(principal),
        cancel_on_disconnect: false,
        pending: HashMap::new(),
        token_next: 0,
        bucket: TokenBucket::new(limits.connection_rate_per_sec, limits.connection_burst),
        violations: 0,
        cancel_all_at: None,
    };
    let (mut replies, flow) = session.handle(&request.to_string());
    let reply = if let (true, Flow::Close(_, reason)) = (replies.is_empty(), flow) {
        ApiError::new(reason, close_message(reason)).json()
    } else if replies.is_empty() {
        let wait = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match rx.recv().await {
                    Some(Outgoing::Ack {
                        token,
                        seq,
                        events,
                        key,
                        ..
                    }) => break session.on_ack(token, seq, &events, key),
                    Some(Outgoing::Close(reason)) => {
                        break ApiError::new(reason, close_message(reason)).json()
                    }
                    Some(_) => continue,
                    None => break ApiError::new("server_shutdown", "closed by the server").json(),
                }
            }
        });
        wait.await.unwrap_or_else(|_| {
            ApiError::new(
                "timeout",
                "no acknowledgement within 10 s; the outcome is unknown",
            )
            .json()
        })
    } else {
        replies.swap_remove(0)
    };
    session.finish();
    reply
}

/// Submits a key change the engine refused `busy` until it takes it. The hub applies the change
/// when its record is published and answers the session under `token`, if it is still there.
/// Bounded: after a minute of a queue that never frees, the change is given up and logged (a
/// revocation stays in force in memory and in the key store; only its journal record is missing).
async fn submit_until_taken(shared: Arc<Shared>, token: u64, command: ExchangeCommand) {
    const WAIT_MAX: Duration = Duration::from_secs(60);
    let started = Instant::now();
    while let Err(refused) = shared.submitter.submit(token, command) {
        if refused == Refused::Stopped {
            // The session is closed with `engine_stopped`; the key store keeps the change.
            shared.key_changes.lock().remove(&token);
            tracing::error!("a key change was not journaled: the engine has stopped");
            return;
        }
        if started.elapsed() > WAIT_MAX {
            shared.key_changes.lock().remove(&token);
            tracing::error!("a key change was not journaled: the engine stayed busy for a minute");
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until `at`, or forever when there is no deadline.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A write that cannot complete within this long means the peer stopped reading: its socket
/// buffer is full. The connection is closed as a slow consumer instead of waiting forever.
const WRITE_STALL: Duration = Duration::from_secs(2);

enum Sent {
    Done,
    Failed,
    Stalled,
}

async fn timed<E>(write: impl std::future::Future<Output = Result<(), E>>) -> Sent {
    match tokio::time::timeout(WRITE_STALL, write).await {
        Ok(Ok(())) => Sent::Done,
        Ok(Err(_)) => Sent::Failed,
        Err(_) => Sent::Stalled,
    }
}

/// The close code and reason for a read error: 1009 for a message over the size limit, 1002 for
/// any other protocol violation.
fn read_error_close(error: &str) -> (u16, &'static str) {
    let too_big =
        error.contains("too long") || error.contains("Space limit") || error.contains("too big");
    if too_big {
        (1009, "message_too_big")
    } else {
        (1002, "protocol_error")
    }
}

fn close_message(reason: &str) -> &'static str {
    match reason {
        "message_too_big" => "the message is larger than the frame limit",
        "protocol_error" => "the WebSocket protocol was violated",
        "slow_consumer" => "the connection did not read its messages fast enough",
        "idle_timeout" => "nothing received within the idle timeout",
        "rate_limit_abuse" => "too many requests past the rate limit",
        "key_revoked" => "the API key of this session was revoked",
        "key_rotated" => "the API key of this session was given a new secret; log in again",
        "key_expired" => "the API key of this session has expired",
        "engine_stopped" => {
            "the engine stopped on an error; a request without a reply has an unknown outcome \
             until the exchange restarts: reconnect then and check your orders"
        }
        _ => "closed by the server",
    }
}

async fn send_all<S>(sink: &mut S, replies: Vec<Value>) -> Result<(), S::Error>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let messages = replies
        .into_iter()
        .map(|reply| Message::Text(reply.to_string().into()));
    send_messages(sink, messages).await
}

/// Queues every message, then flushes once: one write to the socket for all of them, where a
/// `send` each would make a system call each (an order's acknowledgement, executions and
/// balances arrive together).
async fn send_messages<S>(
    sink: &mut S,
    messages: impl IntoIterator<Item = Message>,
) -> Result<(), S::Error>
where
    S: futures_util::Sink<Message> + Unpin,
{
    for message in messages {
        sink.feed(message).await?;
    }
    sink.flush().await
}

/// How long a connection whose peer broke the protocol stays open after its close frame.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// At most this many queued outgoing messages are written together.
const OUTGOING_BATCH_MAX: usize = 64;

impl Session {
    fn handle(&mut self, text: &str) -> (Vec<Value>, Flow) {
        let violations_max = self.shared.config.limits.rate_violations_max;
        if let Err(retry_after_ms) = self.rate_limit() {
            self.violations += 1;
            self.shared
                .metrics
                .rate_limited
                .fetch_add(1, Ordering::Relaxed);
            if self.violations > violations_max {
                return (Vec::new(), Flow::Close(1008, "rate_limit_abuse"));
            }
            let req_id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("req_id").and_then(Value::as_u64));
            let error = json!({
                "type": "error", "req_id": req_id, "code": "rate_limited",
                "message": "rate limit exceeded; slow down", "retry_after_ms": retry_after_ms,
            });
            return (vec![error], Flow::Continue);
        }
        self.violations = 0;
        if let Some(principal) = &self.principal {
            if let Some(reason) = self
                .shared
                .keys
                .refusal(principal, crate::operator::now_ms())
            {
                return (Vec::new(), Flow::Close(1008, reason));
            }
        }
        let replies = match protocol::parse(text).and_then(|request| self.request(request)) {
            Ok(replies) => replies,
            Err(error) => vec![error.json()],
        };
        (replies, Flow::Continue)
    }

    fn rate_limit(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        self.bucket.take(now)?;
        if let Some(principal) = &self.principal {
            let limits = &self.shared.config.limits;
            let mut buckets = self.shared.account_buckets.lock();
            let bucket = buckets.entry(principal.account).or_insert_with(|| {
                TokenBucket::new(limits.account_rate_per_sec, limits.account_burst)
            });
            bucket.take(now)?;
        }
        Ok(())
    }

    fn request(&mut self, request: Request) -> Result<Vec<Value>, ApiError> {
        let request_kind = match &request {
            Request::Halt(_) => "halt",
            _ => "",
        };
        match request {
            Request::Ping(p) => Ok(vec![json!({"type": "pong", "req_id": p.req_id})]),
            Request::CancelAllAfter(m) => {
                self.trader().map_err(|e| with(e, m.req_id))?;
                if m.timeout_ms > protocol::CANCEL_ALL_AFTER_MAX_MS {
                    let error = ApiError::new(
                        "invalid_field",
                        format!(
                            "field `timeout_ms` must be at most {} (0 disarms)",
                            protocol::CANCEL_ALL_AFTER_MAX_MS
                        ),
                    );
                    return Err(with(error, m.req_id));
                }
                self.cancel_all_at = (m.timeout_ms > 0)
                    .then(|| tokio::time::Instant::now() + Duration::from_millis(m.timeout_ms));
                Ok(vec![json!({
                    "type": "ack", "req_id": m.req_id, "cancel_all_after_ms": m.timeout_ms,
                })])
            }
            Request::OpenOrders(p) => {
                let principal = self.principal.as_ref().ok_or_else(|| {
                    with(
                        ApiError::new("not_logged_in", "log in to list your open orders"),
                        p.req_id,
                    )
                })?;
                permitted(principal, Permission::Read).map_err(|e| with(e, p.req_id))?;
                let inner = self.shared.inner.lock();
                let orders =
                    crate::hub::open_orders_json(&inner, &self.shared.exchange, principal.account);
                Ok(vec![
                    json!({"type": "open_orders", "req_id": p.req_id, "orders": orders}),
                ])
            }
            Request::Subscribe(s) => self.subscribe(s.req_id, &s.channels, true),
            Request::Unsubscribe(s) => self.subscribe(s.req_id, &s.channels, false),
            Request::Login(l) => self.login(l),
            Request::NewOrder(m) => {
                let req_id = m.req_id;
                let principal = self.trader().map_err(|e| with(e, req_id))?;
                let (instrument, spec) = protocol::instrument(&self.shared.exchange, &m.instrument)
                    .map_err(|e| with(e, req_id))?;
                let kind = protocol::order_kind(&spec, &m).map_err(|e| with(e, req_id))?;
                let qty_lots = protocol::qty(&spec, &m.qty).map_err(|e| with(e, req_id))?;
                let order = NewOrder {
                    account: principal.account,
                    instrument,
                    client_order_id: m.client_order_id,
                    side: m.side.side(),
                    kind,
                    qty_lots,
                    stp: protocol::stp(&m),
                };
                self.submit(req_id, ExchangeCommand::Trade(Command::NewOrder(order)))
            }
            Request::Cancel(m) => {
                let req_id = m.req_id;
                let principal = self.trader().map_err(|e| with(e, req_id))?;
                let order = order_ref(m.order_id.as_deref(), m.client_order_id)
                    .map_err(|e| with(e, req_id))?;
                self.submit(
                    req_id,
                    ExchangeCommand::Trade(Command::Cancel {
                        account: principal.account,
                        order,
                    }),
                )
            }
            Request::Replace(m) => {
                let req_id = m.req_id;
                let principal = self.trader().map_err(|e| with(e, req_id))?;
                let order = order_ref(m.order_id.as_deref(), m.client_order_id)
                    .map_err(|e| with(e, req_id))?;
                // The order's instrument decides the tick and lot; the client names the order only.
                let spec = self
                    .order_instrument(principal.account, order)
                    .map_err(|e| with(e, req_id))?;
                let price_ticks =
                    protocol::price(&spec, "price", &m.price).map_err(|e| with(e, req_id))?;
                let qty_lots = protocol::qty(&spec, &m.qty).map_err(|e| with(e, req_id))?;
                let command = Command::Replace {
                    account: principal.account,
                    order,
                    price_ticks,
                    qty_lots,
                    client_order_id_new: m.new_client_order_id,
                };
                self.submit(req_id, ExchangeCommand::Trade(command))
            }
            Request::MassCancel(m) => {
                let req_id = m.req_id;
                let principal = self.trader().map_err(|e| with(e, req_id))?;
                let instrument = match &m.instrument {
                    Some(symbol) => Some(
                        protocol::instrument(&self.shared.exchange, symbol)
                            .map_err(|e| with(e, req_id))?
                            .0,
                    ),
                    None => None,
                };
                let command = Command::MassCancel {
                    account: principal.account,
                    instrument,
                    side: m.side.map(|s| s.side()),
                };
                self.submit(req_id, ExchangeCommand::Trade(command))
            }
            Request::Custody(m) => {
                let req_id = m.req_id();
                let action =
                    crate::custody::handle(&self.shared, self.id, self.principal.as_ref(), m)
                        .map_err(|e| with(e, req_id))?;
                match action {
                    crate::custody::Action::Submit(command) => self.submit(req_id, command),
                    crate::custody::Action::Reply(reply) => Ok(vec![reply]),
                    crate::custody::Action::Queued => Ok(Vec::new()),
                }
            }
            Request::Halt(m) | Request::Resume(m) if self.role() != Some(Role::Operator) => {
                let error = match self.principal {
                    None => ApiError::new(
                        "not_logged_in",
                        "log in with an operator key to halt or resume trading",
                    ),
                    Some(_) => ApiError::new(
                        "forbidden",
                        "only an operator key may halt or resume trading",
                    ),
                };
                Err(with(error, m.req_id))
            }
            Request::Halt(m) | Request::Resume(m) => {
                let (instrument, _) = protocol::instrument(&self.shared.exchange, &m.instrument)
                    .map_err(|e| with(e, m.req_id))?;
                let command = if matches!(request_kind, "halt") {
                    OperatorCommand::HaltInstrument { instrument }
                } else {
                    OperatorCommand::ResumeInstrument { instrument }
                };
                let operator = self.principal.as_ref().map_or(u32::MAX, |p| p.id);
                self.submit(m.req_id, ExchangeCommand::Operator { operator, command })
            }
            Request::Operator(m) => {
                let req_id = m.req_id();
                let action = crate::operator::handle(&self.shared, self.principal.as_ref(), m)
                    .map_err(|e| with(e, req_id))?;
                match action {
                    crate::operator::Action::Reply(reply) => Ok(vec![reply]),
                    crate::operator::Action::Submit(command) => self.submit(req_id, command),
                    crate::operator::Action::SubmitKey(command, pending) => {
                        // Handed to the hub before the engine can journal it: the hub applies
                        // it when the record is published.
                        let token = self.token_peek();
                        self.shared.key_changes.lock().insert(token, *pending);
                        let submitted = self.submit_key_change(req_id, command);
                        if submitted.is_err() {
                            self.shared.key_changes.lock().remove(&token);
                        }
                        submitted
                    }
                }
            }
        }
    }

    /// The switch expired: cancel the account's open orders, as cancel-on-disconnect does, and
    /// say so. The mass cancel's own acknowledgement follows with `req_id` null.
    fn dead_man_fired(&mut self) -> Value {
        let Some(principal) = self.principal.clone() else {
            return json!({"type": "cancel_all_triggered"});
        };
        let command = Command::MassCancel {
            account: principal.account,
            instrument: None,
            side: None,
        };
        let submitted = self.submit(None, ExchangeCommand::Trade(command)).is_ok();
        json!({"type": "cancel_all_triggered", "submitted": submitted})
    }

    fn role(&self) -> Option<Role> {
        self.principal.as_ref().map(|p| p.role)
    }

    fn trader(&self) -> Result<Principal, ApiError> {
        let principal = self
            .principal
            .clone()
            .ok_or_else(|| ApiError::new("not_logged_in", "log in before sending orders"))?;
        match principal.role {
            Role::Trader => {
                permitted(&principal, Permission::Trade)?;
                Ok(principal)
            }
            Role::Operator => Err(ApiError::new("forbidden", "an operator key cannot trade")),
            Role::Auditor => Err(ApiError::new("forbidden", "an auditor key can only read")),
        }
    }

    /// The instrument of one of the account's open orders, from the hub's mirror (a replace names
    /// the order only; its prices convert with that order's tick and lot).
    fn order_instrument(
        &self,
        account: AccountId,
        order: OrderRef,
    ) -> Result<engine::InstrumentSpec, ApiError> {
        let inner = self.shared.inner.lock();
        let order_id = match order {
            OrderRef::Id(id) => Some(id),
            OrderRef::Client(client) => inner.orders_by_client.get(&(account, client)).copied(),
        };
        let info = order_id.and_then(|id| inner.orders.get(&id));
        match info {
            Some(info) if info.account == account => {
                Ok(self.shared.exchange.instruments[info.instrument as usize].clone())
            }
            Some(_) => Err(ApiError::reject(RejectReason::NotYourOrder)),
            None => Err(ApiError::reject(RejectReason::UnknownOrder)),
        }
    }

    fn subscribe(
        &mut self,
        req_id: Option<u64>,
        channels: &[String],
        add: bool,
    ) -> Result<Vec<Value>, ApiError> {
        // Every channel is checked before any is changed: a request is taken whole or not at all.
        let mut parsed = Vec::with_capacity(channels.len());
        for channel in channels {
            let unknown = || {
                with(
                    ApiError::new("unknown_channel", format!("unknown channel `{channel}`")),
                    req_id,
                )
            };
            let (kind, symbol) = channel.split_once(':').ok_or_else(unknown)?;
            if !matches!(kind, "book" | "trades" | "ticker") {
                return Err(unknown());
            }
            let (instrument, spec) =
                protocol::instrument(&self.shared.exchange, symbol).map_err(|e| with(e, req_id))?;
            parsed.push((kind, instrument, format!("{kind}:{}", spec.symbol)));
        }
        let mut replies = Vec::new();
        let mut inner = self.shared.inner.lock();
        let now_ns = inner.last_ts_ns;
        for (kind, instrument, name) in parsed {
            let book = &mut inner.books[instrument as usize];
            let initial = match kind {
                "book" if add => Some(book.snapshot_json(usize::MAX)),
                "ticker" if add => Some(book.ticker_json(now_ns)),
                _ => None,
            };
            let Some(entry) = inner.sessions.get_mut(&self.id) else {
                return Err(with(
                    ApiError::new("slow_consumer", close_message("slow_consumer")),
                    req_id,
                ));
            };
            if add {
                entry.channels.insert(name);
            } else {
                entry.channels.remove(&name);
            }
            replies.extend(initial);
        }
        drop(inner);
        let kind = if add { "subscribed" } else { "unsubscribed" };
        replies.insert(
            0,
            json!({"type": kind, "req_id": req_id, "channels": channels}),
        );
        Ok(replies)
    }

    fn login(&mut self, l: protocol::Login) -> Result<Vec<Value>, ApiError> {
        if self.principal.is_some() {
            return Err(with(
                ApiError::new("already_logged_in", "this connection is already logged in"),
                l.req_id,
            ));
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let principal = self
            .shared
            .keys
            .login(&l.key, l.ts, l.nonce, &l.sig, now_ms, self.peer.ip())
            .map_err(|e| with(login_error(e), l.req_id))?;
        if l.cancel_on_disconnect
            && principal.role == Role::Trader
            && !principal.may(Permission::Trade)
        {
            let error = ApiError::new(
                "permission_denied",
                "cancel_on_disconnect needs a key with the `trade` permission",
            );
            return Err(with(error, l.req_id));
        }
        if l.cancel_on_disconnect && principal.role != Role::Trader {
            // An operator's or auditor's key is bound to the house account: its disconnect must
            // not cancel the house's orders. FIX refuses 8013=Y the same way.
            let error = ApiError::new("forbidden", "cancel_on_disconnect needs a trader key");
            return Err(with(error, l.req_id));
        }
        self.cancel_on_disconnect = l.cancel_on_disconnect;
        let account = principal.account;
        let role = principal.role;
        // Without `read`, the account's balances and executions are not pushed to this session.
        let reads = principal.may(Permission::Read);
        let permissions = Permission::names(principal.permissions);
        let mut inner = self.shared.inner.lock();
        if let Some(entry) = inner.sessions.get_mut(&self.id) {
            entry.account = reads.then_some(account);
            entry.key = Some(principal.key.clone());
        }
        self.principal = Some(principal);
        let balances: Vec<_> = inner
            .balances
            .range((account, 0)..=(account, u16::MAX))
            .filter(|_| reads)
            .map(|(k, b)| (k.1, *b))
            .collect();
        drop(inner);
        // The balances as they stand at login; later changes arrive as `balance` messages.
        let balances: Vec<Value> = balances
            .into_iter()
            .map(|(asset, b)| self.shared.balance_json(account, asset, b))
            .collect();
        Ok(vec![json!({
            "type": "logged_in", "req_id": l.req_id, "account": account,
            "role": role.name(), "permissions": permissions, "cancel_on_disconnect": l.cancel_on_disconnect,
            "balances": balances,
        })])
    }

    /// The token the next [`Session::submit`] will use.
    fn token_peek(&self) -> u64 {
        (self.id << 32) | u64::from(self.token_next.wrapping_add(1))
    }

    fn submit(
        &mut self,
        req_id: Option<u64>,
        command: ExchangeCommand,
    ) -> Result<Vec<Value>, ApiError> {
        self.token_next = self.token_next.wrapping_add(1);
        let token = (self.id << 32) | u64::from(self.token_next);
        self.pending.insert(token, (req_id, Instant::now()));
        if let Err(refused) = self.shared.submitter.submit(token, command) {
            // Not taken: the token is free again (a key change is retried under it).
            self.token_next = self.token_next.wrapping_sub(1);
            self.pending.remove(&token);
            return Err(with(refusal(&self.shared, refused), req_id));
        }
        Ok(Vec::new())
    }

    /// [`Session::submit`] for an operator's key change, which must reach the journal: a
    /// revocation is already in force, and the audit trail must hold it. A full queue does not
    /// refuse it: a task submits it again, with the same token, until the engine takes it, and
    /// the reply comes with its acknowledgement as usual.
    fn submit_key_change(
        &mut self,
        req_id: Option<u64>,
        command: ExchangeCommand,
    ) -> Result<Vec<Value>, ApiError> {
        let token = self.token_peek();
        match self.submit(req_id, command) {
            Err(e) if e.code == "busy" => {
                self.token_next = self.token_next.wrapping_add(1);
                self.pending.insert(token, (req_id, Instant::now()));
                tokio::spawn(submit_until_taken(self.shared.clone(), token, command));
                Ok(Vec::new())
            }
            done => done,
        }
    }

    /// The reply to one of this session's commands, once it is journaled; `key` is what the hub
    /// made of a key change.
    fn on_ack(
        &mut self,
        token: u64,
        seq: u64,
        events: &[ExchangeEvent],
        key: Option<Box<serde_json::Map<String, Value>>>,
    ) -> Value {
        let (req_id, started) = self
            .pending
            .remove(&token)
            .unwrap_or((None, Instant::now()));
        self.shared
            .metrics
            .latency(started.elapsed().as_micros() as u64);
        let mut reply = ack_json(&self.shared.exchange, req_id, seq, events);
        reply["rate_remaining"] = json!(self.rate_remaining());
        for (field, value) in key.into_iter().flat_map(|fields| *fields) {
            reply[field] = value;
        }
        reply
    }

    /// The remaining allowance: what the tighter of the connection's and the account's buckets
    /// would let through right now.
    fn rate_remaining(&self) -> u64 {
        let now = Instant::now();
        let connection = self.bucket.remaining(now);
        let account = self.principal.as_ref().and_then(|p| {
            let buckets = self.shared.account_buckets.lock();
            buckets.get(&p.account).map(|b| b.remaining(now))
        });
        account.map_or(connection, |a| a.min(connection))
    }

    fn finish(&mut self) {
        let shared = &self.shared;
        shared.inner.lock().sessions.remove(&self.id);
        shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        if let (true, Some(principal)) = (self.cancel_on_disconnect, &self.principal) {
            // Nobody is left to read the acknowledgement: token 0 routes it nowhere.
            cancel_on_disconnect(shared, principal.account, 0);
        }
    }
}

/// Refused unless the key has `permission`.
pub fn permitted(principal: &Principal, permission: Permission) -> Result<(), ApiError> {
    if principal.may(permission) {
        return Ok(());
    }
    Err(ApiError::new(
        "permission_denied",
        format!("this API key lacks the `{}` permission", permission.name()),
    ))
}

pub fn login_error(error: crate::auth::LoginError) -> ApiError {
    let mut api = ApiError::new(error.code(), error.message());
    if let crate::auth::LoginError::Throttled(ms) = error {
        api.retry_after_ms = Some(ms);
    }
    api
}

/// Attempts to hand a cancel-on-disconnect to the engine queue before giving up.
const CANCEL_ON_DISCONNECT_TRIES_MAX: u32 = 1_000;

/// Cancel-on-disconnect, for a WebSocket login and a FIX Logon alike: a mass cancel of every open
/// order of `account`, on every instrument. Retried: it must not be lost to a momentarily full
/// queue. `token` routes the acknowledgement (0: to nobody). `false`: the queue stayed full.
pub fn cancel_on_disconnect(shared: &Shared, account: AccountId, token: u64) -> bool {
    let command = Command::MassCancel {
        account,
        instrument: None,
        side: None,
    };
    for _ in 0..CANCEL_ON_DISCONNECT_TRIES_MAX {
        match shared
            .submitter
            .submit(token, ExchangeCommand::Trade(command))
        {
            Ok(()) => return true,
            Err(Refused::Busy) => std::thread::sleep(Duration::from_millis(1)),
            Err(Refused::Stopped) => {
                tracing::error!(
                    "cancel-on-disconnect of account {account} not taken: the engine has stopped"
                );
                return false;
            }
        }
    }
    tracing::error!("cancel-on-disconnect of account {account} lost: the engine queue stayed full");
    false
}

/// The error for a command the engine did not take.
fn refusal(shared: &Shared, refused: Refused) -> ApiError {
    match refused {
        Refused::Busy => ApiError::new("busy", "the engine is busy; retry"),
        Refused::Stopped => ApiError::new(
            "engine_stopped",
            format!(
                "the engine has stopped ({}); nothing is accepted until the exchange restarts",
                shared.submitter.failure().unwrap_or("no reason given")
            ),
        ),
    }
}

fn with(mut error: ApiError, req_id: Option<u64>) -> ApiError {
    error.req_id = req_id;
    error
}

fn order_ref(order_id: Option<&str>, client_order_id: Option<u64>) -> Result<OrderRef, ApiError> {
    match (order_id, client_order_id) {
        (Some(id), None) => Ok(OrderRef::Id(protocol::order_id(id)?)),
        (None, Some(client)) => Ok(OrderRef::Client(client)),
        _ => Err(ApiError::new(
            "invalid_field",
            "give exactly one of `order_id` and `client_order_id`",
        )),
    }
}

/// The reply to a command once journaled: an error naming the reject reason, or an ack with what
/// the command made (order ids, withdrawal ids, request ids...).
pub fn ack_json(
    exchange: &engine::ExchangeConfig,
    req_id: Option<u64>,
    seq: u64,
    events: &[ExchangeEvent],
) -> Value {
    let rejected = events.iter().find_map(|e| match e {
        ExchangeEvent::Order(Event::Rejected { reason, .. })
        | ExchangeEvent::Rejected { reason, .. } => Some(*reason),
        _ => None,
    });
    if let Some(reason) = rejected {
        let mut error = ApiError::reject(reason).json();
        error["req_id"] = json!(req_id);
        error["seq"] = json!(seq);
        return error;
    }
    let mut reply = json!({"type": "ack", "req_id": req_id, "seq": seq});
    crate::custody::ack_fields(exchange, events, &mut reply);
    for event in events {
        match event {
            ExchangeEvent::Order(Event::Accepted {
                order_id,
                instrument,
                client_order_id,
                ..
            }) => {
                reply["order_id"] = json!(order_id.to_string());
                reply["client_order_id"] = json!(client_order_id);
                reply["instrument"] = json!(exchange.instruments[*instrument as usize].symbol);
            }
            ExchangeEvent::Order(Event::Replaced {
                order_id,
                client_order_id,
                ..
            }) => {
                reply["order_id"] = json!(order_id.to_string());
                reply["client_order_id"] = json!(client_order_id);
            }
            ExchangeEvent::Order(Event::Cancelled { order_id, .. })
                if reply.get("order_id").is_none() =>
            {
                reply["order_id"] = json!(order_id.to_string());
            }
            ExchangeEvent::Order(Event::MassCancelled { count, .. }) => {
                // A mass cancel names no single order: drop the id of the first one it cancelled.
                reply["cancelled"] = json!(count);
                if let Some(object) = reply.as_object_mut() {
                    object.remove("order_id");
                }
            }
            _ => {}
        }
    }
    reply
}
