//! Exact parsing of non-negative decimal strings into scaled integers.
//!
//! Shared, as source, with `build.rs` (which compiles the spec table), so the table and the
//! command line read figures with one parser. Standard library only.

use std::fmt;

/// Why a decimal string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecimalError {
    /// The string was empty.
    Empty,
    /// The string started with `-`; figures are never negative.
    Negative,
    /// The string is not `DIGITS` or `DIGITS.DIGITS`.
    NotADecimal {
        /// The offending input.
        text: String,
    },
    /// More (non-zero) decimal places than the unit can hold exactly.
    TooManyDecimals {
        /// The offending input.
        text: String,
        /// The most decimal places the unit holds.
        max_decimals: u32,
    },
    /// The value is below the smallest the figure accepts (a die area of zero).
    TooSmall {
        /// The offending input.
        text: String,
        /// The smallest accepted value, as a decimal string.
        min: String,
    },
    /// The value is above the largest the unit accepts.
    TooLarge {
        /// The offending input.
        text: String,
        /// The largest accepted value, as a decimal string.
        max: String,
    },
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty value; expected a decimal number such as 1978.9"),
            Self::Negative => f.write_str("negative value; figures are never negative"),
            Self::NotADecimal { text } => write!(
                f,
                "{text:?} is not a plain decimal number (expected digits with an optional \
                 fractional part, such as 1978.9; no sign, exponent or separators)"
            ),
            Self::TooManyDecimals { text, max_decimals } => write!(
                f,
                "{text:?} has more than {max_decimals} decimal places, more than this figure \
                 holds exactly"
            ),
            Self::TooSmall { text, min } => {
                write!(f, "{text:?} is below the smallest accepted value {min}")
            }
            Self::TooLarge { text, max } => {
                write!(f, "{text:?} is above the largest accepted value {max}")
            }
        }
    }
}

impl std::error::Error for DecimalError {}

/// Parses `text` (`"4800"`, `"1978.9"`) into a count of `10^-scale` units, from `min` to `max`.
///
/// Trailing zeros after the point are accepted (`"5.920"` with scale 2 is 592); any other digit
/// beyond `scale` places is rejected, never rounded.
pub fn parse_scaled(text: &str, scale: u32, min: u64, max: u64) -> Result<u64, DecimalError> {
    if text.is_empty() {
        return Err(DecimalError::Empty);
    }
    if text.starts_with('-') {
        return Err(DecimalError::Negative);
    }
    let not_decimal = || DecimalError::NotADecimal {
        text: text.to_owned(),
    };
    let too_large = || DecimalError::TooLarge {
        text: text.to_owned(),
        max: format_scaled(max, scale),
    };
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (text, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(not_decimal());
    }
    let frac = frac.unwrap_or("").trim_end_matches('0');
    let frac_len = u32::try_from(frac.len()).map_err(|_| not_decimal())?;
    let Some(pad) = scale.checked_sub(frac_len) else {
        return Err(DecimalError::TooManyDecimals {
            text: text.to_owned(),
            max_decimals: scale,
        });
    };
    let unit = 10u64.checked_pow(scale).ok_or_else(too_large)?;
    let int_value = digits_value(int).ok_or_else(too_large)?;
    let frac_value = if frac.is_empty() {
        0
    } else {
        digits_value(frac)
            .and_then(|v| v.checked_mul(10u64.checked_pow(pad)?))
            .ok_or_else(too_large)?
    };
    let value = int_value
        .checked_mul(unit)
        .and_then(|v| v.checked_add(frac_value))
        .ok_or_else(too_large)?;
    if value > max {
        return Err(too_large());
    }
    if value < min {
        return Err(DecimalError::TooSmall {
            text: text.to_owned(),
            min: format_scaled(min, scale),
        });
    }
    Ok(value)
}

/// The value of an all-digit string, or `None` when it does not fit a `u64`.
fn digits_value(digits: &str) -> Option<u64> {
    digits.bytes().try_fold(0u64, |acc, b| {
        acc.checked_mul(10)?
            .checked_add(u64::from(b.checked_sub(b'0')?))
    })
}

/// `value` units of `10^-scale` as the shortest exact decimal: `15831.2`, `4800`, `0.641`.
pub fn format_scaled(value: u64, scale: u32) -> String {
    let digits = value.to_string();
    let scale = usize::try_from(scale).unwrap_or(usize::MAX);
    let (int, frac) = match digits.len().checked_sub(scale) {
        Some(0) => ("0".to_owned(), digits),
        Some(split) => {
            let (int, frac) = digits.split_at(split);
            (int.to_owned(), frac.to_owned())
        }
        None => {
            let zeros = "0".repeat(scale.saturating_sub(digits.len()));
            ("0".to_owned(), format!("{zeros}{digits}"))
        }
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    }
}
