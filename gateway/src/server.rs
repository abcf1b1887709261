//! `kinko serve`: the engine thread, the hub, HTTP (health, metrics, public REST, the
//! WebSocket at `/ws`) on one port and the FIX 4.4 acceptor on another, both over TLS unless the
//! configuration asks for plain TCP (crate::transport). On the first start, the configured
//! accounts are created and funded by journaled commands. Shutdown logs FIX clients out, stops
//! accepting, lets the engine drain, and writes a snapshot.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State, WebSocketUpgrade};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use engine::journal::ChainHashing;
use engine::runtime::{
    self, EngineHandle, EngineOptions, IdleStrategy, Refused, Submitter, SystemClock,
};
use engine::ExchangeCommand;
use ledger::Ratio;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::{IdleMode, ServeConfig};
use crate::custody::chain::ChainAdapter;
use crate::hub::{self, Shared};
use crate::protocol;
use crate::transport::{Certificate, Incoming, Peer, Transport};

/// How long a shutdown waits for the WebSocket sessions to send their Close frames.
const CLOSE_WAIT_MAX: Duration = Duration::from_secs(5);

pub struct Running {
    pub http: SocketAddr,
    /// The FIX 4.4 acceptor's address.
    pub fix: SocketAddr,
    pub shared: Arc<Shared>,
    /// The certificate both ports present; `None` when the configuration asked for plain TCP.
    pub certificate: Option<Certificate>,
    fix_acceptor: Option<crate::fix::acceptor::Acceptor>,
    engine: Option<EngineHandle>,
    stop_http: Option<oneshot::Sender<()>>,
    http_task: Option<tokio::task::JoinHandle<()>>,
    hub: Option<Hub>,
}

/// Where the hub runs: its own thread when the server parks, a task of the gateway's runtime
/// when it spins (one spinning thread fewer).
enum Hub {
    Thread(thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// Starts everything; returns once the HTTP listener is bound.
pub async fn start(config: ServeConfig) -> Result<Running, String> {
    config.validate()?;
    // Before the engine: a certificate that cannot be read stops the start at once.
    let transport = Arc::new(Transport::prepare(&config)?);
    let exchange = config.exchange();
    let mut options = EngineOptions::new(&config.server.data);
    options.durability = config.server.durability.durability();
    options.chain_hashing = config.server.chain_hashing;
    options.segment_bytes = config.server.journal_segment_bytes();
    options.snapshot_every_commands = config.server.snapshot_every_commands;
    match config.server.idle {
        IdleMode::Park => {
            options.idle.spins = config.server.engine_idle_spins.into();
            options.idle.yields = 0;
        }
        IdleMode::Spin => {
            options.idle = IdleStrategy::SPIN;
            let cores = crate::config::machine_cores();
            if cores < 2 {
                tracing::warn!(
                    "idle = \"spin\" on {cores} core: the spinning engine thread and the gateway \
                     share it and take turns by the scheduler's time slices; use \"park\""
                );
            }
        }
    }
    let engine = tokio::task::block_in_place(|| {
        runtime::start(options, &exchange, Box::new(SystemClock::default()))
    })
    .map_err(|e| format!("cannot start the engine: {e}"))?;
    if let Some(cut) = &engine.recovery.tail_cut {
        tracing::warn!("{cut}");
    }
    for warning in &engine.recovery.warnings {
        tracing::warn!("{warning}");
    }
    let start_state = engine.recovery.snapshot.clone().expect("start-up snapshot");
    let (keys, registrations) = crate::auth::Keys::open(&config)?;
    let shared = Arc::new(Shared::new(
        config.clone(),
        keys,
        engine.submitter(),
        &start_state,
    ));
    let outbound = engine.outbound().clone();
    let hub_shared = shared.clone();
    let hub = match config.server.idle {
        IdleMode::Park => Hub::Thread(
            thread::Builder::new()
                .name("kinko-hub".into())
                .spawn(move || hub::run(hub_shared, outbound))
                .map_err(|e| e.to_string())?,
        ),
        IdleMode::Spin => Hub::Task(tokio::spawn(hub::run_polling(hub_shared, outbound))),
    };
    if engine.recovery.created {
        bootstrap(&config, &engine, &shared).await?;
    }
    register_keys(&engine, &shared, registrations).await?;
    tokio::spawn(crate::custody::drive(shared.clone()));
    tokio::spawn(expire_keys(shared.clone()));
    let listener = TcpListener::bind(config.server.http)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.http))?;
    let (incoming, accept_task) =
        Incoming::start(listener, transport.clone()).map_err(|e| e.to_string())?;
    let http = axum::serve::Listener::local_addr(&incoming).map_err(|e| e.to_string())?;
    let fix_acceptor = crate::fix::acceptor::start(shared.clone(), transport.clone()).await?;
    let app = router(shared.clone()).into_make_service_with_connect_info::<Peer>();
    let (stop_http, stopped) = oneshot::channel::<()>();
    let http_task = tokio::spawn(async move {
        let serve = axum::serve(incoming, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("http server: {e}");
        }
        // The listener is gone with the server: stop taking connections for it.
        accept_task.abort();
    });
    let fix = fix_acceptor.local_addr();
    match transport.certificate() {
        Some(certificate) => tracing::info!(
            "TLS on {http} (HTTPS, WebSocket) and {fix} (FIX), certificate {} SHA-256 {}",
            certificate.cert_path.display(),
            certificate.fingerprint_sha256
        ),
        None => tracing::warn!("{}", crate::transport::plaintext_warning(http, fix)),
    }
    let heartbeat_shared = shared.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            hub::heartbeat(&heartbeat_shared);
        }
    });
    Ok(Running {
        http,
        fix,
        shared,
        certificate: transport.certificate().cloned(),
        fix_acceptor: Some(fix_acceptor),
        engine: Some(engine),
        stop_http: Some(stop_http),
        http_task: Some(http_task),
        hub: Some(hub),
    })
}

impl Running {
    /// Completes once the engine thread has stopped on an error and every session has been
    /// closed with `engine_stopped`; returns why it stopped. `kinko serve` then exits non-zero,
    /// so that a supervisor restarts it and recovery takes up from the journal.
    pub async fn engine_stopped(&self) -> String {
        self.shared.engine_stopped.notified().await;
        engine_stopped_message(&self.shared.submitter)
    }

    /// Stops HTTP, closes every session, stops the engine (which writes a snapshot) and the hub.
    pub async fn shutdown(mut self) -> Result<u64, String> {
        if let Some(stop) = self.stop_http.take() {
            let _ = stop.send(());
        }
        if let Some(fix) = self.fix_acceptor.take() {
            fix.shutdown().await;
        }
        {
            let inner = self.shared.inner.lock();
            for entry in inner.sessions.values() {
                let _ = entry.tx.try_send(hub::Outgoing::Close("server_shutdown"));
            }
        }
        if let Some(task) = self.http_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        // The upgraded WebSocket connections are not the HTTP server's any more: wait for each
        // to send its notice and Close frame (it leaves the count right after), or the process
        // could exit first. Bounded: a peer that does not read gets the sessions' own 2 s limit.
        let since = std::time::Instant::now();
        while self.shared.metrics.connections.load(Ordering::Relaxed) > 0
            && since.elapsed() < CLOSE_WAIT_MAX
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let engine = self.engine.take().expect("running");
        let last = tokio::task::block_in_place(|| engine.shutdown())?;
        match self.hub.take() {
            Some(Hub::Thread(hub)) => {
                let _ = hub.join();
            }
            Some(Hub::Task(hub)) => {
                let _ = hub.await;
            }
            None => {}
        }
        Ok(last)
    }
}

/// Journals the configuration's keys that the journal does not know yet (or knows with another
/// grant), so that the audit trail names every operator from the journal alone.
async fn register_keys(
    engine: &EngineHandle,
    shared: &Shared,
    registrations: Vec<crate::auth::Pending>,
) -> Result<(), String> {
    if registrations.is_empty() {
        return Ok(());
    }
    let submitter = engine.submitter();
    let target = engine
        .stats()
        .last_seq
        .load(std::sync::atomic::Ordering::Relaxed)
        + registrations.len() as u64;
    for pending in &registrations {
        let command = ExchangeCommand::Operator {
            operator: engine::custody::OPERATOR_SYSTEM,
            command: engine::audit::OperatorCommand::Key(pending.change),
        };
        submit_waiting(&submitter, command).await?;
    }
    published_up_to(shared, target).await?;
    let now = crate::operator::now_ms();
    for pending in &registrations {
        shared.keys.commit(pending, now)?;
    }
    Ok(())
}

/// Submits a start-up command, waiting out `busy`. An engine that has stopped fails the start.
async fn submit_waiting(submitter: &Submitter, command: ExchangeCommand) -> Result<(), String> {
    loop {
        match submitter.submit(0, command) {
            Ok(()) => return Ok(()),
            Err(Refused::Busy) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(Refused::Stopped) => return Err(engine_stopped_message(submitter)),
        }
    }
}

/// Waits until the hub has published the batch of `target` (and mirrored it), or the engine has
/// stopped, which fails the start.
async fn published_up_to(shared: &Shared, target: u64) -> Result<(), String> {
    while shared.inner.lock().seq_published < target {
        if shared.submitter.failure().is_some() {
            return Err(engine_stopped_message(&shared.submitter));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

fn engine_stopped_message(submitter: &Submitter) -> String {
    format!(
        "the engine stopped: {}",
        submitter.failure().unwrap_or("(no reason given)")
    )
}

/// Closes the sessions of keys as they expire (a login with an expired key is refused anyway).
async fn expire_keys(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_millis(250));
    loop {
        every.tick().await;
        for key in shared.keys.newly_expired(crate::operator::now_ms()) {
            let closed = hub::close_sessions_of_key(&shared, &key, "key_expired");
            tracing::warn!("key {key} expired; {closed} open session(s) closed");
        }
    }
}

/// Creates the configured accounts and credits their opening deposits, as journaled commands.
async fn bootstrap(
    config: &ServeConfig,
    engine: &EngineHandle,
    shared: &Shared,
) -> Result<(), String> {
    let exchange = config.exchange();
    let mut commands = Vec::new();
    // Opening hot-wallet totals per (pool, asset), to keep all but the cap's share cold.
    let mut hot: std::collections::BTreeMap<(ledger::Pool, u16), i64> = Default::default();
    for account in &config.accounts {
        commands.push(ExchangeCommand::CreateAccount {
            pool: account.pool.pool(),
        });
    }
    for (id, account) in config.accounts.iter().enumerate() {
        for (code, amount) in &account.deposits {
            let asset = exchange
                .assets
                .iter()
                .position(|a| &a.code == code)
                .expect("validated");
            let decimals = exchange.assets[asset].decimals;
            let value: rust_decimal::Decimal = amount
                .parse()
                .map_err(|_| format!("deposit {amount:?} of {code} is not a decimal"))?;
            if value <= rust_decimal::Decimal::ZERO {
                return Err(format!("deposit {amount} {code} must be positive"));
            }
            let amount_units = Ratio::from_decimal(value, decimals)
                .and_then(Ratio::whole)
                .map_err(|_| format!("deposit {amount} {code} is not a whole number of units"))?;
            let tx = *blake3::hash(format!("opening deposit:{}:{code}", account.name).as_bytes())
                .as_bytes();
            commands.push(ExchangeCommand::Deposit {
                account: id as u32,
                asset: asset as u16,
                amount_units,
                tx,
            });
            let pool = account.pool.pool();
            let location = exchange.assets[asset].operating_location();
            shared
                .chain
                .lock()
                .credit(pool, asset as u16, location, amount_units);
            *hot.entry((pool, asset as u16)).or_insert(0) += amount_units;
        }
    }
    // Every account gets a deposit address per coin from the chain adapter.
    for id in 0..config.accounts.len() as u32 {
        for (asset, spec) in exchange.assets.iter().enumerate() {
            if spec.class == ledger::AssetClass::Coin {
                let address = shared.chain.lock().deposit_address(&spec.code, id);
                commands.push(ExchangeCommand::AssignDepositAddress {
                    account: id,
                    asset: asset as u16,
                    address,
                });
            }
        }
    }
    // Coins beyond the hot-wallet cap's share go to cold at once (Japanese practice: 95% cold).
    for ((pool, asset), total) in hot {
        let spec = &exchange.assets[asset as usize];
        if spec.class != ledger::AssetClass::Coin {
            continue;
        }
        let keep = (i128::from(total) * i128::from(spec.hot_cap_bps) / 10_000) as i64;
        if total - keep > 0 {
            // The server's own opening move: attributed to `system` in the audit trail.
            commands.push(ExchangeCommand::Operator {
                operator: engine::custody::OPERATOR_SYSTEM,
                command: engine::audit::OperatorCommand::CustodyTransfer {
                    pool,
                    asset,
                    source: ledger::Location::Hot,
                    target: ledger::Location::Cold,
                    amount_units: total - keep,
                },
            });
            let _ = shared.chain.lock().transfer(
                asset,
                (pool, ledger::Location::Hot),
                (pool, ledger::Location::Cold),
                total - keep,
            );
        }
    }
    let submitter = engine.submitter();
    let target = engine
        .stats()
        .last_seq
        .load(std::sync::atomic::Ordering::Relaxed)
        + commands.len() as u64;
    for command in commands {
        submit_waiting(&submitter, command).await?;
    }
    // Until the hub has mirrored the opening balances too: a login right after start must see them.
    published_up_to(shared, target).await?;
    // The opening deposits land in hot wallets and raise hot-cap alerts that the opening sweep
    // has already answered: they stay in the journal, not in the operators' live view.
    shared.inner.lock().custody.alerts.clear();
    Ok(())
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/instruments", get(instruments))
        .route("/api/book/{symbol}", get(book))
        .route("/api/trades/{symbol}", get(trades))
        .route("/ws", get(ws))
        .route("/api/v1/account", get(private_account))
        .route("/api/v1/orders", axum::routing::post(private_order))
        .route(
            "/api/v1/withdrawals",
            axum::routing::post(private_withdrawal),
        )
        .route("/", get(|| page(include_str!("../web/index.html"))))
        .route("/trade", get(|| page(include_str!("../web/trade.html"))))
        .route(
            "/custody",
            get(|| page(include_str!("../web/custody.html"))),
        )
        .route(
            "/web/kinko.js",
            get(|| asset("text/javascript", include_str!("../web/kinko.js"))),
        )
        .route(
            "/web/kinko.css",
            get(|| asset("text/css", include_str!("../web/kinko.css"))),
        )
        .route("/sim/deposit", axum::routing::post(sim_deposit))
        .route("/sim/drain", axum::routing::post(sim_drain))
        .with_state(shared)
}

/// The web pages (gateway/web): plain files compiled into the binary, no build step.
async fn page(html: &'static str) -> Response {
    asset("text/html; charset=utf-8", html).await
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The WebSocket read buffer of one connection.
const WS_READ_BUFFER_BYTES: usize = 8 * 1024;

async fn ws(
    upgrade: WebSocketUpgrade,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    State(shared): State<Arc<Shared>>,
) -> Response {
    let frame_bytes_max = shared.config.limits.frame_bytes_max;
    upgrade
        .max_message_size(frame_bytes_max)
        .max_frame_size(frame_bytes_max)
        // Each read zero-fills the free part of this buffer (tungstenite 0.29): at the default
        // 128 KiB that memset was the largest cost of a small request on a spinning server.
        // Requests are small; a larger frame is read across several reads.
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .on_upgrade(move |socket| crate::session::run(socket, shared, peer))
}

/// The private HTTP API's authentication: headers `KINKO-KEY`, `KINKO-TS` (ms), `KINKO-NONCE`,
/// `KINKO-SIGN` = hex(HMAC-SHA256(secret, "{ts}{nonce}{METHOD}{path}{body}")). The same key
/// checks as a WebSocket login (allowlist, expiry, revocation, nonce, throttling).
#[allow(clippy::result_large_err)] // The refusal is the response itself, made once per request.
fn authenticate_http(
    shared: &Shared,
    headers: &axum::http::HeaderMap,
    peer: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<crate::auth::Principal, Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(key), Some(ts), Some(nonce), Some(sig)) = (
        header("kinko-key"),
        header("kinko-ts"),
        header("kinko-nonce"),
        header("kinko-sign"),
    ) else {
        let error = protocol::ApiError::new(
            "not_logged_in",
            "send the headers KINKO-KEY, KINKO-TS, KINKO-NONCE and KINKO-SIGN",
        );
        return Err((StatusCode::UNAUTHORIZED, Json(error.json())).into_response());
    };
    let (Ok(ts), Ok(nonce)) = (ts.parse::<u64>(), nonce.parse::<u64>()) else {
        let error = protocol::ApiError::new(
            "invalid_field",
            "KINKO-TS and KINKO-NONCE must be whole numbers",
        );
        return Err((StatusCode::BAD_REQUEST, Json(error.json())).into_response());
    };
    let signed = crate::auth::http_message(ts, nonce, method, path, body);
    shared
        .keys
        .check_http(
            key,
            ts,
            nonce,
            &signed,
            sig,
            crate::operator::now_ms(),
            peer.ip(),
        )
        .map_err(|e| {
            let status = match e {
                crate::auth::LoginError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                crate::auth::LoginError::AddressNotAllowed => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            (status, Json(crate::session::login_error(e).json())).into_response()
        })
}

/// The reply of a one-shot session as an HTTP response: 200, or an error status by code.
fn http_reply(reply: Value) -> Response {
    if reply["type"] != "error" {
        return Json(reply).into_response();
    }
    let status = match reply["code"].as_str().unwrap_or("") {
        "permission_denied" | "forbidden" => StatusCode::FORBIDDEN,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "busy" | "timeout" | "server_shutdown" | "engine_stopped" => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, Json(reply)).into_response()
}

/// `GET /api/v1/account`: balances and open orders (permission `read`).
async fn private_account(
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let principal = match authenticate_http(&shared, &headers, peer, "GET", "/api/v1/account", "") {
        Ok(p) => p,
        Err(response) => return response,
    };
    if let Err(e) = crate::session::permitted(&principal, crate::config::Permission::Read) {
        return (StatusCode::FORBIDDEN, Json(e.json())).into_response();
    }
    let account = principal.account;
    let inner = shared.inner.lock();
    let balances: Vec<_> = inner
        .balances
        .range((account, 0)..=(account, u16::MAX))
        .map(|(k, b)| (k.1, *b))
        .collect();
    let orders = hub::open_orders_json(&inner, &shared.exchange, account);
    drop(inner);
    let balances: Vec<Value> = balances
        .into_iter()
        .map(|(asset, b)| shared.balance_json(account, asset, b))
        .collect();
    Json(json!({"type": "account", "account": account, "balances": balances, "orders": orders}))
        .into_response()
}

/// `POST /api/v1/orders`: a `new_order` (permission `trade`), body as over the WebSocket.
async fn private_order(
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    private_request(shared, headers, peer, "/api/v1/orders", "new_order", body).await
}

/// `POST /api/v1/withdrawals`: a `withdraw` (permission `withdraw`), body as over the WebSocket.
async fn private_withdrawal(
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    private_request(
        shared,
        headers,
        peer,
        "/api/v1/withdrawals",
        "withdraw",
        body,
    )
    .await
}

async fn private_request(
    shared: Arc<Shared>,
    headers: axum::http::HeaderMap,
    peer: SocketAddr,
    path: &str,
    kind: &str,
    body: String,
) -> Response {
    let principal = match authenticate_http(&shared, &headers, peer, "POST", path, &body) {
        Ok(p) => p,
        Err(response) => return response,
    };
    let mut request = match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(object)) => object,
        _ => {
            let error = protocol::ApiError::new("bad_json", "the body must be a JSON object");
            return (StatusCode::BAD_REQUEST, Json(error.json())).into_response();
        }
    };
    request.insert("type".into(), json!(kind));
    let reply = crate::session::one_shot(shared, principal, peer, Value::Object(request)).await;
    http_reply(reply)
}

/// `GET /health`: 200 and `"ok"` while the engine runs; 200 and `"degraded"` with the reason
/// while the last periodic snapshot could not be written (trading goes on: the journal has every
/// command, a restart replays more of it); 503 and `"engine_stopped"` with the reason once the
/// engine has stopped on an error, so that a load balancer or supervisor sees it.
async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let last_seq = shared
        .submitter
        .stats()
        .last_seq
        .load(std::sync::atomic::Ordering::Relaxed);
    match shared.submitter.failure() {
        None => match shared.submitter.snapshot_failure() {
            None => Json(json!({"status": "ok", "last_seq": last_seq})).into_response(),
            Some(snapshot_failure) => Json(json!({
                "status": "degraded", "last_seq": last_seq, "snapshot_failure": snapshot_failure
            }))
            .into_response(),
        },
        Some(failure) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "engine_stopped", "reason": failure, "last_seq": last_seq})),
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut text = shared.metrics.render(&shared.submitter);
    let keys = &shared.keys;
    let counter = |name: &str, help: &str, value: u64| {
        format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n")
    };
    text += &counter(
        "kinko_auth_failures_total",
        "Refused logins (WebSocket, FIX, private HTTP).",
        keys.failures_total
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    text += &counter(
        "kinko_auth_throttled_total",
        "Login attempts refused unchecked because of repeated failures.",
        keys.throttled_total
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn instruments(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let list: Vec<Value> = shared
        .exchange
        .instruments
        .iter()
        .map(|i| {
            json!({
                "symbol": i.symbol, "base": i.base, "quote": i.quote,
                "tick_size": i.tick_size.normalize().to_string(), "lot_size": i.lot_size.normalize().to_string(),
                "min_qty": i.lots_to_qty(i.qty_lots_min).to_string(), "max_qty": i.lots_to_qty(i.qty_lots_max).to_string(),
                "price_band_pct": rust_decimal::Decimal::new(i64::from(i.price_band_bps), 2).normalize().to_string(),
                "maker_fee": rust_decimal::Decimal::new(i64::from(i.fee_maker_ppm), 6).normalize().to_string(),
                "taker_fee": rust_decimal::Decimal::new(i64::from(i.fee_taker_ppm), 6).normalize().to_string(),
                "house_policy": format!("{:?}", i.house_policy).to_lowercase(),
            })
        })
        .collect();
    Json(json!({ "instruments": list }))
}

fn not_found(error: protocol::ApiError) -> Response {
    (StatusCode::NOT_FOUND, Json(error.json())).into_response()
}

async fn book(Path(symbol): Path<String>, State(shared): State<Arc<Shared>>) -> Response {
    let (instrument, _) = match protocol::instrument(&shared.exchange, &symbol) {
        Ok(found) => found,
        Err(e) => return not_found(e),
    };
    let inner = shared.inner.lock();
    Json(inner.books[instrument as usize].snapshot_json(50)).into_response()
}

async fn trades(Path(symbol): Path<String>, State(shared): State<Arc<Shared>>) -> Response {
    let (instrument, _) = match protocol::instrument(&shared.exchange, &symbol) {
        Ok(found) => found,
        Err(e) => return not_found(e),
    };
    let inner = shared.inner.lock();
    let book = &inner.books[instrument as usize];
    let recent: Vec<Value> = book
        .trades
        .iter()
        .rev()
        .take(100)
        .map(|t| book.trade_json(t))
        .collect();
    Json(json!({ "instrument": book.spec.symbol, "trades": recent })).into_response()
}

// ---------------------------------------------------------------------- the simulated chain

/// `POST /sim/deposit`: someone sends coins to a deposit address on the simulated chain.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SimDeposit {
    address: String,
    asset: String,
    amount: String,
}

/// `POST /sim/drain`: a thief empties (part of) a wallet behind the exchange's back.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SimDrain {
    pool: crate::config::PoolName,
    asset: String,
    wallet: String,
    amount: String,
}

fn sim_amount(shared: &Shared, asset: &str, amount: &str) -> Result<(u16, i64), Box<Response>> {
    let bad = |message: String| {
        Box::new(
            (
                StatusCode::BAD_REQUEST,
                Json(protocol::ApiError::new("invalid_field", message).json()),
            )
                .into_response(),
        )
    };
    let Some(index) = shared.exchange.assets.iter().position(|a| a.code == asset) else {
        return Err(bad(format!("unknown asset {asset:?}")));
    };
    let decimals = shared.exchange.assets[index].decimals;
    let units = amount
        .parse::<rust_decimal::Decimal>()
        .ok()
        .filter(|v| *v > rust_decimal::Decimal::ZERO)
        .and_then(|v| Ratio::from_decimal(v, decimals).and_then(Ratio::whole).ok())
        .ok_or_else(|| {
            bad(format!(
                "amount {amount:?} is not a positive {asset} amount"
            ))
        })?;
    Ok((index as u16, units))
}

async fn sim_deposit(State(shared): State<Arc<Shared>>, Json(body): Json<SimDeposit>) -> Response {
    let (asset, units) = match sim_amount(&shared, &body.asset, &body.amount) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Ok(address) = engine::custody::Address::parse(&body.address) else {
        let error = protocol::ApiError::reject(engine::RejectReason::InvalidAddress);
        return (StatusCode::BAD_REQUEST, Json(error.json())).into_response();
    };
    let pool = {
        let inner = shared.inner.lock();
        let owner = inner
            .custody
            .deposit_addresses
            .iter()
            .find(|((_, a), found)| *a == asset && **found == address)
            .map(|((account, _), _)| *account);
        owner.and_then(|account| inner.custody.pool_of(account))
    };
    let location = shared.exchange.assets[asset as usize].operating_location();
    let tx = shared
        .chain
        .lock()
        .receive(pool, asset, location, address, units);
    let tx: String = tx.iter().map(|b| format!("{b:02x}")).collect();
    Json(json!({"tx": tx, "known_address": pool.is_some()})).into_response()
}

async fn sim_drain(State(shared): State<Arc<Shared>>, Json(body): Json<SimDrain>) -> Response {
    let (asset, units) = match sim_amount(&shared, &body.asset, &body.amount) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let location = match body.wallet.as_str() {
        "hot" => ledger::Location::Hot,
        "cold" => ledger::Location::Cold,
        "bank" => ledger::Location::Bank,
        other => {
            let error = protocol::ApiError::new(
                "invalid_field",
                format!("wallet {other:?} is not hot, cold or bank"),
            );
            return (StatusCode::BAD_REQUEST, Json(error.json())).into_response();
        }
    };
    let taken = shared
        .chain
        .lock()
        .drain(body.pool.pool(), asset, location, units);
    let taken = crate::custody::show(&shared.exchange, asset, taken);
    Json(json!({"taken": taken})).into_response()
}

// --------------------------------------------------------------------------- the start banner

/// The configuration's keys as the banner lists them. A secret is shown only when it is one of
/// the embedded configuration's published demo secrets and still in force: a secret of a real
/// configuration file stays in that file (standard output often ends up in a log), and a
/// rotated or revoked one would mislead.
fn key_lines(config: &ServeConfig, keys: &crate::auth::Keys) -> Vec<String> {
    config
        .keys
        .iter()
        .map(|key| {
            let secret = if !keys.secret_in_force(&key.key, &key.secret) {
                "(rotated or revoked)"
            } else if key.is_demo() {
                key.secret.as_str()
            } else {
                "(in the configuration file)"
            };
            format!(
                "  {:<16} secret {:<26} account {:<8} role {:?}",
                key.key, secret, key.account, key.role
            )
        })
        .collect()
}

/// What `kinko serve` prints once it is up: the addresses, how to trust the certificate (or the
/// plaintext warning), and the API keys.
pub fn banner(config: &ServeConfig, running: &Running) -> String {
    let (http, fix) = (running.http, running.fix);
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line("Kinko is running.".into());
    line(format!("  data folder   {}", config.server.data.display()));
    line(format!("  durability    {:?}", config.server.durability));
    line(format!(
        "  journal       segments of {} MiB, chain hashed {}",
        config.server.journal_segment_mib,
        match config.server.chain_hashing {
            ChainHashing::Inline => "on the engine thread",
            ChainHashing::Thread => "on a thread of its own",
        }
    ));
    let (web, ws, curl) = match &running.certificate {
        Some(certificate) => {
            let origin = if certificate.generated {
                "generated at this start"
            } else {
                "reused"
            };
            line(format!(
                "  TLS           certificate {} ({origin})",
                certificate.cert_path.display()
            ));
            line(format!(
                "                SHA-256 {}",
                certificate.fingerprint_sha256
            ));
            let curl = format!("curl --cacert {}", certificate.cert_path.display());
            ("https", "wss", curl)
        }
        None => {
            line(format!(
                "  !! {}",
                crate::transport::plaintext_warning(http, fix)
            ));
            ("http", "ws", "curl".to_string())
        }
    };
    let web_upper = web.to_uppercase();
    line(format!(
        "  {web_upper:<13} {web}://{http}/health   {web}://{http}/metrics   {web}://{http}/api/instruments"
    ));
    line(format!("  WebSocket     {ws}://{http}/ws"));
    let fix_transport = match running.certificate {
        Some(_) => "over TLS",
        None => "plain TCP, NOT ENCRYPTED",
    };
    line(format!(
        "  FIX 4.4       {fix} {fix_transport}  (SenderCompID = Username = API key, Password = its secret, TargetCompID {})",
        config.fix.comp_id
    ));
    if let Some(certificate) = &running.certificate {
        let cert = certificate.cert_path.display();
        line(String::new());
        line("Trust the certificate (self-signed unless [tls] names one):".into());
        line(format!("  {curl} https://{http}/health"));
        line(format!(
            "  a browser: open https://{http}/ and accept the certificate once, after checking that its \
             SHA-256 fingerprint is the one above (or import {cert} as a trusted authority)"
        ));
        line(format!("  FIX engines: TLS to {fix} trusting {cert}"));
    }
    line(String::new());
    line("API keys (login: sig = hex(HMAC-SHA256(secret, key + ts_ms + nonce))):".into());
    for key_line in key_lines(config, &running.shared.keys) {
        line(key_line);
    }
    line(format!(
        "More keys, with permissions (read, trade, withdraw), an IP allowlist and an expiry: \
         kinko admin keys create --account alice --permissions read,trade (secrets sealed in \
         {} under {})",
        crate::keystore::store_path(&config.server.data).display(),
        match std::env::var(crate::keystore::MASTER_KEY_ENV) {
            Ok(_) => crate::keystore::MASTER_KEY_ENV.to_string(),
            Err(_) => crate::keystore::master_key_path(config)
                .display()
                .to_string(),
        }
    ));
    line(String::new());
    let ca = match &running.certificate {
        Some(certificate) => format!(" --ca {}", certificate.cert_path.display()),
        None => String::new(),
    };
    line(format!(
        "Try it: python3 gateway/examples/trade.py {ws}://{http}/ws{ca}   (pip install websockets)"
    ));
    line(String::new());
    line("Custody runs on a SIMULATED chain (no real coins move): deposit with".into());
    line(format!(
        "  {curl} -XPOST {web}://{http}/sim/deposit -d '{{\"address\":\"ADDR\",\"asset\":\"XEM\",\"amount\":\"100\"}}' -H 'content-type: application/json'"
    ));
    line("and play the thief with /sim/drain (docs/API.md). Operators: kinko admin --help.".into());
    line("Stop with Ctrl-C: a snapshot is written on the way out.".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_shows_demo_secrets_only() {
        let mut config = crate::config::default_config();
        let mut real = config.keys[0].clone();
        real.key = "desk-1".into();
        real.secret = "a-real-secret-of-the-operator".into();
        config.keys.push(real);
        let keys = crate::auth::Keys::new(&config);
        let lines = key_lines(&config, &keys).join("\n");
        assert!(lines.contains("demo-alice-secret"), "{lines}");
        assert!(lines.contains("desk-1"), "{lines}");
        assert!(!lines.contains("a-real-secret-of-the-operator"), "{lines}");
        assert!(lines.contains("(in the configuration file)"), "{lines}");
        keys.revoke("demo-alice").expect("revoke");
        let lines = key_lines(&config, &keys).join("\n");
        assert!(!lines.contains("demo-alice-secret"), "{lines}");
        assert!(lines.contains("(rotated or revoked)"), "{lines}");
    }
}
