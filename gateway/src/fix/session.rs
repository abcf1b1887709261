//! One FIX session: the state machine of the FIX 4.4 session layer, as QuickFIX's `Session`
//! implements it, and the bridge to order entry. It does no I/O of its own: the acceptor hands it
//! decoded messages, hub messages and clock ticks, and writes out what it produced
//! ([`Session::take_output`]), closing the connection when [`Session::should_close`] says so.
//!
//! A session outlives its connections. It is bound to one API key (its SenderCompID) and keeps
//! hearing its account's events while no one is connected: the ExecutionReports are numbered and
//! stored, and a client that logs on again finds the gap and asks for them with a ResendRequest.
//!
//! The rules, each as QuickFIX applies them (docs/API.md, section "FIX 4.4" lists them for clients):
//! * the first message of a connection is a Logon; credentials are checked before anything
//!   changes; ResetSeqNumFlag=Y resets both sequence numbers and the store;
//! * every other message is validated (Reject with SessionRejectReason and RefTagID), then
//!   checked for CompIDs (Reject 9 + Logout), SendingTime (Reject 10 + Logout), and its MsgSeqNum:
//!   too high queues it and sends one ResendRequest; too low without PossDupFlag is a Logout and
//!   a disconnect; too low with PossDupFlag is ignored (OrigSendingTime checked);
//! * silence for HeartBtInt × 1.2 brings a TestRequest, for × 2.4 a disconnect;
//! * a connection whose Logon asked for cancel-on-disconnect (8013=Y, or the session's configured
//!   default) cancels the account's open orders when it ends, however it ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{Command, Event, ExchangeCommand, ExchangeEvent, InstrumentId};

use super::codec::{frame, Body, Garbled, Message, BEGIN_STRING};
use super::dictionary::{self, Invalid, RejectReason};
use super::orders::{OrderEntry, Outcome};
use super::store::Store;
use super::time::{format_timestamp, now_ns, parse_timestamp};
use super::{is_admin, tag};
use crate::auth::{fix_logon_prehash, LoginError, Principal};
use crate::config::{FixSettings, Permission, Role};
use crate::hub::{fill_fee, Outgoing, Shared};
use crate::session::TokenBucket;

/// Messages held back for a gap, waiting for the messages before them.
pub const QUEUED_MESSAGES_MAX: usize = 1_024;
/// Messages produced during a resend, sent after it; past this the client is disconnected and
/// recovers them by resend at its next logon.
pub const HELD_MESSAGES_MAX: usize = 65_536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitingLogon,
    LoggedOn,
    /// We sent a Logout and wait for the answer until then.
    LogoutSent(Instant),
}

/// The state of the current connection.
struct Connection {
    /// The client's address (TCP peer).
    peer_addr: SocketAddr,
    phase: Phase,
    connected_at: Instant,
    heartbeat: Duration,
    last_received: Instant,
    last_sent: Instant,
    test_requests: u32,
    /// The range we asked the client to resend, while it is not satisfied.
    resend_range: Option<(u64, u64)>,
    /// Messages received ahead of a gap, by MsgSeqNum.
    queue: BTreeMap<u64, Message>,
    /// Our resend in progress: the next MsgSeqNum to resend and the last one.
    resending: Option<(u64, u64)>,
    /// Messages produced while resending.
    held: Vec<Vec<u8>>,
    close: bool,
    bucket: TokenBucket,
    /// Chosen at Logon: cancel the account's open orders when this connection ends.
    cancel_on_disconnect: bool,
}

pub struct Session {
    shared: Arc<Shared>,
    settings: FixSettings,
    principal: Principal,
    /// The session's id in the hub (acknowledgements carry it in their token).
    hub_id: u64,
    store: Store,
    orders: OrderEntry,
    token_next: u32,
    /// The token of a cancel-on-disconnect whose acknowledgement has not come back yet.
    cancelling: Option<u64>,
    /// The journal seq of the last own command reported from its acknowledgement.
    reported_seq: Option<u64>,
    /// The SendingTime of the last signed Logon accepted: a signed Logon must be later.
    signed_sending_time_last_ns: Option<u64>,
    connection: Option<Connection>,
    out: Vec<u8>,
}

impl Session {
    pub fn new(shared: Arc<Shared>, principal: Principal, hub_id: u64, store: Store) -> Session {
        let orders = std::fs::read_to_string(store.dir().join("orders.json"))
            .map(|text| OrderEntry::load(&text))
            .unwrap_or_default();
        Session {
            settings: shared.config.fix.clone(),
            shared,
            principal,
            hub_id,
            store,
            orders,
            token_next: 0,
            cancelling: None,
            reported_seq: None,
            signed_sending_time_last_ns: None,
            connection: None,
            out: Vec::new(),
        }
    }

    /// The client's CompID: the API key.
    pub fn peer(&self) -> &str {
        &self.principal.key
    }

    /// The address of the current connection's client.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.connection.as_ref().map(|c| c.peer_addr)
    }

    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    pub fn next_sender(&self) -> u64 {
        self.store.next_sender()
    }

    pub fn next_target(&self) -> u64 {
        self.store.next_target()
    }

    /// A new connection whose first message will be handed to [`Session::receive`].
    pub fn attach(&mut self, now: Instant, peer_addr: SocketAddr) {
        assert!(self.connection.is_none(), "one connection per session");
        let limits = &self.shared.config.limits;
        self.connection = Some(Connection {
            peer_addr,
            phase: Phase::AwaitingLogon,
            connected_at: now,
            heartbeat: Duration::from_secs(30),
            last_received: now,
            last_sent: now,
            test_requests: 0,
            resend_range: None,
            queue: BTreeMap::new(),
            resending: None,
            held: Vec::new(),
            close: false,
            bucket: TokenBucket::new(limits.connection_rate_per_sec, limits.connection_burst),
            cancel_on_disconnect: false,
        });
        self.out.clear();
    }

    /// The connection is gone: keep what must survive, and cancel the account's open orders when
    /// its Logon asked for that. Any end counts — a Logout, a dropped socket, a timeout, shutdown.
    pub fn detach(&mut self) {
        let logged_on = self.logged_on();
        let connection = self.connection.take();
        if logged_on && connection.is_some_and(|c| c.cancel_on_disconnect) {
            self.cancel_on_disconnect();
        }
        self.out.clear();
        self.persist();
    }

    /// The WebSocket API's cancel-on-disconnect, with a token of ours: the acknowledgement comes
    /// back here, and the cancellations' ExecutionReports are numbered and stored like any other,
    /// for the client to recover by resend.
    fn cancel_on_disconnect(&mut self) {
        let token = self.token_next();
        tracing::info!(
            "fix {}: cancel-on-disconnect: cancelling the open orders of account {}",
            self.peer(),
            self.principal.account
        );
        let submitted =
            crate::session::cancel_on_disconnect(&self.shared, self.principal.account, token);
        if submitted {
            self.cancelling = Some(token);
        }
    }

    /// A cancel-on-disconnect was submitted and its acknowledgement is still to come.
    pub fn cancel_pending(&self) -> bool {
        self.cancelling.is_some()
    }

    fn token_next(&mut self) -> u64 {
        self.token_next = self.token_next.wrapping_add(1);
        (self.hub_id << 32) | u64::from(self.token_next)
    }

    /// Syncs the store and saves the open orders' FIX state.
    pub fn persist(&mut self) {
        if let Err(e) = self.store.sync() {
            tracing::error!("fix {}: cannot sync the store: {e}", self.peer());
        }
        let path = self.store.dir().join("orders.json");
        let temp = path.with_extension("json.tmp");
        let written =
            std::fs::write(&temp, self.orders.save()).and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = written {
            tracing::error!("fix {}: cannot save order state: {e}", self.peer());
        }
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn should_close(&self) -> bool {
        self.connection.as_ref().is_some_and(|c| c.close)
    }

    fn logged_on(&self) -> bool {
        matches!(
            self.connection.as_ref().map(|c| c.phase),
            Some(Phase::LoggedOn | Phase::LogoutSent(_))
        )
    }

    fn close(&mut self) {
        if let Some(connection) = &mut self.connection {
            connection.close = true;
        }
    }

    /// One decoded message, then whatever it unblocked from the queue.
    pub fn receive(&mut self, message: Message) {
        if self.should_close() {
            return;
        }
        self.on_message(message);
        loop {
            let next = self.store.next_target();
            let Some(connection) = &mut self.connection else {
                return;
            };
            connection.queue.retain(|&seq, _| seq >= next);
            let Some(message) = connection.queue.remove(&next) else {
                return;
            };
            if connection.close {
                return;
            }
            self.on_message(message);
        }
    }

    /// A garbled frame: ignored, as the specification asks, with no sequence number consumed.
    pub fn garbled(&mut self, reason: Garbled) {
        tracing::debug!("fix {}: ignored a garbled message: {reason}", self.peer());
    }

    /// A message too large to frame: the stream cannot be trusted any more.
    pub fn too_large(&mut self) {
        let text = format!(
            "message larger than {} bytes",
            super::codec::MESSAGE_BYTES_MAX
        );
        if self.logged_on() {
            self.send_logout(Some(&text));
        }
        self.close();
    }

    fn on_message(&mut self, message: Message) {
        let msg_type = message.msg_type().to_string();
        let phase = self.connection.as_ref().map(|c| c.phase);
        if message.begin_string() != BEGIN_STRING {
            if msg_type == "5" {
                return self.on_logout(&message);
            }
            self.send_logout(Some("Incorrect BeginString"));
            self.incr_target();
            self.close();
            return;
        }
        if let Err(invalid) = dictionary::validate(&message) {
            return self.on_invalid(&message, invalid, phase);
        }
        match (msg_type.as_str(), phase) {
            ("A", Some(Phase::AwaitingLogon)) => self.on_logon(&message),
            // A Logon on a session already logged on, or anything before a Logon: QuickFIX's
            // "Logon state is not valid for message" — disconnect.
            ("A", _) | (_, Some(Phase::AwaitingLogon)) => {
                tracing::warn!("fix {}: {msg_type} in the wrong logon state", self.peer());
                self.close();
            }
            ("0", _) => self.on_heartbeat(&message),
            ("1", _) => self.on_test_request(&message),
            ("2", _) => self.on_resend_request(&message),
            ("3", _) => self.on_reject(&message),
            ("4", _) => self.on_sequence_reset(&message),
            ("5", _) => self.on_logout(&message),
            _ => self.on_application(&message),
        }
    }

    fn on_invalid(&mut self, message: &Message, invalid: Invalid, phase: Option<Phase>) {
        let Invalid::Session { reason, ref_tag } = invalid else {
            // Unsupported message types pass here only once logged on and in sequence.
            if phase != Some(Phase::AwaitingLogon) && self.verify(message, true, true) {
                self.business_reject(message, 3, "Unsupported Message Type");
                self.incr_target();
            } else if phase == Some(Phase::AwaitingLogon) {
                self.close();
            }
            return;
        };
        if phase == Some(Phase::AwaitingLogon) {
            let text = reject_text(reason, ref_tag);
            self.send_logout(Some(&text));
            self.close();
            return;
        }
        self.reject(message, reason, ref_tag, None);
    }

    fn on_logon(&mut self, logon: &Message) {
        let peer = self.peer().to_string();
        if let Err(text) = self.check_credentials(logon) {
            tracing::warn!("fix {peer}: {text}");
            return self.refuse_logon(&text);
        }
        if !self.sending_time_ok(logon) {
            return self.refuse_logon("SendingTime accuracy problem");
        }
        let heartbeat_secs: u64 = logon
            .get(tag::HEART_BT_INT)
            .unwrap_or("")
            .parse()
            .unwrap_or(0);
        let (min, max) = (
            self.settings.heartbeat_secs_min,
            self.settings.heartbeat_secs_max,
        );
        if !(min..=max).contains(&heartbeat_secs) {
            return self.refuse_logon(&format!("HeartBtInt(108) must be between {min} and {max}"));
        }
        if logon.get(tag::ENCRYPT_METHOD) != Some("0") {
            return self.refuse_logon("EncryptMethod(98) must be 0 (none)");
        }
        let cancel_on_disconnect = match logon.get(tag::CANCEL_ORDERS_ON_DISCONNECT) {
            Some(flag) => flag == "Y",
            None => self.settings.cancel_on_disconnect(&peer),
        };
        if cancel_on_disconnect && self.principal.role != Role::Trader {
            let text = "CancelOrdersOnDisconnect(8013)=Y needs a trader key";
            return self.refuse_logon(text);
        }
        if cancel_on_disconnect && !self.principal.may(Permission::Trade) {
            return self.refuse_logon(
                "CancelOrdersOnDisconnect(8013)=Y needs a key with the trade permission",
            );
        }
        let reset = logon.get(tag::RESET_SEQ_NUM_FLAG) == Some("Y");
        if reset {
            tracing::info!("fix {peer}: ResetSeqNumFlag=Y, sequence numbers back to 1");
            self.io(|store| store.reset());
        }
        let seq = logon.seq_num().expect("validated");
        let expected = self.store.next_target();
        if seq < expected {
            let text = format!("MsgSeqNum too low, expecting {expected} but received {seq}");
            return self.refuse_logon(&text);
        }
        let connection = self.connection.as_mut().expect("connected");
        connection.phase = Phase::LoggedOn;
        connection.cancel_on_disconnect = cancel_on_disconnect;
        connection.heartbeat = Duration::from_secs(heartbeat_secs);
        connection.last_received = Instant::now();
        let mut body = Body::new("A");
        body.field(tag::ENCRYPT_METHOD, 0)
            .field(tag::HEART_BT_INT, heartbeat_secs);
        if reset {
            body.field(tag::RESET_SEQ_NUM_FLAG, "Y");
        }
        self.send(body);
        tracing::info!(
            "fix {peer}: logged on (account {}, HeartBtInt {heartbeat_secs}, \
             cancel-on-disconnect {cancel_on_disconnect})",
            self.principal.account
        );
        if seq > expected && !reset {
            self.target_too_high(logon, seq);
        } else {
            self.incr_target();
        }
    }

    /// Username(553) and either Password(554) or a signature in RawData(96): `Err` is the
    /// Logout's Text. Nothing changes here but the last signed SendingTime, on success.
    fn check_credentials(&mut self, logon: &Message) -> Result<(), String> {
        let peer = self.peer();
        let peer_ip = self
            .connection
            .as_ref()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.peer_addr.ip());
        let now_ms = now_ns() / 1_000_000;
        // A refusal that says why, without telling which part of a secret was wrong.
        let refused = |error: LoginError| match error {
            LoginError::BadSignature | LoginError::UnknownKey => None,
            other => Some(format!("Logon refused: {}", other.message())),
        };
        let username = logon.get(tag::USERNAME).unwrap_or("");
        let password = logon.get(tag::PASSWORD);
        let signature = logon.raw(tag::RAW_DATA);
        if password.is_some() && signature.is_some() {
            return Err(
                "Logon refused: send Password(554) or a signature in RawData(96), not both".into(),
            );
        }
        let Some(signature) = signature else {
            let wrong = "Logon refused: wrong Username(553) or Password(554)".to_string();
            if username != peer {
                return Err(wrong);
            }
            return match self.shared.keys.check_password(
                peer,
                password.unwrap_or(""),
                now_ms,
                peer_ip,
            ) {
                Ok(p) if p.key == self.principal.key => {
                    // The key as it stands now (a rotation since the last Logon among others).
                    self.principal = p;
                    Ok(())
                }
                Ok(_) => Err(wrong),
                Err(error) => Err(refused(error).unwrap_or(wrong)),
            };
        };
        if username != peer {
            return Err(
                "Logon refused: Username(553) must be the API key in SenderCompID(49)".into(),
            );
        }
        let length = logon.get(tag::RAW_DATA_LENGTH).and_then(|l| l.parse().ok());
        if length != Some(signature.len()) {
            return Err(
                "Logon refused: RawDataLength(95) must be the length of RawData(96)".into(),
            );
        }
        let sent_ns = self.signed_sending_time(logon)?;
        let field = |tag: u32| logon.get(tag).unwrap_or("");
        let prehash = fix_logon_prehash(
            field(tag::SENDING_TIME),
            field(tag::MSG_TYPE),
            field(tag::MSG_SEQ_NUM),
            field(tag::SENDER_COMP_ID),
            field(tag::TARGET_COMP_ID),
        );
        let wrong = "Logon refused: RawData(96) is not the signature of this Logon".to_string();
        let sig = std::str::from_utf8(signature).unwrap_or("");
        match self
            .shared
            .keys
            .check_signature(peer, prehash.as_bytes(), sig, now_ms, peer_ip)
        {
            Ok(p) if p.key == self.principal.key => self.principal = p,
            Ok(_) => return Err(wrong),
            Err(error) => return Err(refused(error).unwrap_or(wrong)),
        }
        self.signed_sending_time_last_ns = Some(sent_ns);
        Ok(())
    }

    /// A signed Logon's SendingTime: inside the login window, and later than the last signed
    /// Logon's, so that a Logon overheard on the wire cannot be played again.
    fn signed_sending_time(&self, logon: &Message) -> Result<u64, &'static str> {
        let window_ns = self.shared.keys.window_ms().saturating_mul(1_000_000);
        let sent_ns = logon
            .get(tag::SENDING_TIME)
            .and_then(parse_timestamp)
            .filter(|sent| sent.abs_diff(now_ns()) <= window_ns)
            // Replay checks live in memory: a Logon signed before this process started is
            // refused, so one overheard before a restart cannot be played after it.
            .filter(|sent| *sent >= self.shared.keys.started_ms().saturating_mul(1_000_000))
            .ok_or(
                "Logon refused: SendingTime(52) is outside the signature window; check the clock",
            )?;
        if self
            .signed_sending_time_last_ns
            .is_some_and(|last| sent_ns <= last)
        {
            return Err("Logon refused: SendingTime(52) is not later than the last signed Logon's");
        }
        Ok(sent_ns)
    }

    fn refuse_logon(&mut self, text: &str) {
        self.send_logout(Some(text));
        self.close();
    }

    /// QuickFIX's `verify`: CompIDs, SendingTime, then MsgSeqNum when asked. `false`: the message
    /// was dealt with here (rejected, queued, ignored) and goes no further.
    fn verify(&mut self, message: &Message, check_high: bool, check_low: bool) -> bool {
        if !self.sending_time_ok(message) {
            self.reject(message, RejectReason::SendingTimeAccuracy, None, None);
            self.initiate_logout("SendingTime accuracy problem");
            return false;
        }
        let comp_ids_ok = message.get(tag::SENDER_COMP_ID) == Some(self.peer())
            && message.get(tag::TARGET_COMP_ID) == Some(self.settings.comp_id.as_str());
        if !comp_ids_ok {
            self.reject(message, RejectReason::CompIdProblem, None, None);
            self.initiate_logout("CompID problem");
            return false;
        }
        let seq = message.seq_num().expect("validated");
        let expected = self.store.next_target();
        if check_high && seq > expected {
            self.target_too_high(message, seq);
            return false;
        }
        if check_low && seq < expected {
            self.target_too_low(message, seq, expected);
            return false;
        }
        let connection = self.connection.as_mut().expect("connected");
        if let Some((_, end)) = connection.resend_range {
            if seq >= end {
                connection.resend_range = None;
            }
        }
        connection.last_received = Instant::now();
        connection.test_requests = 0;
        true
    }

    fn sending_time_ok(&self, message: &Message) -> bool {
        let tolerance_ns = self.settings.sending_time_tolerance_secs * 1_000_000_000;
        message
            .get(tag::SENDING_TIME)
            .and_then(parse_timestamp)
            .is_some_and(|sent| sent.abs_diff(now_ns()) <= tolerance_ns)
    }

    /// A gap: keep the message for later and ask for what is missing, once per gap.
    fn target_too_high(&mut self, message: &Message, seq: u64) {
        let expected = self.store.next_target();
        let connection = self.connection.as_mut().expect("connected");
        if connection.queue.len() < QUEUED_MESSAGES_MAX && message.msg_type() != "A" {
            connection.queue.insert(seq, message.clone());
        }
        if let Some((begin, _)) = connection.resend_range {
            if seq >= begin {
                return;
            }
        }
        connection.resend_range = Some((expected, seq - 1));
        tracing::info!(
            "fix {}: MsgSeqNum too high, expecting {expected} but received {seq}",
            self.peer()
        );
        let mut body = Body::new("2");
        body.field(tag::BEGIN_SEQ_NO, expected)
            .field(tag::END_SEQ_NO, 0);
        self.send(body);
    }

    fn target_too_low(&mut self, message: &Message, seq: u64, expected: u64) {
        if !message.poss_dup() {
            let text = format!("MsgSeqNum too low, expecting {expected} but received {seq}");
            tracing::warn!("fix {}: {text}", self.peer());
            self.send_logout(Some(&text));
            self.close();
            return;
        }
        // A possible duplicate of something already processed: ignored, once its times agree.
        if message.msg_type() == "4" {
            return;
        }
        let orig = message
            .get(tag::ORIG_SENDING_TIME)
            .and_then(parse_timestamp);
        let sent = message.get(tag::SENDING_TIME).and_then(parse_timestamp);
        match (orig, sent) {
            (None, _) => self.reject(
                message,
                RejectReason::RequiredTagMissing,
                Some(tag::ORIG_SENDING_TIME),
                None,
            ),
            (Some(orig), Some(sent)) if orig > sent => {
                self.reject(message, RejectReason::SendingTimeAccuracy, None, None);
                self.initiate_logout("SendingTime accuracy problem");
            }
            _ => {}
        }
    }

    fn on_heartbeat(&mut self, message: &Message) {
        if self.verify(message, true, true) {
            self.incr_target();
        }
    }

    fn on_test_request(&mut self, message: &Message) {
        if !self.verify(message, true, true) {
            return;
        }
        let mut body = Body::new("0");
        body.field(
            tag::TEST_REQ_ID,
            message.get(tag::TEST_REQ_ID).expect("validated"),
        );
        self.send(body);
        self.incr_target();
    }

    fn on_reject(&mut self, message: &Message) {
        if !self.verify(message, false, true) {
            return;
        }
        tracing::warn!(
            "fix {}: the client rejected: {}",
            self.peer(),
            message.text()
        );
        self.incr_target();
    }

    fn on_sequence_reset(&mut self, message: &Message) {
        let gap_fill = message.get(tag::GAP_FILL_FLAG) == Some("Y");
        if !self.verify(message, gap_fill, gap_fill) {
            return;
        }
        let new_seq: u64 = message
            .get(tag::NEW_SEQ_NO)
            .unwrap_or("")
            .parse()
            .unwrap_or(0);
        let expected = self.store.next_target();
        if new_seq > expected {
            self.io(|store| store.set_next_target(new_seq));
        } else if new_seq < expected {
            let text =
                format!("NewSeqNo(36) {new_seq} is lower than the expected MsgSeqNum {expected}");
            self.reject(
                message,
                RejectReason::ValueIncorrect,
                Some(tag::NEW_SEQ_NO),
                Some(&text),
            );
        }
    }

    fn on_logout(&mut self, message: &Message) {
        if !self.verify(message, false, false) {
            return;
        }
        let answering = !matches!(
            self.connection.as_ref().map(|c| c.phase),
            Some(Phase::LogoutSent(_))
        );
        if answering {
            self.send_logout(None);
        }
        self.incr_target();
        tracing::info!("fix {}: logged out", self.peer());
        self.close();
    }

    fn on_resend_request(&mut self, message: &Message) {
        if !self.verify(message, false, false) {
            return;
        }
        let begin: u64 = message
            .get(tag::BEGIN_SEQ_NO)
            .unwrap_or("")
            .parse()
            .unwrap_or(0);
        let end: u64 = message
            .get(tag::END_SEQ_NO)
            .unwrap_or("")
            .parse()
            .unwrap_or(0);
        let last = self.store.next_sender() - 1;
        let end = if end == 0 || end > last { last } else { end };
        tracing::info!("fix {}: ResendRequest {begin}..={end}", self.peer());
        if begin >= 1 && begin <= end {
            self.connection.as_mut().expect("connected").resending = Some((begin, end));
        }
        let seq = message.seq_num().expect("validated");
        let expected = self.store.next_target();
        if seq == expected {
            self.incr_target();
        } else if seq > expected {
            self.target_too_high(message, seq);
        }
    }

    /// Produces the next part of a resend in progress; `false` once there is nothing left to do.
    /// Stored application messages go out again with PossDupFlag=Y and their OrigSendingTime;
    /// everything else in the range is covered by SequenceReset-GapFill.
    pub fn resend_step(&mut self) -> bool {
        let Some((next, end)) = self.connection.as_ref().and_then(|c| c.resending) else {
            return false;
        };
        let stored = match self.store.stored(next, end) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!("fix {}: cannot read the store: {e}", self.peer());
                Vec::new()
            }
        };
        let complete = stored.len() < super::store::RESEND_CHUNK_MESSAGES;
        let mut cursor = next;
        for (seq, message) in stored {
            if seq > cursor {
                self.gap_fill(cursor, seq);
            }
            let bytes = resent(&message);
            self.out.extend_from_slice(&bytes);
            cursor = seq + 1;
        }
        let connection = self.connection.as_mut().expect("connected");
        if !complete {
            connection.resending = Some((cursor, end));
            return true;
        }
        if cursor <= end {
            self.gap_fill(cursor, end + 1);
        }
        let connection = self.connection.as_mut().expect("connected");
        connection.resending = None;
        connection.last_sent = Instant::now();
        for held in std::mem::take(&mut connection.held) {
            self.out.extend_from_slice(&held);
        }
        true
    }

    fn gap_fill(&mut self, begin: u64, new_seq: u64) {
        debug_assert!(
            begin < new_seq,
            "a gap fill moves forward: {begin} → {new_seq}"
        );
        let now = format_timestamp(now_ns());
        let mut body = Body::new("4");
        body.field(tag::MSG_SEQ_NUM, begin)
            .field(tag::POSS_DUP_FLAG, "Y")
            .field(tag::SENDER_COMP_ID, &self.settings.comp_id)
            .field(tag::SENDING_TIME, &now)
            .field(tag::TARGET_COMP_ID, self.peer())
            .field(tag::ORIG_SENDING_TIME, &now)
            .field(tag::GAP_FILL_FLAG, "Y")
            .field(tag::NEW_SEQ_NO, new_seq);
        self.out.extend_from_slice(&frame(body.as_bytes()));
    }

    fn on_application(&mut self, message: &Message) {
        if !self.verify(message, true, true) {
            return;
        }
        // Revoked, expired or rotated since the Logon: the hub closes such sessions, but a
        // message already on its way must not act in the meantime.
        let now_ms = crate::operator::now_ms();
        if let Some(reason) = self.shared.keys.refusal(&self.principal, now_ms) {
            tracing::warn!("fix {}: {reason}; logging out", self.peer());
            self.incr_target();
            return self.shutdown(reason);
        }
        let msg_type = message.msg_type();
        if msg_type != "H" && self.principal.role != Role::Trader {
            let text =
                format!("a key with role {:?} cannot trade", self.principal.role).to_lowercase();
            self.business_reject(message, 6, &text);
            return self.incr_target();
        }
        let needed = if msg_type == "H" {
            Permission::Read
        } else {
            Permission::Trade
        };
        if !self.principal.may(needed) {
            let text = format!("this API key lacks the `{}` permission", needed.name());
            self.business_reject(message, 6, &text);
            return self.incr_target();
        }
        let now = now_ns();
        let account = self.principal.account;
        let exchange = &self.shared.exchange;
        let outcome = match msg_type {
            "D" => self.orders.new_order(exchange, account, message, now),
            "F" => self.orders.cancel(account, message, now),
            "G" => {
                let instrument = self.mirror_instrument(message);
                self.orders.replace(exchange, account, message, instrument)
            }
            "q" => self.orders.mass_cancel(exchange, account, message),
            "H" => Outcome::Reply(self.orders.status(exchange, message, now)),
            other => unreachable!("dictionary lets through only supported types, got {other}"),
        };
        match outcome {
            Outcome::Submit { command, pending } => self.submit(command, pending),
            Outcome::Reply(body) => self.send(body),
            Outcome::BusinessReject { reason, text } => {
                self.business_reject(message, reason, &text)
            }
        }
        self.incr_target();
    }

    /// The instrument of the order a replace names, from the hub's mirror of open orders.
    fn mirror_instrument(&self, message: &Message) -> Option<InstrumentId> {
        let account = self.principal.account;
        let inner = self.shared.inner.lock();
        let order_id = match message.get(tag::ORDER_ID).map(|id| id.parse::<u64>()) {
            Some(Ok(id)) => Some(id),
            _ => message
                .get(tag::ORIG_CL_ORD_ID)
                .and_then(super::orders::numeric_cl_ord_id)
                .and_then(|cl| inner.orders_by_client.get(&(account, cl)).copied()),
        };
        let info = inner.orders.get(&order_id?)?;
        (info.account == account).then_some(info.instrument)
    }

    fn submit(&mut self, command: Command, pending: super::orders::Pending) {
        let now = now_ns();
        if self.rate_limited() {
            let body = self
                .orders
                .refused(&pending, "rate limit exceeded; slow down", now);
            return self.send(body);
        }
        let token = self.token_next();
        self.orders.remember(token, pending);
        if let Err(refused) = self
            .shared
            .submitter
            .submit(token, ExchangeCommand::Trade(command))
        {
            let pending = self.orders.forget(token).expect("just remembered");
            let text = match refused {
                engine::runtime::Refused::Busy => "the engine is busy; retry".to_string(),
                engine::runtime::Refused::Stopped => format!(
                    "the engine has stopped ({}); nothing is accepted until the exchange restarts",
                    self.shared.submitter.failure().unwrap_or("no reason given")
                ),
            };
            let body = self.orders.refused(&pending, &text, now);
            self.send(body);
        }
    }

    fn rate_limited(&mut self) -> bool {
        let now = Instant::now();
        let Some(connection) = self.connection.as_mut() else {
            return false;
        };
        if connection.bucket.take(now).is_err() {
            return true;
        }
        let limits = &self.shared.config.limits;
        let mut buckets = self.shared.account_buckets.lock();
        let bucket = buckets
            .entry(self.principal.account)
            .or_insert_with(|| TokenBucket::new(limits.account_rate_per_sec, limits.account_burst));
        bucket.take(now).is_err()
    }

    /// A message from the hub: an acknowledgement, an event of the account, or a close.
    pub fn on_hub(&mut self, outgoing: Outgoing) {
        let bodies = match outgoing {
            Outgoing::Ack {
                token,
                seq,
                ts_ns,
                events,
                ..
            } => self.on_ack(token, seq, ts_ns, &events),
            // Reported from the acknowledgement just before.
            Outgoing::Event { seq, .. } if self.reported_seq == Some(seq) => Vec::new(),
            Outgoing::Event {
                seq,
                ts_ns,
                index,
                event,
                fee,
            } => self.on_event((seq, index, ts_ns), &event, fee),
            // Balances and market data: FIX 4.4 order entry has no message for them.
            Outgoing::Text(_) => Vec::new(),
            Outgoing::Close(reason) => {
                tracing::error!("fix {}: the hub closes the session: {reason}", self.peer());
                self.shutdown(reason);
                Vec::new()
            }
        };
        for body in bodies {
            self.send(body);
        }
    }

    /// One of our own commands, with all of its events. The account's reports are made here and
    /// not from the events the hub hands over one by one right after it (those of `seq` are
    /// skipped): the acknowledgement alone wakes the session, and its reports leave at once.
    fn on_ack(&mut self, token: u64, seq: u64, ts_ns: u64, events: &[ExchangeEvent]) -> Vec<Body> {
        if self.cancelling == Some(token) {
            self.cancelling = None;
        }
        let mut bodies = self.orders.on_ack(token, seq, events, now_ns());
        for (index, event) in events.iter().enumerate() {
            if let ExchangeEvent::Order(event) = event {
                let fee = fill_fee(&self.shared.exchange, events, index);
                bodies.extend(self.on_event((seq, index, ts_ns), event, fee));
            }
        }
        self.reported_seq = Some(seq);
        bodies
    }

    /// The reports of one event of the account's orders.
    fn on_event(
        &mut self,
        at: (u64, usize, u64),
        event: &Event,
        fee: Option<(i64, i64, u8)>,
    ) -> Vec<Body> {
        let shared = &self.shared;
        let client_of = |order_id: u64| {
            let inner = shared.inner.lock();
            inner.orders.get(&order_id).map(|o| o.client_order_id)
        };
        self.orders.on_event(
            &shared.exchange,
            self.principal.account,
            at,
            event,
            fee,
            &client_of,
        )
    }

    /// Logs out a logged-on client and closes the connection (server shutdown).
    pub fn shutdown(&mut self, reason: &str) {
        if self.logged_on() {
            self.send_logout(Some(reason));
        }
        self.close();
    }

    /// Timers: logon and logout timeouts, heartbeats, test requests, the heartbeat timeout; and
    /// the key's standing, so that a session whose key was revoked, rotated or expired is logged
    /// out within a tick even when the hub could not reach it (its queue full).
    pub fn tick(&mut self, now: Instant) {
        let closing = self.connection.as_ref().is_some_and(|c| c.close);
        if self.logged_on() && !closing {
            let now_ms = crate::operator::now_ms();
            if let Some(reason) = self.shared.keys.refusal(&self.principal, now_ms) {
                tracing::warn!("fix {}: {reason}; logging out", self.peer());
                return self.shutdown(reason);
            }
        }
        let logon_timeout = Duration::from_secs(self.settings.logon_timeout_secs);
        let logout_timeout = Duration::from_secs(self.settings.logout_timeout_secs);
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        if connection.close {
            return;
        }
        match connection.phase {
            Phase::AwaitingLogon => {
                if now.duration_since(connection.connected_at) > logon_timeout {
                    connection.close = true;
                }
                return;
            }
            Phase::LogoutSent(at) if now.duration_since(at) > logout_timeout => {
                tracing::info!(
                    "fix {}: timed out waiting for the Logout answer",
                    self.peer()
                );
                return self.close();
            }
            _ => {}
        }
        let heartbeat = connection.heartbeat;
        let silent = now.duration_since(connection.last_received);
        let quiet = now.duration_since(connection.last_sent);
        if connection.resending.is_some() || (silent < heartbeat && quiet < heartbeat) {
            return;
        }
        if silent >= heartbeat.mul_f64(2.4) {
            tracing::warn!(
                "fix {}: no answer to TestRequest, disconnecting",
                self.peer()
            );
            return self.close();
        }
        if silent >= heartbeat.mul_f64(1.2 * f64::from(connection.test_requests + 1)) {
            connection.test_requests += 1;
            let mut body = Body::new("1");
            body.field(tag::TEST_REQ_ID, "TEST");
            self.send(body);
        } else if quiet >= heartbeat && connection.test_requests == 0 {
            self.send(Body::new("0"));
        }
    }

    /// QuickFIX's `generateReject`: Reject(3), and the message counts as received when it was
    /// the one expected (not for Logon and SequenceReset).
    fn reject(
        &mut self,
        message: &Message,
        reason: RejectReason,
        ref_tag: Option<u32>,
        text: Option<&str>,
    ) {
        let seq = message.seq_num();
        let msg_type = message.msg_type().to_string();
        let text = text.map_or_else(|| reject_text(reason, ref_tag), str::to_string);
        tracing::info!("fix {}: Reject {}: {text}", self.peer(), reason.code());
        let mut body = Body::new("3");
        body.field_opt(tag::REF_SEQ_NUM, seq)
            .field_opt(tag::REF_TAG_ID, ref_tag)
            .field_opt(
                tag::REF_MSG_TYPE,
                (!msg_type.is_empty()).then_some(&msg_type),
            )
            .field(tag::SESSION_REJECT_REASON, reason.code())
            .field(tag::TEXT, text);
        self.send(body);
        if msg_type != "A" && msg_type != "4" && seq == Some(self.store.next_target()) {
            self.incr_target();
        }
    }

    fn business_reject(&mut self, message: &Message, reason: u32, text: &str) {
        let mut body = Body::new("j");
        body.field_opt(tag::REF_SEQ_NUM, message.seq_num())
            .field(tag::REF_MSG_TYPE, message.msg_type())
            .field_opt(tag::BUSINESS_REJECT_REF_ID, message.get(tag::CL_ORD_ID))
            .field(tag::BUSINESS_REJECT_REASON, reason)
            .field(tag::TEXT, text);
        self.send(body);
    }

    fn send_logout(&mut self, text: Option<&str>) {
        let mut body = Body::new("5");
        body.field_opt(tag::TEXT, text);
        self.send(body);
    }

    /// Our own Logout: the client answers with one, or is disconnected after the timeout.
    fn initiate_logout(&mut self, text: &str) {
        self.send_logout(Some(text));
        if let Some(connection) = &mut self.connection {
            if connection.phase == Phase::LoggedOn {
                connection.phase = Phase::LogoutSent(Instant::now());
            }
        }
    }

    fn incr_target(&mut self) {
        self.io(|store| store.incr_next_target());
    }

    fn io(&mut self, f: impl FnOnce(&mut Store) -> std::io::Result<()>) {
        if let Err(e) = f(&mut self.store) {
            // A session whose sequence numbers cannot be kept must not go on pretending.
            tracing::error!("fix {}: store write failed: {e}", self.peer());
            self.close();
        }
    }

    /// Numbers, stores and sends (or holds) one message. Application messages are numbered and
    /// stored even with nobody connected: the client recovers them by resend.
    fn send(&mut self, body: Body) {
        let seq = self.store.next_sender();
        let sending_time = format_timestamp(now_ns());
        let bytes = encode(
            &body,
            seq,
            &self.settings.comp_id,
            self.peer(),
            &sending_time,
        );
        let msg_type = body_msg_type(&body);
        let application = !is_admin(msg_type);
        if let Err(e) = self.store.sent(seq, &bytes, application) {
            tracing::error!("fix {}: store write failed: {e}", self.peer());
            return self.close();
        }
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        let writable = connection.phase != Phase::AwaitingLogon || !application;
        if !writable || connection.close {
            return;
        }
        if connection.resending.is_some() {
            if connection.held.len() >= HELD_MESSAGES_MAX {
                connection.close = true;
            }
            connection.held.push(bytes);
            return;
        }
        connection.last_sent = Instant::now();
        self.out.extend_from_slice(&bytes);
    }
}

/// The MsgType of a body built with [`Body::new`].
fn body_msg_type(body: &Body) -> &str {
    let bytes = body.as_bytes();
    let end = bytes
        .iter()
        .position(|&b| b == 1)
        .expect("a body has MsgType");
    std::str::from_utf8(&bytes[3..end]).expect("MsgType is text")
}

/// The standard header, in the order QuickFIX writes it, then the body, framed.
pub fn encode(body: &Body, seq: u64, sender: &str, target: &str, sending_time: &str) -> Vec<u8> {
    let bytes = body.as_bytes();
    let type_end = bytes.iter().position(|&b| b == 1).expect("MsgType") + 1;
    let mut header = Body::default();
    header
        .field(tag::MSG_SEQ_NUM, seq)
        .field(tag::SENDER_COMP_ID, sender)
        .field(tag::SENDING_TIME, sending_time)
        .field(tag::TARGET_COMP_ID, target);
    let mut all = Vec::with_capacity(bytes.len() + header.as_bytes().len());
    all.extend_from_slice(&bytes[..type_end]);
    all.extend_from_slice(header.as_bytes());
    all.extend_from_slice(&bytes[type_end..]);
    frame(&all)
}

/// A stored message as it goes out again: PossDupFlag=Y, OrigSendingTime = its SendingTime,
/// SendingTime = now; everything else as it was.
fn resent(stored: &Message) -> Vec<u8> {
    let now = format_timestamp(now_ns());
    let mut body = Body::default();
    for field in stored.fields() {
        let value = String::from_utf8_lossy(stored.value(field));
        match field.tag {
            8 | 9 | 10 | tag::POSS_DUP_FLAG | tag::ORIG_SENDING_TIME => {}
            tag::SENDING_TIME => {
                body.field(tag::POSS_DUP_FLAG, "Y")
                    .field(tag::SENDING_TIME, &now)
                    .field(tag::ORIG_SENDING_TIME, value);
            }
            other => {
                body.field(other, value);
            }
        }
    }
    frame(body.as_bytes())
}

fn reject_text(reason: RejectReason, ref_tag: Option<u32>) -> String {
    match ref_tag {
        Some(tag) => format!("{}: {}({tag})", reason.text(), dictionary::field_name(tag)),
        None => reason.text().to_string(),
    }
}
