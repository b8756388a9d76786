//! Reading the inputs: files, or directories of them, each parsed as JSON or YAML and told
//! apart as saved CLI outputs or a CloudFormation template. A file that cannot be read or
//! parsed stops the import with where it went wrong (the user fixes the input); a file in a
//! directory that is neither JSON nor YAML is skipped with a note.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::Report;
use crate::{yaml, ImportError, Source};

/// One parsed input file.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub(crate) path: PathBuf,
    pub(crate) value: Value,
}

/// The inputs, all of one kind.
#[derive(Debug)]
pub(crate) enum Documents {
    Cli(Vec<Document>),
    Templates(Vec<Document>),
}

/// The extensions read from a directory.
const EXTENSIONS: &[&str] = &["json", "yaml", "yml", "template"];

pub(crate) fn read_all(
    inputs: &[PathBuf],
    source: Source,
    report: &mut Report,
) -> Result<Documents, ImportError> {
    if inputs.is_empty() {
        return Err(ImportError::NoInput);
    }
    let mut files = Vec::new();
    for path in inputs {
        let meta = std::fs::metadata(path).map_err(|source| ImportError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            files.extend(directory(path, report)?);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        return Err(ImportError::Nothing(format!(
            "no .json, .yaml, .yml or .template file in {}",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut documents = Vec::new();
    for path in files {
        let value = parse(&path)?;
        documents.push(Document { path, value });
    }
    classify(documents, source)
}

/// Sorts parsed inputs into CLI outputs or templates; a mix is refused.
pub(crate) fn classify(documents: Vec<Document>, source: Source) -> Result<Documents, ImportError> {
    let mut cli = Vec::new();
    let mut templates = Vec::new();
    for document in documents {
        let is_template = match source {
            Source::Cli => false,
            Source::CloudFormation => true,
            Source::Auto => looks_like_template(&document.value),
        };
        if is_template {
            templates.push(document);
        } else {
            cli.push(document);
        }
    }
    match (cli.first(), templates.first()) {
        (Some(c), Some(t)) => Err(ImportError::Mixed {
            cli: c.path.clone(),
            template: t.path.clone(),
        }),
        (_, None) => Ok(Documents::Cli(cli)),
        (None, Some(_)) => Ok(Documents::Templates(templates)),
    }
}

/// A directory's readable files, in name order (so a report reads the same each run).
fn directory(dir: &Path, report: &mut Report) -> Result<Vec<PathBuf>, ImportError> {
    let read_err = |source| ImportError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        paths.push(entry.map_err(read_err)?.path());
    }
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if path.is_file() && wanted {
            files.push(path);
        } else {
            report.note(
                format!("input {}", path.display()),
                "skipped: only .json, .yaml, .yml and .template files of a directory are read",
            );
        }
    }
    Ok(files)
}

/// Parses a file as JSON when it says so by its extension or looks like it, else as YAML.
fn parse(path: &Path) -> Result<Value, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    parse_text(path, &text, ext.as_deref())
}

/// Parses `text` (of the file `path`, with extension `ext`) as JSON or YAML.
pub(crate) fn parse_text(path: &Path, text: &str, ext: Option<&str>) -> Result<Value, ImportError> {
    let json = match ext {
        Some("json") => true,
        Some("yaml" | "yml") => false,
        _ => text.trim_start().starts_with(['{', '[']),
    };
    if json {
        serde_json::from_str(text).map_err(|e| ImportError::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: json_message(&e),
        })
    } else {
        yaml::parse(text).map_err(|source| ImportError::Yaml {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// serde_json's message without its own " at line … column …" (the error says where).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A CloudFormation template has a `Resources` object of `{"Type": …}` members, or says its
/// format version.
pub(crate) fn looks_like_template(value: &Value) -> bool {
    let Some(object) = value.as_object() else {
        return false;
    };
    if object.contains_key("AWSTemplateFormatVersion") {
        return true;
    }
    object
        .get("Resources")
        .and_then(Value::as_object)
        .is_some_and(|resources| {
            !resources.is_empty()
                && resources
                    .values()
                    .all(|r| r.get("Type").is_some_and(Value::is_string))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_are_told_from_cli_outputs() {
        assert!(looks_like_template(
            &json!({"Resources": {"G": {"Type": "AWS::Greengrass::Group"}}})
        ));
        assert!(looks_like_template(
            &json!({"AWSTemplateFormatVersion": "2010-09-09"})
        ));
        assert!(!looks_like_template(
            &json!({"Arn": "x", "Definition": {"Resources": [{"Id": "r"}]}})
        ));
        assert!(!looks_like_template(&json!({"Resources": [{"Id": "r"}]})));
    }

    #[test]
    fn a_syntax_error_names_the_file_line_and_column() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.json");
        std::fs::write(
            &path,
            "{\n  \"Definition\": {\n    \"Functions\": [,]\n  }\n}\n",
        )
        .expect("write");
        let e = parse(&path).expect_err("refused");
        let text = e.to_string();
        assert!(
            text.contains("bad.json is not valid JSON: line 3, column"),
            "{text}"
        );
    }
}
