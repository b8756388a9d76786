//! serde's error messages in the words of someone who writes JSON, not Rust: `invalid type:
//! string "x", expected u16` becomes `must be a whole number from 0 to 65535, not the string
//! "x"`. serde's wording is stable (its `de::Error` defaults); a message in any other form (a
//! syntax error, a type's own `expecting` text, this crate's strict rules) is kept as it is.
//! This module owns only the translation: it knows no document.

/// `message` (without serde_json's position) in the operator's words.
pub(crate) fn message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!(
                "must be {}, not {}",
                expected_words(expected),
                found_words(found)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!(
                "must be {}, not {}",
                expected_words(expected),
                found_words(found)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ") {
        if let Some((len, expected)) = rest.split_once(", expected ") {
            return format!(
                "has {len} elements; it must be {}",
                expected_words(expected)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return match allowed(rest) {
            Some((field, allowed)) => format!(
                "unknown member {}; the members allowed here are: {allowed}",
                unquote(field)
            ),
            None => format!(
                "unknown member {}; no members are allowed here",
                unquote(rest.trim_end_matches(", there are no fields"))
            ),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return match allowed(rest) {
            Some((value, allowed)) => format!(
                "{} is not one of the values allowed here: {allowed}",
                unquote(value)
            ),
            None => format!(
                "{} is not allowed here",
                unquote(rest.trim_end_matches(", there are no variants"))
            ),
        };
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("the member {} is required but missing", unquote(field));
    }
    if let Some(field) = message.strip_prefix("duplicate field ") {
        return format!("the member {} is given twice", unquote(field));
    }
    message.to_string()
}

/// What serde says was expected, as a JSON writer says it.
fn expected_words(expected: &str) -> String {
    let words = match expected {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" => "a whole number from -128 to 127",
        "i16" => "a whole number from -32768 to 32767",
        "i32" => "a whole number from -2147483648 to 2147483647",
        "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "a borrowed string" | "string" | "a character" | "char" => {
            "a string (in quotes)"
        }
        "path string" => "a path (a string in quotes)",
        "a sequence" | "a tuple" => "a list [ … ]",
        "a map" => "an object {…}",
        "unit" => "null",
        "option" => "a value or null",
        other => {
            if other.starts_with("struct ")
                || other.starts_with("tuple struct ")
                || other.starts_with("internally tagged enum ")
                || other.starts_with("struct variant ")
            {
                "an object {…}"
            } else if other.starts_with("enum ") || other.starts_with("variant identifier") {
                "one of the names allowed here (a string in quotes)"
            } else if let Some(n) = other
                .strip_prefix("a tuple of size ")
                .or_else(|| other.strip_prefix("tuple of size "))
            {
                return format!("a list [ … ] of {n} values");
            } else {
                // A type's own `expecting` text is already in words.
                return other.to_string();
            }
        }
    };
    words.to_string()
}

/// What serde says it found (`string "x"`, `integer `3``), in words.
fn found_words(found: &str) -> String {
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the string {s}");
    }
    for prefix in ["integer ", "floating point "] {
        if let Some(n) = found.strip_prefix(prefix) {
            return format!("the number {}", n.trim_matches('`'));
        }
    }
    if let Some(b) = found.strip_prefix("boolean ") {
        return b.trim_matches('`').to_string();
    }
    match found {
        "map" => "an object {…}".to_string(),
        "sequence" => "a list [ … ]".to_string(),
        "unit value" | "null" => "null".to_string(),
        other => other.to_string(),
    }
}

/// `` `Name` `` as `"Name"`.
fn unquote(name: &str) -> String {
    let bare = name.trim().trim_matches('`');
    format!("\"{bare}\"")
}

/// serde's `` `x`, expected one of `a`, `b` `` (or `` expected `a` or `b` ``, or
/// `` expected `a` ``): the name given, and the allowed ones as `a, b`.
fn allowed(rest: &str) -> Option<(&str, String)> {
    let (given, list) = rest
        .split_once(", expected one of ")
        .or_else(|| rest.split_once(", expected "))?;
    let names: Vec<&str> = list
        .split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|n| n.trim().trim_matches('`'))
        .collect();
    Some((given, names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn serde_wording_becomes_the_operators() {
        for (serde, ours) in [
            (
                r#"invalid type: string "x", expected u16"#,
                r#"must be a whole number from 0 to 65535, not the string "x""#,
            ),
            (
                "invalid value: integer `70000`, expected u16",
                "must be a whole number from 0 to 65535, not the number 70000",
            ),
            (
                "invalid type: floating point `1.5`, expected i64",
                "must be a whole number, not the number 1.5",
            ),
            (
                "invalid type: sequence, expected struct Restart",
                "must be an object {…}, not a list [ … ]",
            ),
            (
                "invalid type: integer `3`, expected a boolean",
                "must be true or false, not the number 3",
            ),
            (
                "invalid type: map, expected enum Policy",
                "must be one of the names allowed here (a string in quotes), not an object {…}",
            ),
            (
                "unknown field `Pined`, expected one of `Pinned`, `Timeout`",
                r#"unknown member "Pined"; the members allowed here are: Pinned, Timeout"#,
            ),
            (
                "unknown variant `sometimes`, expected one of `always`, `never`",
                r#""sometimes" is not one of the values allowed here: always, never"#,
            ),
            (
                "unknown variant `x`, expected `always` or `never`",
                r#""x" is not one of the values allowed here: always, never"#,
            ),
            (
                "missing field `version`",
                r#"the member "version" is required but missing"#,
            ),
            ("EOF while parsing a value", "EOF while parsing a value"),
            (
                "expected an object, found an array",
                "expected an object, found an array",
            ),
        ] {
            assert_eq!(message(serde), ours, "{serde}");
        }
    }
}
