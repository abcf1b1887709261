//! Random messages at a live session: well-framed, of every supported type and some unsupported
//! ones, with header fields and values drawn to be wrong often (sequence numbers out of place,
//! wrong CompIDs, stale SendingTime, PossDup without OrigSendingTime, bad enums, huge numbers).
//! The server runs in this process, so a panic hook sees any panic in any of its threads: there
//! must be none, and another session must be answered afterwards. Deterministic (a fixed seed)
//! and bounded (`KINKO_FIX_FUZZ_MESSAGES`, default 3,000).

mod common;
mod fixclient;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use fixclient::*;
use gateway::fix::codec::{frame, Body};

static PANICKED: AtomicBool = AtomicBool::new(false);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const TYPES: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "A", "D", "F", "G", "H", "q", "V", "ZZ", "8",
];
/// (tag, values): valid and invalid values for each.
const FIELDS: &[(u32, &[&str])] = &[
    (7, &["1", "2", "0", "-1", "x", "99999999999999999999"]),
    (16, &["0", "1", "5", "-3"]),
    (36, &["1", "3", "50", "0"]),
    (123, &["Y", "N", "X"]),
    (11, &["1", "2", "abc", "18446744073709551616", "0"]),
    (41, &["1", "2", "zz", ""]),
    (37, &["1", "2", "NONE", "-1"]),
    (
        38,
        &[
            "0.01",
            "0.00015",
            "-1",
            "1e9",
            "100000000000000000000000000000",
        ],
    ),
    (44, &["15000000", "15000000.5", "0", "99999999999999999999"]),
    (99, &["15010000", "1"]),
    (54, &["1", "2", "3", "Z"]),
    (55, &["BTC/JPY", "ETH/JPY", "NOPE"]),
    (40, &["1", "2", "3", "4", "P", "Z"]),
    (59, &["0", "1", "3", "4", "6"]),
    (18, &["6", "6 E", "Q"]),
    (530, &["1", "7", "5", "9"]),
    (60, &["20240101-00:00:00", "garbage"]),
    (112, &["t", ""]),
    (108, &["1", "30", "-1"]),
    (141, &["Y", "N"]),
    (98, &["0", "1"]),
    (553, &["demo-carol", "x"]),
    (554, &["demo-carol-secret", "x"]),
    (96, &["00ff", "zz", "a"]),
    (8013, &["Y", "N", "S", ""]),
    (453, &["1", "2"]),
    (448, &["p"]),
    (9999, &["x"]),
];

fn message(rng: &mut Rng, client: &FixClient, expected: u64) -> Vec<u8> {
    let msg_type = rng.pick(TYPES);
    let mut body = Body::new(msg_type);
    let seq = match rng.next() % 10 {
        0 => 1,
        1 => expected + 1 + rng.next() % 5,
        2 => expected.saturating_sub(1 + rng.next() % 3).max(1),
        _ => expected,
    };
    body.field(34, seq);
    body.field(
        49,
        if rng.chance(3) {
            "demo-bob"
        } else {
            &client.sender
        },
    );
    let sending = if rng.chance(3) {
        "20200101-00:00:00".to_string()
    } else {
        now()
    };
    body.field(52, &sending);
    body.field(56, if rng.chance(2) { "OTHER" } else { ACCEPTOR });
    if rng.chance(10) {
        body.field(43, "Y");
        if rng.chance(70) {
            body.field(122, &sending);
        }
    }
    for _ in 0..rng.next() % 9 {
        let (tag, values) = FIELDS[(rng.next() % FIELDS.len() as u64) as usize];
        let value = rng.pick(values);
        // RawData with its RawDataLength (a signature logon) or without it.
        if tag == 96 && rng.chance(50) {
            body.field(95, value.len());
        }
        body.field(tag, value);
    }
    frame(body.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_messages_never_panic_the_server() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        default_hook(info);
    }));
    let dir = TempDir::new("fix-session-fuzz");
    let (server, _) = start(config(dir.path())).await;
    let mut bob = FixClient::connect(server.fix, "bob").await;
    bob.logon(30, false).await;
    let messages: u64 = std::env::var("KINKO_FIX_FUZZ_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut carol: Option<FixClient> = None;
    let mut expected = 2;
    let mut reconnects = 0;
    for _ in 0..messages {
        if carol.is_none() {
            let mut client = FixClient::connect(server.fix, "carol").await;
            client.logon(30, true).await;
            expected = 2;
            reconnects += 1;
            carol = Some(client);
        }
        let client = carol.as_mut().expect("connected");
        let bytes = message(&mut rng, client, expected);
        client.send_raw(&bytes).await;
        expected += 1;
        // Read what came back; a closed connection is one of the allowed answers.
        while let Some(answer) = client.next_within(if rng.chance(2) { 20 } else { 0 }).await {
            match answer {
                Some(_) => {}
                None => {
                    carol = None;
                    break;
                }
            }
        }
    }
    assert!(!PANICKED.load(Ordering::SeqCst), "the server panicked");
    assert!(reconnects > 1, "the fuzz should provoke disconnects too");
    bob.ping("unaffected").await;
    server.shutdown().await.unwrap();
}
