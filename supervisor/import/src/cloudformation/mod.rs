//! CloudFormation templates with `AWS::Greengrass::*` resources: which definition versions make
//! the group, and what the template says of each Lambda function.
//!
//! The group is the one a `GroupVersion` resource (else a `Group`'s `InitialVersion`) names, each
//! `…DefinitionVersionArn` followed through `Ref`/`Fn::GetAtt` to a `…DefinitionVersion`
//! resource or a `…Definition`'s `InitialVersion`; without either, each kind's only (or last)
//! definition. The values inside are evaluated by [`eval`] (parameters' defaults, pseudo
//! parameters, `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, …), so the group file gets the
//! strings CloudFormation would have passed to Greengrass. `AWS::Lambda::Function` resources are
//! read for the functions the group names: their `Runtime`, `Handler` and `Code`.
//!
//! This module owns the template's structure; it never guesses a value the template does not
//! hold — those become placeholders the report lists (see [`eval`]).

mod eval;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::input::Document;
use crate::report::Report;
use crate::{Collected, Definition, ImportError, Kind, Lambda, LambdaCode, Options};

use eval::{Eval, Token};

/// One resource of a template.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub(crate) kind: String,
    pub(crate) properties: Value,
    pub(crate) condition: Option<String>,
    pub(crate) file: PathBuf,
}

/// The templates given, merged (each logical id once).
#[derive(Debug, Default)]
pub(crate) struct Template {
    pub(crate) parameters: BTreeMap<String, Value>,
    pub(crate) mappings: Map<String, Value>,
    pub(crate) conditions: BTreeMap<String, Value>,
    pub(crate) resources: BTreeMap<String, Resource>,
}

const GREENGRASS: &str = "AWS::Greengrass::";

/// What a Greengrass resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Group,
    GroupVersion,
    Definition(Kind),
    Version(Kind),
}

pub(crate) fn role(kind: &str) -> Option<Role> {
    let name = kind.strip_prefix(GREENGRASS)?;
    match name {
        "Group" => return Some(Role::Group),
        "GroupVersion" => return Some(Role::GroupVersion),
        _ => {}
    }
    for k in Kind::ALL {
        if name == format!("{}Definition", k.name()) {
            return Some(Role::Definition(k));
        }
        if name == format!("{}DefinitionVersion", k.name()) {
            return Some(Role::Version(k));
        }
    }
    None
}

impl Template {
    fn from_documents(documents: &[Document]) -> Result<Template, ImportError> {
        let mut t = Template::default();
        for doc in documents {
            let bad = |message: String| ImportError::Template {
                path: doc.path.clone(),
                message,
            };
            let Some(object) = doc.value.as_object() else {
                return Err(bad("a template is an object (with Resources)".into()));
            };
            let section = |name: &str| -> Result<Map<String, Value>, ImportError> {
                match object.get(name) {
                    None | Some(Value::Null) => Ok(Map::new()),
                    Some(Value::Object(map)) => Ok(map.clone()),
                    Some(_) => Err(bad(format!("`{name}` must be an object"))),
                }
            };
            for (name, value) in section("Parameters")? {
                if t.parameters.insert(name.clone(), value).is_some() {
                    return Err(bad(format!(
                        "the parameter {name} is also in another template"
                    )));
                }
            }
            for (name, value) in section("Conditions")? {
                if t.conditions.insert(name.clone(), value).is_some() {
                    return Err(bad(format!(
                        "the condition {name} is also in another template"
                    )));
                }
            }
            for (name, value) in section("Mappings")? {
                t.mappings.insert(name, value);
            }
            let resources = section("Resources")?;
            if resources.is_empty() {
                return Err(bad("the template has no Resources".into()));
            }
            for (id, value) in resources {
                let Some(kind) = value.get("Type").and_then(Value::as_str) else {
                    return Err(bad(format!("Resources.{id} has no Type")));
                };
                let properties = value.get("Properties").cloned().unwrap_or(Value::Null);
                if !(properties.is_object() || properties.is_null()) {
                    return Err(bad(format!("Resources.{id}.Properties must be an object")));
                }
                let condition = value
                    .get("Condition")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let resource = Resource {
                    kind: kind.to_string(),
                    properties,
                    condition,
                    file: doc.path.clone(),
                };
                if t.resources.insert(id.clone(), resource).is_some() {
                    return Err(bad(format!(
                        "the resource {id} is also in another template"
                    )));
                }
            }
        }
        Ok(t)
    }
}

pub(crate) fn collect(
    documents: &[Document],
    options: &Options,
    report: &mut Report,
) -> Result<Collected, ImportError> {
    let template = Template::from_documents(documents)?;
    let mut ev = Eval::new(
        &template,
        options.region.as_deref(),
        options.account.as_deref(),
    );

    // Resources whose Condition is false are not created.
    let mut present: BTreeSet<&str> = BTreeSet::new();
    for (id, resource) in &template.resources {
        match resource.condition.as_deref() {
            None => {
                present.insert(id);
            }
            Some(condition) => {
                match ev.condition(condition, &format!("Resources.{id}.Condition")) {
                    Some(true) => {
                        present.insert(id);
                    }
                    Some(false) => report.note(
                        format!("resource {id}"),
                        format!("left out: its Condition {condition} is false"),
                    ),
                    None => {
                        present.insert(id);
                        report.todo(
                        format!("resource {id}"),
                        format!(
                            "its Condition {condition} could not be decided (it depends on a value the template does \
                             not hold): it was imported; remove what it adds if the stack did not create it"
                        ),
                    );
                    }
                }
            }
        }
    }
    let greengrass: Vec<(&str, Role)> = present
        .iter()
        .filter_map(|id| role(&template.resources[*id].kind).map(|r| (*id, r)))
        .collect();
    if greengrass.is_empty() {
        return Err(ImportError::Nothing(format!(
            "{} has no AWS::Greengrass:: resources",
            files(documents)
        )));
    }
    let others: Vec<String> = present
        .iter()
        .filter(|id| {
            let kind = &template.resources[**id].kind;
            !kind.starts_with(GREENGRASS) && kind != "AWS::Lambda::Function"
        })
        .map(|id| format!("{id} ({})", template.resources[*id].kind))
        .collect();
    if !others.is_empty() {
        report.note(
            "template",
            format!(
                "not part of a Greengrass group, so not imported (used only for the values they give): {}",
                others.join(", ")
            ),
        );
    }

    for (id, role) in &greengrass {
        if *role == Role::Group && template.resources[*id].properties.get("RoleArn").is_some() {
            report.note(
                format!("resource {id}"),
                "its RoleArn (the group role) is not imported: Evergreen gives connectors AWS credentials from its \
                 own configuration",
            );
        }
    }
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut collected = Collected::default();
    let members = group_members(&template, &greengrass, report);
    for kind in Kind::ALL {
        let content = match &members {
            Some((group_id, arns)) => {
                let Some(raw) = arns.get(&kind.arn_key()) else {
                    continue;
                };
                let path = format!("Resources.{group_id}.{}", kind.arn_key());
                match ev.token(raw, &path) {
                    Token::Version(id) => {
                        version_content(&template, &greengrass, kind, &id, &mut ev, report)
                    }
                    Token::Latest(id) => {
                        latest_content(&template, &greengrass, kind, &id, &mut ev, report)
                    }
                    Token::Other(text) => {
                        report.todo(
                            kind.version_key(),
                            format!(
                                "the group version names {text}, which is not defined in the template: its content is \
                                 not in the input"
                            ),
                        );
                        None
                    }
                }
            }
            None => only_content(&template, &greengrass, kind, &mut ev, report),
        };
        if let Some((id, body)) = content {
            used.insert(id.clone());
            let file = template.resources[&id].file.display().to_string();
            collected.definitions.insert(
                kind,
                Definition {
                    body,
                    origin: format!("{file}: {id}"),
                },
            );
        }
    }
    for (id, role) in &greengrass {
        let counted = match role {
            Role::Definition(_) | Role::Version(_) => {
                used.contains(*id)
                    || template.resources.iter().any(|(v, r)| {
                        // A definition whose chosen version is a version resource is used too.
                        used.contains(v) && definition_of(&template, r).as_deref() == Some(*id)
                    })
            }
            Role::Group | Role::GroupVersion => true,
        };
        if !counted {
            report.note(
                format!("resource {id}"),
                "left out: not part of the group version imported",
            );
        }
    }

    collected.lambdas = lambdas(&template, &present, &collected, &mut ev, report);
    ev.finish(report);
    Ok(collected)
}

fn files(documents: &[Document]) -> String {
    documents
        .iter()
        .map(|d| d.path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The raw `…DefinitionVersionArn` members of the group version the template deploys, with the
/// resource they come from: a `GroupVersion` (the last, by logical id, if several), else a
/// `Group`'s `InitialVersion`; `None` when neither is there.
/// The Greengrass resources of `role`, in template order; with `initial`, only those that carry
/// an `InitialVersion` (a group or definition that holds its own first version).
fn with_role<'t>(
    template: &Template,
    greengrass: &[(&'t str, Role)],
    role: Role,
    initial: bool,
) -> Vec<&'t str> {
    greengrass
        .iter()
        .filter(|(id, r)| {
            *r == role
                && (!initial
                    || template.resources[*id]
                        .properties
                        .get("InitialVersion")
                        .is_some())
        })
        .map(|(id, _)| *id)
        .collect()
}

fn group_members(
    template: &Template,
    greengrass: &[(&str, Role)],
    report: &mut Report,
) -> Option<(String, Map<String, Value>)> {
    let versions = with_role(template, greengrass, Role::GroupVersion, false);
    let groups = with_role(template, greengrass, Role::Group, true);
    let (chosen, all, what) = match (versions.last(), groups.last()) {
        (Some(v), _) => (*v, &versions, "GroupVersion"),
        (None, Some(g)) => (*g, &groups, "Group with an InitialVersion"),
        (None, None) => return None,
    };
    if all.len() > 1 {
        report.note(
            "template",
            format!(
                "it has {} {what} resources ({}): the import used {chosen}",
                all.len(),
                all.join(", ")
            ),
        );
    }
    if what == "GroupVersion" && !groups.is_empty() {
        report.note(
            "template",
            format!("the GroupVersion {chosen} is used rather than the Group's InitialVersion, which it replaces"),
        );
    }
    let properties = &template.resources[chosen].properties;
    let members = if what == "GroupVersion" {
        properties.as_object().cloned()
    } else {
        properties
            .get("InitialVersion")
            .and_then(Value::as_object)
            .cloned()
    };
    Some((chosen.to_string(), members.unwrap_or_default()))
}

/// The `…DefinitionId` a version resource belongs to (its raw value when it is a plain `Ref` or
/// `GetAtt …Id` of a resource, the common forms).
fn definition_of(template: &Template, resource: &Resource) -> Option<String> {
    let Some(Role::Version(kind)) = role(&resource.kind) else {
        return None;
    };
    let raw = resource
        .properties
        .get(format!("{}DefinitionId", kind.name()))?;
    eval::referenced_resource(raw).filter(|id| template.resources.contains_key(id))
}

/// A version resource's content: its properties without the `…DefinitionId`.
fn version_body(kind: Kind, properties: &Value) -> Value {
    let mut body = properties.as_object().cloned().unwrap_or_default();
    body.remove(&format!("{}DefinitionId", kind.name()));
    body.remove("Tags");
    Value::Object(body)
}

fn version_content(
    template: &Template,
    greengrass: &[(&str, Role)],
    kind: Kind,
    id: &str,
    ev: &mut Eval<'_>,
    report: &mut Report,
) -> Option<(String, Value)> {
    match greengrass.iter().find(|(g, _)| *g == id).map(|(_, r)| *r) {
        Some(Role::Version(k)) if k == kind => {
            let body = version_body(kind, &template.resources[id].properties);
            Some((
                id.to_string(),
                ev.value_or_empty(&body, &format!("Resources.{id}.Properties")),
            ))
        }
        _ => {
            report.todo(
                kind.version_key(),
                format!(
                    "the group version's {} is the Ref of {id}, which is not an AWS::Greengrass::{}DefinitionVersion \
                     of the template",
                    kind.arn_key(),
                    kind.name()
                ),
            );
            None
        }
    }
}

/// `!GetAtt Definition.LatestVersionArn`: the definition's `InitialVersion`, or its one
/// version resource.
fn latest_content(
    template: &Template,
    greengrass: &[(&str, Role)],
    kind: Kind,
    id: &str,
    ev: &mut Eval<'_>,
    report: &mut Report,
) -> Option<(String, Value)> {
    let is_definition = greengrass
        .iter()
        .any(|(g, r)| *g == id && *r == Role::Definition(kind));
    if !is_definition {
        report.todo(
            kind.version_key(),
            format!(
                "the group version's {} is the LatestVersionArn of {id}, which is not an \
                 AWS::Greengrass::{}Definition of the template",
                kind.arn_key(),
                kind.name()
            ),
        );
        return None;
    }
    let properties = &template.resources[id].properties;
    if let Some(initial) = properties.get("InitialVersion") {
        let path = format!("Resources.{id}.Properties.InitialVersion");
        return Some((id.to_string(), ev.value_or_empty(initial, &path)));
    }
    let versions: Vec<&str> = greengrass
        .iter()
        .filter(|(v, r)| {
            *r == Role::Version(kind)
                && definition_of(template, &template.resources[*v]).as_deref() == Some(id)
        })
        .map(|(v, _)| *v)
        .collect();
    match versions.as_slice() {
        [] => {
            report.todo(
                kind.version_key(),
                format!(
                    "{id} has no InitialVersion and no {}DefinitionVersion: the group has none",
                    kind.name()
                ),
            );
            None
        }
        [one] => version_content(template, greengrass, kind, one, ev, report),
        [.., last] => {
            report.note(
                kind.version_key(),
                format!(
                    "{id} has several versions ({}): the import used {last}",
                    versions.join(", ")
                ),
            );
            version_content(template, greengrass, kind, last, ev, report)
        }
    }
}

/// Without a group version: the kind's only definition, or its last (a version resource is
/// newer than any `InitialVersion`).
fn only_content(
    template: &Template,
    greengrass: &[(&str, Role)],
    kind: Kind,
    ev: &mut Eval<'_>,
    report: &mut Report,
) -> Option<(String, Value)> {
    let versions = with_role(template, greengrass, Role::Version(kind), false);
    let initials = with_role(template, greengrass, Role::Definition(kind), true);
    let (candidates, is_version) = if versions.is_empty() {
        (initials, false)
    } else {
        (versions, true)
    };
    let last = *candidates.last()?;
    if candidates.len() > 1 {
        report.note(
            kind.version_key(),
            format!(
                "the template has no group version and several {} definitions ({}): the import used {last}",
                kind.noun(),
                candidates.join(", ")
            ),
        );
    }
    if is_version {
        version_content(template, greengrass, kind, last, ev, report)
    } else {
        latest_content(template, greengrass, kind, last, ev, report)
    }
}

/// What the template says of the Lambda functions the group's functions name, by function
/// name.
fn lambdas(
    template: &Template,
    present: &BTreeSet<&str>,
    collected: &Collected,
    ev: &mut Eval<'_>,
    report: &mut Report,
) -> BTreeMap<String, Lambda> {
    let wanted: BTreeSet<String> = collected
        .definitions
        .get(&Kind::Function)
        .and_then(|d| d.body.get("Functions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.get("FunctionArn").and_then(Value::as_str))
        .filter_map(|arn| arn.split(":function:").nth(1))
        .filter_map(|rest| rest.split(':').next())
        .map(str::to_string)
        .collect();
    let mut out = BTreeMap::new();
    for id in present {
        let resource = &template.resources[*id];
        if resource.kind != "AWS::Lambda::Function" {
            continue;
        }
        let name = ev.lambda_name(id);
        if !wanted.contains(&name) {
            continue;
        }
        let path = format!("Resources.{id}.Properties");
        let p = &resource.properties;
        let text = |ev: &mut Eval<'_>, key: &str| {
            p.get(key)
                .and_then(|v| ev.value(v, &format!("{path}.{key}")))
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let runtime = text(ev, "Runtime");
        let handler = text(ev, "Handler");
        let code = match p.get("Code") {
            Some(code) => match ev.value(code, &format!("{path}.Code")) {
                Some(Value::Object(code)) => {
                    let s = |k: &str| code.get(k).and_then(Value::as_str).map(str::to_string);
                    match (s("ZipFile"), s("S3Bucket"), s("S3Key"), s("ImageUri")) {
                        (Some(source), _, _, _) => LambdaCode::Inline(source),
                        (None, Some(bucket), Some(key), _) => LambdaCode::S3 { bucket, key },
                        (None, _, _, Some(uri)) => LambdaCode::Image(uri),
                        _ => LambdaCode::Unknown,
                    }
                }
                _ => LambdaCode::Unknown,
            },
            None => LambdaCode::Unknown,
        };
        if out.contains_key(&name) {
            report.todo(
                format!("resource {id}"),
                format!("a second AWS::Lambda::Function named {name}: the first one's Runtime and Code were used"),
            );
            continue;
        }
        out.insert(
            name,
            Lambda {
                logical_id: id.to_string(),
                runtime,
                handler,
                code,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests;
