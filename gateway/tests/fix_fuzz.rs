//! The FIX decoder and validator against arbitrary input, as a bounded property test that runs in
//! every `cargo test` (PROPTEST_CASES raises the count): random bytes, valid messages mutated
//! byte by byte, random fields in a valid frame, and streams cut at random points. Nothing may
//! panic, the decoder never holds more than a message's worth of bytes, and a stream of valid
//! messages decodes to the same messages however it is cut.

use gateway::fix::codec::{
    decode, frame, message, Body, Decoder, Message, Step, MESSAGE_BYTES_MAX,
};
use gateway::fix::dictionary::validate;
use proptest::prelude::*;

/// 2,000 cases per property unless PROPTEST_CASES says otherwise (CI keeps the default: bounded).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn order(cl: u32) -> Vec<u8> {
    let cl = cl.to_string();
    message(&[
        (35, "D"),
        (34, "7"),
        (49, "demo-alice"),
        (52, "20240101-00:00:00.000"),
        (56, "KINKO"),
        (11, &cl),
        (55, "BTC/JPY"),
        (54, "1"),
        (60, "20240101-00:00:00"),
        (38, "0.01"),
        (40, "2"),
        (44, "15000000"),
    ])
}

/// Feeds `bytes` in `chunk`-sized pieces; returns the messages, checking every bound on the way.
fn drain(bytes: &[u8], chunk: usize) -> Vec<Message> {
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(Ok(message))) => {
                    let _ = validate(&message);
                    out.push(message);
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) => return out,
            }
        }
        assert!(decoder.buffered() <= MESSAGE_BYTES_MAX + 64 * 1024);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4_096), chunk in 1usize..512) {
        drain(&bytes, chunk);
        let _ = decode(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        cl in 1u32..1_000_000,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = order(cl);
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len().max(1));
            let last = bytes.len() - 1;
            match kind {
                0 => bytes[i.min(last)] = byte,
                1 => bytes.insert(i, byte),
                _ if bytes.len() > 1 => { bytes.remove(i.min(last)); }
                _ => {}
            }
        }
        for message in drain(&bytes, 7) {
            // Whatever got through has a right checksum and length: it is a real message.
            prop_assert_eq!(message.fields().last().map(|f| f.tag), Some(10));
        }
    }

    #[test]
    fn random_fields_in_a_valid_frame_validate_without_panic(
        msg_type in "[0-9A-Za-z]{1,2}",
        fields in proptest::collection::vec((1u32..10_000, "[ -~]{0,12}"), 0..24),
    ) {
        let mut body = Body::new(&msg_type);
        for (tag, value) in &fields {
            body.field(*tag, value);
        }
        let bytes = frame(body.as_bytes());
        // Field values may contain "=" or look like a trailer: garbled then, never a panic.
        if let Ok(Step::Message { message, consumed }) = decode(&bytes) {
            prop_assert_eq!(consumed, bytes.len());
            let _ = validate(&message);
        }
    }

    #[test]
    fn a_valid_stream_decodes_the_same_however_it_is_cut(
        count in 1usize..20,
        chunk in 1usize..300,
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut stream = junk.iter().map(|b| if *b == b'8' { b'x' } else { *b }).collect::<Vec<u8>>();
        let mut expected = Vec::new();
        for i in 0..count {
            let bytes = order(i as u32 + 1);
            expected.push(bytes.clone());
            stream.extend_from_slice(&bytes);
        }
        let decoded: Vec<Vec<u8>> = drain(&stream, chunk).iter().map(|m| m.bytes().to_vec()).collect();
        prop_assert_eq!(decoded, expected);
    }
}
