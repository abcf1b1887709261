//! The FIX 4.4 session layer against the real server on loopback, one rule per test: logon and
//! its refusals, duplicate logon, heartbeat and test request, the heartbeat timeout, gaps and
//! resend requests, resends with gap fills, sequence resets in both modes, each session reject
//! reason with its RefTagID, business rejects, the logout handshake both ways, garbled messages,
//! and sequence numbers that survive a restart of the server.

mod common;
mod fixclient;

use common::*;
use fixclient::*;
use gateway::server::Running;

async fn serve(dir: &TempDir) -> Running {
    let (running, _) = start(config(dir.path())).await;
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logon_test_request_and_logout() {
    let dir = TempDir::new("fix-logon");
    let server = serve(&dir).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    let logon = alice.logon(30, false).await;
    assert_fields(
        &logon,
        &[
            (34, "1"),
            (49, "KINKO"),
            (56, "demo-alice"),
            (98, "0"),
            (108, "30"),
        ],
    );
    alice.ping("are-you-there").await;
    alice.send("5", &[]).await;
    let logout = alice.until_type("5").await;
    assert_eq!(logout.get(34), Some("3"));
    assert!(
        alice.until_closed().await.is_empty(),
        "closed after the logout"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logons_that_are_refused() {
    let dir = TempDir::new("fix-refused");
    let server = serve(&dir).await;
    // Wrong password: Logout with the reason, then disconnect.
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice
        .send(
            "A",
            &[(98, "0"), (108, "30"), (553, "demo-alice"), (554, "wrong")],
        )
        .await;
    let logout = alice.until_type("5").await;
    assert!(
        logout.get(58).unwrap().contains("Password"),
        "{}",
        logout.text()
    );
    assert!(alice.until_closed().await.is_empty());
    // HeartBtInt out of bounds.
    let mut alice = FixClient::connect(server.fix, "alice").await;
    let fields = logon_fields("alice", 0, false);
    let fields: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
    alice.send("A", &fields).await;
    let logout = alice.until_type("5").await;
    assert!(
        logout.get(58).unwrap().contains("HeartBtInt"),
        "{}",
        logout.text()
    );
    // Unknown SenderCompID, wrong TargetCompID, or not a Logon: dropped without a word.
    let mut mallory = FixClient::connect(server.fix, "mallory").await;
    mallory.logon_attempt().await;
    assert!(mallory.until_closed().await.is_empty());
    let mut alice = FixClient::connect(server.fix, "alice").await;
    let bytes = gateway::fix::codec::message(&[
        (35, "A"),
        (34, "1"),
        (49, "demo-alice"),
        (52, &now()),
        (56, "NOT-KINKO"),
        (98, "0"),
        (108, "30"),
    ]);
    alice.send_raw(&bytes).await;
    assert!(alice.until_closed().await.is_empty());
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.send("1", &[(112, "x")]).await;
    assert!(alice.until_closed().await.is_empty());
    server.shutdown().await.unwrap();
}

impl FixClient {
    async fn logon_attempt(&mut self) {
        let fields = logon_fields("alice", 30, false);
        let fields: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
        self.send("A", &fields).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_logon_is_refused_and_the_first_connection_goes_on() {
    let dir = TempDir::new("fix-duplicate");
    let server = serve(&dir).await;
    let mut first = FixClient::connect(server.fix, "alice").await;
    first.logon(30, false).await;
    let mut second = FixClient::connect(server.fix, "alice").await;
    second.seq_out = 2;
    second.logon_attempt().await;
    assert!(
        second.until_closed().await.is_empty(),
        "refused without a message"
    );
    first.ping("still-here").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_brings_heartbeats_then_a_test_request_then_a_disconnect() {
    let dir = TempDir::new("fix-heartbeat");
    let server = serve(&dir).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(1, false).await;
    let started = std::time::Instant::now();
    let test_request = alice.until_type("1").await;
    assert_eq!(test_request.get(112), Some("TEST"));
    let rest = alice.until_closed().await;
    let elapsed = started.elapsed();
    assert!(rest
        .iter()
        .all(|m| m.msg_type() == "0" || m.msg_type() == "1"));
    // TestRequest at 1.2 × HeartBtInt of silence, disconnect at 2.4 ×.
    assert!(
        elapsed.as_millis() >= 2_000,
        "disconnected too early: {elapsed:?}"
    );
    assert!(
        elapsed.as_millis() < 5_000,
        "disconnected too late: {elapsed:?}"
    );
    // Answering keeps the session up: heartbeats only.
    let mut bob = FixClient::connect(server.fix, "bob").await;
    bob.logon(1, false).await;
    for _ in 0..3 {
        let message = bob.next().await.expect("open");
        if message.msg_type() == "1" {
            let id = message.get(112).unwrap().to_string();
            bob.send("0", &[(112, &id)]).await;
        } else {
            assert_eq!(message.msg_type(), "0");
            bob.send("0", &[]).await;
        }
    }
    bob.ping("alive").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_brings_one_resend_request_and_queued_messages_are_processed_after_the_fill() {
    let dir = TempDir::new("fix-gap");
    let server = serve(&dir).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    // Expected 2; 5 and 6 arrive: one ResendRequest 2..0, and both are queued.
    alice.send_at(5, "1", &[], &[(112, "five")]).await;
    let resend = alice.until_type("2").await;
    assert_fields(&resend, &[(7, "2"), (16, "0")]);
    alice.send_at(6, "1", &[], &[(112, "six")]).await;
    assert!(
        alice.quiet_for(300).await,
        "no second ResendRequest for the same gap"
    );
    // The client gap-fills 2..4; the queued 5 and 6 are then answered in order.
    let orig = now();
    alice
        .send_at(2, "4", &[(43, "Y"), (122, &orig)], &[(123, "Y"), (36, "5")])
        .await;
    let five = alice.until_type("0").await;
    assert_eq!(five.get(112), Some("five"));
    let six = alice.until_type("0").await;
    assert_eq!(six.get(112), Some("six"));
    alice.seq_out = 7;
    alice.ping("after").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_low_without_poss_dup_is_a_logout_and_with_it_is_ignored() {
    let dir = TempDir::new("fix-too-low");
    let server = serve(&dir).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    alice.ping("one").await;
    // A possible duplicate of 2, with OrigSendingTime: ignored.
    let orig = now();
    alice
        .send_at(2, "1", &[(43, "Y"), (122, &orig)], &[(112, "dup")])
        .await;
    // Without OrigSendingTime: Reject, RequiredTagMissing on 122.
    alice.send_at(2, "1", &[(43, "Y")], &[(112, "dup")]).await;
    let reject = alice.until_type("3").await;
    assert_fields(&reject, &[(45, "2"), (373, "1"), (371, "122")]);
    alice.ping("three").await;
    // Too low and not a possible duplicate: Logout naming both numbers, then disconnect.
    alice.send_at(1, "0", &[], &[]).await;
    let logout = alice.until_type("5").await;
    assert_eq!(
        logout.get(58),
        Some("MsgSeqNum too low, expecting 4 but received 1")
    );
    alice.until_closed().await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_request_resends_application_messages_and_gap_fills_the_rest() {
    let dir = TempDir::new("fix-resend");
    let server = serve(&dir).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await; // our 1
    let order = |cl: &'static str| {
        [
            (11, cl),
            (55, "BTC/JPY"),
            (54, "1"),
            (60, "20240101-00:00:00"),
            (38, "0.01"),
            (40, "2"),
            (44, "14000000"),
        ]
    };
    alice.send("D", &order("1")).await;
    let new_one = alice.until_type("8").await; // 2
    alice.ping("between").await; // heartbeat 3
    alice.send("D", &order("2")).await;
    let new_two = alice.until_type("8").await; // 4
    assert_eq!((new_one.get(34), new_two.get(34)), (Some("2"), Some("4")));
    alice.send("2", &[(7, "1"), (16, "0")]).await;
    let fill_one = alice.next().await.unwrap();
    assert_fields(
        &fill_one,
        &[(35, "4"), (34, "1"), (123, "Y"), (36, "2"), (43, "Y")],
    );
    let again = alice.next().await.unwrap();
    assert_fields(
        &again,
        &[(35, "8"), (34, "2"), (43, "Y"), (11, "1"), (150, "0")],
    );
    assert_eq!(
        again.get(122),
        new_one.get(52),
        "OrigSendingTime is the first SendingTime"
    );
    let fill_three = alice.next().await.unwrap();
    assert_fields(&fill_three, &[(35, "4"), (34, "3"), (36, "4"), (123, "Y")]);
    let again = alice.next().await.unwrap();
    assert_fields(&again, &[(35, "8"), (34, "4"), (43, "Y"), (11, "2")]);
    // A range ending inside: only that part.
    alice.send("2", &[(7, "2"), (16, "2")]).await;
    let again = alice.next().await.unwrap();
    assert_fields(&again, &[(35, "8"), (34, "2"), (43, "Y")]);
    alice.ping("done").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_reset_in_both_modes() {
    let dir = TempDir::new("fix-seqreset");
    let server = serve(&dir).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    // Reset mode: MsgSeqNum is not checked; NewSeqNo becomes the next expected.
    alice.send_at(99, "4", &[], &[(36, "10")]).await;
    alice.seq_out = 10;
    alice.ping("ten").await;
    // NewSeqNo lower than expected: Reject, value incorrect, RefTagID 36.
    alice.send_at(11, "4", &[], &[(36, "3")]).await;
    let reject = alice.until_type("3").await;
    assert_fields(&reject, &[(373, "5"), (371, "36"), (372, "4")]);
    // Gap fill mode is sequence-checked: a gap fill from the future is a gap.
    alice
        .send_at(
            15,
            "4",
            &[(43, "Y"), (122, &now())],
            &[(123, "Y"), (36, "20")],
        )
        .await;
    let resend = alice.until_type("2").await;
    assert_fields(&resend, &[(7, "11")]);
    alice
        .send_at(
            11,
            "4",
            &[(43, "Y"), (122, &now())],
            &[(123, "Y"), (36, "15")],
        )
        .await;
    alice.seq_out = 20;
    alice.ping("twenty").await;
    server.shutdown().await.unwrap();
}

/// (MsgType, fields after the header, SessionRejectReason, RefTagID)
type RejectCase = (
    &'static str,
    &'static [(u32, &'static str)],
    &'static str,
    Option<&'static str>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reject_reason_with_its_ref_tag_and_the_message_counts() {
    let dir = TempDir::new("fix-rejects");
    let server = serve(&dir).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    // (fields after the header, SessionRejectReason, RefTagID)
    let cases: &[RejectCase] = &[
        ("1", &[(112, "a"), (9999, "x")], "0", Some("9999")),
        ("1", &[], "1", Some("112")),
        ("1", &[(112, "a"), (44, "1")], "2", Some("44")),
        ("1", &[(112, "")], "4", Some("112")),
        (
            "D",
            &[(11, "1"), (54, "Z"), (60, "20240101-00:00:00"), (40, "2")],
            "5",
            Some("54"),
        ),
        ("2", &[(7, "one"), (16, "0")], "6", Some("7")),
        ("1", &[(112, "a"), (112, "b")], "13", Some("112")),
        ("1", &[(112, "a"), (57, "SUB")], "14", Some("57")),
        ("ZZ", &[], "11", None),
    ];
    for (msg_type, fields, reason, ref_tag) in cases {
        let seq = alice.send(msg_type, fields).await.to_string();
        let reject = alice.until_type("3").await;
        assert_fields(&reject, &[(45, &seq), (373, reason)]);
        assert_eq!(reject.get(371), *ref_tag, "{}", reject.text());
        assert!(reject.get(58).is_some());
    }
    // A FIX 4.4 message Kinko does not take: BusinessMessageReject, unsupported message type.
    let seq = alice
        .send("V", &[(262, "md"), (263, "0"), (264, "1")])
        .await
        .to_string();
    let business = alice.until_type("j").await;
    assert_fields(&business, &[(45, &seq), (372, "V"), (380, "3")]);
    // Each rejected message consumed its number: the next one is in sequence.
    alice.ping("in-sequence").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comp_id_and_sending_time_problems_are_a_reject_and_a_logout() {
    let dir = TempDir::new("fix-compid");
    let server = serve(&dir).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    alice.sender = "demo-bob".into();
    alice.send("1", &[(112, "x")]).await;
    let reject = alice.until_type("3").await;
    assert_fields(&reject, &[(373, "9")]);
    let logout = alice.until_type("5").await;
    assert_eq!(logout.get(58), Some("CompID problem"));
    // The client does not answer: disconnected after the logout timeout.
    assert!(alice.until_closed().await.is_empty());

    let mut bob = FixClient::connect(server.fix, "bob").await;
    bob.logon(30, false).await;
    let bytes = gateway::fix::codec::message(&[
        (35, "1"),
        (34, "2"),
        (49, "demo-bob"),
        (52, "20200101-00:00:00"),
        (56, "KINKO"),
        (112, "x"),
    ]);
    bob.send_raw(&bytes).await;
    let reject = bob.until_type("3").await;
    assert_fields(&reject, &[(373, "10")]);
    bob.until_type("5").await;
    // Answering the Logout completes the handshake at once.
    bob.seq_out = 3;
    bob.send("5", &[]).await;
    assert!(bob.until_closed().await.is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_messages_are_ignored_and_consume_no_sequence_number() {
    let dir = TempDir::new("fix-garbled");
    let server = serve(&dir).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    let good = alice.build("1", 2, &[], &[(112, "real".into())]);
    let text = String::from_utf8(good.clone()).unwrap();
    // Wrong checksum.
    let mut bad_sum = good.clone();
    let digit = bad_sum.len() - 2;
    bad_sum[digit] = if bad_sum[digit] == b'0' { b'1' } else { b'0' };
    alice.send_raw(&bad_sum).await;
    // Wrong body length.
    alice
        .send_raw(text.replacen("\u{1}9=", "\u{1}9=1", 1).as_bytes())
        .await;
    // Garbage, and a message cut short followed by garbage.
    alice
        .send_raw(b"\x00\x01\x02 this is not FIX \xff\xfe")
        .await;
    alice.send_raw(&good[..good.len() / 2]).await;
    alice.send_raw(b"trailing junk without a checksum").await;
    // The same MsgSeqNum, now well formed: answered, no ResendRequest.
    alice.send_raw(&good).await;
    let answer = alice.next().await.unwrap();
    assert_fields(&answer, &[(35, "0"), (112, "real")]);
    alice.seq_out = 3;
    alice.ping("next").await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_numbers_survive_a_restart_and_reset_starts_over() {
    let dir = TempDir::new("fix-restart");
    let mut cfg = config(dir.path());
    let (server, _) = start(cfg.clone()).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    alice.ping("before").await;
    alice.send("5", &[]).await;
    alice.until_type("5").await;
    alice.until_closed().await;
    server.shutdown().await.unwrap();

    cfg.server.fix = "127.0.0.1:0".parse().unwrap();
    let (server, _) = start(cfg.clone()).await;
    // Starting again at 1 without a reset is too low.
    let mut stale = FixClient::connect(server.fix, "alice").await;
    stale.logon_attempt().await;
    let logout = stale.until_type("5").await;
    assert_eq!(
        logout.get(58),
        Some("MsgSeqNum too low, expecting 4 but received 1")
    );
    stale.until_closed().await;
    // Going on where it stopped: our numbers go on too (1 Logon, 2 Heartbeat, 3 Logout, 4 Logout).
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.seq_out = 4;
    let logon = alice.logon(30, false).await;
    assert_eq!(logon.get(34), Some("5"));
    alice.ping("after").await;
    alice.send("5", &[]).await;
    alice.until_closed().await;
    // ResetSeqNumFlag=Y: both sides start over at 1.
    let mut alice = FixClient::connect(server.fix, "alice").await;
    let logon = alice.logon(30, true).await;
    assert_fields(&logon, &[(34, "1"), (141, "Y")]);
    alice.ping("fresh").await;
    server.shutdown().await.unwrap();

    // Both slots of the sequence numbers damaged: the server refuses to start, naming the file,
    // rather than start the session again from 1 without a word.
    let seqnums = cfg
        .server
        .data
        .join("fix")
        .join("demo-alice")
        .join("seqnums");
    let mut bytes = std::fs::read(&seqnums).unwrap();
    assert_eq!(bytes.len(), 208, "two slots of 104 bytes");
    bytes[10] ^= 1;
    bytes[104 + 10] ^= 1;
    std::fs::write(&seqnums, &bytes).unwrap();
    let error = gateway::server::start(cfg.clone())
        .await
        .err()
        .expect("refused");
    assert!(
        error.contains("demo-alice") && error.contains("seqnums") && error.contains("neither"),
        "{error}"
    );
    // The operator's way out: remove the file; the session starts from 1 and the client resets.
    std::fs::remove_file(&seqnums).unwrap();
    let (server, _) = start(cfg).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    let logon = alice.logon(30, true).await;
    assert_fields(&logon, &[(34, "1"), (141, "Y")]);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_logs_the_client_out() {
    let dir = TempDir::new("fix-shutdown");
    let server = serve(&dir).await;
    let mut alice = FixClient::connect(server.fix, "alice").await;
    alice.logon(30, false).await;
    let shutdown = tokio::spawn(server.shutdown());
    let logout = alice.until_type("5").await;
    assert_eq!(logout.get(58), Some("server shutdown"));
    alice.until_closed().await;
    shutdown.await.unwrap().unwrap();
}
