//! The messages whose JSON is not an object of their fields: upstream gives them custom
//! MarshalJSON methods (apimachinery time_proto.go, micro_time.go, duration.go, intstr.go,
//! quantity_proto.go, runtime/types_proto.go), reproduced here.

use serde_json::Value;

use crate::DecodeError;
use crate::schema::Form;
use crate::wire::{Reader, Value as Wire};

/// Unix seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z), which upstream renders as null.
const ZERO_TIME_SECONDS: i64 = -62_135_596_800;
const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Decodes a message of one of the custom forms from all its occurrences' payloads.
pub(crate) fn decode(form: Form, chunks: &[&[u8]]) -> Result<Value, DecodeError> {
    match form {
        Form::Time => time(chunks, false),
        Form::MicroTime => time(chunks, true),
        Form::Duration => Ok(Value::String(go_duration(varint_field(chunks, 1)?.unwrap_or(0) as i64))),
        Form::RawJson => match len_field(chunks, 1)? {
            Some(raw) if !raw.is_empty() => {
                serde_json::from_slice(raw).map_err(|e| DecodeError::malformed(format!("embedded JSON: {e}")))
            }
            _ => Ok(Value::Null),
        },
        Form::IntOrString => int_or_string(chunks),
        Form::Quantity => match len_field(chunks, 1)? {
            // Go clients always send the canonical string (Quantity.String()), which is also
            // what their JSON encoder writes, so it passes through.
            Some([]) => Err(DecodeError::malformed("empty quantity")),
            Some(s) => Ok(Value::String(String::from_utf8_lossy(s).into_owned())),
            None => Ok(Value::String("0".into())),
        },
        Form::StringList => {
            let mut items = Vec::new();
            for record in records(chunks) {
                if let (1, value) = record? {
                    items.push(Value::String(String::from_utf8_lossy(len(value)?).into_owned()));
                }
            }
            Ok(Value::Array(items))
        }
        Form::Struct | Form::SchemaOrArray | Form::SchemaOrBool | Form::SchemaOrStringArray => {
            Err(DecodeError::malformed("schema table: not a custom form"))
        }
    }
}

/// Time and MicroTime share the Timestamp message `{1: seconds, 2: nanos}`; Time's proto
/// decoder keeps only the seconds. An empty message is the zero time.
fn time(chunks: &[&[u8]], micro: bool) -> Result<Value, DecodeError> {
    if chunks.iter().all(|c| c.is_empty()) {
        return Ok(Value::Null);
    }
    let seconds = varint_field(chunks, 1)?.unwrap_or(0) as i64;
    let nanos = if micro {
        varint_field(chunks, 2)?.unwrap_or(0) as i32
    } else {
        0
    };
    // Go's time.Unix normalises nanoseconds outside [0, 1e9) into the seconds.
    let total = i128::from(seconds) * NANOS_PER_SECOND + i128::from(nanos);
    let seconds = i64::try_from(total.div_euclid(NANOS_PER_SECOND))
        .map_err(|_| DecodeError::malformed("timestamp out of range"))?;
    let nanos = total.rem_euclid(NANOS_PER_SECOND);
    if seconds == ZERO_TIME_SECONDS && nanos == 0 {
        return Ok(Value::Null);
    }
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    let sign = if year < 0 { "-" } else { "" };
    let mut out = format!(
        "{sign}{:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        year.unsigned_abs(),
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
    if micro {
        // Go's ".000000" layout truncates to microseconds.
        out.push_str(&format!(".{:06}", nanos / 1000));
    }
    out.push('Z');
    Ok(Value::String(out))
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `time.Duration.String()`: `1h0m0s`, `1m30s`, `1.5s`, `250ms`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (unit, digits) = match u {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let scale = 10u64.pow(digits);
        return format!("{sign}{}{}{unit}", u / scale, fraction(u % scale, digits));
    }
    let whole = u / 1_000_000_000;
    let frac = fraction(u % 1_000_000_000, 9);
    let (hours, minutes, seconds) = (whole / 3600, whole / 60 % 60, whole % 60);
    match (hours, whole / 60) {
        (0, 0) => format!("{sign}{seconds}{frac}s"),
        (0, _) => format!("{sign}{minutes}m{seconds}{frac}s"),
        _ => format!("{sign}{hours}h{minutes}m{seconds}{frac}s"),
    }
}

/// `.ddd` of `value / 10^digits` without trailing zeros, or nothing when it is zero.
fn fraction(value: u64, digits: u32) -> String {
    if value == 0 {
        return String::new();
    }
    let padded = format!("{value:0width$}", width = digits as usize);
    format!(".{}", padded.trim_end_matches('0'))
}

/// IntOrString `{1: type, 2: intVal, 3: strVal}`: type 0 is a number, 1 a string.
fn int_or_string(chunks: &[&[u8]]) -> Result<Value, DecodeError> {
    match varint_field(chunks, 1)?.unwrap_or(0) {
        0 => Ok(Value::from(varint_field(chunks, 2)?.unwrap_or(0) as i32)),
        1 => {
            let s = len_field(chunks, 3)?.unwrap_or_default();
            Ok(Value::String(String::from_utf8_lossy(s).into_owned()))
        }
        other => Err(DecodeError::malformed(format!("IntOrString of type {other}"))),
    }
}

fn records<'a>(chunks: &[&'a [u8]]) -> impl Iterator<Item = Result<(u32, Wire<'a>), DecodeError>> {
    chunks.iter().flat_map(|chunk| Reader::new(chunk))
}

/// The last varint at `tag`, as protobuf's last-one-wins rule has it.
fn varint_field(chunks: &[&[u8]], tag: u32) -> Result<Option<u64>, DecodeError> {
    let mut found = None;
    for record in records(chunks) {
        match record? {
            (t, Wire::Varint(v)) if t == tag => found = Some(v),
            (t, other) if t == tag => return Err(unexpected(tag, other)),
            _ => {}
        }
    }
    Ok(found)
}

/// The last length-delimited payload at `tag`.
fn len_field<'a>(chunks: &[&'a [u8]], tag: u32) -> Result<Option<&'a [u8]>, DecodeError> {
    let mut found = None;
    for record in records(chunks) {
        match record? {
            (t, value) if t == tag => found = Some(len(value)?),
            _ => {}
        }
    }
    Ok(found)
}

fn len<'a>(value: Wire<'a>) -> Result<&'a [u8], DecodeError> {
    match value {
        Wire::Len(bytes) => Ok(bytes),
        other => Err(unexpected(0, other)),
    }
}

fn unexpected(tag: u32, value: Wire) -> DecodeError {
    DecodeError::malformed(format!("field {tag}: unexpected {} value", value.wire_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (250_000_000, "250ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-3_723_000_000_000, "-1h2m3s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }

    fn timestamp(seconds: i64, nanos: i32) -> Vec<u8> {
        let mut out = vec![0x08];
        push_varint(&mut out, seconds as u64);
        out.push(0x10);
        push_varint(&mut out, nanos as i64 as u64);
        out
    }

    fn push_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[test]
    fn times_render_rfc3339() {
        let t = timestamp(1_704_067_200, 123_456_789);
        assert_eq!(decode(Form::Time, &[&t]), Ok(Value::from("2024-01-01T00:00:00Z")));
        assert_eq!(
            decode(Form::MicroTime, &[&t]),
            Ok(Value::from("2024-01-01T00:00:00.123456Z"))
        );
        assert_eq!(
            decode(Form::Time, &[&timestamp(951_782_400, 0)]),
            Ok(Value::from("2000-02-29T00:00:00Z"))
        );
        assert_eq!(
            decode(Form::Time, &[&timestamp(-1, 0)]),
            Ok(Value::from("1969-12-31T23:59:59Z"))
        );
    }

    #[test]
    fn zero_times_are_null() {
        assert_eq!(decode(Form::Time, &[]), Ok(Value::Null));
        assert_eq!(decode(Form::Time, &[&[]]), Ok(Value::Null));
        assert_eq!(
            decode(Form::MicroTime, &[&timestamp(ZERO_TIME_SECONDS, 0)]),
            Ok(Value::Null)
        );
    }

    #[test]
    fn int_or_string_picks_by_type() {
        assert_eq!(
            decode(Form::IntOrString, &[&[0x08, 0x00, 0x10, 0x50]]),
            Ok(Value::from(80))
        );
        assert_eq!(
            decode(Form::IntOrString, &[&[0x08, 0x01, 0x1a, 0x03, b'2', b'5', b'%']]),
            Ok(Value::from("25%"))
        );
        assert!(decode(Form::IntOrString, &[&[0x08, 0x02]]).is_err());
    }

    #[test]
    fn raw_json_and_quantity() {
        assert_eq!(
            decode(Form::RawJson, &[&[0x0a, 0x02, b'{', b'}']]),
            Ok(serde_json::json!({}))
        );
        assert!(decode(Form::RawJson, &[&[0x0a, 0x01, b'{']]).is_err());
        assert_eq!(
            decode(Form::Quantity, &[&[0x0a, 0x02, b'2', b'G']]),
            Ok(Value::from("2G"))
        );
        assert_eq!(decode(Form::Quantity, &[]), Ok(Value::from("0")));
    }
}
