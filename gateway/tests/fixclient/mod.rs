//! A bare FIX 4.4 initiator for tests: it frames what it is told to (right or wrong), keeps its
//! own outgoing MsgSeqNum, and reads the acceptor's messages with a timeout. It has no session
//! logic of its own, so that every rule under test is the server's.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use gateway::fix::codec::{frame, Body, Decoder, Message};
use gateway::fix::time::{format_timestamp, now_ns};
use gateway::transport::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const ACCEPTOR: &str = "KINKO";
/// How long a test waits for a message it expects.
pub const WAIT_MS: u64 = 10_000;

pub struct FixClient {
    stream: Stream,
    decoder: Decoder,
    pub sender: String,
    /// The MsgSeqNum of the next message `send` sends.
    pub seq_out: u64,
    pub seen: Vec<Message>,
}

pub fn now() -> String {
    format_timestamp(now_ns())
}

/// The fields of a Logon for demo key `name` (`demo-{name}` / `demo-{name}-secret`).
pub fn logon_fields(name: &str, heartbeat_secs: u64, reset: bool) -> Vec<(u32, String)> {
    let mut fields = vec![
        (98, "0".to_string()),
        (108, heartbeat_secs.to_string()),
        (553, format!("demo-{name}")),
        (554, format!("demo-{name}-secret")),
    ];
    if reset {
        fields.insert(2, (141, "Y".to_string()));
    }
    fields
}

impl FixClient {
    /// Connects as demo key `name` (SenderCompID `demo-{name}`).
    pub async fn connect(addr: SocketAddr, name: &str) -> FixClient {
        let stream = TcpStream::connect(addr).await.expect("connects");
        stream.set_nodelay(true).unwrap();
        FixClient::over(Box::new(stream), name)
    }

    /// A client of demo key `name` on a connection already made (TLS, for one).
    pub fn over(stream: Stream, name: &str) -> FixClient {
        FixClient {
            stream,
            decoder: Decoder::default(),
            sender: format!("demo-{name}"),
            seq_out: 1,
            seen: Vec::new(),
        }
    }

    pub fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
        // Over TLS the end of a message may wait in the TLS buffer until flushed.
        self.stream.flush().await.expect("flush");
    }

    /// A message with the standard header at MsgSeqNum `seq`; `header` fields go after it.
    pub fn build(
        &self,
        msg_type: &str,
        seq: u64,
        header: &[(u32, String)],
        fields: &[(u32, String)],
    ) -> Vec<u8> {
        let mut body = Body::new(msg_type);
        body.field(34, seq)
            .field(49, &self.sender)
            .field(52, now())
            .field(56, ACCEPTOR);
        for (tag, value) in header.iter().chain(fields) {
            body.field(*tag, value);
        }
        frame(body.as_bytes())
    }

    /// Sends at the next MsgSeqNum and counts it.
    pub async fn send(&mut self, msg_type: &str, fields: &[(u32, &str)]) -> u64 {
        let seq = self.seq_out;
        let owned: Vec<(u32, String)> = fields.iter().map(|(t, v)| (*t, v.to_string())).collect();
        let bytes = self.build(msg_type, seq, &[], &owned);
        self.send_raw(&bytes).await;
        self.seq_out += 1;
        seq
    }

    /// Sends at MsgSeqNum `seq` without counting (gaps, duplicates).
    pub async fn send_at(
        &mut self,
        seq: u64,
        msg_type: &str,
        header: &[(u32, &str)],
        fields: &[(u32, &str)],
    ) {
        let own = |f: &[(u32, &str)]| -> Vec<(u32, String)> {
            f.iter().map(|(t, v)| (*t, v.to_string())).collect()
        };
        let bytes = self.build(msg_type, seq, &own(header), &own(fields));
        self.send_raw(&bytes).await;
    }

    /// Logs on as this client's key and returns the acceptor's Logon.
    pub async fn logon(&mut self, heartbeat_secs: u64, reset: bool) -> Message {
        let name = self.sender.trim_start_matches("demo-").to_string();
        let fields = logon_fields(&name, heartbeat_secs, reset);
        let borrowed: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
        self.send("A", &borrowed).await;
        let reply = self.next().await.expect("a Logon answer");
        assert_eq!(
            reply.msg_type(),
            "A",
            "logon answered with {}",
            reply.text()
        );
        reply
    }

    /// The next message, or `None` once the acceptor closed the connection.
    pub async fn next(&mut self) -> Option<Message> {
        self.next_within(WAIT_MS).await.unwrap_or_else(|| {
            let recent: Vec<String> = self.seen.iter().rev().take(5).map(|m| m.text()).collect();
            panic!("no message within {WAIT_MS} ms; the last ones, newest first: {recent:#?}")
        })
    }

    /// `Some(None)`: closed; `None`: nothing within `ms`.
    pub async fn next_within(&mut self, ms: u64) -> Option<Option<Message>> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            if let Ok(Some(item)) = self.decoder.next_frame() {
                if let Ok(message) = item {
                    self.seen.push(message.clone());
                    return Some(Some(message));
                }
                continue;
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buffer)).await;
            match read {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(None),
                Ok(Ok(n)) => self.decoder.feed(&buffer[..n]),
            }
        }
    }

    /// Reads until a message of `msg_type` arrives.
    pub async fn until_type(&mut self, msg_type: &str) -> Message {
        self.until(|m| m.msg_type() == msg_type).await
    }

    pub async fn until(&mut self, wanted: impl Fn(&Message) -> bool) -> Message {
        loop {
            let message = self.next().await.expect("connection open");
            if wanted(&message) {
                return message;
            }
        }
    }

    /// Reads until the acceptor closes; returns what came before.
    pub async fn until_closed(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(message) = self.next().await {
            out.push(message);
        }
        out
    }

    /// True when nothing arrives within `ms` and the connection stays open.
    pub async fn quiet_for(&mut self, ms: u64) -> bool {
        self.next_within(ms).await.is_none()
    }

    /// A TestRequest round trip: proves the session is alive and in sequence.
    pub async fn ping(&mut self, id: &str) {
        self.send("1", &[(112, id)]).await;
        // Plain heartbeats may come first; the answer is the one carrying our TestReqID.
        self.until(|m| m.msg_type() == "0" && m.get(112) == Some(id))
            .await;
    }
}

/// `tag=value` of a message, for assertions that read like the wire.
pub fn has(message: &Message, fields: &[(u32, &str)]) -> bool {
    fields
        .iter()
        .all(|(tag, value)| message.get(*tag) == Some(value))
}

#[track_caller]
pub fn assert_fields(message: &Message, fields: &[(u32, &str)]) {
    for (tag, value) in fields {
        assert_eq!(
            message.get(*tag),
            Some(*value),
            "tag {tag} of {}",
            message.text()
        );
    }
}

/// A TransactTime(60) for orders.
pub const T: &str = "20240101-00:00:00";

/// The body of a NewOrderSingle for a BTC/JPY limit order.
pub fn limit<'a>(cl: &'a str, side: &'a str, qty: &'a str, price: &'a str) -> Vec<(u32, &'a str)> {
    vec![
        (11, cl),
        (55, "BTC/JPY"),
        (54, side),
        (60, T),
        (38, qty),
        (40, "2"),
        (44, price),
    ]
}

/// Reads until the ExecutionReport of ClOrdID `cl` with ExecType `exec_type`.
pub async fn report(client: &mut FixClient, cl: &str, exec_type: &str) -> Message {
    client
        .until(|m| m.msg_type() == "8" && m.get(11) == Some(cl) && m.get(150) == Some(exec_type))
        .await
}
