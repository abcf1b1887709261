//! The FIX acceptor: a TCP listener, TLS unless the configuration asks for plain TCP
//! (crate::transport), and one task per session.
//!
//! A connection's first message decides its session: a Logon whose TargetCompID is the acceptor's
//! CompID and whose SenderCompID is an API key. Anything else — another message type, another
//! BeginString, an unknown CompID — is dropped without a word, as QuickFIX drops a connection for
//! a session it does not have; so is a second connection to a session that has one (a duplicate
//! logon), which leaves the first connection untouched.
//!
//! Each session runs as one task that owns its state, its store and its connection's write half,
//! and hears from three places: its connection's reader task (decoded messages), the hub (its
//! acknowledgements and its account's events, with or without a connection), and a clock tick.
//! A session's reader hands over one message at a time through a bounded queue, so a flood waits
//! in the kernel's buffers, and other sessions never notice it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::codec::{Decoder, Garbled, Message, BEGIN_STRING};
use super::session::Session;
use super::store::{self, Store};
use super::tag;
use crate::hub::{Kill, Outgoing, SessionEntry, Shared, Wire};
use crate::transport::{Stream, Transport};

/// A connection's halves, TLS or plain.
type Reader = ReadHalf<Stream>;
type Writer = WriteHalf<Stream>;

/// How often a session looks at its timers.
const TICK_MS: u64 = 100;
/// Bytes read from a socket at once.
const READ_BYTES: usize = 16 * 1024;
/// Decoded messages waiting for their session: the reader stops reading when it is full.
const INBOUND_MESSAGES_MAX: usize = 256;
/// Hub messages waiting for a session: executions for its account keep coming while it writes.
pub const HUB_MESSAGES_MAX: usize = 65_536;
/// A write that cannot finish within this closes the connection (the client recovers by resend).
const WRITE_TIMEOUT_MS: u64 = 10_000;
/// How long shutdown waits for the sessions to log out.
const SHUTDOWN_WAIT_MS: u64 = 3_000;
/// How long a stopping session waits for its cancel-on-disconnect to be acknowledged.
const CANCEL_WAIT_MS: u64 = 1_000;

enum Inbound {
    Message(Message),
    Garbled(Garbled),
    TooLarge,
    Closed,
}

/// A connection handed to its session.
struct Attach {
    first: Message,
    inbound: mpsc::Receiver<Inbound>,
    writer: Writer,
    reader: JoinHandle<()>,
    peer: SocketAddr,
}

enum Control {
    Attach(Attach),
    Shutdown,
}

struct Handle {
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
}

struct Registry {
    shared: Arc<Shared>,
    root: PathBuf,
    sessions: Mutex<HashMap<String, Handle>>,
}

pub struct Acceptor {
    addr: SocketAddr,
    registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    listener: Option<JoinHandle<()>>,
}

/// Binds `shared.config.server.fix`, brings back the sessions of earlier runs (so their accounts'
/// executions are numbered and stored from the first moment), and starts accepting.
pub async fn start(shared: Arc<Shared>, transport: Arc<Transport>) -> Result<Acceptor, String> {
    let bind = shared.config.server.fix;
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|e| format!("cannot listen for FIX on {bind}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let root = shared.config.server.data.join("fix");
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let registry = Arc::new(Registry {
        shared,
        root,
        sessions: Mutex::new(HashMap::new()),
    });
    registry.restore()?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    let accepting = registry.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tokio::spawn(connection(stream, peer, accepting.clone(), transport.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("fix accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
    });
    tracing::info!("FIX 4.4 acceptor on {addr}");
    Ok(Acceptor {
        addr,
        registry,
        stop: Some(stop),
        listener: Some(task),
    })
}

impl Acceptor {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, logs every client out, persists every session, and waits for them.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.listener.take() {
            let _ = task.await;
        }
        let handles: Vec<Handle> = self
            .registry
            .sessions
            .lock()
            .drain()
            .map(|(_, h)| h)
            .collect();
        for handle in &handles {
            let _ = handle.control.send(Control::Shutdown).await;
        }
        for handle in handles {
            let wait = Duration::from_millis(SHUTDOWN_WAIT_MS);
            if tokio::time::timeout(wait, handle.task).await.is_err() {
                tracing::warn!("a FIX session did not stop in time");
            }
        }
    }
}

impl Registry {
    /// Starts a session for every store folder of a key that still exists.
    fn restore(self: &Arc<Self>) -> Result<(), String> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| e.to_string())?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(comp_id) = store::comp_id_of(&name) else {
                continue;
            };
            if self.shared.keys.principal(&comp_id).is_none() {
                tracing::warn!("fix store {name}: no such key any more; left alone");
                continue;
            }
            self.session(&comp_id)
                .map_err(|e| format!("fix session {comp_id}: {e}"))?;
        }
        Ok(())
    }

    /// The control channel of `comp_id`'s session, started on first use.
    fn session(self: &Arc<Self>, comp_id: &str) -> io::Result<mpsc::Sender<Control>> {
        let mut sessions = self.sessions.lock();
        if let Some(handle) = sessions.get(comp_id) {
            return Ok(handle.control.clone());
        }
        let principal = self
            .shared
            .keys
            .principal(comp_id)
            .ok_or_else(|| io::Error::other("unknown key"))?;
        let store = Store::open(&self.root, comp_id)?;
        let hub_id = self.shared.session_next.fetch_add(1, Ordering::Relaxed);
        assert!(hub_id < 1 << 32, "session ids fit the token's high half");
        let (hub_tx, hub_rx) = mpsc::channel(HUB_MESSAGES_MAX);
        let kill = Arc::new(Kill::default());
        self.shared.inner.lock().sessions.insert(
            hub_id,
            SessionEntry {
                tx: hub_tx,
                account: Some(principal.account),
                channels: Default::default(),
                wire: Wire::Raw,
                kill: kill.clone(),
                key: Some(comp_id.to_string()),
            },
        );
        let session = Session::new(self.shared.clone(), principal, hub_id, store);
        let (control, control_rx) = mpsc::channel(16);
        let task = tokio::spawn(run(
            session,
            control_rx,
            Hub {
                rx: hub_rx,
                kill,
                id: hub_id,
            },
            self.shared.clone(),
        ));
        sessions.insert(
            comp_id.to_string(),
            Handle {
                control: control.clone(),
                task,
            },
        );
        Ok(control)
    }
}

/// One accepted connection until its Logon names its session (its TLS handshake first).
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    registry: Arc<Registry>,
    transport: Arc<Transport>,
) {
    let Some(stream) = transport.accept(tcp, peer).await else {
        return;
    };
    let (mut reader, writer) = tokio::io::split(stream);
    let mut decoder = Decoder::default();
    let logon_timeout = Duration::from_secs(registry.shared.config.fix.logon_timeout_secs);
    let first = tokio::time::timeout(logon_timeout, first_message(&mut reader, &mut decoder)).await;
    let Ok(Some(first)) = first else {
        tracing::debug!("fix {peer}: no logon; dropped");
        return;
    };
    let Some(comp_id) = session_of(&first, &registry.shared.config.fix.comp_id) else {
        tracing::info!(
            "fix {peer}: first message names no session; dropped: {}",
            first.text()
        );
        return;
    };
    if registry.shared.keys.principal(&comp_id).is_none() {
        // Dropped without a word, as QuickFIX acceptors do, but counted as a failed login of
        // this address: guessing key names over FIX is throttled like guessing over WebSocket.
        let now_ms = crate::operator::now_ms();
        let _ = registry
            .shared
            .keys
            .check_password(&comp_id, "", now_ms, peer.ip());
        tracing::info!("fix {peer}: unknown SenderCompID {comp_id:?}; dropped");
        return;
    }
    let control = match registry.session(&comp_id) {
        Ok(control) => control,
        Err(e) => {
            tracing::error!("fix {peer}: session {comp_id}: {e}");
            return;
        }
    };
    let (inbound_tx, inbound) = mpsc::channel(INBOUND_MESSAGES_MAX);
    let reader = tokio::spawn(read(reader, decoder, inbound_tx));
    let attach = Attach {
        first,
        inbound,
        writer,
        reader,
        peer,
    };
    if let Err(mpsc::error::SendError(Control::Attach(attach))) =
        control.send(Control::Attach(attach)).await
    {
        attach.reader.abort();
    }
}

/// The first whole message, skipping garbled ones; `None` when the peer closes or overflows.
async fn first_message(reader: &mut Reader, decoder: &mut Decoder) -> Option<Message> {
    let mut buffer = vec![0; READ_BYTES];
    loop {
        while let Some(item) = decoder.next_frame().ok()? {
            if let Ok(message) = item {
                return Some(message);
            }
        }
        let read = reader.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        decoder.feed(&buffer[..read]);
    }
}

/// The SenderCompID of a Logon addressed to us in FIX 4.4.
fn session_of(logon: &Message, comp_id: &str) -> Option<String> {
    let ours = logon.msg_type() == "A"
        && logon.begin_string() == BEGIN_STRING
        && logon.get(tag::TARGET_COMP_ID) == Some(comp_id);
    ours.then(|| logon.get(tag::SENDER_COMP_ID).map(str::to_string))
        .flatten()
}

/// The reader task of one connection: bytes in, decoded messages to the session.
async fn read(mut reader: Reader, mut decoder: Decoder, inbound: mpsc::Sender<Inbound>) {
    let mut buffer = vec![0; READ_BYTES];
    loop {
        loop {
            let item = match decoder.next_frame() {
                Ok(Some(Ok(message))) => Inbound::Message(message),
                Ok(Some(Err(reason))) => Inbound::Garbled(reason),
                Ok(None) => break,
                Err(super::codec::TooLarge) => {
                    let _ = inbound.send(Inbound::TooLarge).await;
                    return;
                }
            };
            if inbound.send(item).await.is_err() {
                return;
            }
        }
        let read = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = inbound.send(Inbound::Closed).await;
                return;
            }
            Ok(read) => read,
        };
        decoder.feed(&buffer[..read]);
    }
}

/// The current connection of a session, as the session task holds it.
struct Link {
    inbound: mpsc::Receiver<Inbound>,
    writer: Writer,
    reader: JoinHandle<()>,
}

async fn recv_inbound(wire: &mut Option<Link>) -> Inbound {
    match wire {
        Some(wire) => wire.inbound.recv().await.unwrap_or(Inbound::Closed),
        None => std::future::pending().await,
    }
}

/// One session until the server stops.
/// A session's side of the hub: its queue, its kill switch, its entry's id.
struct Hub {
    rx: mpsc::Receiver<Outgoing>,
    kill: Arc<Kill>,
    id: u64,
}

async fn run(
    mut session: Session,
    mut control: mpsc::Receiver<Control>,
    hub: Hub,
    shared: Arc<Shared>,
) {
    let Hub {
        rx: mut hub,
        kill,
        id: hub_id,
    } = hub;
    let mut wire: Option<Link> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(TICK_MS));
    let mut stopping = false;
    while !stopping {
        // Biased, hub first: an account's events that happened before a connection's Logon are
        // numbered before the Logon answer, so the client finds them as a gap, in order.
        tokio::select! {
            biased;
            outgoing = hub.recv() => match outgoing {
                Some(outgoing) => session.on_hub(outgoing),
                None => stopping = true,
            },
            // A close the full queue could not carry (the engine stopped, the key was revoked):
            // taken after what the queue holds, as the hub branch comes first.
            reason = kill.fired() => session.on_hub(Outgoing::Close(reason)),
            command = control.recv() => match command {
                Some(Control::Attach(attach)) => attach_connection(&mut session, &mut wire, attach),
                Some(Control::Shutdown) | None => {
                    session.shutdown("server shutdown");
                    stopping = true;
                }
            },
            inbound = recv_inbound(&mut wire) => match inbound {
                Inbound::Message(message) => session.receive(message),
                Inbound::Garbled(reason) => session.garbled(reason),
                Inbound::TooLarge => session.too_large(),
                Inbound::Closed => disconnect(&mut session, &mut wire).await,
            },
            _ = tick.tick() => session.tick(Instant::now()),
        }
        flush(&mut session, &mut wire).await;
    }
    if wire.is_some() {
        disconnect(&mut session, &mut wire).await;
    }
    settle_cancel(&mut session, &mut hub).await;
    session.persist();
    shared.inner.lock().sessions.remove(&hub_id);
}

/// A cancel-on-disconnect submitted as the session stops: its ExecutionReports are stored before
/// the session leaves the hub, so that the client finds them by resend after a restart. The hub
/// queues a command's events right behind its acknowledgement, so once that is in, so are they.
async fn settle_cancel(session: &mut Session, hub: &mut mpsc::Receiver<Outgoing>) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(CANCEL_WAIT_MS);
    while session.cancel_pending() {
        match tokio::time::timeout_at(deadline, hub.recv()).await {
            Ok(Some(outgoing)) => session.on_hub(outgoing),
            Ok(None) | Err(_) => {
                tracing::warn!(
                    "fix {}: cancel-on-disconnect not acknowledged",
                    session.peer()
                );
                return;
            }
        }
    }
    while let Ok(outgoing) = hub.try_recv() {
        session.on_hub(outgoing);
    }
}

fn attach_connection(session: &mut Session, wire: &mut Option<Link>, attach: Attach) {
    if wire.is_some() {
        // A duplicate logon: the session already has a connection, which stays as it is.
        tracing::warn!(
            "fix {}: refused a second connection from {} (already connected)",
            session.peer(),
            attach.peer
        );
        attach.reader.abort();
        return;
    }
    tracing::info!("fix {}: connection from {}", session.peer(), attach.peer);
    session.attach(Instant::now(), attach.peer);
    *wire = Some(Link {
        inbound: attach.inbound,
        writer: attach.writer,
        reader: attach.reader,
    });
    session.receive(attach.first);
}

/// Writes what the session produced, continues a resend chunk by chunk, closes when asked.
async fn flush(session: &mut Session, wire: &mut Option<Link>) {
    loop {
        let out = session.take_output();
        if let (false, Some(connection)) = (out.is_empty(), wire.as_mut()) {
            let timeout = Duration::from_millis(WRITE_TIMEOUT_MS);
            // TLS may keep the end of a message in its buffer when the socket is full: the flush
            // sends it (a no-op in plain TCP).
            let write = async {
                connection.writer.write_all(&out).await?;
                connection.writer.flush().await
            };
            let written = tokio::time::timeout(timeout, write).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!("fix {}: write failed or timed out", session.peer());
                return disconnect(session, wire).await;
            }
        }
        if session.should_close() {
            return disconnect(session, wire).await;
        }
        if !session.resend_step() {
            return;
        }
    }
}

async fn disconnect(session: &mut Session, wire: &mut Option<Link>) {
    if let Some(mut connection) = wire.take() {
        let _ = connection.writer.shutdown().await;
        connection.reader.abort();
        tracing::info!("fix {}: disconnected", session.peer());
    }
    if session.is_connected() {
        session.detach();
    }
}
