//! Kinko's auditor tool: prove from the journal files alone what happened, and answer the
//! questions asked after the Coincheck and Zaif hacks (DESIGN.md, "Audit reports").
//!
//! Replay trusts nothing but the journal. It reads it with the engine's own reader (every CRC32C,
//! every segment header, the hash chain at every commit, the sequence without gaps), read-only, and
//! re-executes every command through the engine's own state machine (`engine::Exchange`),
//! demanding byte-identical events. It must never: contain matching or settlement code of its own,
//! write to a journal, build a report on events the state machine does not reproduce, or use
//! floating point for an amount or a price.
//!
//! # Commands (`kinko-replay`, a thin clap binary over this library)
//!
//! * **`verify DIR`** ([`verify()`]): checksums, hash chain, re-execution with byte-identical events,
//!   every ledger and book invariant after every command (or per batch, or once:
//!   [`InvariantCheck`]), house fills against the house policy in force, and time never going
//!   backwards. Success prints a summary (records, sequence range, time range, instruments,
//!   accounts, final state hash). Failure exits 1 with the first failure located: segment file,
//!   byte offset, sequence number, and what differed ([`VerifyFailure`]). A torn tail (a last batch
//!   without its commit, never acknowledged) fails unless `--allow-torn-tail`. Progress goes to
//!   standard error: a bar on a terminal, plain lines otherwise.
//! * **`balances DIR [--at SEQ|TIME] [--account ID] [--pool customer|house]`**
//!   ([`reports::balances`]): every account's available, held and total per asset at that point.
//! * **`trades DIR [--account ID] [--instrument SYM] [--from T] [--to T]`**
//!   ([`reports::trades`]): every fill with price, quantity, notional, fees, accounts, house side.
//! * **`vwap DIR --instrument SYM --from T --to T`** ([`reports::vwap`]): Σ notional / Σ quantity,
//!   rounded to the nearest tick, halves up; with the sums, so anyone can recompute it.
//! * **`compensation DIR --asset A --at T --price vwap:SYM:FROM..TO|fixed:QUOTE:PRICE`**
//!   ([`reports::compensation`]): each customer's holding (available + held) at T, the price, the
//!   amount owed in the quote asset rounded up in the customer's favour; totals; the split of the
//!   asset between the customer pool and the house pool (house accounts plus fee income), valued.
//! * **`segregation DIR [--at T]`** ([`reports::segregation`]): per asset and pool, custody (hot,
//!   cold, bank), owed to holders, owed between the pools, surplus, hot share against the cap;
//!   every breach flagged.
//! * **`internalization DIR`** ([`reports::internalization`]): per instrument, the house policy over
//!   time and the fills with a house side, with their share of customer volume.
//! * **`liabilities DIR [--at T] --out OUTDIR [--secret HEX]`** ([`reports::liabilities`],
//!   [`merkle`]): one Merkle sum tree per asset over customer balances; prints the roots; writes
//!   `roots.json` and one proof file per customer. **`verify-inclusion PROOF --root R`** lets a
//!   customer check their own leaf against a published root without seeing anyone's balance
//!   or identity.
//!
//! Every report prints a table by default, or `--json`, or `--csv`. Every `--at`, `--from` and
//! `--to` is a sequence number (a plain integer: the state after that command) or an RFC 3339
//! instant (the state after the last command stamped at or before it); windows include both ends.
//! Reports re-execute from genesis and stop with an error at a divergence; `verify` is the full
//! check. See README.md for examples, rounding rules and the tree's design.

pub mod error;
pub mod merkle;
pub mod money;
pub mod point;
pub mod progress;
pub mod render;
pub mod reports;
pub mod sim;
pub mod source;
pub mod stream;
pub mod verify;
pub mod walk;

pub use error::ReplayError;
pub use point::{Point, Reached, Window};
pub use progress::Progress;
pub use render::{render, Format, Report};
pub use source::open_journal;
pub use verify::{
    verify, verify_journal, Finding, InvariantCheck, Location, TornTail, VerifyFailure,
    VerifyOptions, VerifySummary,
};
