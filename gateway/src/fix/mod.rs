//! FIX 4.4: an acceptor with the whole session layer, as the QuickFIX engines implement it, and
//! order entry into the same books as the WebSocket API. `docs/API.md, section "FIX 4.4"` is the dictionary of what
//! is supported and the rules a client can rely on.
//!
//! * [`codec`] — framing: BeginString, BodyLength, CheckSum; garbled frames; building messages.
//! * [`dictionary`] (+ the generated [`spec44`]) — validation against the FIX 4.4 dictionary,
//!   each failure with its SessionRejectReason and RefTagID.
//! * [`store`] — per-session sequence numbers and sent application messages, on disk.
//! * [`session`] — the session state machine: logon, heartbeats and test requests, sequence checks,
//!   resend requests and gap fills, sequence resets, rejects, logout. No I/O of its own.
//! * [`orders`] — NewOrderSingle, cancel, replace, status and mass cancel into engine commands;
//!   engine events into ExecutionReports with CumQty, LeavesQty and AvgPx.
//! * [`acceptor`] — TCP: accepts connections, binds each to its session by its Logon, runs each
//!   session as one task that also hears its account's events from the hub.
//!
//! It must never: consume a sequence number for a garbled message, resend an administrative
//! message (they are gap-filled), or round a price or quantity.

pub mod acceptor;
pub mod codec;
pub mod dictionary;
pub mod orders;
pub mod session;
pub mod spec44;
pub mod store;
pub mod time;

/// The tags Kinko reads or writes, by their FIX names.
pub mod tag {
    pub const ACCOUNT: u32 = 1;
    pub const AVG_PX: u32 = 6;
    pub const BEGIN_SEQ_NO: u32 = 7;
    pub const CL_ORD_ID: u32 = 11;
    pub const COMMISSION: u32 = 12;
    pub const COMM_TYPE: u32 = 13;
    pub const CUM_QTY: u32 = 14;
    pub const END_SEQ_NO: u32 = 16;
    pub const EXEC_ID: u32 = 17;
    pub const EXEC_INST: u32 = 18;
    pub const LAST_PX: u32 = 31;
    pub const LAST_QTY: u32 = 32;
    pub const MSG_SEQ_NUM: u32 = 34;
    pub const MSG_TYPE: u32 = 35;
    pub const NEW_SEQ_NO: u32 = 36;
    pub const ORDER_ID: u32 = 37;
    pub const ORDER_QTY: u32 = 38;
    pub const ORD_STATUS: u32 = 39;
    pub const ORD_TYPE: u32 = 40;
    pub const ORIG_CL_ORD_ID: u32 = 41;
    pub const POSS_DUP_FLAG: u32 = 43;
    pub const PRICE: u32 = 44;
    pub const REF_SEQ_NUM: u32 = 45;
    pub const SENDER_COMP_ID: u32 = 49;
    pub const SENDING_TIME: u32 = 52;
    pub const SIDE: u32 = 54;
    pub const SYMBOL: u32 = 55;
    pub const TARGET_COMP_ID: u32 = 56;
    pub const TEXT: u32 = 58;
    pub const TIME_IN_FORCE: u32 = 59;
    pub const TRANSACT_TIME: u32 = 60;
    pub const RAW_DATA_LENGTH: u32 = 95;
    pub const RAW_DATA: u32 = 96;
    pub const ENCRYPT_METHOD: u32 = 98;
    pub const STOP_PX: u32 = 99;
    pub const CXL_REJ_REASON: u32 = 102;
    pub const ORD_REJ_REASON: u32 = 103;
    pub const HEART_BT_INT: u32 = 108;
    pub const TEST_REQ_ID: u32 = 112;
    pub const ORIG_SENDING_TIME: u32 = 122;
    pub const GAP_FILL_FLAG: u32 = 123;
    pub const RESET_SEQ_NUM_FLAG: u32 = 141;
    pub const EXEC_TYPE: u32 = 150;
    pub const LEAVES_QTY: u32 = 151;
    pub const REF_TAG_ID: u32 = 371;
    pub const REF_MSG_TYPE: u32 = 372;
    pub const SESSION_REJECT_REASON: u32 = 373;
    pub const EXEC_RESTATEMENT_REASON: u32 = 378;
    pub const BUSINESS_REJECT_REF_ID: u32 = 379;
    pub const BUSINESS_REJECT_REASON: u32 = 380;
    pub const CXL_REJ_RESPONSE_TO: u32 = 434;
    pub const MASS_CANCEL_REQUEST_TYPE: u32 = 530;
    pub const MASS_CANCEL_RESPONSE: u32 = 531;
    pub const MASS_CANCEL_REJECT_REASON: u32 = 532;
    pub const TOTAL_AFFECTED_ORDERS: u32 = 533;
    pub const USERNAME: u32 = 553;
    pub const PASSWORD: u32 = 554;
    pub const LAST_LIQUIDITY_IND: u32 = 851;
    /// Kinko's own (user-defined range), in Logon only.
    pub const CANCEL_ORDERS_ON_DISCONNECT: u32 = 8013;
}

/// Administrative message types: never resent, gap-filled instead.
pub fn is_admin(msg_type: &str) -> bool {
    matches!(msg_type, "0" | "1" | "2" | "3" | "4" | "5" | "A")
}
