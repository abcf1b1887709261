//! The `fix` scenario: FIX 4.4 order entry against the real `kinko serve` stack on loopback, in
//! the same process (the `ws` scenario's server, see [`super::loopback`]). Two sessions log on as
//! two demo customers; one sends sell orders and the other buy orders at one price, alternately,
//! so the book stays small. Latency from each NewOrderSingle's *scheduled* send time to its
//! ExecutionReport ExecType=0 (New) received, at fixed offered rates: an order the generator sends
//! late carries the delay in its sample (no coordinated omission).
//!
//! Against a parking server the generator is one thread that sleeps until shortly before the next
//! order is due and yields the CPU until then (on two cores the server needs it), and one blocking
//! reader thread per session that timestamps each read as it returns. Against a spinning server
//! (`idle = "spin"`) the same work runs as tasks on the server's one polling runtime thread: a
//! sender task that yields to the others until each order is due, and a reader task per session.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use gateway::fix::codec::{frame, Body, Decoder, Message};
use gateway::fix::time::{format_timestamp, now_ns};

use crate::measure::{scheduled_ns, Row, Schedule};
use crate::scenarios::loopback::{
    bar_notes, echo_floor_note, run_rates, stall_probe, sustained_note, two_core_stalls, Mode,
    Sampled, RUN_SECONDS,
};
use crate::scenarios::{Length, Options, Report};

const RATES_FULL: [u64; 3] = [1_000, 10_000, 20_000];
const RATES_QUICK: [u64; 2] = [1_000, 10_000];
/// Issue #7's bar for the round trip at 10,000 orders per second.
const BAR_RATE: u64 = 10_000;
const BAR_P50_NS: u64 = 40_000;
const BAR_P99_NS: u64 = 200_000;
/// The generator sleeps while the next order is further away than this, and yields closer to it:
/// a sleep overshoots by the kernel's timer slack (50 µs by default) and a wake-up.
const SLEEP_AHEAD_NS: u64 = 200_000;
/// A reader that hears nothing for this long gives up: the run is broken.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const READ_BYTES: usize = 64 * 1024;
const ACCEPTOR: &str = "KINKO";

pub fn run(options: &Options) -> Report {
    let rates: &[u64] = match options.length {
        Length::Full => &RATES_FULL,
        Length::Quick => &RATES_QUICK,
    };
    let rows = run_rates("fix", rates, |runtime, served, rate, mode| match mode {
        Mode::Process | Mode::Fsync => run_rate(served.fix, rate),
        // Spawned: the future `block_on` runs is polled on this thread, not the runtime's.
        Mode::Spin => runtime
            .block_on(runtime.spawn(run_rate_tasks(served.fix, rate)))
            .expect("generator"),
    });
    let mut notes = vec![
        format!(
            "fix: kinko serve in-process on loopback; 2 FIX 4.4 sessions (a seller and a buyer at \
             one price, alternating); each row runs {RUN_SECONDS} s; `ack` = NewOrderSingle's \
             scheduled send time → its ExecutionReport 150=0 received"
        ),
        "the load generator (a sender thread, a reader thread per session; tasks on the server's \
         runtime in `spin` rows), the server's runtime, the engine thread and the hub share this \
         machine's two cores"
            .into(),
    ];
    notes.extend(bar(&rows));
    notes.push(sustained_note("fix", &rows));
    notes.push(two_core_stalls(stall_probe(options.length)));
    notes.push(echo_floor_note(BAR_RATE, stall_probe(options.length)));
    Report { notes, rows }
}

/// Issue #7's bar beside the figures it is about.
fn bar(rows: &[Row]) -> Vec<String> {
    bar_notes("fix", "issue #7", BAR_RATE, BAR_P50_NS, BAR_P99_NS, rows)
}

/// Order `i` goes to session `i % 2` with ClOrdID `i`; the readers find its schedule from that.
fn run_rate(addr: SocketAddr, rate: u64) -> Sampled {
    let total = (rate * RUN_SECONDS) as usize;
    let mut sessions = [
        Session::log_on(addr, "alice", "2"),
        Session::log_on(addr, "bob", "1"),
    ];
    let start = Instant::now();
    let readers: Vec<thread::JoinHandle<Vec<u64>>> = sessions
        .iter()
        .enumerate()
        .map(|(index, session)| {
            let stream = session.stream.try_clone().expect("clone the socket");
            let expected = (total + 1 - index) / 2;
            thread::spawn(move || read_acks(stream, expected, start, rate))
        })
        .collect();
    let mut schedule = Schedule::new(rate);
    for i in 0..total {
        wait_until(start, schedule.next_ns());
        sessions[i % 2].send_order(i);
    }
    let mut acks = Vec::with_capacity(total);
    for reader in readers {
        acks.extend(reader.join().expect("reader"));
    }
    let elapsed = start.elapsed();
    assert_eq!(acks.len(), total, "every order acknowledged");
    Sampled {
        series: vec![("ack", acks)],
        achieved_per_sec: total as f64 / elapsed.as_secs_f64(),
    }
}

/// [`run_rate`] as tasks of the runtime the server polls on (`spin` rows): the generator must not
/// add threads of its own to the two cores the spinning server keeps busy.
async fn run_rate_tasks(addr: SocketAddr, rate: u64) -> Sampled {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let total = (rate * RUN_SECONDS) as usize;
    let logged_on = tokio::task::spawn_blocking(move || {
        [
            Session::log_on(addr, "alice", "2"),
            Session::log_on(addr, "bob", "1"),
        ]
    })
    .await
    .expect("log on");
    let start = Instant::now();
    let mut sessions = Vec::new();
    let mut readers = Vec::new();
    for (index, session) in logged_on.into_iter().enumerate() {
        session.stream.set_nonblocking(true).expect("non-blocking");
        let stream = tokio::net::TcpStream::from_std(session.stream.try_clone().expect("clone"))
            .expect("tokio socket");
        let (mut read, write) = stream.into_split();
        let mut acks = Acks::new((total + 1 - index) / 2, rate);
        readers.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; READ_BYTES];
            while !acks.done() {
                let read = match tokio::time::timeout(READ_TIMEOUT, read.read(&mut buffer)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(read)) => read,
                };
                acks.feed(&buffer[..read], start.elapsed().as_nanos() as u64);
            }
            acks.samples
        }));
        sessions.push((session, write));
    }
    let mut schedule = Schedule::new(rate);
    for i in 0..total {
        // Framed before it is due (its SendingTime a few microseconds early): the generator's
        // own work is not the server's latency.
        let (session, write) = &mut sessions[i % 2];
        let order = frame(session.order(i).as_bytes());
        let due_ns = schedule.next_ns();
        while (start.elapsed().as_nanos() as u64) < due_ns {
            tokio::task::yield_now().await;
        }
        write.write_all(&order).await.expect("send");
    }
    let mut acks = Vec::with_capacity(total);
    for reader in readers {
        acks.extend(reader.await.expect("reader"));
    }
    let elapsed = start.elapsed();
    assert_eq!(acks.len(), total, "every order acknowledged");
    Sampled {
        series: vec![("ack", acks)],
        achieved_per_sec: total as f64 / elapsed.as_secs_f64(),
    }
}

fn wait_until(start: Instant, at_ns: u64) {
    loop {
        let now_ns = start.elapsed().as_nanos() as u64;
        let Some(ahead_ns) = at_ns.checked_sub(now_ns).filter(|&ns| ns > 0) else {
            return;
        };
        if ahead_ns > SLEEP_AHEAD_NS {
            thread::sleep(Duration::from_nanos(ahead_ns - SLEEP_AHEAD_NS));
        } else {
            thread::yield_now();
        }
    }
}

/// The samples of one session: until it has `expected` ExecutionReports 150=0.
fn read_acks(mut stream: TcpStream, expected: usize, start: Instant, rate: u64) -> Vec<u64> {
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    let mut acks = Acks::new(expected, rate);
    let mut buffer = vec![0u8; READ_BYTES];
    while !acks.done() {
        let read = match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        acks.feed(&buffer[..read], start.elapsed().as_nanos() as u64);
    }
    acks.samples
}

/// One session's ExecutionReports 150=0 as they arrive, each timed from its order's schedule.
struct Acks {
    decoder: Decoder,
    samples: Vec<u64>,
    expected: usize,
    rate: u64,
}

impl Acks {
    fn new(expected: usize, rate: u64) -> Acks {
        Acks {
            decoder: Decoder::default(),
            samples: Vec::with_capacity(expected),
            expected,
            rate,
        }
    }

    fn done(&self) -> bool {
        self.samples.len() >= self.expected
    }

    /// Bytes read at `now_ns` (from the start of the run).
    fn feed(&mut self, bytes: &[u8], now_ns: u64) {
        self.decoder.feed(bytes);
        while let Ok(Some(item)) = self.decoder.next_frame() {
            let Ok(message) = item else { continue };
            if let Some(step) = acknowledged(&message) {
                self.samples
                    .push(now_ns.saturating_sub(scheduled_ns(step, self.rate)));
            }
        }
    }
}

/// The ClOrdID of an ExecutionReport 150=0; anything refused stops the run.
fn acknowledged(message: &Message) -> Option<u64> {
    let refused = matches!(message.msg_type(), "3" | "j" | "5")
        || (message.msg_type() == "8" && message.get(150) == Some("8"));
    assert!(!refused, "the load was refused: {}", message.text());
    if message.msg_type() != "8" || message.get(150) != Some("0") {
        return None;
    }
    message.get(11)?.parse().ok()
}

/// One logged-on session: its socket, its CompID and its next MsgSeqNum.
struct Session {
    stream: TcpStream,
    sender: String,
    seq_next: u64,
    side: &'static str,
}

impl Session {
    /// Logs on as demo key `name`; its orders are on `side` (FIX Side(54)).
    fn log_on(addr: SocketAddr, name: &str, side: &'static str) -> Session {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let mut session = Session {
            stream,
            sender: format!("demo-{name}"),
            seq_next: 1,
            side,
        };
        let mut logon = session.header("A");
        logon
            .field(98, 0)
            .field(108, 30)
            .field(553, &session.sender)
            .field(554, format!("demo-{name}-secret"));
        session.write(&logon);
        let mut decoder = Decoder::default();
        let mut buffer = vec![0u8; READ_BYTES];
        loop {
            let read = session.stream.read(&mut buffer).expect("logon answer");
            assert!(read > 0, "the acceptor closed the logon of {name}");
            decoder.feed(&buffer[..read]);
            if let Ok(Some(Ok(answer))) = decoder.next_frame() {
                assert_eq!(answer.msg_type(), "A", "logon: {}", answer.text());
                return session;
            }
        }
    }

    fn header(&mut self, msg_type: &str) -> Body {
        let mut body = Body::new(msg_type);
        body.field(34, self.seq_next)
            .field(49, &self.sender)
            .field(52, format_timestamp(now_ns()))
            .field(56, ACCEPTOR);
        self.seq_next += 1;
        body
    }

    /// Sends [`Session::order`] `step`.
    fn send_order(&mut self, step: usize) {
        let order = self.order(step);
        self.write(&order);
    }

    /// A limit order for the smallest lot at the reference price, ClOrdID `step`.
    fn order(&mut self, step: usize) -> Body {
        let mut order = self.header("D");
        order
            .field(11, step)
            .field(55, "BTC/JPY")
            .field(54, self.side)
            .field(60, "20240101-00:00:00")
            .field(38, "0.0001")
            .field(40, 2)
            .field(44, 15_000_000);
        order
    }

    fn write(&mut self, body: &Body) {
        self.stream
            .write_all(&frame(body.as_bytes()))
            .expect("send");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Percentiles;
    use gateway::fix::codec::{decode_all, message};

    fn parse(fields: &[(u32, &str)]) -> Message {
        decode_all(&message(fields)).remove(0)
    }

    #[test]
    fn only_new_reports_are_acknowledgements() {
        let new = parse(&[(35, "8"), (11, "42"), (150, "0")]);
        let fill = parse(&[(35, "8"), (11, "42"), (150, "F")]);
        let heartbeat = parse(&[(35, "0")]);
        assert_eq!(acknowledged(&new), Some(42));
        assert_eq!(acknowledged(&fill), None);
        assert_eq!(acknowledged(&heartbeat), None);
    }

    #[test]
    #[should_panic(expected = "the load was refused")]
    fn a_rejected_order_stops_the_run() {
        acknowledged(&parse(&[(35, "8"), (11, "42"), (150, "8")]));
    }

    #[test]
    fn the_bar_is_judged_on_the_process_and_spin_rows_at_its_rate() {
        let row = |scenario: &str, p50_ns: u64, p99_ns: u64| Row {
            scenario: scenario.into(),
            count: 1,
            ops_per_sec: 1.0,
            offered_per_sec: Some(BAR_RATE),
            latency: Percentiles {
                p50_ns,
                p99_ns,
                ..Percentiles::default()
            },
            others_cpu_share: None,
        };
        let notes = bar(&[
            row("fix:fsync:ack@10000", 900_000, 900_000),
            row("fix:process:ack@10000", 39_000, 150_000),
            row("fix:spin:ack@10000", 40_000, 200_000),
        ]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("fix:process:ack@10000 p50 39.0 µs < 40 µs met"),
            "{notes:?}"
        );
        assert!(notes[0].contains("p99 150.0 µs < 200 µs met"), "{notes:?}");
        assert!(
            notes[1].contains("fix:spin:ack@10000 p50 40.0 µs < 40 µs MISSED"),
            "{notes:?}"
        );
        assert!(notes[1].contains("200 µs MISSED"), "{notes:?}");
        assert!(bar(&[row("fix:process:ack@1000", 1, 1)]).is_empty());
    }
}
