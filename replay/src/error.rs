//! Why a report could not be produced. Verification failures are not errors of the tool: they are
//! [`crate::verify::VerifyFailure`], the finding an auditor came for.

use std::fmt;

use engine::journal::JournalError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The journal could not be read, or failed its checksums or its hash chain.
    Journal(JournalError),
    /// The directory holds no journal.
    NoJournal(String),
    /// The genesis configuration does not build an exchange.
    Config(String),
    /// Re-executing a command did not give the journaled events: reports refuse to go on.
    Diverged {
        seq: u64,
        segment: String,
        offset: usize,
        detail: String,
    },
    UnknownAsset(String),
    UnknownInstrument(String),
    UnknownAccount(u32),
    /// A `--at`, `--from` or `--to` that is neither a sequence number nor RFC 3339.
    BadPoint(String),
    /// A `--price` that is neither `vwap:SYM:FROM..TO` nor `fixed:QUOTE:PRICE`.
    BadPrice(String),
    /// A price source that does not price the asset asked about.
    PriceMismatch(String),
    /// A VWAP window with no trade in it.
    NoTrades {
        instrument: String,
        window: String,
    },
    /// An amount left the range the report can represent exactly.
    Overflow(&'static str),
    Io(String),
    /// A proof file that does not parse or is not a Kinko proof.
    BadProof(String),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Journal(e) => write!(f, "{e}"),
            ReplayError::NoJournal(dir) => write!(f, "no journal segments in {dir}"),
            ReplayError::Config(e) => write!(f, "genesis configuration: {e}"),
            ReplayError::Diverged {
                seq,
                segment,
                offset,
                detail,
            } => write!(
                f,
                "re-execution diverges from the journal at seq {seq} ({segment} at byte offset \
                 {offset}): {detail}; run `kinko-replay verify` for the full finding"
            ),
            ReplayError::UnknownAsset(code) => {
                write!(f, "no asset {code} in the journal's configuration")
            }
            ReplayError::UnknownInstrument(symbol) => {
                write!(f, "no instrument {symbol} in the journal's configuration")
            }
            ReplayError::UnknownAccount(id) => write!(f, "no account {id} at that point"),
            ReplayError::BadPoint(text) => {
                write!(f, "not a sequence number or an RFC 3339 instant: {text}")
            }
            ReplayError::BadPrice(text) => write!(
                f,
                "price must be vwap:SYM:FROM..TO or fixed:QUOTE:PRICE, not {text}"
            ),
            ReplayError::PriceMismatch(detail) => write!(f, "price source: {detail}"),
            ReplayError::NoTrades { instrument, window } => {
                write!(f, "no trade of {instrument} in {window}")
            }
            ReplayError::Overflow(what) => write!(f, "{what} does not fit exactly"),
            ReplayError::Io(e) => write!(f, "I/O: {e}"),
            ReplayError::BadProof(e) => write!(f, "proof file: {e}"),
        }
    }
}

impl std::error::Error for ReplayError {}

impl From<JournalError> for ReplayError {
    fn from(e: JournalError) -> ReplayError {
        ReplayError::Journal(e)
    }
}

impl From<std::io::Error> for ReplayError {
    fn from(e: std::io::Error) -> ReplayError {
        ReplayError::Io(e.to_string())
    }
}
