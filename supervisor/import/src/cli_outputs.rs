//! Saved `aws greengrass` outputs: `get-group-version` (`{"Arn", "Definition":
//! {"CoreDefinitionVersionArn", …}, "Id", "Version", …}`) and the seven
//! `get-*-definition-version` (`{"Arn", "CreationTimestamp", "Definition": {"Functions": […]},
//! "Id", "Version"}`), one per file or together in one JSON (an array of them, or an object
//! whose members are). A bare `Definition` (`--query Definition`) is taken too, its kind told by
//! its list (`Functions`) or by the member it sits under (`FunctionDefinitionVersion`).
//!
//! This module owns choosing, for each kind, the one definition version the group uses: the one
//! the group version names when there is a group version, else the only (or the newest) one.
//! Everything else it was given is listed in the report as left out.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::input::Document;
use crate::report::Report;
use crate::{Collected, Definition, ImportError, Kind};

/// A recognised output.
#[derive(Debug, Clone)]
enum Output {
    GroupVersion {
        arns: BTreeMap<Kind, String>,
        created: Option<String>,
        origin: String,
    },
    Definition {
        kind: Kind,
        arn: Option<String>,
        created: Option<String>,
        body: Value,
        origin: String,
    },
}

pub(crate) fn collect(
    documents: &[Document],
    report: &mut Report,
) -> Result<Collected, ImportError> {
    let mut outputs = Vec::new();
    for doc in documents {
        let origin = doc.path.display().to_string();
        if !classify(&doc.value, &origin, None, &mut outputs) {
            return Err(ImportError::Unrecognised {
                path: doc.path.clone(),
                why: "not a saved `aws greengrass get-group-version` or `get-*-definition-version` output \
                      (an object with `Arn` and `Definition`), nor an array or object of them"
                    .into(),
            });
        }
    }
    let mut group_versions = Vec::new();
    let mut by_kind: BTreeMap<Kind, Vec<Output>> = BTreeMap::new();
    for output in outputs {
        match &output {
            Output::GroupVersion { .. } => group_versions.push(output),
            Output::Definition { kind, .. } => by_kind.entry(*kind).or_default().push(output),
        }
    }
    let mut collected = Collected::default();
    match newest(group_versions, report, "group version") {
        Some(Output::GroupVersion { arns, origin, .. }) => {
            report.note(
                "group version",
                format!("imported the definition versions that {origin} names"),
            );
            for kind in Kind::ALL {
                let candidates = by_kind.remove(&kind).unwrap_or_default();
                let Some(arn) = arns.get(&kind) else {
                    for c in candidates {
                        report.note(
                            format!("input {}", origin_of(&c)),
                            format!("left out: the group version has no {}", kind.version_key()),
                        );
                    }
                    continue;
                };
                let (chosen, others): (Vec<Output>, Vec<Output>) =
                    candidates.into_iter().partition(
                        |c| matches!(c, Output::Definition { arn: Some(a), .. } if a == arn),
                    );
                for other in &others {
                    report.note(
                        format!("input {}", origin_of(other)),
                        format!(
                            "left out: not the {} the group version names",
                            kind.version_key()
                        ),
                    );
                }
                match chosen.into_iter().next() {
                    Some(Output::Definition { body, origin, .. }) => {
                        collected.definitions.insert(kind, Definition { body, origin });
                    }
                    _ => report.todo(
                        kind.version_key(),
                        format!(
                            "the group version names {arn}, but no saved get-{}-definition-version output with that Arn \
                             is in the input: add it{}",
                            kind.noun(),
                            if others.is_empty() {
                                String::new()
                            } else {
                                " (to import the version you have instead, leave the group version out of the input)".into()
                            }
                        ),
                    ),
                }
            }
        }
        _ => {
            for (kind, candidates) in by_kind {
                if let Some(Output::Definition { body, origin, .. }) =
                    newest(candidates, report, &kind.version_key())
                {
                    collected
                        .definitions
                        .insert(kind, Definition { body, origin });
                }
            }
        }
    }
    if collected.definitions.is_empty() && report.todos().next().is_none() {
        return Err(ImportError::Nothing(
            "the inputs hold no definition version".into(),
        ));
    }
    Ok(collected)
}

fn origin_of(output: &Output) -> &str {
    match output {
        Output::GroupVersion { origin, .. } | Output::Definition { origin, .. } => origin,
    }
}

fn created_of(output: &Output) -> Option<&str> {
    match output {
        Output::GroupVersion { created, .. } | Output::Definition { created, .. } => {
            created.as_deref()
        }
    }
}

/// The newest of several outputs of one kind (by `CreationTimestamp`; the last given when
/// they have none), the others noted as left out.
fn newest(mut candidates: Vec<Output>, report: &mut Report, what: &str) -> Option<Output> {
    if candidates.len() > 1 {
        // Stable: among equal (or absent) timestamps the last given wins.
        candidates.sort_by(|a, b| timestamp_order(created_of(a), created_of(b)));
    }
    let chosen = candidates.pop()?;
    for other in &candidates {
        report.note(
            format!("input {}", origin_of(other)),
            format!(
                "left out: an older {what} than {} (by CreationTimestamp)",
                origin_of(&chosen)
            ),
        );
    }
    Some(chosen)
}

/// `CreationTimestamp` is an ISO-8601 string in CLI outputs and milliseconds since the epoch in
/// the API model: numbers compare as numbers, strings as text.
fn timestamp_order(a: Option<&str>, b: Option<&str>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.cmp(b),
        },
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

/// Recognises `value` as an output, or as a container of them; `key` is the member name it sat
/// under in a combined file.
fn classify(value: &Value, origin: &str, key: Option<&str>, out: &mut Vec<Output>) -> bool {
    if let Some(items) = value.as_array() {
        let mut any = false;
        for (i, item) in items.iter().enumerate() {
            if !classify(item, &format!("{origin}[{i}]"), None, out) {
                return false;
            }
            any = true;
        }
        return any;
    }
    let Some(object) = value.as_object() else {
        return false;
    };
    let text = |k: &str| object.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(definition) = object.get("Definition").filter(|d| d.is_object()) {
        let arn = text("Arn");
        let created = text("CreationTimestamp");
        if let Some(arns) = group_version_arns(definition) {
            out.push(Output::GroupVersion {
                arns,
                created,
                origin: origin.to_string(),
            });
            return true;
        }
        let kind = arn
            .as_deref()
            .and_then(kind_of_arn)
            .or_else(|| kind_of_body(definition))
            .or_else(|| key.and_then(kind_of_key));
        return match kind {
            Some(kind) => {
                out.push(Output::Definition {
                    kind,
                    arn,
                    created,
                    body: definition.clone(),
                    origin: origin.to_string(),
                });
                true
            }
            None => false,
        };
    }
    if let Some(arns) = group_version_arns(value) {
        out.push(Output::GroupVersion {
            arns,
            created: None,
            origin: origin.to_string(),
        });
        return true;
    }
    if let Some(kind) = kind_of_body(value).or_else(|| key.and_then(kind_of_key)) {
        out.push(Output::Definition {
            kind,
            arn: None,
            created: None,
            body: value.clone(),
            origin: origin.to_string(),
        });
        return true;
    }
    // A combined file: every member an output.
    !object.is_empty()
        && object.values().all(|v| v.is_object() || v.is_array())
        && object
            .iter()
            .all(|(k, v)| classify(v, &format!("{origin}: {k}"), Some(k), out))
}

/// The definition-version ARNs of a group version's `Definition`, if it is one.
fn group_version_arns(definition: &Value) -> Option<BTreeMap<Kind, String>> {
    let object = definition.as_object()?;
    let arns: BTreeMap<Kind, String> = Kind::ALL
        .into_iter()
        .filter_map(|kind| {
            object
                .get(&kind.arn_key())
                .and_then(Value::as_str)
                .map(|arn| (kind, arn.to_string()))
        })
        .collect();
    (!arns.is_empty()).then_some(arns)
}

/// `arn:aws:greengrass:<region>:<account>:/greengrass/definition/<kind>/<id>/versions/<id>`.
fn kind_of_arn(arn: &str) -> Option<Kind> {
    let rest = arn.split("/greengrass/definition/").nth(1)?;
    let segment = rest.split('/').next()?;
    Kind::ALL.into_iter().find(|k| k.arn_segment() == segment)
}

/// A definition body's kind by its list (`Functions`); `DefaultConfig` alone is a function
/// definition's.
fn kind_of_body(body: &Value) -> Option<Kind> {
    let object = body.as_object()?;
    Kind::ALL
        .into_iter()
        .find(|k| object.get(k.list_key()).is_some_and(Value::is_array))
        .or_else(|| {
            object
                .contains_key("DefaultConfig")
                .then_some(Kind::Function)
        })
}

/// `FunctionDefinitionVersion` (the group file's own keys) or `Functions`.
fn kind_of_key(key: &str) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| k.version_key() == key || k.list_key() == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(name: &str, value: Value) -> Document {
        Document {
            path: name.into(),
            value,
        }
    }

    const FN_ARN: &str =
        "arn:aws:greengrass:us-west-2:123456789012:/greengrass/definition/functions/f1/versions/v2";

    #[test]
    fn the_group_version_picks_the_definition_versions_it_names() {
        let docs = vec![
            doc(
                "group.json",
                json!({"Arn": "g", "Definition": {"FunctionDefinitionVersionArn": FN_ARN,
                       "LoggerDefinitionVersionArn": "arn:aws:greengrass:us-west-2:123456789012:/greengrass/definition/loggers/l/versions/1"},
                       "Id": "g", "Version": "1"}),
            ),
            doc(
                "old.json",
                json!({"Arn": FN_ARN.replace("v2", "v1"), "Definition": {"Functions": [{"Id": "old"}]}}),
            ),
            doc(
                "new.json",
                json!({"Arn": FN_ARN, "Definition": {"Functions": [{"Id": "new"}]}}),
            ),
        ];
        let mut report = Report::default();
        let collected = collect(&docs, &mut report).expect("collected");
        let functions = &collected.definitions[&Kind::Function];
        assert_eq!(functions.body["Functions"][0]["Id"], "new");
        assert!(report
            .findings
            .iter()
            .any(|f| f.subject == "input old.json" && f.message.contains("left out")));
        let todo: Vec<_> = report.todos().collect();
        assert_eq!(todo.len(), 1, "{todo:?}");
        assert!(todo[0].message.contains("loggers/l/versions/1"), "{todo:?}");
    }

    #[test]
    fn without_a_group_version_the_newest_of_each_kind_is_used() {
        let docs = vec![doc(
            "all.json",
            json!([
                {"Arn": FN_ARN, "CreationTimestamp": "2019-06-18T16:21:21.431Z", "Definition": {"Functions": [{"Id": "a"}]}},
                {"Arn": FN_ARN, "CreationTimestamp": "2020-01-01T00:00:00.000Z", "Definition": {"Functions": [{"Id": "b"}]}}
            ]),
        )];
        let mut report = Report::default();
        let collected = collect(&docs, &mut report).expect("collected");
        assert_eq!(
            collected.definitions[&Kind::Function].body["Functions"][0]["Id"],
            "b"
        );
    }

    #[test]
    fn combined_objects_and_bare_definitions_are_recognised() {
        let docs = vec![doc(
            "combined.json",
            json!({
                "functions": {"Arn": FN_ARN, "Definition": {"Functions": []}},
                "SubscriptionDefinitionVersion": {"Subscriptions": []},
                "LoggerDefinitionVersion": {}
            }),
        )];
        let mut report = Report::default();
        let collected = collect(&docs, &mut report).expect("collected");
        let kinds: Vec<Kind> = collected.definitions.keys().copied().collect();
        assert_eq!(kinds, [Kind::Function, Kind::Subscription, Kind::Logger]);
    }

    #[test]
    fn something_else_is_unrecognised() {
        let mut report = Report::default();
        for value in [
            json!({"Groups": "x"}),
            json!([1, 2]),
            json!("text"),
            json!({}),
        ] {
            let e = collect(&[doc("x.json", value)], &mut report).expect_err("refused");
            assert!(e.to_string().contains("not a saved"), "{e}");
        }
    }
}
