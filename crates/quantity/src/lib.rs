//! Kubernetes resource quantities (`100m`, `1.5`, `512Mi`, `1e3`) as integers: millicores for
//! cpu, whole units (bytes, counts) for everything else, both rounded up as upstream's
//! `MilliValue` and `Value` do. Shared by the scheduler and the kubelet.

/// Parses a quantity and returns its value multiplied by `scale` (1 or 1000), rounded up;
/// `None` when the text is not a quantity.
pub fn parse_scaled(text: &str, scale: i64) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let (negative, digits) = match number.as_bytes()[0] {
        b'-' => (true, &number[1..]),
        b'+' => (false, &number[1..]),
        _ => (false, number),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The value is mantissa * base^exponent * 10^decimal_exponent, with the mantissa the
    // digits without the point; integer arithmetic keeps `0.1` exact.
    let (base, exponent, decimal) = match suffix {
        "" => (10i128, 0u32, 0i32),
        "m" => (10, 0, -3),
        "k" => (10, 0, 3),
        "M" => (10, 0, 6),
        "G" => (10, 0, 9),
        "T" => (10, 0, 12),
        "P" => (10, 0, 15),
        "E" => (10, 0, 18),
        "Ki" => (2, 10, 0),
        "Mi" => (2, 20, 0),
        "Gi" => (2, 30, 0),
        "Ti" => (2, 40, 0),
        "Pi" => (2, 50, 0),
        "Ei" => (2, 60, 0),
        s if s.starts_with(['e', 'E']) => (10, 0, s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let mut numerator = mantissa.checked_mul(i128::from(scale))?;
    numerator = numerator.checked_mul(base.checked_pow(exponent)?)?;
    let mut denominator: i128 = 1;
    let decimal = decimal - fraction.len() as i32;
    if decimal >= 0 {
        numerator = numerator.checked_mul(10i128.checked_pow(decimal as u32)?)?;
    } else {
        denominator = 10i128.checked_pow(decimal.unsigned_abs())?;
    }
    let value = (numerator + denominator - 1) / denominator;
    let value = if negative { -value } else { value };
    i64::try_from(value).ok()
}

/// A quantity in whole units (bytes, counts), rounded up; 0 when unparsable.
pub fn value(text: &str) -> i64 {
    parse_scaled(text, 1).unwrap_or(0)
}

/// A quantity in thousandths (millicores for cpu), rounded up; 0 when unparsable.
pub fn milli_value(text: &str) -> i64 {
    parse_scaled(text, 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(milli_value("100m"), 100);
        assert_eq!(milli_value("1"), 1000);
        assert_eq!(milli_value("1.5"), 1500);
        assert_eq!(milli_value("0.1"), 100);
        assert_eq!(milli_value("2k"), 2_000_000);
        // Upstream rounds sub-millicore values up.
        assert_eq!(milli_value("0.0001"), 1);
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(value("512Mi"), 512 << 20);
        assert_eq!(value("16Gi"), 16 << 30);
        assert_eq!(value("1G"), 1_000_000_000);
        assert_eq!(value("1e3"), 1000);
        assert_eq!(value("1.5Ki"), 1536);
        assert_eq!(value("110"), 110);
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(parse_scaled("abc", 1), None);
        assert_eq!(parse_scaled("1Xi", 1), None);
        assert_eq!(parse_scaled("", 1), None);
        assert_eq!(parse_scaled("-1", 1), Some(-1));
    }
}
