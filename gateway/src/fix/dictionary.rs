//! The FIX 4.4 data dictionary and the validation of an incoming message against it, in the order
//! QuickFIX's `DataDictionary::validate` applies it, each failure with the SessionRejectReason(373)
//! and RefTagID(371) QuickFIX would send:
//!
//! 1. structure: a header field after the body, or a body field after the trailer → 14;
//! 2. MsgType not a FIX 4.4 message → 11;
//! 3. each field: no value → 4, tag not in FIX 4.4 → 0, repeated outside a group → 13, wrong
//!    format → 6, not an allowed value → 5, not defined for this message → 2;
//! 4. a NumInGroup that does not match its entries → 16;
//! 5. a required header or body field missing → 1.
//!
//! A message of FIX 4.4 that Kinko does not accept passes the header checks and is answered with
//! BusinessMessageReject(j) "unsupported message type" by the session.

use super::codec::Message;
use super::spec44::{FIELDS, HEADER, MESSAGES, SUPPORTED, TRAILER, VALUES};

/// The value formats of FIX 4.4, as QuickFIX checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Int,
    Float,
    Char,
    Boolean,
    String,
    MultipleValueString,
    UtcTimestamp,
    UtcTimeOnly,
    Date,
    MonthYear,
    Data,
}

pub struct GroupSpec {
    pub count: u32,
    /// The first field of each entry.
    pub delimiter: u32,
    pub members: &'static [u32],
}

pub struct MessageSpec {
    pub msg_type: &'static str,
    /// Sorted.
    pub fields: &'static [u32],
    pub required: &'static [u32],
    pub groups: &'static [GroupSpec],
}

/// SessionRejectReason(373) values of FIX 4.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    InvalidTagNumber = 0,
    RequiredTagMissing = 1,
    TagNotDefinedForMessage = 2,
    TagWithoutValue = 4,
    ValueIncorrect = 5,
    IncorrectDataFormat = 6,
    CompIdProblem = 9,
    SendingTimeAccuracy = 10,
    InvalidMsgType = 11,
    TagRepeated = 13,
    TagOutOfOrder = 14,
    IncorrectNumInGroup = 16,
    Other = 99,
}

impl RejectReason {
    pub fn code(self) -> u32 {
        self as u32
    }

    /// QuickFIX's text for each reason.
    pub fn text(self) -> &'static str {
        match self {
            RejectReason::InvalidTagNumber => "Invalid tag number",
            RejectReason::RequiredTagMissing => "Required tag missing",
            RejectReason::TagNotDefinedForMessage => "Tag not defined for this message type",
            RejectReason::TagWithoutValue => "Tag specified without a value",
            RejectReason::ValueIncorrect => "Value is incorrect (out of range) for this tag",
            RejectReason::IncorrectDataFormat => "Incorrect data format for value",
            RejectReason::CompIdProblem => "CompID problem",
            RejectReason::SendingTimeAccuracy => "SendingTime accuracy problem",
            RejectReason::InvalidMsgType => "Invalid MsgType",
            RejectReason::TagRepeated => "Tag appears more than once",
            RejectReason::TagOutOfOrder => "Tag specified out of required order",
            RejectReason::IncorrectNumInGroup => "Incorrect NumInGroup count for repeating group",
            RejectReason::Other => "Other",
        }
    }
}

/// Why a message is refused before the session acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Reject(3) with this reason and RefTagID.
    Session {
        reason: RejectReason,
        ref_tag: Option<u32>,
    },
    /// A FIX 4.4 message Kinko does not accept: BusinessMessageReject(j), reason 3.
    Unsupported,
}

impl Invalid {
    fn at(reason: RejectReason, tag: u32) -> Invalid {
        Invalid::Session {
            reason,
            ref_tag: Some(tag),
        }
    }
}

/// Kinko's own fields, in the user-defined range (5000–9999) that FIX 4.4 leaves to venues:
/// `(tag, name, type, the one message type that may carry it)`. Kept here rather than in the
/// generated [`super::spec44`], which is FIX44.xml and nothing else.
const KINKO_FIELDS: &[(u32, &str, Type, &str)] = &[
    // Logon: cancel the account's open orders when this connection ends (Y) or not (N).
    (8013, "CancelOrdersOnDisconnect", Type::Boolean, "A"),
];

fn kinko_field(tag: u32) -> Option<&'static (u32, &'static str, Type, &'static str)> {
    KINKO_FIELDS.iter().find(|f| f.0 == tag)
}

pub fn field_type(tag: u32) -> Option<Type> {
    match FIELDS.binary_search_by_key(&tag, |f| f.0) {
        Ok(i) => Some(FIELDS[i].2),
        Err(_) => kinko_field(tag).map(|f| f.2),
    }
}

pub fn field_name(tag: u32) -> &'static str {
    match FIELDS.binary_search_by_key(&tag, |f| f.0) {
        Ok(i) => FIELDS[i].1,
        Err(_) => kinko_field(tag).map_or("?", |f| f.1),
    }
}

/// A body field `spec`'s message may carry: FIX 4.4's, or one of Kinko's own for it.
fn defined_for(spec: &MessageSpec, tag: u32) -> bool {
    contains(spec.fields, tag) || kinko_field(tag).is_some_and(|f| f.3 == spec.msg_type)
}

pub fn is_msg_type(msg_type: &str) -> bool {
    MESSAGES.iter().any(|m| m.0 == msg_type)
}

pub fn message_spec(msg_type: &str) -> Option<&'static MessageSpec> {
    SUPPORTED.iter().find(|m| m.msg_type == msg_type)
}

fn allowed_values(tag: u32) -> Option<&'static [&'static str]> {
    VALUES
        .binary_search_by_key(&tag, |v| v.0)
        .ok()
        .map(|i| VALUES[i].1)
}

fn contains(sorted: &[u32], tag: u32) -> bool {
    sorted.binary_search(&tag).is_ok()
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Header,
    Body,
    Trailer,
}

fn section(tag: u32) -> Section {
    if contains(HEADER.fields, tag) {
        Section::Header
    } else if contains(TRAILER.fields, tag) {
        Section::Trailer
    } else {
        Section::Body
    }
}

/// Validates a decoded message (BeginString, BodyLength and CheckSum are already right).
pub fn validate(message: &Message) -> Result<(), Invalid> {
    check_structure(message)?;
    let msg_type = message.msg_type();
    if !is_msg_type(msg_type) {
        return Err(Invalid::Session {
            reason: RejectReason::InvalidMsgType,
            ref_tag: None,
        });
    }
    let spec = message_spec(msg_type);
    check_fields(message, spec)?;
    check_groups(message, spec)?;
    check_required(message, HEADER.required)?;
    match spec {
        Some(spec) => check_required(message, spec.required),
        None => Err(Invalid::Unsupported),
    }
}

/// Header, then body, then trailer: a field back in an earlier section is out of order (14).
fn check_structure(message: &Message) -> Result<(), Invalid> {
    let mut current = Section::Header;
    for field in message.fields() {
        let here = section(field.tag);
        if here < current {
            return Err(Invalid::at(RejectReason::TagOutOfOrder, field.tag));
        }
        current = here;
    }
    Ok(())
}

fn check_fields(message: &Message, spec: Option<&MessageSpec>) -> Result<(), Invalid> {
    let mut seen: Vec<u32> = Vec::with_capacity(message.fields().len());
    for field in message.fields() {
        let tag = field.tag;
        let value = message.value(field);
        if value.is_empty() {
            return Err(Invalid::at(RejectReason::TagWithoutValue, tag));
        }
        let Some(kind) = field_type(tag) else {
            return Err(Invalid::at(RejectReason::InvalidTagNumber, tag));
        };
        let in_group = |spec: &MessageSpec| {
            spec.groups
                .iter()
                .chain(HEADER.groups)
                .any(|g| g.members.contains(&tag))
        };
        if seen.contains(&tag) && !spec.is_some_and(in_group) && !in_group(&HEADER) {
            return Err(Invalid::at(RejectReason::TagRepeated, tag));
        }
        seen.push(tag);
        if !format_ok(kind, value) || (SEQ_NUM_TAGS.contains(&tag) && !seq_num_ok(value)) {
            return Err(Invalid::at(RejectReason::IncorrectDataFormat, tag));
        }
        if !value_ok(tag, kind, value) {
            return Err(Invalid::at(RejectReason::ValueIncorrect, tag));
        }
        if let Some(spec) = spec {
            if section(tag) == Section::Body && !defined_for(spec, tag) {
                return Err(Invalid::at(RejectReason::TagNotDefinedForMessage, tag));
            }
        }
    }
    Ok(())
}

/// Each NumInGroup must equal the number of entries (delimiter fields) that follow.
fn check_groups(message: &Message, spec: Option<&MessageSpec>) -> Result<(), Invalid> {
    let groups = spec
        .map_or(&[][..], |s| s.groups)
        .iter()
        .chain(HEADER.groups);
    for group in groups {
        let mut declared = 0u64;
        let mut counted = 0u64;
        let mut present = false;
        for field in message.fields() {
            if field.tag == group.count {
                present = true;
                let text = std::str::from_utf8(message.value(field)).unwrap_or("");
                declared = declared.saturating_add(text.parse::<u64>().unwrap_or(u64::MAX));
            } else if field.tag == group.delimiter {
                counted += 1;
            }
        }
        if (present || counted > 0) && declared != counted {
            return Err(Invalid::at(RejectReason::IncorrectNumInGroup, group.count));
        }
    }
    Ok(())
}

fn check_required(message: &Message, required: &[u32]) -> Result<(), Invalid> {
    for &tag in required {
        if !message.fields().iter().any(|f| f.tag == tag) {
            return Err(Invalid::at(RejectReason::RequiredTagMissing, tag));
        }
    }
    Ok(())
}

fn value_ok(tag: u32, kind: Type, value: &[u8]) -> bool {
    let Some(values) = allowed_values(tag) else {
        return true;
    };
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    match kind {
        Type::MultipleValueString => text.split(' ').all(|v| values.contains(&v)),
        _ => values.contains(&text),
    }
}

/// The value formats, as QuickFIX's convertors accept them.
pub fn format_ok(kind: Type, value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return kind == Type::Data;
    };
    match kind {
        Type::Int => {
            let digits = text.strip_prefix('-').unwrap_or(text);
            !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit())
        }
        Type::Float => float_ok(text),
        Type::Char => text.chars().count() == 1,
        Type::Boolean => text == "Y" || text == "N",
        Type::UtcTimestamp => super::time::parse_timestamp(text).is_some(),
        Type::UtcTimeOnly => time_only_ok(text),
        Type::Date => text.len() == 8 && text.bytes().all(|b| b.is_ascii_digit()),
        Type::MonthYear => text.len() >= 6 && text.as_bytes()[..6].iter().all(u8::is_ascii_digit),
        Type::String | Type::MultipleValueString | Type::Data => true,
    }
}

/// SeqNum fields (MsgSeqNum, BeginSeqNo, EndSeqNo, NewSeqNo, RefSeqNum, ...): unsigned.
const SEQ_NUM_TAGS: &[u32] = &[7, 16, 34, 36, 45, 369, 789];

fn seq_num_ok(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 18 && value.iter().all(u8::is_ascii_digit)
}

fn float_ok(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    !(whole.is_empty() && fraction.is_empty())
        && digits.len() <= 40
        && all_digits(whole)
        && all_digits(fraction)
}

fn time_only_ok(text: &str) -> bool {
    super::time::parse_timestamp(&format!("19700101-{text}")).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fix::codec::{decode, frame, Step};

    fn parse(fields: &str) -> Message {
        let body = fields.replace('|', "\u{1}");
        match decode(&frame(body.as_bytes())) {
            Ok(Step::Message { message, .. }) => message,
            other => panic!("not a message: {other:?}"),
        }
    }

    const HEAD: &str = "49=C|56=KINKO|34=2|52=20240101-00:00:00.000|";

    fn check(body: &str, expected: Result<(), Invalid>) {
        let (msg_type, rest) = body.split_once('|').unwrap();
        let message = parse(&format!("{msg_type}|{HEAD}{rest}"));
        assert_eq!(validate(&message), expected, "{body}");
    }

    fn reject(reason: RejectReason, tag: u32) -> Result<(), Invalid> {
        Err(Invalid::at(reason, tag))
    }

    #[test]
    fn each_reason_and_ref_tag() {
        use RejectReason::*;
        check("35=0|", Ok(()));
        check("35=1|112=x|", Ok(()));
        check("35=1|", reject(RequiredTagMissing, 112));
        check("35=1|112=|", reject(TagWithoutValue, 112));
        check("35=1|112=x|9999=1|", reject(InvalidTagNumber, 9999));
        check("35=1|112=x|112=y|", reject(TagRepeated, 112));
        check("35=1|112=x|44=1|", reject(TagNotDefinedForMessage, 44));
        check("35=2|7=a|16=0|", reject(IncorrectDataFormat, 7));
        check("35=4|36=5|123=X|", reject(IncorrectDataFormat, 123));
        check(
            "35=D|11=1|54=Z|60=20240101-00:00:00|40=2|",
            reject(ValueIncorrect, 54),
        );
        check("35=1|112=x|43=Y|", reject(TagOutOfOrder, 43));
        check(
            "35=ZZ|",
            Err(Invalid::Session {
                reason: InvalidMsgType,
                ref_tag: None,
            }),
        );
        check("35=V|262=1|", Err(Invalid::Unsupported));
        check(
            "35=D|11=1|54=1|60=20240101-00:00:00|40=2|453=2|448=a|447=D|",
            reject(IncorrectNumInGroup, 453),
        );
        check(
            "35=D|11=1|54=1|60=20240101-00:00:00|40=2|453=2|448=a|447=D|448=b|447=D|",
            Ok(()),
        );
        check(
            "35=D|11=1|54=1|60=20240101-00:00:00|40=Z|",
            reject(ValueIncorrect, 40),
        );
        check(
            "35=D|11=1|54=1|60=2024|40=2|",
            reject(IncorrectDataFormat, 60),
        );
        check("35=D|11=1|54=1|40=2|", reject(RequiredTagMissing, 60));
    }

    #[test]
    fn cancel_orders_on_disconnect_is_a_logon_boolean() {
        use RejectReason::*;
        check("35=A|98=0|108=30|8013=Y|", Ok(()));
        check("35=A|98=0|108=30|8013=N|", Ok(()));
        check(
            "35=A|98=0|108=30|8013=S|",
            reject(IncorrectDataFormat, 8013),
        );
        check("35=A|98=0|108=30|8013=|", reject(TagWithoutValue, 8013));
        check("35=1|112=x|8013=Y|", reject(TagNotDefinedForMessage, 8013));
        check("35=A|98=0|108=30|8014=Y|", reject(InvalidTagNumber, 8014));
        assert_eq!(field_name(8013), "CancelOrdersOnDisconnect");
        assert_eq!(field_name(95), "RawDataLength");
    }

    #[test]
    fn sequence_numbers_are_unsigned() {
        let message = parse("35=0|49=C|56=KINKO|34=-1|52=20240101-00:00:00|");
        assert_eq!(
            validate(&message),
            Err(Invalid::at(RejectReason::IncorrectDataFormat, 34))
        );
        check(
            "35=2|7=1|16=-1|",
            reject(RejectReason::IncorrectDataFormat, 16),
        );
        check(
            "35=D|11=1|54=1|60=20240101-00:00:00|40=2|453=99999999999999999|453=99999999999999999|",
            reject(RejectReason::TagRepeated, 453),
        );
    }

    #[test]
    fn missing_header_fields_are_required_tags() {
        let message = parse("35=0|49=C|56=KINKO|52=20240101-00:00:00|");
        assert_eq!(
            validate(&message),
            Err(Invalid::at(RejectReason::RequiredTagMissing, 34))
        );
    }

    #[test]
    fn formats() {
        assert!(format_ok(Type::Float, b"1.5"));
        assert!(format_ok(Type::Float, b"-0.0001"));
        assert!(format_ok(Type::Float, b"15000000"));
        assert!(!format_ok(Type::Float, b"1e5"));
        assert!(!format_ok(Type::Float, b"."));
        assert!(!format_ok(Type::Int, b"1.0"));
        assert!(format_ok(Type::Int, b"-12"));
        assert!(!format_ok(Type::Char, b"12"));
        assert!(!format_ok(Type::Boolean, b"y"));
        assert!(!format_ok(Type::String, b"\xff"));
    }
}
