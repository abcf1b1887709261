//! Reasons a command is rejected. Each has a stable numeric code (for the wire and the journal)
//! and a human message. Codes are never reused: a retired reason keeps its number.

use serde::{Deserialize, Serialize};

macro_rules! reject_reasons {
    ($($name:ident = $code:literal, $text:literal;)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum RejectReason {
            $($name,)*
        }

        impl RejectReason {
            pub const ALL: &'static [RejectReason] = &[$(RejectReason::$name,)*];

            /// The stable code, documented in docs/API.md.
            pub fn code(self) -> u16 {
                match self {
                    $(RejectReason::$name => $code,)*
                }
            }

            /// The stable machine name in snake case, e.g. `off_tick`.
            pub fn name(self) -> &'static str {
                match self {
                    $(RejectReason::$name => stringify!($name),)*
                }
            }

            /// A sentence for humans.
            pub fn message(self) -> &'static str {
                match self {
                    $(RejectReason::$name => $text,)*
                }
            }
        }
    };
}

reject_reasons! {
    UnknownInstrument = 1001, "no instrument with that id";
    UnknownAccount = 1002, "no account with that id";
    UnknownOrder = 1003, "no open order with that id for this account";
    NotYourOrder = 1004, "the order belongs to another account";
    DuplicateClientOrderId = 1005, "the client order id is already used by an open order of this account";
    QtyNotPositive = 1101, "quantity must be greater than zero";
    QtyBelowMin = 1102, "quantity is below the instrument's minimum order size";
    QtyAboveMax = 1103, "quantity is above the instrument's maximum order size";
    OffLot = 1104, "quantity is not a whole number of lots";
    PriceNotPositive = 1105, "price must be greater than zero";
    PriceTooHigh = 1106, "price is above the largest representable price";
    OffTick = 1107, "price is not a whole number of ticks";
    OutsidePriceBand = 1108, "price is outside the instrument's price band around the reference price";
    PostOnlyWouldTake = 1109, "post-only order would trade on arrival";
    InvalidTimeInForce = 1110, "this time in force is not allowed for this order type";
    StopWouldTriggerImmediately = 1111, "stop price is already reached by the last trade price";
    NotReplaceable = 1112, "only resting limit orders can be replaced";
    InstrumentHalted = 1201, "trading on this instrument is halted";
    BookFull = 1301, "the book has no room for another price level";
    OrdersFull = 1302, "the engine has no room for another open order";
    TooManyOpenOrders = 1303, "the account has reached its maximum number of open orders";
    StopsFull = 1304, "the book has no room for another stop order";
    AccountsFull = 1305, "the exchange has no room for another account";
    WithdrawalsFull = 1306, "the exchange has no room for another pending withdrawal";
    InsufficientBalance = 1401, "the available balance does not cover the order or withdrawal";
    HouseTradingForbidden = 1402, "house accounts may not trade on this instrument";
    AmountNotPositive = 1403, "amount must be greater than zero";
    AmountTooLarge = 1404, "amount does not fit the ledger's range";
    DuplicateDeposit = 1405, "a deposit with this transaction id was already credited";
    UnknownAsset = 1406, "no asset with that id";
    UnknownWithdrawal = 1407, "no pending withdrawal with that id";
    InsufficientCustody = 1408, "the custody location does not hold enough spendable funds";
    HotWalletCapExceeded = 1409, "the move would put the hot wallet over its cap";
    InvalidLocation = 1410, "the asset cannot be held at that custody location";
    InvalidAddress = 1501, "the address must be 1 to 64 printable ASCII characters";
    AddressNotWhitelisted = 1502, "the address is not on the account's withdrawal whitelist for this asset";
    AddressCoolingDown = 1503, "the address was added recently and cannot be used until its cooldown ends";
    AddressAlreadyWhitelisted = 1504, "the address is already on the whitelist";
    WhitelistFull = 1505, "the account has reached its maximum number of withdrawal addresses for this asset";
    DailyLimitExceeded = 1506, "the withdrawal would exceed the account's daily limit for this asset";
    WithdrawalsHalted = 1507, "withdrawals of this asset are halted";
    DepositsHalted = 1508, "deposits of this asset are halted";
    WithdrawalNotNext = 1509, "withdrawals are paid in request order: an earlier one of this asset and pool is not yet broadcast";
    WithdrawalAlreadyBroadcast = 1510, "the withdrawal was already broadcast and can no longer be cancelled";
    WithdrawalNotBroadcast = 1511, "the withdrawal has not been broadcast yet";
    ApprovalsRequired = 1512, "moving coins from cold to hot needs M-of-N approvals: make a cold-to-hot request";
    UnknownColdMove = 1513, "no pending cold-to-hot request with that id";
    ApproverNotInSet = 1514, "the key is not one of this asset's approvers";
    DuplicateApproval = 1515, "this key has already approved the request";
    BadSignature = 1516, "the signature does not verify over the request's canonical bytes";
    NotApproved = 1517, "the request has fewer approvals than required";
    AlreadyApproved = 1518, "the request already has the approvals it needs";
    AddressInUse = 1519, "the deposit address is already assigned";
    TopUpExceedsLoss = 1520, "the customer pool has less recorded loss in this asset than the top-up";
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.code(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut codes: Vec<u16> = RejectReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(before, codes.len(), "two reject reasons share a code");
    }

    #[test]
    fn display_names_code_and_message() {
        let text = RejectReason::OffTick.to_string();
        assert_eq!(text, "OffTick (1107): price is not a whole number of ticks");
    }
}
