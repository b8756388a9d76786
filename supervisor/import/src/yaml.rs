//! YAML CloudFormation templates read into the JSON form of the same template.
//!
//! CloudFormation's YAML has short-form tags for its intrinsic functions (`!Ref X`,
//! `!GetAtt A.B`, `!Sub '…'`, `!Join [d, [...]]`); a template means exactly what its JSON form
//! with `{"Ref": "X"}`, `{"Fn::GetAtt": ["A", "B"]}`, `{"Fn::Sub": …}` means. This module owns
//! that translation, built from the parser's events (a tree-building YAML crate drops the
//! tags), so the evaluator in `cloudformation` sees one form only. It must never evaluate
//! anything.
//!
//! Bounds, since the file comes from outside: an alias repeats its anchored node, so the
//! number of values built is capped (a "billion laughs" file stops with an error instead of
//! filling memory), and so is the nesting depth.

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

/// More values than any template holds (CloudFormation's own limit is 1 MB of template).
const MAX_VALUES: usize = 1_000_000;
/// Deeper than any template nests.
const MAX_DEPTH: usize = 200;

/// Why a YAML text could not be read, with where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl YamlError {
    fn at(span: &Span, message: impl Into<String>) -> Self {
        YamlError {
            line: span.start.line(),
            column: span.start.col() + 1,
            message: message.into(),
        }
    }
}

/// A collection being built.
enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        tag: Option<Tag>,
    },
    Map {
        map: Map<String, Value>,
        key: Option<String>,
        anchor: usize,
        tag: Option<Tag>,
    },
}

struct Builder {
    stack: Vec<Frame>,
    /// Anchored values by the parser's anchor id, with how many values each holds.
    anchors: Vec<Option<(Value, usize)>>,
    root: Option<Value>,
    documents: usize,
    values: usize,
}

/// Reads one YAML document into JSON, with CloudFormation's short-form tags turned into their
/// long form.
pub(crate) fn parse(text: &str) -> Result<Value, YamlError> {
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: Vec::new(),
        root: None,
        documents: 0,
        values: 0,
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        builder.event(event, &span)?;
    }
    builder.root.ok_or_else(|| YamlError {
        line: 1,
        column: 1,
        message: "the file holds no YAML document".into(),
    })
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), YamlError> {
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(YamlError::at(
                        span,
                        "a second YAML document (`---`): a template is one document",
                    ));
                }
                Ok(())
            }
            Event::Alias(id) => {
                let Some((value, size)) = self.anchors.get(id).cloned().flatten() else {
                    return Err(YamlError::at(span, "an alias to an unknown anchor"));
                };
                self.count(span, size)?;
                self.complete(value, span, true)
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = scalar(&text, style, tag.as_deref(), span)?;
                self.count(span, 1)?;
                if anchor > 0 {
                    self.remember(anchor, &value, 1);
                }
                self.complete(value, span, true)
            }
            Event::SequenceStart(anchor, tag) => {
                self.open(span)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                    tag: tag.map(|t| t.into_owned()),
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                self.open(span)?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    key: None,
                    anchor,
                    tag: tag.map(|t| t.into_owned()),
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, tag) = match self.stack.pop() {
                    Some(Frame::Seq { items, anchor, tag }) => (Value::Array(items), anchor, tag),
                    Some(Frame::Map {
                        map,
                        key: None,
                        anchor,
                        tag,
                    }) => (Value::Object(map), anchor, tag),
                    Some(Frame::Map { key: Some(_), .. }) | None => {
                        return Err(YamlError::at(span, "a collection ends where it cannot"))
                    }
                };
                let value = match tag {
                    Some(tag) => tagged(&tag, value, span)?,
                    None => value,
                };
                self.count(span, 1)?;
                if anchor > 0 {
                    let size = count_values(&value);
                    self.remember(anchor, &value, size);
                }
                self.complete(value, span, false)
            }
        }
    }

    /// A collection starts: it may not be a mapping key, and may not nest too deep.
    fn open(&mut self, span: &Span) -> Result<(), YamlError> {
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            return Err(YamlError::at(
                span,
                "a mapping key must be a plain value, not a list or a mapping",
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError::at(
                span,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn count(&mut self, span: &Span, n: usize) -> Result<(), YamlError> {
        self.values = self.values.saturating_add(n);
        if self.values > MAX_VALUES {
            return Err(YamlError::at(
                span,
                format!("more than {MAX_VALUES} values (aliases repeating anchors count each time): not a template"),
            ));
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, value: &Value, size: usize) {
        if self.anchors.len() <= anchor {
            self.anchors.resize(anchor + 1, None);
        }
        self.anchors[anchor] = Some((value.clone(), size));
    }

    /// A value is complete: it becomes a key, a member's value, an item or the document.
    fn complete(&mut self, value: Value, span: &Span, scalar: bool) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(value);
                Ok(())
            }
            Some(Frame::Map { map, key, .. }) => match key.take() {
                Some(k) => {
                    if map.contains_key(&k) {
                        return Err(YamlError::at(span, format!("the key `{k}` is given twice")));
                    }
                    map.insert(k, value);
                    Ok(())
                }
                None => {
                    let k = match value {
                        Value::String(s) if scalar => s,
                        Value::Number(n) if scalar => n.to_string(),
                        Value::Bool(b) if scalar => b.to_string(),
                        _ => {
                            return Err(YamlError::at(
                                span,
                                "a mapping key must be a plain value, not a list, a mapping or a tagged function",
                            ))
                        }
                    };
                    *key = Some(k);
                    Ok(())
                }
            },
        }
    }
}

fn count_values(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(count_values).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(count_values).sum::<usize>(),
        _ => 1,
    }
}

/// A scalar: quoted ones are strings; plain ones follow YAML 1.2's core schema (null,
/// booleans, numbers), as CloudFormation reads them; a tag decides otherwise.
fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    span: &Span,
) -> Result<Value, YamlError> {
    let string = || Value::String(text.to_string());
    match tag {
        Some(tag) if tag.is_yaml_core_schema() => Ok(match tag.suffix.as_str() {
            "str" => string(),
            "null" => Value::Null,
            "bool" | "int" | "float" => plain(text),
            // `!!binary` and the rest: their text, as CloudFormation would pass it on.
            _ => string(),
        }),
        Some(tag) => tagged(tag, plain_or_string(text, style), span),
        None => Ok(plain_or_string(text, style)),
    }
}

fn plain_or_string(text: &str, style: ScalarStyle) -> Value {
    match style {
        ScalarStyle::Plain => plain(text),
        _ => Value::String(text.to_string()),
    }
}

/// The core schema's resolution of a plain scalar.
fn plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let decimal = |s: &str| {
        let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if decimal(text) {
        if let Ok(n) = text.parse::<i64>() {
            return Value::Number(n.into());
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(n) = i64::from_str_radix(hex, 16) {
            return Value::Number(n.into());
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(n) = i64::from_str_radix(oct, 8) {
            return Value::Number(n.into());
        }
    }
    let float_like = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if float_like {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

/// A node with a local tag: CloudFormation's short form of an intrinsic function.
fn tagged(tag: &Tag, value: Value, span: &Span) -> Result<Value, YamlError> {
    if tag.handle != "!" {
        return Err(YamlError::at(
            span,
            format!(
                "the tag `{}{}` is not a CloudFormation function",
                tag.handle, tag.suffix
            ),
        ));
    }
    let name = tag.suffix.as_str();
    let long = match name {
        "Ref" => "Ref".to_string(),
        "Condition" => "Condition".to_string(),
        _ => format!("Fn::{name}"),
    };
    // `!GetAtt Resource.Attribute` is the one short form whose scalar splits (at the first
    // dot: attribute names such as `Endpoint.Address` keep theirs).
    let value = match (name, value) {
        ("GetAtt", Value::String(s)) => match s.split_once('.') {
            Some((resource, attribute)) => Value::Array(vec![
                Value::String(resource.to_string()),
                Value::String(attribute.to_string()),
            ]),
            None => {
                return Err(YamlError::at(
                    span,
                    format!("`!GetAtt {s}` needs Resource.Attribute"),
                ))
            }
        },
        (_, value) => value,
    };
    let mut map = Map::new();
    map.insert(long, value);
    Ok(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Value {
        parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn short_form_tags_become_their_long_form() {
        let v = read(
            "A: !Ref Param\n\
             B: !GetAtt Fn.Arn\n\
             C: !GetAtt [Fn, Arn]\n\
             D: !Sub 'arn:aws:iot:${AWS::Region}:${AWS::AccountId}:thing/${Name}'\n\
             E: !Join [':', [a, !Ref 'AWS::Region']]\n\
             F: !Select [0, !Split [',', 'a,b']]\n\
             G: !If [IsProd, x, !Ref 'AWS::NoValue']\n\
             H: !Equals [!Ref Env, prod]\n\
             I: !Condition IsProd\n",
        );
        assert_eq!(
            v,
            json!({
                "A": {"Ref": "Param"},
                "B": {"Fn::GetAtt": ["Fn", "Arn"]},
                "C": {"Fn::GetAtt": ["Fn", "Arn"]},
                "D": {"Fn::Sub": "arn:aws:iot:${AWS::Region}:${AWS::AccountId}:thing/${Name}"},
                "E": {"Fn::Join": [":", ["a", {"Ref": "AWS::Region"}]]},
                "F": {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]},
                "G": {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]},
                "H": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
                "I": {"Condition": "IsProd"}
            })
        );
    }

    #[test]
    fn plain_scalars_follow_the_core_schema_and_quoted_ones_stay_strings() {
        let v = read("a: 512\nb: '512'\nc: true\nd: 'false'\ne: ~\nf: 1.5\ng: 0x10\nh: v1.2\n");
        assert_eq!(
            v,
            json!({"a": 512, "b": "512", "c": true, "d": "false", "e": null, "f": 1.5, "g": 16, "h": "v1.2"})
        );
    }

    #[test]
    fn anchors_and_aliases_repeat_a_node() {
        let v = read("a: &x {k: [1, 2]}\nb: *x\n");
        assert_eq!(v, json!({"a": {"k": [1, 2]}, "b": {"k": [1, 2]}}));
    }

    #[test]
    fn alias_bombs_stop_with_an_error() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&text).expect_err("refused");
        assert!(e.message.contains("more than"), "{e}");
    }

    #[test]
    fn errors_have_a_line_and_column() {
        let e = parse("Resources:\n  A: [1, 2\n").expect_err("refused");
        assert!(e.line >= 2, "{e}");
        let e = parse("a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "the key `a` is given twice")
        );
        let e = parse("? [a]\n: 1\n").expect_err("complex key");
        assert!(e.message.contains("mapping key"), "{e}");
        let e = parse("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert!(e.message.contains("second YAML document"), "{e}");
        let e = parse("a: !GetAtt NoDot\n").expect_err("bad GetAtt");
        assert!(e.message.contains("Resource.Attribute"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        // Flow collections stop at the parser's own limit, block ones at ours.
        let text = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(parse(&text).is_err());
        let mut text = String::new();
        for depth in 0..300 {
            text.push_str(&format!("{}k:\n", "  ".repeat(depth)));
        }
        let e = parse(&text).expect_err("too deep");
        assert!(e.message.contains("nested deeper"), "{e}");
    }

    #[test]
    fn an_empty_file_is_no_document() {
        assert!(parse("").is_err());
    }
}
