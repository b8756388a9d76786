//! JSON that comes from outside the runtime — group and configuration files, bundle manifests,
//! secret-store files, control-socket requests — read strictly, every error located by its
//! path.
//!
//! serde's derived types and maps are lenient in ways a hand-written or hostile document must
//! not exploit:
//! - a struct also reads from a JSON *array*, its fields taken by position, so
//!   `"FunctionConfiguration": ["x", …]` or `"restart": [250, 30000]` would load;
//! - a map (`BTreeMap`, `serde_json::Value`) keeps the last of two equal keys without a word
//!   (derived structs refuse a repeated *known* field, but skip repeated unknown ones), so
//!   `{"op":"status","op":"reset"}` means whatever the last reader decides;
//! - an enum variant without data also reads from an object, `{"always": null}`.
//!
//! [`from_str`] and [`from_slice`] refuse all three at every depth, and anything after the
//! document, with messages such as `Functions[0].FunctionConfiguration: expected an object,
//! found an array at line 3 column 31`. serde's own messages name Rust types (`expected u16`,
//! `struct Foo`); [`words`] says them in the operator's words (`must be a whole number from 0
//! to 65535`). Numbers are never read as strings nor strings as
//! numbers (serde_json's own rule, kept).
//!
//! This crate owns those rules and nothing else: it knows no document's shape, reads no file,
//! and callers turn [`Error`] into their own messages (its [`Path`] by segments, or as text).
//!
//! Limit: content serde buffers before it knows its type (`#[serde(flatten)]`, internally
//! tagged and untagged enums) is read back by serde's own deserializer. Duplicate keys inside
//! it are still refused (they are met while it is buffered), an array standing for a struct is
//! not.

mod strict;
mod words;

use std::fmt;

use serde::Deserialize;

pub use strict::NOT_AN_OBJECT;

/// Reads one JSON document into `T` strictly (see the crate documentation).
pub fn from_str<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, Error> {
    let mut json = serde_json::Deserializer::from_str(text);
    let value =
        serde_path_to_error::deserialize(strict::Strict::new(&mut json)).map_err(Error::located)?;
    json.end().map_err(Error::at_root)?;
    Ok(value)
}

/// [`from_str`] for bytes (which must be UTF-8, as JSON is).
pub fn from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Error> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value =
        serde_path_to_error::deserialize(strict::Strict::new(&mut json)).map_err(Error::located)?;
    json.end().map_err(Error::at_root)?;
    Ok(value)
}

/// Every shape error of `text` as `T` that can be told apart, not only the first: an operator
/// who fixes a file should not have to run the command once per mistake.
///
/// The first error is [`from_str`]'s, with its line and column. When the text is JSON at all,
/// the member at fault is then taken out of a parsed copy and the copy read again, up to
/// `limit` errors; those later errors carry their path but no line (the copy is not the
/// file's text) and come in the copy's order (object members sorted by key). It stops early rather than report an error its own removals caused: at an
/// array element (removing it would renumber the elements after it), or at an error on a
/// member that encloses one already taken out (such as a required member now missing).
/// A document is never accepted from a modified copy: any error is `Err`.
pub fn from_str_all<T: serde::de::DeserializeOwned>(
    text: &str,
    limit: usize,
) -> Result<T, Vec<Error>> {
    let first = match from_str(text) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let mut errors = vec![first];
    let Ok(mut copy) = serde_json::from_str::<serde_json::Value>(text) else {
        return Err(errors);
    };
    while errors.len() < limit.max(1) {
        let Some(last) = errors.last() else { break };
        if !remove(&mut copy, last.path.segments()) {
            break;
        }
        let Err(mut next) = from_str::<T>(&copy.to_string()) else {
            break;
        };
        let consequence = errors
            .iter()
            .any(|e| e.path.segments().starts_with(next.path.segments()));
        if consequence {
            break;
        }
        next.message = without_position(&next.message).to_string();
        errors.push(next);
    }
    Err(errors)
}

/// Takes the object member at `path` out of `value`; false when the path ends at an array
/// element, at the root, or names nothing.
fn remove(value: &mut serde_json::Value, path: &[Segment]) -> bool {
    let Some((Segment::Key(key), parents)) = path.split_last() else {
        return false;
    };
    let mut at = value;
    for segment in parents {
        let next = match (segment, at) {
            (Segment::Key(k), serde_json::Value::Object(map)) => map.get_mut(k),
            (Segment::Index(i), serde_json::Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    match at {
        serde_json::Value::Object(map) => map.remove(key).is_some(),
        _ => false,
    }
}

/// `message` without serde_json's trailing ` at line L column C`.
fn without_position(message: &str) -> &str {
    let Some(at) = message.rfind(" at line ") else {
        return message;
    };
    let tail = &message[at + " at line ".len()..];
    let mut parts = tail.splitn(3, ' ');
    let line = parts.next().unwrap_or("");
    let word = parts.next().unwrap_or("");
    let column = parts.next().unwrap_or("");
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(line) && word == "column" && digits(column) {
        &message[..at]
    } else {
        message
    }
}

/// serde_json's message with serde's wording (`invalid type: string "x", expected u16`) put in
/// the operator's (`must be a whole number from 0 to 65535, not the string "x"`), and its line
/// and column kept. Public for readers that must take a value apart with serde_json itself
/// (an internally tagged enum, which this crate's strict layer cannot see into).
pub fn in_words(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&position) {
        Some(message) if e.line() > 0 => format!("{}{position}", words::message(message)),
        _ => words::message(&text),
    }
}

/// Why a document was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    path: Path,
    message: String,
}

impl Error {
    fn located(e: serde_path_to_error::Error<serde_json::Error>) -> Error {
        let path = Path(
            e.path()
                .iter()
                .map(|segment| match segment {
                    serde_path_to_error::Segment::Seq { index } => Segment::Index(*index),
                    serde_path_to_error::Segment::Map { key } => Segment::Key(key.clone()),
                    serde_path_to_error::Segment::Enum { variant } => Segment::Key(variant.clone()),
                    serde_path_to_error::Segment::Unknown => Segment::Unknown,
                })
                .collect(),
        );
        Error {
            path,
            message: in_words(&e.into_inner()),
        }
    }

    fn at_root(e: serde_json::Error) -> Error {
        Error {
            path: Path::default(),
            message: in_words(&e),
        }
    }

    /// Where in the document the problem is; the root for a syntax error or trailing data.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is wrong, with serde_json's line and column when it knows them.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    /// `<path>: <message>`, or the message alone at the root.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// A place in a document: object keys and array indexes from the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(Vec<Segment>);

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member (or an enum variant).
    Key(String),
    /// An array element.
    Index(usize),
    /// A step serde could not name (never for plain JSON documents).
    Unknown,
}

impl Path {
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Path {
    /// `a.b[2].c`, and `.` for the root (serde_path_to_error's form, which messages already
    /// used).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Unknown if i == 0 => f.write_str("?")?,
                Segment::Unknown => f.write_str(".?")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
