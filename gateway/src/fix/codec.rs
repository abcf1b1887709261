//! FIX tag=value framing: find one message in a byte stream, check what makes it a message at all
//! (BeginString first, BodyLength second, MsgType third, CheckSum last and right, BodyLength
//! right), split it into fields; and the reverse, frame a body into a message.
//!
//! A frame that fails those checks is *garbled*: the session ignores it and consumes no sequence
//! number (FIX 4.4 Volume 2, "Message Recovery"). The decoder never buffers more than
//! [`MESSAGE_BYTES_MAX`]: a message announced larger, or a stream with no message end in sight
//! after that many bytes, is [`TooLarge`] and the connection is closed, because its framing can no
//! longer be trusted.

use std::fmt::{self, Display, Write as _};

/// The field delimiter.
pub const SOH: u8 = 0x01;
pub const BEGIN_STRING: &str = "FIX.4.4";
/// The largest message accepted, BeginString to CheckSum.
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// Fields per message: far above any real message, bounds the work on a hostile one.
pub const FIELDS_MAX: usize = 1_024;
/// "10=" + three digits + SOH.
const TRAILER_BYTES: usize = 7;
/// BodyLength digits: seven cover any length up to the limit with room.
const BODY_LENGTH_DIGITS_MAX: usize = 7;
/// "8=" and a BeginString such as "FIXT.1.1" and its SOH fit in this.
const BEGIN_STRING_BYTES_MAX: usize = 16;

/// Why a frame was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Garbled {
    /// Bytes before the next "8=FIX" that belong to no message.
    Garbage,
    BeginString,
    BodyLength,
    /// The declared BodyLength does not end where the CheckSum field starts.
    BodyLengthMismatch,
    CheckSum,
    /// MsgType is not the third field.
    MsgTypeNotThird,
    /// A field without "=", a tag that is not a positive number, or too many fields.
    FieldSyntax,
}

impl Display for Garbled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Garbled::Garbage => "bytes outside any message",
            Garbled::BeginString => "BeginString(8) is not the first field",
            Garbled::BodyLength => "BodyLength(9) is not the second field or not a number",
            Garbled::BodyLengthMismatch => "BodyLength(9) does not match the message",
            Garbled::CheckSum => "CheckSum(10) is wrong",
            Garbled::MsgTypeNotThird => "MsgType(35) is not the third field",
            Garbled::FieldSyntax => "a field is not tag=value",
        };
        f.write_str(text)
    }
}

/// A message announced or found larger than [`MESSAGE_BYTES_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge;

/// One step of decoding a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// More bytes are needed.
    Incomplete,
    /// The first `consumed` bytes are a message.
    Message { consumed: usize, message: Message },
    /// The first `consumed` bytes are to be ignored.
    Garbled { consumed: usize, reason: Garbled },
}

/// One field: its tag and where its value lies in the message bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub tag: u32,
    start: u32,
    end: u32,
}

impl Field {
    /// Where the value lies in the message's bytes (the tag and "=" come just before it).
    pub fn value_range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A framed message: its bytes and its fields in order (BeginString, BodyLength, MsgType first,
/// CheckSum last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    bytes: Vec<u8>,
    fields: Vec<Field>,
}

impl Message {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn value(&self, field: &Field) -> &[u8] {
        &self.bytes[field.start as usize..field.end as usize]
    }

    /// The first value of `tag`, raw.
    pub fn raw(&self, tag: u32) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.tag == tag)
            .map(|f| self.value(f))
    }

    /// The first value of `tag` as text (`None` when absent or not UTF-8).
    pub fn get(&self, tag: u32) -> Option<&str> {
        self.raw(tag).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn begin_string(&self) -> &str {
        std::str::from_utf8(self.value(&self.fields[0])).unwrap_or("")
    }

    pub fn msg_type(&self) -> &str {
        debug_assert_eq!(self.fields[2].tag, 35, "decode guarantees MsgType third");
        std::str::from_utf8(self.value(&self.fields[2])).unwrap_or("")
    }

    /// MsgSeqNum(34) when present and a number.
    pub fn seq_num(&self) -> Option<u64> {
        self.get(34).and_then(|v| v.parse().ok())
    }

    /// PossDupFlag(43)=Y.
    pub fn poss_dup(&self) -> bool {
        self.get(43) == Some("Y")
    }

    /// The message as text with `|` for SOH, for logs and test failures.
    /// The message with `|` for SOH, for logs and test output: Password(554), NewPassword(925)
    /// and RawData(96) (a signature logon) are shown as `***`, so a logged Logon gives no
    /// secret away.
    pub fn text(&self) -> String {
        let redacted: Vec<String> = self
            .bytes
            .split(|b| *b == SOH)
            .map(|field| {
                const SECRETS: [&[u8]; 3] = [b"554=", b"925=", b"96="];
                let secret = SECRETS.iter().find(|prefix| field.starts_with(prefix));
                match secret {
                    Some(prefix) => format!("{}***", String::from_utf8_lossy(prefix)),
                    None => String::from_utf8_lossy(field).into_owned(),
                }
            })
            .collect();
        redacted.join("|")
    }
}

/// Bytes as text with `|` for SOH.
pub fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\u{1}', "|")
}

/// Decodes the first message of `buffer`, or says how many bytes to skip, or that more are needed.
pub fn decode(buffer: &[u8]) -> Result<Step, TooLarge> {
    const START: &[u8] = b"8=FIX";
    if buffer.len() < START.len() {
        if START.starts_with(buffer) {
            return Ok(Step::Incomplete);
        }
        return Ok(garbage_before_start(buffer));
    }
    if !buffer.starts_with(START) {
        return Ok(garbage_before_start(buffer));
    }
    let Some(begin_end) = find_soh(buffer, 0, BEGIN_STRING_BYTES_MAX) else {
        return Ok(if buffer.len() < BEGIN_STRING_BYTES_MAX {
            Step::Incomplete
        } else {
            skip_start(Garbled::BeginString)
        });
    };
    let length_start = begin_end + 1;
    let (body_bytes, body_start) = match body_length(buffer, length_start)? {
        Some(Ok(found)) => found,
        Some(Err(())) => return Ok(skip_start(Garbled::BodyLength)),
        None => return Ok(Step::Incomplete),
    };
    let Some(trailer_start) = trailer(buffer, body_start, body_bytes) else {
        if buffer.len() > MESSAGE_BYTES_MAX {
            return Err(TooLarge);
        }
        return Ok(Step::Incomplete);
    };
    let end = trailer_start + TRAILER_BYTES;
    if end > MESSAGE_BYTES_MAX {
        return Err(TooLarge);
    }
    if trailer_start - body_start != body_bytes {
        return Ok(garbled(resync(buffer, end), Garbled::BodyLengthMismatch));
    }
    let sum = u64::from(checksum(&buffer[..trailer_start]));
    if Some(sum) != parse_digits(&buffer[trailer_start + 3..end - 1]) {
        return Ok(garbled(resync(buffer, end), Garbled::CheckSum));
    }
    Ok(match split_fields(&buffer[..end]) {
        Ok(message) => Step::Message {
            consumed: end,
            message,
        },
        Err(reason) => garbled(end, reason),
    })
}

/// How much of a garbled frame ending at `end` to skip: up to the next "8=FIX" inside it, when a
/// message cut short ran into the next one (which then still gets through), else all of it.
fn resync(buffer: &[u8], end: usize) -> usize {
    buffer[1..end]
        .windows(5)
        .position(|w| w == b"8=FIX")
        .map_or(end, |p| p + 1)
}

fn garbled(consumed: usize, reason: Garbled) -> Step {
    debug_assert!(consumed > 0, "a garbled step must make progress");
    Step::Garbled { consumed, reason }
}

/// Skips the "8" of a start that did not lead to a message, so the scan moves on.
fn skip_start(reason: Garbled) -> Step {
    garbled(1, reason)
}

/// Everything before the next "8=FIX" is garbage; keep a tail that may be the start of one.
fn garbage_before_start(buffer: &[u8]) -> Step {
    debug_assert!(!buffer.is_empty());
    let from = 1.min(buffer.len());
    let next = buffer[from..]
        .windows(5)
        .position(|w| w == b"8=FIX")
        .map(|p| p + from);
    match next {
        Some(p) => garbled(p, Garbled::Garbage),
        // Keep the last four bytes: they may be "8=FI" of a message still arriving.
        None if buffer.len() > 4 => garbled(buffer.len() - 4, Garbled::Garbage),
        None if buffer.starts_with(b"8=FIX") || b"8=FIX".starts_with(buffer) => Step::Incomplete,
        None => garbled(1, Garbled::Garbage),
    }
}

fn find_soh(buffer: &[u8], from: usize, within: usize) -> Option<usize> {
    let end = buffer.len().min(from + within);
    buffer[from..end]
        .iter()
        .position(|&b| b == SOH)
        .map(|p| p + from)
}

/// `Some(Ok((length, body start)))`, `Some(Err)` when malformed, `None` when incomplete.
#[allow(clippy::type_complexity)]
fn body_length(
    buffer: &[u8],
    start: usize,
) -> Result<Option<Result<(usize, usize), ()>>, TooLarge> {
    let field = &buffer[start..];
    if field.len() < 2 {
        return Ok(if b"9=".starts_with(field) {
            None
        } else {
            Some(Err(()))
        });
    }
    if &field[..2] != b"9=" {
        return Ok(Some(Err(())));
    }
    let digits = &field[2..];
    let count = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if count > BODY_LENGTH_DIGITS_MAX {
        return Ok(Some(Err(())));
    }
    if count == digits.len() {
        return Ok(None);
    }
    if count == 0 || digits[count] != SOH {
        return Ok(Some(Err(())));
    }
    let length = parse_digits(&digits[..count]).expect("digits") as usize;
    if length > MESSAGE_BYTES_MAX {
        return Err(TooLarge);
    }
    Ok(Some(Ok((length, start + 2 + count + 1))))
}

/// Where the CheckSum field starts: at the declared end when it is there, else at the first
/// "<SOH>10=ddd<SOH>" after the body start (a wrong BodyLength is then reported as such).
///
/// Nothing is decided before the bytes up to the declared end have arrived: a body may hold
/// "<SOH>10=ddd<SOH>" inside a data field (RawData), and a search run on part of a message would
/// find it and drop a valid message that the whole buffer decodes, so the outcome would depend on
/// how the peer's bytes were cut into reads (found by kinko-fuzz).
fn trailer(buffer: &[u8], body_start: usize, body_bytes: usize) -> Option<usize> {
    let declared = body_start + body_bytes;
    if buffer.len() < declared + TRAILER_BYTES {
        return None;
    }
    if is_trailer(&buffer[declared..]) {
        return Some(declared);
    }
    let from = body_start.checked_sub(1)?;
    buffer[from..]
        .windows(TRAILER_BYTES + 1)
        .position(|w| w[0] == SOH && is_trailer(&w[1..]))
        .map(|p| from + p + 1)
}

fn is_trailer(bytes: &[u8]) -> bool {
    bytes.len() >= TRAILER_BYTES
        && bytes.starts_with(b"10=")
        && bytes[3..6].iter().all(u8::is_ascii_digit)
        && bytes[6] == SOH
}

fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// The sum of the bytes modulo 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// A data field's value may hold SOH: its length comes in the field just before it.
fn data_tag_of_length(tag: u32) -> Option<u32> {
    match tag {
        90 => Some(91),
        93 => Some(89),
        95 => Some(96),
        212 => Some(213),
        348 | 350 | 352 | 354 | 356 | 358 | 360 | 362 | 364 | 445 | 618 | 621 => Some(tag + 1),
        _ => None,
    }
}

/// Splits a framed message into fields; checks the order of the first three and the last.
fn split_fields(bytes: &[u8]) -> Result<Message, Garbled> {
    let mut fields = Vec::new();
    let mut at = 0;
    let mut data_length: Option<(u32, usize)> = None;
    while at < bytes.len() {
        if fields.len() >= FIELDS_MAX {
            return Err(Garbled::FieldSyntax);
        }
        let equals = bytes[at..]
            .iter()
            .position(|&b| b == b'=')
            .ok_or(Garbled::FieldSyntax)?
            + at;
        let tag = parse_tag(&bytes[at..equals]).ok_or(Garbled::FieldSyntax)?;
        let start = equals + 1;
        // A data length is the peer's number: `start + length` overflowed for a RawDataLength of
        // 2^64 - 1, a panic in debug builds; in release it wrapped to an end before the start,
        // and reading the field sliced backwards, a panic that aborts the server (release builds
        // abort on panic) from one unauthenticated Logon (found by kinko-fuzz).
        let data_end = data_length
            .take()
            .filter(|(data_tag, _)| *data_tag == tag)
            .and_then(|(_, length)| start.checked_add(length))
            .filter(|&end| end < bytes.len());
        let end = match data_end {
            Some(end) => end,
            None => {
                bytes[start..]
                    .iter()
                    .position(|&b| b == SOH)
                    .ok_or(Garbled::FieldSyntax)?
                    + start
            }
        };
        if bytes.get(end) != Some(&SOH) {
            return Err(Garbled::FieldSyntax);
        }
        if let Some(data_tag) = data_tag_of_length(tag) {
            if let Some(length) = std::str::from_utf8(&bytes[start..end])
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            {
                data_length = Some((data_tag, length));
            }
        }
        fields.push(Field {
            tag,
            start: start as u32,
            end: end as u32,
        });
        at = end + 1;
    }
    let tags: Vec<u32> = fields.iter().take(3).map(|f| f.tag).collect();
    if tags.len() < 3 || tags[0] != 8 || tags[1] != 9 {
        return Err(Garbled::FieldSyntax);
    }
    if tags[2] != 35 {
        return Err(Garbled::MsgTypeNotThird);
    }
    if fields.last().map(|f| f.tag) != Some(10) {
        return Err(Garbled::FieldSyntax);
    }
    Ok(Message {
        bytes: bytes.to_vec(),
        fields,
    })
}

fn parse_tag(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 9 || text[0] == b'0' {
        return None;
    }
    parse_digits(text).map(|n| n as u32)
}

/// A message body under construction: `tag=value<SOH>` fields, MsgType first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    text: String,
}

impl Body {
    pub fn new(msg_type: &str) -> Body {
        let mut body = Body::default();
        body.field(35, msg_type);
        body
    }

    /// Appends one field. A value holding SOH would forge fields: refused loudly.
    pub fn field(&mut self, tag: u32, value: impl Display) -> &mut Body {
        let before = self.text.len();
        write!(self.text, "{tag}={value}").expect("writing to a String");
        assert!(
            !self.text.as_bytes()[before..].contains(&SOH),
            "a FIX value may not contain SOH (tag {tag})"
        );
        self.text.push('\u{1}');
        self
    }

    pub fn field_opt(&mut self, tag: u32, value: Option<impl Display>) -> &mut Body {
        if let Some(value) = value {
            self.field(tag, value);
        }
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

/// Frames a body that starts with MsgType: prepends BeginString and BodyLength, appends CheckSum.
pub fn frame(body: &[u8]) -> Vec<u8> {
    frame_with(BEGIN_STRING, body)
}

/// [`frame`] with any BeginString (tests send wrong ones).
pub fn frame_with(begin_string: &str, body: &[u8]) -> Vec<u8> {
    assert!(body.starts_with(b"35="), "a body starts with MsgType(35)");
    assert_eq!(body.last(), Some(&SOH), "a body ends with SOH");
    let mut out = Vec::with_capacity(body.len() + 32);
    write!(
        Adapter(&mut out),
        "8={begin_string}\u{1}9={}\u{1}",
        body.len()
    )
    .expect("writing to a Vec");
    out.extend_from_slice(body);
    let sum = checksum(&out);
    write!(Adapter(&mut out), "10={sum:03}\u{1}").expect("writing to a Vec");
    debug_assert!(
        matches!(decode(&out), Ok(Step::Message { consumed, .. }) if consumed == out.len())
    );
    out
}

/// Builds a whole message from `(tag, value)` pairs starting with MsgType(35): the library
/// function tests, clients and benchmarks use to speak FIX to the acceptor.
pub fn message(fields: &[(u32, &str)]) -> Vec<u8> {
    assert_eq!(fields.first().map(|f| f.0), Some(35), "MsgType comes first");
    let mut body = Body::default();
    for (tag, value) in fields {
        body.field(*tag, value);
    }
    frame(body.as_bytes())
}

struct Adapter<'a>(&'a mut Vec<u8>);

impl fmt::Write for Adapter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A stream decoder: bytes in, messages and garbled frames out, never more than
/// [`MESSAGE_BYTES_MAX`] buffered.
#[derive(Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next message or garbled frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Result<Message, Garbled>>, TooLarge> {
        let step = decode(&self.buffer)?;
        let (consumed, item) = match step {
            Step::Incomplete => return Ok(None),
            Step::Message { consumed, message } => (consumed, Ok(message)),
            Step::Garbled { consumed, reason } => (consumed, Err(reason)),
        };
        assert!(
            consumed > 0 && consumed <= self.buffer.len(),
            "decode consumed {consumed} of {}",
            self.buffer.len()
        );
        self.buffer.drain(..consumed);
        Ok(Some(item))
    }

    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

/// Parses a whole stream (tests): every message in it, garbled frames skipped.
pub fn decode_all(mut bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while let Ok(step) = decode(bytes) {
        match step {
            Step::Incomplete => break,
            Step::Message { consumed, message } => {
                out.push(message);
                bytes = &bytes[consumed..];
            }
            Step::Garbled { consumed, .. } => bytes = &bytes[consumed..],
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soh(text: &str) -> Vec<u8> {
        text.replace('|', "\u{1}").into_bytes()
    }

    fn heartbeat() -> Vec<u8> {
        message(&[
            (35, "0"),
            (34, "2"),
            (49, "A"),
            (52, "20240101-00:00:00"),
            (56, "B"),
        ])
    }

    #[test]
    fn round_trip_and_known_checksum() {
        // BodyLength counts from MsgType to the SOH before CheckSum; CheckSum sums every byte
        // before it modulo 256 (both computed by hand for this message).
        let bytes = message(&[(35, "0"), (49, "A"), (56, "B"), (34, "1")]);
        assert_eq!(
            printable(&bytes),
            "8=FIX.4.4|9=20|35=0|49=A|56=B|34=1|10=125|"
        );
        let Ok(Step::Message { consumed, message }) = decode(&bytes) else {
            panic!("decodes")
        };
        assert_eq!(consumed, bytes.len());
        assert_eq!(message.msg_type(), "0");
        assert_eq!(message.seq_num(), Some(1));
        assert_eq!(message.get(49), Some("A"));
        assert_eq!(message.get(57), None);
    }

    #[test]
    fn partial_input_is_incomplete_at_every_cut() {
        let bytes = heartbeat();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Ok(Step::Incomplete), "cut at {cut}");
        }
    }

    #[test]
    fn each_broken_frame_is_garbled_with_its_reason() {
        let good = heartbeat();
        let text = printable(&good);
        let mut bad_sum = good.clone();
        let digit = bad_sum.len() - 2;
        bad_sum[digit] = if bad_sum[digit] == b'0' { b'1' } else { b'0' };
        assert!(matches!(
            decode(&bad_sum),
            Ok(Step::Garbled {
                reason: Garbled::CheckSum,
                ..
            })
        ));
        // A BodyLength too long is known to be wrong once the bytes up to its end are there
        // (here: the next messages); until then, the message may still be arriving.
        let mut long = soh(&text.replacen("|9=", "|9=1", 1));
        assert_eq!(decode(&long), Ok(Step::Incomplete));
        for _ in 0..3 {
            long.extend_from_slice(&good);
        }
        assert!(matches!(
            decode(&long),
            Ok(Step::Garbled {
                reason: Garbled::BodyLengthMismatch,
                ..
            })
        ));
        let no_type_third = frame_with_raw("|34=2|35=0|49=A|52=20240101-00:00:00|56=B|");
        assert!(matches!(
            decode(&no_type_third),
            Ok(Step::Garbled {
                reason: Garbled::MsgTypeNotThird,
                ..
            })
        ));
        assert_eq!(
            decode(b"hello 8=FIX"),
            Ok(Step::Garbled {
                consumed: 6,
                reason: Garbled::Garbage
            })
        );
        assert_eq!(
            decode(&soh("8=FIX.4.4|9=x|")),
            Ok(skip_start(Garbled::BodyLength))
        );
    }

    /// Frames a field list (after BodyLength) with correct length and checksum.
    fn frame_with_raw(fields: &str) -> Vec<u8> {
        let body = soh(&fields[1..]);
        let mut out = soh(&format!("8=FIX.4.4|9={}|", body.len()));
        out.extend_from_slice(&body);
        let sum = checksum(&out);
        out.extend_from_slice(&soh(&format!("10={sum:03}|")));
        out
    }

    #[test]
    fn a_message_cut_short_does_not_swallow_the_next() {
        let good = heartbeat();
        for cut in [10, good.len() / 2, good.len() - 3] {
            let mut stream = good[..cut].to_vec();
            stream.extend_from_slice(b"junk");
            stream.extend_from_slice(&good);
            assert_eq!(decode_all(&stream).len(), 1, "cut at {cut}");
        }
    }

    #[test]
    fn too_large_is_refused_without_buffering() {
        assert_eq!(decode(&soh("8=FIX.4.4|9=1048576|35=D|")), Err(TooLarge));
        let mut endless = soh("8=FIX.4.4|9=100|35=D|58=");
        endless.resize(MESSAGE_BYTES_MAX + 10, b'x');
        assert_eq!(decode(&endless), Err(TooLarge));
    }

    #[test]
    fn decoder_resynchronises_after_garbage() {
        let mut decoder = Decoder::default();
        decoder.feed(b"\x00\xffgarbage");
        decoder.feed(&heartbeat());
        decoder.feed(b"junk");
        decoder.feed(&heartbeat());
        let mut messages = 0;
        while let Ok(Some(item)) = decoder.next_frame() {
            messages += usize::from(item.is_ok());
        }
        assert_eq!(messages, 2);
        assert!(decoder.buffered() <= 4);
    }

    #[test]
    fn logged_text_hides_passwords_and_signatures() {
        let mut body = Body::new("A");
        body.field(34, 1)
            .field(49, "demo-alice")
            .field(553, "demo-alice")
            .field(554, "demo-alice-secret")
            .field(925, "next-secret")
            .field(95, 6)
            .field(96, "abc123");
        let messages = decode_all(&frame(body.as_bytes()));
        let text = messages[0].text();
        assert!(
            text.contains("|553=demo-alice|554=***|925=***|95=6|96=***|"),
            "{text}"
        );
        assert!(!text.contains("secret") && !text.contains("abc123"));
    }

    #[test]
    fn a_trailer_inside_a_data_field_decodes_the_same_however_the_stream_is_cut() {
        // RawData(96) holding "<SOH>10=000<SOH>": the decoder once searched for a trailer in the
        // part received so far, found this one, reported a BodyLength mismatch and dropped the
        // message, while the whole buffer decoded (kinko-fuzz, target fix, pieces of 57 bytes).
        let bytes = frame_with_raw(
            "|35=A|34=1|49=A|52=20240101-00:00:00|56=B|95=8|96=\u{1}10=000\u{1}|98=0|108=30|",
        );
        assert_eq!(decode_all(&bytes).len(), 1);
        for chunk in 1..bytes.len() {
            let mut decoder = Decoder::default();
            let mut messages = Vec::new();
            for piece in bytes.chunks(chunk) {
                decoder.feed(piece);
                while let Ok(Some(item)) = decoder.next_frame() {
                    messages.push(item);
                }
            }
            assert_eq!(messages.len(), 1, "pieces of {chunk}: {messages:?}");
            let message = messages.remove(0).expect("a message, not a garbled frame");
            assert_eq!(message.raw(96), Some(&b"\x0110=000\x01"[..]));
        }
    }

    #[test]
    fn a_data_length_past_the_message_is_garbled_not_a_panic() {
        // The input kinko-fuzz saved (target fix): a Logon whose RawDataLength(95) is 2^64 - 1.
        let bytes = frame_with_raw(
            "|35=A|34=7|49=demo-alice|52=20240101-00:00:00.000|56=KINKO|98=0|108=30\
             |95=18446744073709551615|96=abcd|",
        );
        let Ok(Step::Message { message, .. }) = decode(&bytes) else {
            panic!("a message: the length is ignored, the value ends at its SOH")
        };
        assert_eq!(message.raw(96), Some(&b"abcd"[..]));
        // A length that would wrap to just before the value's start, where an SOH is.
        for length in [u64::MAX - 1, u64::MAX - 5, u64::MAX / 2] {
            let bytes = frame_with_raw(&format!("|35=A|34=7|95={length}|96=abcd|"));
            for field in decode_all(&bytes).iter().flat_map(|m| m.fields()) {
                assert!(field.value_range().start <= field.value_range().end);
            }
        }
    }

    #[test]
    fn data_fields_may_hold_soh() {
        let bytes = frame_with_raw("|35=0|95=3|96=a\u{1}b|49=A|");
        let Ok(Step::Message { message, .. }) = decode(&bytes) else {
            panic!("decodes")
        };
        assert_eq!(message.raw(96), Some(&b"a\x01b"[..]));
        assert_eq!(message.get(49), Some("A"));
    }
}
