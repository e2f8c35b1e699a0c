//! Lenient decoding helpers: upstream enums with an unknown fallback, ids that may be strings,
//! timestamps in any of the shapes BlueKing uses.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A string enum of an upstream system: known values get variants, anything else decodes to
/// `Unknown(String)`, so a new upstream state never breaks decoding.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this client does not know; kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Unknown(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $text => Self::$variant, )+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::from(s.as_str()))
            }
        }
    };
}

/// An integer enum of an upstream system, with an `Other(i64)` fallback.
macro_rules! int_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $num:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this client does not know; kept verbatim.
            Other(i64),
        }

        impl $name {
            /// The wire value.
            pub fn code(&self) -> i64 {
                match self {
                    $( Self::$variant => $num, )+
                    Self::Other(n) => *n,
                }
            }
        }

        impl From<i64> for $name {
            fn from(n: i64) -> Self {
                match n {
                    $( $num => Self::$variant, )+
                    other => Self::Other(other),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i64(self.code())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self::from($crate::bk::de::int_from_value(d)?))
            }
        }
    };
}

pub(crate) use {int_enum, string_enum};

/// An integer that may arrive as a JSON number or a numeric string.
pub(crate) fn int_from_value<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    value_to_i64(&v)
        .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {v}")))
}

/// Like [`int_from_value`] for optional fields; `null` and unparsable values become `None`.
pub(crate) fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref().and_then(value_to_i64))
}

/// A list of ids that may be absent, null, or hold numbers as strings: never fails; `None`
/// unless every element reads as an id.
pub(crate) fn opt_int_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(Value::as_array)
        .and_then(|items| items.iter().map(value_to_i64).collect()))
}

/// A count that may be absent, null, a string or a float: never fails, 0 when unusable.
pub(crate) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(value_to_i64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0))
}

/// A list that may be absent or `null` (both read as empty).
pub(crate) fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Text that may arrive as a string, a number or null.
pub(crate) fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

pub(crate) fn value_to_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A timestamp in whatever shape the system uses; never fails (unparsable → `None`).
pub(crate) fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref().and_then(parse_time))
}

/// BlueKing's SaaS default `TIME_ZONE` is Asia/Shanghai; timestamps without an offset
/// (NodeMan, JOB v2) are read in it unless the client is configured otherwise.
pub(crate) const BK_DEFAULT_OFFSET_SECS: i32 = 8 * 3600;

thread_local! {
    /// The offset for naive timestamps while a client decodes an answer. Serde offers no
    /// decoding context, and decoding is synchronous, so a scoped thread-local carries the
    /// client's setting into [`time`] without threading it through every type.
    static NAIVE_OFFSET_SECS: std::cell::Cell<i32> = const { std::cell::Cell::new(BK_DEFAULT_OFFSET_SECS) };
}

/// Runs `f` (a synchronous decode) with naive timestamps read at `offset_secs` east of UTC.
pub(crate) fn with_naive_offset<R>(offset_secs: i32, f: impl FnOnce() -> R) -> R {
    let prev = NAIVE_OFFSET_SECS.with(|c| c.replace(offset_secs));
    let out = f();
    NAIVE_OFFSET_SECS.with(|c| c.set(prev));
    out
}

/// Parses epoch seconds or milliseconds (JOB uses ms), RFC 3339, and
/// `YYYY-MM-DD HH:MM:SS[.f][ +zzzz]`.
pub(crate) fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(_) => {
            let n = value_to_i64(v)?;
            if n <= 0 {
                return None;
            }
            // Anything past year ~5138 in seconds is really milliseconds.
            if n > 100_000_000_000 {
                Utc.timestamp_millis_opt(n).single()
            } else {
                Utc.timestamp_opt(n, 0).single()
            }
        }
        Value::String(s) => parse_time_str(s.trim()),
        _ => None,
    }
}

fn parse_time_str(s: &str) -> Option<DateTime<Utc>> {
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f %z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            let tz = FixedOffset::east_opt(NAIVE_OFFSET_SECS.with(|c| c.get()))?;
            return tz
                .from_local_datetime(&naive)
                .single()
                .map(|t| t.with_timezone(&Utc));
        }
    }
    s.parse::<i64>()
        .ok()
        .and_then(|n| parse_time(&Value::from(n)))
}

/// Splits a list answer into its items and total: a bare array, or an object with
/// `list`/`results`/`data`/`items` and `count`/`total`.
pub(crate) fn list_items(raw: Value) -> (Vec<Value>, Option<u32>) {
    match raw {
        Value::Array(items) => (items, None),
        Value::Object(mut m) => {
            let count = ["count", "total"]
                .iter()
                .find_map(|k| m.get(*k).and_then(value_to_i64))
                .and_then(|n| u32::try_from(n).ok());
            let items = ["list", "results", "data", "items"]
                .iter()
                .find_map(|k| match m.remove(*k) {
                    Some(Value::Array(a)) => Some(a),
                    _ => None,
                })
                .unwrap_or_default();
            (items, count)
        }
        _ => (Vec::new(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    string_enum! {
        /// test
        enum Color { Red = "red", Blue = "blue" }
    }
    int_enum! {
        /// test
        enum Num { One = 1, Two = 2 }
    }

    #[test]
    fn enums_fall_back() -> Result<(), serde_json::Error> {
        let c: Vec<Color> = serde_json::from_value(json!(["red", "GREEN"]))?;
        assert_eq!(c, vec![Color::Red, Color::Unknown("GREEN".into())]);
        assert_eq!(serde_json::to_value(&c)?, json!(["red", "GREEN"]));
        let n: Vec<Num> = serde_json::from_value(json!([1, "2", 99]))?;
        assert_eq!(n, vec![Num::One, Num::Two, Num::Other(99)]);
        let _ = Color::Blue;
        Ok(())
    }

    #[test]
    fn times() {
        let want = Utc.with_ymd_and_hms(2023, 10, 16, 9, 24, 7).single();
        assert_eq!(parse_time(&json!("2023-10-16T17:24:07+08:00")), want);
        assert_eq!(parse_time(&json!("2023-10-16 17:24:07 +0800")), want);
        assert_eq!(parse_time(&json!("2023-10-16 17:24:07")), want);
        assert_eq!(parse_time(&json!(1697448247000_i64)), want);
        assert_eq!(parse_time(&json!(1697448247_i64)), want);
        assert_eq!(parse_time(&json!("1697448247000")), want);
        assert_eq!(parse_time(&json!("")), None);
        assert_eq!(parse_time(&json!(0)), None);
        assert_eq!(parse_time(&json!("garbage")), None);
        let utc = Utc.with_ymd_and_hms(2023, 10, 16, 17, 24, 7).single();
        assert_eq!(
            with_naive_offset(0, || parse_time(&json!("2023-10-16 17:24:07"))),
            utc
        );
        assert_eq!(parse_time(&json!("2023-10-16 17:24:07")), want, "restored");
    }
}
