//! `kinko serve`: the engine thread, the hub, HTTP (health, metrics, public REST, the
//! WebSocket at `/ws`) on one port and the FIX 4.4 acceptor on another. On the first start, the
//! configured accounts are created and funded by journaled commands. Shutdown logs FIX clients
//! out, stops accepting, lets the engine drain, and writes a snapshot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use engine::runtime::{self, EngineHandle, EngineOptions, SystemClock};
use engine::ExchangeCommand;
use ledger::Ratio;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::ServeConfig;
use crate::custody::chain::ChainAdapter;
use crate::hub::{self, Shared};
use crate::protocol;

pub struct Running {
    pub http: SocketAddr,
    /// The FIX 4.4 acceptor's address.
    pub fix: SocketAddr,
    pub shared: Arc<Shared>,
    fix_acceptor: Option<crate::fix::acceptor::Acceptor>,
    engine: Option<EngineHandle>,
    stop_http: Option<oneshot::Sender<()>>,
    http_task: Option<tokio::task::JoinHandle<()>>,
    hub: Option<thread::JoinHandle<()>>,
}

/// Starts everything; returns once the HTTP listener is bound.
pub async fn start(config: ServeConfig) -> Result<Running, String> {
    config.validate()?;
    let exchange = config.exchange();
    let mut options = EngineOptions::new(&config.server.data);
    options.durability = config.server.durability.durability();
    options.idle.spins = config.server.engine_idle_spins;
    options.idle.yields = 0;
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
    let shared = Arc::new(Shared::new(
        config.clone(),
        engine.submitter(),
        &start_state,
    ));
    let outbound = engine.outbound().clone();
    let hub_shared = shared.clone();
    let hub = thread::Builder::new()
        .name("kinko-hub".into())
        .spawn(move || hub::run(hub_shared, outbound))
        .map_err(|e| e.to_string())?;
    if engine.recovery.created {
        bootstrap(&config, &engine, &shared).await?;
    }
    tokio::spawn(crate::custody::drive(shared.clone()));
    let listener = TcpListener::bind(config.server.http)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.http))?;
    let http = listener.local_addr().map_err(|e| e.to_string())?;
    let fix_acceptor = crate::fix::acceptor::start(shared.clone()).await?;
    let app = router(shared.clone());
    let (stop_http, stopped) = oneshot::channel::<()>();
    let http_task = tokio::spawn(async move {
        // Small messages must leave at once: Nagle's algorithm would hold an acknowledgement back
        // until the previous one is acked by the peer.
        let listener =
            axum::serve::ListenerExt::tap_io(listener, |stream: &mut tokio::net::TcpStream| {
                let _ = stream.set_nodelay(true);
            });
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("http server: {e}");
        }
    });
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
        fix: fix_acceptor.local_addr(),
        shared,
        fix_acceptor: Some(fix_acceptor),
        engine: Some(engine),
        stop_http: Some(stop_http),
        http_task: Some(http_task),
        hub: Some(hub),
    })
}

impl Running {
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
        let engine = self.engine.take().expect("running");
        let last = tokio::task::block_in_place(|| engine.shutdown())?;
        if let Some(hub) = self.hub.take() {
            let _ = hub.join();
        }
        Ok(last)
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
            commands.push(ExchangeCommand::CustodyTransfer {
                pool,
                asset,
                source: ledger::Location::Hot,
                target: ledger::Location::Cold,
                amount_units: total - keep,
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
        while submitter.submit(0, command).is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Until the hub has mirrored the opening balances too: a login right after start must see them.
    while shared.inner.lock().seq_published < target {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
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

async fn ws(upgrade: WebSocketUpgrade, State(shared): State<Arc<Shared>>) -> Response {
    let frame_bytes_max = shared.config.limits.frame_bytes_max;
    upgrade
        .max_message_size(frame_bytes_max)
        .max_frame_size(frame_bytes_max)
        .on_upgrade(move |socket| crate::session::run(socket, shared))
}

async fn health(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let stats = shared.submitter.stats();
    Json(
        json!({"status": "ok", "last_seq": stats.last_seq.load(std::sync::atomic::Ordering::Relaxed)}),
    )
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = shared.metrics.render(&shared.submitter);
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
