//! `fix`: the FIX 4.4 acceptor's input path without the network: the stream decoder
//! (`gateway::fix::codec`) fed in pieces, the dictionary's validation, and the translation of
//! order messages into engine commands (`gateway::fix::orders`) on the default instruments.
//!
//! Properties: nothing panics; the decoder never holds more than a message's worth of bytes; the
//! stream decodes to the same messages however it is cut (a TCP peer chooses the cuts); every
//! decoded message re-encodes, through the codec's own framing, to a message with the same fields.

use std::sync::OnceLock;

use engine::ExchangeConfig;
use gateway::fix::codec::{decode_all, frame_with, message, Decoder, Message, MESSAGE_BYTES_MAX};
use gateway::fix::dictionary::validate;
use gateway::fix::orders::{OrderEntry, Outcome};

use super::class;

pub const DICTIONARY: &[&[u8]] = &[
    b"8=FIX.4.4\x01",
    b"9=",
    b"35=",
    b"\x0110=",
    b"\x01",
    b"=",
    b"8=FIX",
    b"35=D\x01",
    b"35=A\x01",
    b"35=G\x01",
    b"95=",
    b"96=",
    b"34=",
    b"43=Y\x01",
    b"44=",
    b"38=",
    b"453=",
    b"10=000\x01",
];

/// Messages as a client sends them: logon, heartbeat, every order message, a data field.
pub fn seeds() -> Vec<Vec<u8>> {
    let header: &[(u32, &str)] = &[
        (34, "7"),
        (49, "demo-alice"),
        (52, "20240101-00:00:00.000"),
        (56, "KINKO"),
    ];
    let bodies: &[&[(u32, &str)]] = &[
        &[
            (35, "A"),
            (98, "0"),
            (108, "30"),
            (553, "demo-alice"),
            (554, "secret"),
            (8013, "Y"),
        ],
        &[(35, "A"), (98, "0"), (108, "30"), (95, "4"), (96, "abcd")],
        &[(35, "0"), (112, "t")],
        &[(35, "1"), (112, "test")],
        &[(35, "2"), (7, "1"), (16, "0")],
        &[(35, "4"), (123, "Y"), (36, "9")],
        &[(35, "5"), (58, "bye")],
        &[
            (35, "D"),
            (11, "42"),
            (55, "BTC/JPY"),
            (54, "1"),
            (60, "20240101-00:00:00"),
            (38, "0.01"),
            (40, "2"),
            (44, "15000000"),
            (59, "1"),
        ],
        &[
            (35, "D"),
            (11, "43"),
            (55, "ETH/JPY"),
            (54, "2"),
            (60, "20240101-00:00:00"),
            (38, "1"),
            (40, "4"),
            (99, "400000"),
            (44, "399000"),
        ],
        &[
            (35, "D"),
            (11, "44"),
            (55, "BTC/JPY"),
            (54, "2"),
            (60, "20240101-00:00:00"),
            (38, "0.5"),
            (40, "1"),
        ],
        &[
            (35, "F"),
            (11, "45"),
            (41, "42"),
            (55, "BTC/JPY"),
            (54, "1"),
            (60, "20240101-00:00:00"),
        ],
        &[
            (35, "G"),
            (11, "46"),
            (41, "42"),
            (37, "1"),
            (55, "BTC/JPY"),
            (54, "1"),
            (60, "20240101-00:00:00"),
            (38, "0.02"),
            (40, "2"),
            (44, "15001000"),
        ],
        &[(35, "q"), (11, "47"), (530, "7"), (60, "20240101-00:00:00")],
        &[
            (35, "q"),
            (11, "48"),
            (530, "1"),
            (55, "BTC/JPY"),
            (60, "20240101-00:00:00"),
        ],
        &[(35, "H"), (11, "42"), (55, "BTC/JPY"), (54, "1")],
        &[(35, "3"), (45, "3"), (373, "1"), (58, "x")],
    ];
    let mut seeds: Vec<Vec<u8>> = bodies
        .iter()
        .map(|body| {
            let mut fields = vec![body[0]];
            fields.extend_from_slice(header);
            fields.extend_from_slice(&body[1..]);
            message(&fields)
        })
        .collect();
    // A stream of several messages with junk between them.
    let mut stream = b"junk\x01".to_vec();
    stream.extend_from_slice(&seeds[2]);
    stream.extend_from_slice(&seeds[7]);
    stream.extend_from_slice(b"8=FIX.4.4\x019=5\x01");
    stream.extend_from_slice(&seeds[10]);
    seeds.push(stream);
    seeds
}

fn exchange() -> &'static ExchangeConfig {
    static CONFIG: OnceLock<ExchangeConfig> = OnceLock::new();
    CONFIG.get_or_init(engine::defaults::config)
}

pub fn run(bytes: &[u8]) -> u64 {
    // The first byte chooses how the stream is cut, as a TCP peer would.
    let chunk = bytes.first().map_or(1, |b| usize::from(*b % 97) + 1);
    let mut decoder = Decoder::default();
    let mut streamed = Vec::new();
    let mut outcome = 0u64;
    'feed: for piece in bytes.chunks(chunk) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(Ok(message))) => streamed.push(message),
                Ok(Some(Err(garbled))) => outcome |= 1 << (garbled as u32 % 16),
                Ok(None) => break,
                Err(_too_large) => {
                    outcome |= 1 << 20;
                    break 'feed;
                }
            }
        }
        assert!(
            decoder.buffered() <= MESSAGE_BYTES_MAX + chunk,
            "the decoder holds {} bytes",
            decoder.buffered()
        );
    }
    if outcome & (1 << 20) == 0 {
        let whole = decode_all(bytes);
        assert_eq!(
            whole.iter().map(Message::bytes).collect::<Vec<_>>(),
            streamed.iter().map(Message::bytes).collect::<Vec<_>>(),
            "the stream decodes differently in pieces of {chunk}"
        );
    }
    let mut entry = OrderEntry::default();
    for message in &streamed {
        assert_reencodes(message);
        outcome = outcome
            .wrapping_mul(31)
            .wrapping_add(translate(&mut entry, message));
    }
    class(outcome)
}

/// A decoded message framed again by the codec decodes to the same fields (BodyLength and
/// CheckSum are recomputed; "9=020" may come back as "9=20").
fn assert_reencodes(original: &Message) {
    let fields = original.fields();
    let Ok(begin_string) = std::str::from_utf8(original.value(&fields[0])) else {
        return;
    };
    // From MsgType's tag to the SOH before CheckSum's tag ("10=" is always three bytes).
    let body_start = fields[1].value_range().end + 1;
    let body_end = fields[fields.len() - 1].value_range().start - 3;
    let framed = frame_with(begin_string, &original.bytes()[body_start..body_end]);
    let again = decode_all(&framed);
    assert_eq!(
        again.len(),
        1,
        "re-encoded {:?} decodes to {again:?}",
        original.text()
    );
    let pairs = |m: &Message| -> Vec<(u32, Vec<u8>)> {
        let fields = m.fields();
        let inner = fields.iter().enumerate();
        let inner = inner.filter(|(i, _)| *i != 1 && *i != fields.len() - 1);
        inner.map(|(_, f)| (f.tag, m.value(f).to_vec())).collect()
    };
    assert_eq!(
        pairs(original),
        pairs(&again[0]),
        "re-encoding changed the fields"
    );
}

/// What the session does with a valid application message, minus the engine round trip.
fn translate(entry: &mut OrderEntry, message: &Message) -> u64 {
    if let Err(invalid) = validate(message) {
        return 100 + class(format!("{invalid:?}").len() as u64) % 64;
    }
    let exchange = exchange();
    let now_ns = 1_700_000_000_000_000_000;
    let outcome = match message.msg_type() {
        "D" => entry.new_order(exchange, 0, message, now_ns),
        "F" => entry.cancel(0, message, now_ns),
        "G" => {
            // The session passes the instrument of the named order from its mirror of the hub.
            let instrument = message
                .seq_num()
                .map(|s| (s % exchange.instruments.len() as u64) as u32);
            entry.replace(exchange, 0, message, instrument)
        }
        "q" => entry.mass_cancel(exchange, 0, message),
        "H" => Outcome::Reply(entry.status(exchange, message, now_ns)),
        _ => return 200,
    };
    match outcome {
        Outcome::Submit { .. } => 300,
        Outcome::Reply(body) => 400 + body.as_bytes().len() as u64 % 8,
        Outcome::BusinessReject { reason, .. } => 500 + u64::from(reason),
    }
}

/// Recomputes BodyLength and CheckSum of a message at the start of the input (everything after
/// its last CheckSum field is dropped), so that edits inside a message reach the field splitter
/// and the dictionary instead of stopping at the checksum.
pub fn repair(bytes: &mut Vec<u8>) {
    const SOH: u8 = 0x01;
    if !bytes.starts_with(b"8=FIX") {
        return;
    }
    let Some(begin_end) = bytes.iter().position(|&b| b == SOH) else {
        return;
    };
    let rest = &bytes[begin_end + 1..];
    let Some(length_end) = rest.iter().position(|&b| b == SOH) else {
        return;
    };
    if !rest.starts_with(b"9=") {
        return;
    }
    let body_start = begin_end + 1 + length_end + 1;
    let Some(trailer) = bytes.windows(4).rposition(|w| w == b"\x0110=") else {
        return;
    };
    let trailer_start = trailer + 1;
    if trailer_start < body_start {
        return;
    }
    let mut out = bytes[..=begin_end].to_vec();
    out.extend_from_slice(format!("9={}\x01", trailer_start - body_start).as_bytes());
    out.extend_from_slice(&bytes[body_start..trailer_start]);
    let sum = gateway::fix::codec::checksum(&out);
    out.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    *bytes = out;
}
