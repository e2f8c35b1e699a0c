//! Lenient JSON body parsing.
//!
//! The seed API documents carry request examples that are not strict JSON: the GSEKit example
//! has trailing commas before `}`. Upstream Django/DRF would reject such a body, but the task
//! for the simulator is that every documented example is accepted verbatim, so before handing
//! the body to `serde_json` we drop a comma that is followed (after whitespace) by `}` or `]`,
//! taking care not to touch commas inside string literals. Nothing else is relaxed: a body that
//! is still not JSON after this is reported as a parse error by each system in its own way.

use serde_json::Value;

/// Removes trailing commas (a `,` followed only by whitespace and then `}` or `]`) outside
/// string literals.
pub(crate) fn strip_trailing_commas(input: &str) -> String {
    let bytes: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            i += 1;
            continue;
        }
        if c == ',' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_whitespace() {
                j += 1;
            }
            if j < bytes.len() && (bytes[j] == '}' || bytes[j] == ']') {
                // A trailing comma: skip it, keep the whitespace for readable error positions.
                i += 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Parses a request body: empty (or whitespace) is `Null`, otherwise JSON with trailing commas
/// tolerated.
pub(crate) fn parse_body(raw: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("body is not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(_) => serde_json::from_str(&strip_trailing_commas(text))
            .map_err(|e| format!("JSON parse error - {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn trailing_commas_are_dropped_outside_strings() {
        let v = parse_body(br#"{"a": [1, 2, ], "b": {"c": ",}", }, }"#).unwrap();
        assert_eq!(v["a"], serde_json::json!([1, 2]));
        assert_eq!(v["b"]["c"], ",}");
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        let v = parse_body(br#"{"a": "x\",]", }"#).unwrap();
        assert_eq!(v["a"], "x\",]");
    }

    #[test]
    fn empty_is_null_and_garbage_is_error() {
        assert_eq!(parse_body(b"  ").unwrap(), Value::Null);
        assert!(parse_body(b"{nope").is_err());
    }
}
