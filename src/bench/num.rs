//! Numbers as the report prints them.

use std::fmt;

/// A number formatted like `f64` itself (precision, width, fill, `+`), but never as a negative
/// zero: `-0.0`, and a small negative number that rounds to zero (`-0.001` at two decimals),
/// print as `0.00`, not `-0.00`. A difference of two readings (CPU seconds before and after, a
/// delay measured on two clocks) is often such a number, and `-0.00` reads like a sign error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Num(pub f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.0.abs();
        let digits = match f.precision() {
            Some(p) => format!("{magnitude:.p$}"),
            None => format!("{magnitude}"),
        };
        // Zero as printed, whatever the sign: only zeros and the point (not `inf` or `NaN`).
        let zero = digits.bytes().all(|b| b == b'0' || b == b'.');
        let negative = self.0 < 0.0 && !zero;
        f.pad_integral(!negative, "", &digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_a_negative_zero() {
        for (v, want) in [
            (-0.0, "0.00"),
            (-0.001, "0.00"),
            (-0.004999, "0.00"),
            (0.0, "0.00"),
            (0.001, "0.00"),
            (-0.005001, "-0.01"),
            (-1.5, "-1.50"),
            (2.345, "2.35"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(format!("{:.2}", Num(v)), want, "{v}");
        }
        assert_eq!(format!("{:.0}", Num(-0.4)), "0");
        assert_eq!(format!("{:.0}", Num(-0.6)), "-1");
        assert_eq!(format!("{:.1}", Num(-0.04)), "0.0");
        assert_eq!(format!("{}", Num(-0.0)), "0");
        assert_eq!(format!("{}", Num(-0.25)), "-0.25");
    }

    #[test]
    fn width_and_flags_as_for_f64() {
        for v in [-1.25, 3.5, 0.0, 12.0] {
            assert_eq!(format!("{:>8.1}", Num(v)), format!("{v:>8.1}"));
            assert_eq!(format!("{:<8.2}|", Num(v)), format!("{v:<8.2}|"));
            assert_eq!(format!("{:+.1}", Num(v)), format!("{v:+.1}"));
            assert_eq!(format!("{:08.2}", Num(v)), format!("{v:08.2}"));
        }
        assert_eq!(format!("{:>6.2}", Num(-0.001)), "  0.00");
    }
}
