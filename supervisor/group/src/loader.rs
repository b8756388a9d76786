//! The one way a group text becomes a plan: [`Loader`] holds what validation needs from the
//! runtime (the connector registry and the options from the core configuration) and is shared
//! by `evergreen run`, `validate`, the version store and the deployer, so a group is judged the
//! same wherever it comes from.

use std::path::{Path, PathBuf};

use crate::model::{name_ids, read, ValidationError};
use crate::plan::GroupPlan;
use crate::registry::ConnectorRegistry;
use crate::validate::{validate, ValidationOptions};

/// Why a group could not become a plan. The wording is what the CLI and the deployment
/// history show.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read group file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid group {name}:{}", list(errors))]
    Invalid {
        name: String,
        errors: Vec<ValidationError>,
    },
}

/// One error on the heading's line (what a file the parser refuses gives, so `evergreen run`
/// says it in one line); several each on a line of its own, indented under the heading.
pub(crate) fn list(errors: &[ValidationError]) -> String {
    match errors {
        [one] => format!(" {one}"),
        _ => errors.iter().map(|e| format!("\n  {e}")).collect(),
    }
}

/// A group file read and validated.
#[derive(Debug)]
pub struct GroupFile {
    /// The file's text, as read.
    pub text: String,
    /// The file's directory: relative `Executable`s and `CodeUri`s resolve against it.
    pub base_dir: PathBuf,
    pub plan: GroupPlan,
}

/// Parses and validates groups against one registry and one set of options.
#[derive(Debug, Clone)]
pub struct Loader {
    registry: ConnectorRegistry,
    options: ValidationOptions,
}

impl Loader {
    /// `options.base_dir` is replaced by each call's own base directory.
    pub fn new(registry: ConnectorRegistry, options: ValidationOptions) -> Self {
        Loader { registry, options }
    }

    /// Parses and validates a group text; `name` names it in messages, and relative paths in
    /// it resolve against `base_dir`.
    pub fn load(&self, text: &str, name: &str, base_dir: PathBuf) -> Result<GroupPlan, LoadError> {
        let invalid = |errors| LoadError::Invalid {
            name: name.to_string(),
            errors,
        };
        let (definition, document) = read(text).map_err(invalid)?;
        let options = ValidationOptions {
            base_dir,
            ..self.options.clone()
        };
        validate(&definition, &self.registry, &options).map_err(|mut errors| {
            name_ids(&mut errors, &document);
            invalid(errors)
        })
    }

    /// Reads and validates a group file; its path names it in messages and its directory is
    /// the base of its relative paths.
    pub fn read_file(&self, path: &Path) -> Result<GroupFile, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        // Absolute now, against the directory the command was run in: a
        // relative base would make every path resolved against it (a
        // `CodeUri`, an `Executable`) relative too, and a child process
        // whose working directory is elsewhere (a Python function's
        // `sys.path`) would look in the wrong place.
        let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
        let plan = self.load(&text, &path.display().to_string(), base_dir.clone())?;
        Ok(GroupFile {
            text,
            base_dir,
            plan,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_errors(text: &str) -> Vec<ValidationError> {
        let loader = Loader::new(ConnectorRegistry::default(), ValidationOptions::default());
        match loader.load(text, "g.json", PathBuf::from("/")) {
            Err(LoadError::Invalid { errors, .. }) => errors,
            other => panic!("expected errors, got {other:?}"),
        }
    }

    #[test]
    fn every_error_names_the_id_of_its_element() {
        // A validation error (the subscription's target) and its element's Id.
        let errors = load_errors(
            r#"{"SubscriptionDefinitionVersion": {"Subscriptions": [
                {"Id": "ok", "Source": "cloud", "Subject": "a/b", "Target": "cloud"},
                {"Id": "temp-to-cloud", "Source": "cloud", "Subject": "t", "Target": "nowhere"}]}}"#,
        );
        let e = errors
            .iter()
            .find(|e| e.path.ends_with("Subscriptions[1].Target"))
            .unwrap_or_else(|| panic!("{errors:?}"));
        assert_eq!(e.id.as_deref(), Some("temp-to-cloud"));
        assert!(
            e.to_string().starts_with(
                r#"$.SubscriptionDefinitionVersion.Subscriptions[1] (Id "temp-to-cloud").Target: "#
            ),
            "{e}"
        );
        // Schema errors too, all of them in one pass, the innermost element's Id.
        let errors = load_errors(
            r#"{"FunctionDefinitionVersion": {"Functions": [
                {"Id": "f1", "FunctionConfiguration": {"Pined": true, "Environment":
                    {"ResourceAccessPolicies": [{"ResourceId": 3}]}}},
                {"FunctionArn": "x"}]}}"#,
        );
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{shown:#?}");
        assert!(shown.iter().any(|e| e.starts_with(
            r#"$.FunctionDefinitionVersion.Functions[0] (Id "f1").FunctionConfiguration.Pined: unknown member"#
        )), "{shown:#?}");
        assert!(shown.iter().any(|e| e.starts_with(
            r#"$.FunctionDefinitionVersion.Functions[0] (Id "f1").FunctionConfiguration.Environment.ResourceAccessPolicies[0].ResourceId: must be a string"#
        )), "{shown:#?}");
        // An element without an Id is named by its index alone.
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("$.FunctionDefinitionVersion.Functions[1].Id: is required")),
            "{shown:#?}"
        );
    }

    #[test]
    fn quoted_keys_in_paths_are_followed() {
        let doc = serde_json::json!({"A": [{"Id": "x", "odd.key": [{"Id": "y"}]}]});
        let mut errors = vec![ValidationError::new(r#"$.A[0]["odd.key"][0].B"#, "m")];
        crate::model::name_ids(&mut errors, &doc);
        assert_eq!(errors[0].id.as_deref(), Some("y"));
        assert_eq!(errors[0].located(), r#"$.A[0]["odd.key"][0] (Id "y").B"#);
    }

    #[test]
    fn one_error_is_one_line_several_are_a_list() {
        let invalid = |errors: Vec<ValidationError>| LoadError::Invalid {
            name: "g.json".into(),
            errors,
        };
        let one = ValidationError::new("$.A", "wrong");
        assert_eq!(
            invalid(vec![one.clone()]).to_string(),
            "invalid group g.json: $.A: wrong"
        );
        assert_eq!(
            invalid(vec![one.clone(), ValidationError::new("$.B", "also")]).to_string(),
            "invalid group g.json:\n  $.A: wrong\n  $.B: also"
        );
    }
}
