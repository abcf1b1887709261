//! Exact amount arithmetic and every rounding rule.
//!
//! * A trade's quote amount (its notional) is `price_ticks × qty_lots × quote_per_tick_lot`,
//!   **rounded down** to the quote asset's smallest unit. The buyer pays and the seller receives
//!   that same rounded amount, so nothing is created or lost.
//! * A fee is `notional × rate_ppm / 10^6`, **rounded down**: a fee is never more than its rate.
//! * A buy order's reservation is its notional at its limit price **rounded up**, plus the fee
//!   at the higher of the maker and taker rates on that, **rounded up**: the reservation always
//!   covers what any fill of the order can cost.
//!
//! Products are computed in i128; a result that does not fit in i64 is an error, never a wrap.

use rust_decimal::Decimal;

use crate::AmountUnits;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmountError {
    /// The result does not fit in an i64 amount.
    Overflow,
    /// A configured step is not a whole number of the asset's smallest unit.
    NotWhole,
}

/// A positive rational `num / den`, reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ratio {
    pub num: i128,
    pub den: i128,
}

impl Ratio {
    /// The exact value of `value × 10^decimals` as a ratio, or `Overflow` past i128. A decimal's
    /// mantissa reaches 7.9 × 10^28, so with 10 or more decimals (ETH has 18) a large amount from
    /// a client overflowed: a panic in debug builds, a wrapped, wrong amount in release (found by
    /// kinko-fuzz, through an asset configured with 40 decimals).
    pub fn from_decimal(value: Decimal, decimals: u8) -> Result<Ratio, AmountError> {
        assert!(
            value > Decimal::ZERO,
            "ratio of a non-positive decimal: {value}"
        );
        let scale = value.scale();
        let den: i128 = 10i128.pow(scale);
        let num = 10i128
            .checked_pow(u32::from(decimals))
            .and_then(|power| value.mantissa().checked_mul(power))
            .ok_or(AmountError::Overflow)?;
        Ok(Ratio::reduced(num, den))
    }

    pub fn times(self, other: Ratio) -> Result<Ratio, AmountError> {
        let num = self.num.checked_mul(other.num);
        let den = self.den.checked_mul(other.den);
        match (num, den) {
            (Some(num), Some(den)) => Ok(Ratio::reduced(num, den)),
            _ => Err(AmountError::Overflow),
        }
    }

    fn reduced(num: i128, den: i128) -> Ratio {
        let g = gcd(num, den);
        Ratio {
            num: num / g,
            den: den / g,
        }
    }

    /// The value as a whole number, or `NotWhole`.
    pub fn whole(self) -> Result<AmountUnits, AmountError> {
        if self.num % self.den != 0 {
            return Err(AmountError::NotWhole);
        }
        fit(self.num / self.den)
    }
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs().max(1)
}

fn fit(value: i128) -> Result<AmountUnits, AmountError> {
    AmountUnits::try_from(value).map_err(|_| AmountError::Overflow)
}

/// `price × qty × ratio`, rounded down: what a trade moves from buyer to seller.
pub fn notional_floor(
    price_ticks: i64,
    qty_lots: i64,
    ratio: Ratio,
) -> Result<AmountUnits, AmountError> {
    debug_assert!(price_ticks > 0 && qty_lots > 0);
    let product = i128::from(price_ticks) * i128::from(qty_lots);
    let num = product
        .checked_mul(ratio.num)
        .ok_or(AmountError::Overflow)?;
    fit(num.div_euclid(ratio.den))
}

/// `price × qty × ratio`, rounded up: what a buy order reserves for its notional.
pub fn notional_ceil(
    price_ticks: i64,
    qty_lots: i64,
    ratio: Ratio,
) -> Result<AmountUnits, AmountError> {
    debug_assert!(price_ticks > 0 && qty_lots >= 0);
    let product = i128::from(price_ticks) * i128::from(qty_lots);
    let num = product
        .checked_mul(ratio.num)
        .ok_or(AmountError::Overflow)?;
    fit(ceil_div(num, ratio.den))
}

/// The fee charged on `notional` at `rate_ppm`, rounded down.
pub fn fee_floor(notional: AmountUnits, rate_ppm: u32) -> AmountUnits {
    debug_assert!(notional >= 0);
    (i128::from(notional) * i128::from(rate_ppm) / 1_000_000) as AmountUnits
}

/// The fee reserved on `notional` at `rate_ppm`, rounded up.
pub fn fee_ceil(notional: AmountUnits, rate_ppm: u32) -> AmountUnits {
    debug_assert!(notional >= 0);
    ceil_div(i128::from(notional) * i128::from(rate_ppm), 1_000_000) as AmountUnits
}

/// What a buy of `qty_lots` limited at `price_ticks` reserves: notional and fee, both rounded up.
pub fn buy_reservation(
    price_ticks: i64,
    qty_lots: i64,
    ratio: Ratio,
    fee_ppm_max: u32,
) -> Result<AmountUnits, AmountError> {
    let notional = notional_ceil(price_ticks, qty_lots, ratio)?;
    notional
        .checked_add(fee_ceil(notional, fee_ppm_max))
        .ok_or(AmountError::Overflow)
}

fn ceil_div(num: i128, den: i128) -> i128 {
    debug_assert!(den > 0);
    -((-num).div_euclid(den))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn ratio_is_exact_and_reduced() {
        // BTC/JPY: tick 1 JPY × lot 0.0001 BTC = 0.0001 JPY per tick-lot, JPY has 0 decimals.
        let tick = Ratio::from_decimal(d("1"), 0).unwrap();
        let lot = Ratio::from_decimal(d("0.0001"), 0).unwrap();
        assert_eq!(
            tick.times(lot),
            Ok(Ratio {
                num: 1,
                den: 10_000
            })
        );
        // The lot in satoshi: 0.0001 BTC × 10^8 = 10_000 sat.
        assert_eq!(
            Ratio::from_decimal(d("0.0001"), 8).and_then(Ratio::whole),
            Ok(10_000)
        );
        assert_eq!(
            Ratio::from_decimal(d("0.5"), 0).and_then(Ratio::whole),
            Err(AmountError::NotWhole)
        );
    }

    #[test]
    fn a_ratio_past_i128_is_an_overflow_not_a_panic() {
        // 40 decimals: 10^40 alone is past i128 (kinko-fuzz, a re-sealed genesis record).
        assert_eq!(Ratio::from_decimal(d("1"), 40), Err(AmountError::Overflow));
        // Decimal's largest mantissa with 18 decimals (ETH's): a client's amount, past i128.
        let largest = d("79228162514264337593543950335");
        assert_eq!(Ratio::from_decimal(largest, 18), Err(AmountError::Overflow));
        assert!(Ratio::from_decimal(largest, 9).is_ok());
        let huge = Ratio::from_decimal(largest, 9).unwrap();
        assert_eq!(huge.times(huge), Err(AmountError::Overflow));
    }

    #[test]
    fn notional_rounds_down_and_reservation_rounds_up() {
        let ratio = Ratio {
            num: 1,
            den: 10_000,
        };
        // 15_000_001 JPY × 0.0001 BTC = 1_500.0001 JPY.
        assert_eq!(notional_floor(15_000_001, 1, ratio), Ok(1_500));
        assert_eq!(notional_ceil(15_000_001, 1, ratio), Ok(1_501));
        assert_eq!(notional_floor(15_000_000, 1, ratio), Ok(1_500));
        assert_eq!(notional_ceil(15_000_000, 1, ratio), Ok(1_500));
    }

    #[test]
    fn fees_round_down_when_charged_and_up_when_reserved() {
        assert_eq!(fee_floor(1_500, 2_000), 3);
        assert_eq!(fee_floor(1_499, 2_000), 2); // 2.998
        assert_eq!(fee_ceil(1_499, 2_000), 3);
        assert_eq!(fee_floor(0, 2_000), 0);
        assert_eq!(
            buy_reservation(
                15_000_001,
                1,
                Ratio {
                    num: 1,
                    den: 10_000
                },
                2_000
            ),
            Ok(1_501 + 4)
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let big = Ratio {
            num: 1_000_000_000_000,
            den: 1,
        };
        assert_eq!(
            notional_floor(1 << 40, 1 << 40, big),
            Err(AmountError::Overflow)
        );
        assert_eq!(
            notional_ceil(i64::MAX, 2, Ratio { num: 1, den: 1 }),
            Err(AmountError::Overflow)
        );
    }

    /// The reservation for a whole order always covers a fill of part of it plus the reservation
    /// for the rest: the rounding rules never leave a buyer's held funds short.
    #[test]
    fn reservation_covers_any_partial_fill_at_any_better_price() {
        let ratios = [
            Ratio {
                num: 1,
                den: 10_000,
            },
            Ratio { num: 3, den: 7 },
            Ratio { num: 1, den: 1 },
        ];
        for ratio in ratios {
            for limit in [1, 7, 99, 1_001, 15_000_001] {
                for qty in 1..30 {
                    let whole = buy_reservation(limit, qty, ratio, 2_500).unwrap();
                    for fill in 1..=qty {
                        for price in [limit, (limit * 2 / 3).max(1)] {
                            let notional = notional_floor(price, fill, ratio).unwrap();
                            let cost = notional + fee_floor(notional, 2_500);
                            let rest = buy_reservation(limit, qty - fill, ratio, 2_500).unwrap();
                            assert!(
                                whole >= cost + rest,
                                "{ratio:?} {limit} {qty} {fill} {price}"
                            );
                        }
                    }
                }
            }
        }
    }
}
