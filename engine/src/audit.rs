//! The audit trail of operators: every operator action is one journaled command that names who
//! did it. Actions that the state machine also knows unattributed (instrument halts, house
//! policy, custody transfers, cancelling a cold → hot request) travel inside
//! [`ExchangeCommand::Operator`](crate::ExchangeCommand::Operator), which applies them exactly as
//! the plain command and adds the operator to the record. API-key changes are journaled here
//! too: the journal learns the key's public name, account, role, permissions and expiry, never
//! its secret (that stays sealed in the gateway's key store).
//!
//! Operators are named by [`OperatorId`]: the number of the API key they used. Keys from the
//! configuration file are numbered in file order from 0; keys created at run time from
//! [`KEY_ID_CREATED_FIRST`]. [`KeyChange::Registered`] and [`KeyChange::Created`] bind a number to
//! a name, so that `kinko-replay actions` names every actor from the journal alone.

use ledger::{AmountUnits, AssetId, Location, Pool};
use serde::{Deserialize, Serialize};

use crate::custody::{OperatorId, Sig};
use crate::instrument::HousePolicy;
use crate::types::{AccountId, InstrumentId};

/// The number of an API key; an operator acting is named by its key's number.
pub type KeyId = OperatorId;

/// Keys created at run time are numbered from here; below are the configuration file's keys.
pub const KEY_ID_CREATED_FIRST: KeyId = 1 << 20;

/// A key's public name (what a client sends as `key`), ASCII, at most 32 bytes, zero-padded.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyLabel(pub [u8; 32]);

impl KeyLabel {
    pub const LEN_MAX: usize = 32;

    /// `None` for an empty name, one longer than 32 bytes, or one with a byte outside the
    /// printable ASCII range (names travel in FIX fields and log lines).
    pub fn new(name: &str) -> Option<KeyLabel> {
        let bytes = name.as_bytes();
        let printable = bytes.iter().all(|b| b.is_ascii_graphic());
        if bytes.is_empty() || bytes.len() > Self::LEN_MAX || !printable {
            return None;
        }
        let mut label = [0u8; 32];
        label[..bytes.len()].copy_from_slice(bytes);
        Some(KeyLabel(label))
    }

    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(32);
        std::str::from_utf8(&self.0[..end]).unwrap_or("<not ascii>")
    }
}

impl std::fmt::Debug for KeyLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// What a key may do. Bits of [`KeyGrant::permissions`].
pub mod permission {
    /// Private channels, balances, orders, status.
    pub const READ: u8 = 1;
    /// Order entry: new, cancel, replace, mass cancel, cancel-on-disconnect.
    pub const TRADE: u8 = 2;
    /// Withdrawal requests and changes of the withdrawal whitelist.
    pub const WITHDRAW: u8 = 4;
    pub const ALL: u8 = READ | TRADE | WITHDRAW;
}

/// A key's role, as the gateway binds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRole {
    Trader,
    Operator,
    Auditor,
}

/// What a key is bound to and allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    pub account: AccountId,
    pub role: KeyRole,
    /// Bits of [`permission`].
    pub permissions: u8,
    /// Milliseconds since the Unix epoch after which the key is refused; 0: never.
    pub expires_ms: u64,
    /// How many IP allowlist entries the key carries (0: any address).
    pub ip_rules: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyChange {
    /// A key of the configuration file, recorded when the server first runs with it.
    Registered {
        key: KeyId,
        label: KeyLabel,
        grant: KeyGrant,
    },
    /// A key created by an operator.
    Created {
        key: KeyId,
        label: KeyLabel,
        grant: KeyGrant,
    },
    /// A new secret for the key; the old one stops working at once.
    Rotated { key: KeyId },
    /// The key is refused from now on, and its open sessions are closed.
    Revoked { key: KeyId },
}

/// An operator action that the state machine applies as its unattributed twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorCommand {
    HaltInstrument {
        instrument: InstrumentId,
    },
    ResumeInstrument {
        instrument: InstrumentId,
    },
    SetHousePolicy {
        instrument: InstrumentId,
        policy: HousePolicy,
    },
    /// Hot → cold and other moves within a pool (cold → hot needs approvals and is refused).
    CustodyTransfer {
        pool: Pool,
        asset: AssetId,
        source: Location,
        target: Location,
        amount_units: AmountUnits,
    },
    ColdToHotCancel {
        request_id: u64,
    },
    /// Recorded only: the state machine keeps no keys.
    Key(KeyChange),
    /// One approver's signature for a cold → hot request, with the operator who brought it: the
    /// signature says which approver, the envelope which operator's key submitted it. Last of
    /// the variants, so that journals written before it decode as they did.
    ColdToHotApprove {
        request_id: u64,
        approver: [u8; 32],
        signature: Sig,
    },
}
