//! Exact amounts and prices at the edge: integer units in, exact decimal strings out, every
//! division's rounding named. No floating point anywhere (DESIGN.md, "Money is integers").

use rust_decimal::Decimal;

use crate::error::ReplayError;

/// `units × 10^-decimals` as an exact decimal string with all `decimals` digits
/// (`5000000000`, 6 → `5000.000000`). Never rounds, never overflows.
pub fn format_units(units: i128, decimals: u8) -> String {
    let digits = units.unsigned_abs().to_string();
    let sign = if units < 0 { "-" } else { "" };
    let decimals = decimals as usize;
    if decimals == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = decimals + 1);
    let (whole, fraction) = padded.split_at(padded.len() - decimals);
    format!("{sign}{whole}.{fraction}")
}

/// `10^exponent` in i128, or an overflow error.
pub fn pow10(exponent: u32) -> Result<i128, ReplayError> {
    10i128
        .checked_pow(exponent)
        .ok_or(ReplayError::Overflow("a power of ten"))
}

pub fn mul(a: i128, b: i128, what: &'static str) -> Result<i128, ReplayError> {
    a.checked_mul(b).ok_or(ReplayError::Overflow(what))
}

/// `⌈num / den⌉` for `num ≥ 0`, `den > 0`.
pub fn div_ceil(num: i128, den: i128) -> i128 {
    assert!(den > 0, "division by {den}");
    assert!(num >= 0, "ceiling of a negative quotient {num}/{den}");
    num / den + i128::from(num % den != 0)
}

/// `num / den` rounded to the nearest integer, halves away from zero, for `num ≥ 0`, `den > 0`.
pub fn div_round_half_up(num: i128, den: i128) -> i128 {
    assert!(den > 0, "division by {den}");
    assert!(num >= 0, "rounding a negative quotient {num}/{den}");
    let quotient = num / den;
    let remainder = num % den;
    quotient + i128::from(remainder * 2 >= den)
}

/// A decimal as `(mantissa, scale)`: `value = mantissa / 10^scale`.
pub fn parts(value: Decimal) -> (i128, u32) {
    (value.mantissa(), value.scale())
}

/// `units × 10^-decimals` as a `Decimal`, for arithmetic in reports.
pub fn to_decimal(units: i128, decimals: u8) -> Result<Decimal, ReplayError> {
    Decimal::try_from_i128_with_scale(units, u32::from(decimals))
        .map_err(|_| ReplayError::Overflow("an amount"))
}

/// `part / whole` in basis points, rounded up (a share against a cap is never understated);
/// `None` when `whole` is zero.
pub fn share_bps_ceil(part: i128, whole: i128) -> Option<i128> {
    (whole > 0).then(|| div_ceil(part.max(0) * 10_000, whole))
}

/// Basis points as a percentage with two decimals (`500` → `5.00%`).
pub fn format_bps(bps: i128) -> String {
    format!("{}%", format_units(bps, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_print_exactly() {
        assert_eq!(format_units(5_000_000_000, 6), "5000.000000");
        assert_eq!(format_units(1, 8), "0.00000001");
        assert_eq!(format_units(-1_500, 3), "-1.500");
        assert_eq!(format_units(442_745, 0), "442745");
        assert_eq!(format_units(0, 2), "0.00");
    }

    #[test]
    fn roundings_are_the_named_ones() {
        assert_eq!(div_ceil(1_328_235, 10), 132_824);
        assert_eq!(div_ceil(1_328_230, 10), 132_823);
        assert_eq!(div_round_half_up(354_197, 4), 88_549);
        assert_eq!(div_round_half_up(10, 4), 3);
        assert_eq!(div_round_half_up(9, 4), 2);
        assert_eq!(share_bps_ceil(625, 12_500), Some(500));
        assert_eq!(share_bps_ceil(1, 3), Some(3_334));
        assert_eq!(share_bps_ceil(1, 0), None);
    }
}
