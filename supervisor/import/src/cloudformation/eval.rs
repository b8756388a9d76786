//! CloudFormation's values as the stack would have had them: parameters' `Default`s, the pseudo
//! parameters, `Ref` and `Fn::GetAtt` of the template's resources, `Fn::Sub`, `Fn::Join`,
//! `Fn::Select`, `Fn::Split`, `Fn::If` with the template's `Conditions`, `Fn::FindInMap`.
//!
//! What only CloudFormation or AWS knew — a parameter without a default, the region without
//! `--region`, a certificate's ARN, a secret's random suffix, the stack's name, an
//! `Fn::ImportValue` — becomes a placeholder in `<…>` inside the value (`arn:aws:iot:<AWS::Region>:…`)
//! so the user sees where it goes, and [`Eval::finish`] lists every placeholder with what to
//! put there and where it is used. Nothing is guessed silently: a value the import had to pick
//! (a parameter's default, a generated name, a Lambda version number) is a note.
//!
//! References between Greengrass resources (`!Ref FunctionDefinitionVersion`, `!GetAtt
//! Def.LatestVersionArn`) evaluate to internal tokens that [`Eval::token`] turns back into the
//! resource they name; their real ARNs were made up by AWS and matter to nobody now.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{role, Role, Template};
use crate::report::Report;

const VERSION_TOKEN: &str = "evergreen-import:version:";
const LATEST_TOKEN: &str = "evergreen-import:latest:";
const DEFINITION_TOKEN: &str = "evergreen-import:definition:";

/// What a group version's `…DefinitionVersionArn` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A `…DefinitionVersion` resource (its `Ref`).
    Version(String),
    /// A `…Definition`'s `LatestVersionArn`.
    Latest(String),
    /// Anything else: an ARN the template does not define, or a placeholder.
    Other(String),
}

/// A value the import could not know, and where it is used.
#[derive(Debug, Clone, Default)]
struct Placeholder {
    advice: String,
    paths: BTreeSet<String>,
}

/// What the evaluator has to tell, kept apart so that a look-ahead can be undone.
#[derive(Debug, Clone, Default)]
struct Told {
    placeholders: BTreeMap<String, Placeholder>,
    defaults: BTreeMap<String, String>,
    notes: BTreeSet<(String, String)>,
}

/// Nesting of intrinsic functions and references followed; a template needs a handful, so the
/// bound only stops a cycle (`A`'s name is `B`'s, and `B`'s is `A`'s).
const MAX_DEPTH: usize = 64;

pub(crate) struct Eval<'t> {
    t: &'t Template,
    region: Option<&'t str>,
    account: Option<&'t str>,
    told: Told,
    depth: usize,
}

impl<'t> Eval<'t> {
    pub(crate) fn new(t: &'t Template, region: Option<&'t str>, account: Option<&'t str>) -> Self {
        Eval {
            t,
            region,
            account,
            told: Told::default(),
            depth: 0,
        }
    }

    /// Lists the placeholders (to-dos), the defaults used and the names chosen (notes).
    pub(crate) fn finish(self, report: &mut Report) {
        for (text, p) in self.told.placeholders {
            let paths: Vec<&str> = p.paths.iter().map(String::as_str).collect();
            report.todo(text, format!("{}; used at {}", p.advice, paths.join(", ")));
        }
        for (name, value) in self.told.defaults {
            report.note(
                format!("parameter {name}"),
                format!(
                    "its Default {value:?} is used; if the stack was created with another value, change it in the output"
                ),
            );
        }
        for (subject, message) in self.told.notes {
            report.note(subject, message);
        }
    }

    /// Runs `f` and forgets what it would have told: for values the import looks at but does
    /// not put into the group (the name of a Lambda function that may not be the group's).
    fn quietly<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = self.told.clone();
        let out = f(self);
        self.told = saved;
        out
    }

    fn placeholder(&mut self, text: String, advice: impl Into<String>, path: &str) -> Value {
        let entry = self
            .told
            .placeholders
            .entry(text.clone())
            .or_insert_with(|| Placeholder {
                advice: advice.into(),
                paths: BTreeSet::new(),
            });
        entry.paths.insert(path.to_string());
        Value::String(text)
    }

    fn note(&mut self, subject: String, message: String) {
        self.told.notes.insert((subject, message));
    }

    /// Whether `text` holds a placeholder (an unknown): comparisons with it decide nothing.
    fn unknown(&self, text: &str) -> bool {
        self.told
            .placeholders
            .keys()
            .any(|p| text.contains(p.as_str()))
    }

    /// Evaluates a value: `None` for `AWS::NoValue` (the member is then absent).
    pub(crate) fn value(&mut self, v: &Value, path: &str) -> Option<Value> {
        if self.depth >= MAX_DEPTH {
            return Some(self.placeholder(
                "<circular reference>".into(),
                "the template's references go round in a circle: put the value here",
                path,
            ));
        }
        self.depth += 1;
        let out = self.value_inner(v, path);
        self.depth -= 1;
        out
    }

    /// Evaluates a definition's content; `AWS::NoValue` there leaves it empty.
    pub(crate) fn value_or_empty(&mut self, v: &Value, path: &str) -> Value {
        self.value(v, path)
            .unwrap_or_else(|| Value::Object(serde_json::Map::new()))
    }

    fn value_inner(&mut self, v: &Value, path: &str) -> Option<Value> {
        if let Some((name, arg)) = intrinsic(v) {
            return self.function(name, arg, path);
        }
        match v {
            Value::Array(items) => Some(Value::Array(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| self.value(item, &format!("{path}[{i}]")))
                    .collect(),
            )),
            Value::Object(map) => Some(Value::Object(
                map.iter()
                    .filter_map(|(k, item)| {
                        self.value(item, &format!("{path}.{k}"))
                            .map(|value| (k.clone(), value))
                    })
                    .collect(),
            )),
            _ => Some(v.clone()),
        }
    }

    fn function(&mut self, name: &str, arg: &Value, path: &str) -> Option<Value> {
        match name {
            "Ref" => match arg.as_str() {
                Some(target) => self.reference(target, path),
                None => Some(self.placeholder(
                    format!("<Ref {arg}>"),
                    "a Ref names a parameter or resource by its name: put the value here",
                    path,
                )),
            },
            "Fn::GetAtt" => {
                let parts: Option<(String, String)> = match arg {
                    Value::Array(items) if items.len() == 2 => {
                        let attribute = self.value(&items[1], path);
                        match (items[0].as_str(), attribute.as_ref().and_then(Value::as_str)) {
                            (Some(r), Some(a)) => Some((r.to_string(), a.to_string())),
                            _ => None,
                        }
                    }
                    Value::String(s) => s
                        .split_once('.')
                        .map(|(r, a)| (r.to_string(), a.to_string())),
                    _ => None,
                };
                match parts {
                    Some((resource, attribute)) => Some(self.attribute(&resource, &attribute, path)),
                    None => Some(self.placeholder(
                        format!("<Fn::GetAtt {arg}>"),
                        "Fn::GetAtt takes [resource, attribute]: put the value here",
                        path,
                    )),
                }
            }
            "Fn::Sub" => Some(self.sub(arg, path)),
            "Fn::Join" => Some(self.join(arg, path)),
            "Fn::Select" => self.select(arg, path),
            "Fn::Split" => Some(self.split(arg, path)),
            "Fn::If" => self.choose(arg, path),
            "Fn::FindInMap" => Some(self.find_in_map(arg, path)),
            "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or" => {
                let decided = self.decide(&single(name, arg), path);
                Some(match decided {
                    Some(b) => Value::String(b.to_string()),
                    None => self.placeholder(
                        format!("<{name} …>"),
                        "a condition the import could not decide: put true or false here",
                        path,
                    ),
                })
            }
            _ => Some(self.placeholder(
                format!("<{name} {}>", short(arg)),
                format!(
                    "{name} is computed by CloudFormation when it deploys, which the import cannot do: put its value here"
                ),
                path,
            )),
        }
    }

    /// `Ref`: a pseudo parameter, a parameter or a resource.
    fn reference(&mut self, target: &str, path: &str) -> Option<Value> {
        if target.starts_with("AWS::") {
            return self.pseudo(target, path);
        }
        if let Some(declaration) = self.t.parameters.get(target) {
            return Some(self.parameter(target, declaration, path));
        }
        if self.t.resources.contains_key(target) {
            return Some(self.ref_resource(target, path));
        }
        Some(self.placeholder(
            format!("<Ref {target}>"),
            format!("the template has no parameter or resource {target}: put the value here"),
            path,
        ))
    }

    fn pseudo(&mut self, name: &str, path: &str) -> Option<Value> {
        let region = self.region;
        Some(match name {
            "AWS::Region" => match region {
                Some(r) => Value::String(r.to_string()),
                None => self.placeholder(
                    "<AWS::Region>".into(),
                    "the stack's region: import again with --region REGION, or replace it",
                    path,
                ),
            },
            "AWS::AccountId" => match self.account {
                Some(a) => Value::String(a.to_string()),
                None => self.placeholder(
                    "<AWS::AccountId>".into(),
                    "the stack's account id: import again with --account ACCOUNT, or replace it",
                    path,
                ),
            },
            "AWS::Partition" => Value::String(partition(region).to_string()),
            "AWS::URLSuffix" => Value::String(
                if region.is_some_and(|r| r.starts_with("cn-")) {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                }
                .to_string(),
            ),
            "AWS::NoValue" => return None,
            other => self.placeholder(
                format!("<{other}>"),
                format!("{other} is known only to the stack CloudFormation made: replace it"),
                path,
            ),
        })
    }

    fn parameter(&mut self, name: &str, declaration: &Value, path: &str) -> Value {
        let list = declaration
            .get("Type")
            .and_then(Value::as_str)
            .is_some_and(|t| t == "CommaDelimitedList" || t.starts_with("List<"));
        match declaration.get("Default") {
            Some(default) if !default.is_null() => {
                let text = match default {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                self.told.defaults.insert(name.to_string(), text.clone());
                if list {
                    Value::Array(
                        text.split(',')
                            .map(|s| Value::String(s.trim().to_string()))
                            .collect(),
                    )
                } else {
                    Value::String(text)
                }
            }
            _ => self.placeholder(
                format!("<parameter {name}>"),
                format!(
                    "the template's parameter {name} has no Default: replace it with the value the stack was created with"
                ),
                path,
            ),
        }
    }

    fn region_account(&mut self, path: &str) -> (String, String, String) {
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let region = text(self.pseudo("AWS::Region", path));
        let account = text(self.pseudo("AWS::AccountId", path));
        (partition(self.region).to_string(), region, account)
    }

    fn ref_resource(&mut self, id: &str, path: &str) -> Value {
        let t = self.t;
        let resource = &t.resources[id];
        match resource.kind.as_str() {
            "AWS::Lambda::Function" => Value::String(self.lambda_name(id)),
            "AWS::Lambda::Version" => self.lambda_version_arn(id, path),
            "AWS::Lambda::Alias" => self.lambda_alias_arn(id, path),
            "AWS::IoT::Thing" => self.thing_name(id, path),
            "AWS::SecretsManager::Secret" => {
                let name = self
                    .member_text(id, "Name", path)
                    .unwrap_or_else(|| id.to_string());
                self.placeholder(
                    format!("<ARN of the secret {name}>"),
                    format!(
                        "Secrets Manager gave the secret {name} ({id}) an ARN ending in 6 random characters that the \
                         template cannot hold: put the secret's ARN here"
                    ),
                    path,
                )
            }
            kind => match role(kind) {
                Some(Role::Version(_) | Role::GroupVersion) => {
                    Value::String(format!("{VERSION_TOKEN}{id}"))
                }
                Some(Role::Definition(_) | Role::Group) => Value::String(id.to_string()),
                None => self.placeholder(
                    format!("<Ref {id}>"),
                    format!(
                        "{id} is a {kind}, whose Ref only CloudFormation knows: put its value here"
                    ),
                    path,
                ),
            },
        }
    }

    fn attribute(&mut self, id: &str, attribute: &str, path: &str) -> Value {
        let t = self.t;
        let Some(resource) = t.resources.get(id) else {
            return self.placeholder(
                format!("<GetAtt {id}.{attribute}>"),
                format!("the template has no resource {id}: put the value here"),
                path,
            );
        };
        let (partition, region, account) = match (resource.kind.as_str(), attribute) {
            ("AWS::Lambda::Function", "Arn") | ("AWS::IoT::Thing", "Arn") => {
                self.region_account(path)
            }
            _ => Default::default(),
        };
        match (resource.kind.as_str(), attribute) {
            ("AWS::Lambda::Function", "Arn") => {
                let name = self.lambda_name(id);
                Value::String(format!("arn:{partition}:lambda:{region}:{account}:function:{name}"))
            }
            ("AWS::Lambda::Version", "Version") => {
                Value::String(self.lambda_version_number(id).to_string())
            }
            ("AWS::Lambda::Alias", "AliasArn" | "Arn") => self.lambda_alias_arn(id, path),
            ("AWS::IoT::Thing", "Arn") => {
                let name = self.thing_name(id, path);
                let name = name.as_str().unwrap_or_default();
                Value::String(format!("arn:{partition}:iot:{region}:{account}:thing/{name}"))
            }
            (kind, _) => match (role(kind), attribute) {
                (Some(Role::Definition(_) | Role::Group), "Id") => Value::String(id.to_string()),
                (Some(Role::Definition(_) | Role::Group), "LatestVersionArn") => {
                    Value::String(format!("{LATEST_TOKEN}{id}"))
                }
                (Some(Role::Definition(_) | Role::Group), "Arn") => {
                    Value::String(format!("{DEFINITION_TOKEN}{id}"))
                }
                (Some(Role::Definition(_) | Role::Group), "Name" | "RoleArn") => self
                    .member_text(id, attribute, path)
                    .map_or_else(
                        || {
                            self.placeholder(
                                format!("<GetAtt {id}.{attribute}>"),
                                format!("{id} has no {attribute}: put the value here"),
                                path,
                            )
                        },
                        Value::String,
                    ),
                _ => self.placeholder(
                    format!("<GetAtt {id}.{attribute}>"),
                    format!(
                        "the {attribute} of {id} (a {kind}) is known only to the stack CloudFormation made: put its \
                         value here"
                    ),
                    path,
                ),
            },
        }
    }

    /// A resource's property evaluated as text.
    fn member_text(&mut self, id: &str, member: &str, path: &str) -> Option<String> {
        let t = self.t;
        let raw = t.resources.get(id)?.properties.get(member)?;
        match self.value(raw, path)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The name of an `AWS::Lambda::Function`: its `FunctionName`, or when the template lets
    /// CloudFormation generate one, the logical id (noted).
    pub(crate) fn lambda_name(&mut self, id: &str) -> String {
        let path = format!("Resources.{id}.Properties.FunctionName");
        match self.member_text(id, "FunctionName", &path) {
            Some(name) => name,
            None => {
                self.note(
                    format!("resource {id}"),
                    format!(
                        "it has no FunctionName, so CloudFormation generated one the template cannot hold: the import \
                         names the function {id} (only its log file name depends on it)"
                    ),
                );
                id.to_string()
            }
        }
    }

    /// The function name a Version or Alias points at (`FunctionName`: a name, an ARN or a
    /// `Ref` to the function).
    fn target_function(&mut self, id: &str, path: &str) -> String {
        match self.member_text(id, "FunctionName", path) {
            Some(name) if name.starts_with("arn:") => name
                .split(":function:")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
                .unwrap_or(&name)
                .to_string(),
            Some(name) => name,
            None => self
                .placeholder(
                    format!("<function of {id}>"),
                    format!("{id} names no FunctionName: put the function's name here"),
                    path,
                )
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// Lambda numbers published versions 1, 2, …; the template does not say which number each
    /// `AWS::Lambda::Version` got, so they are numbered per function in logical-id order
    /// (noted): the ARN only has to be the same wherever the group names it.
    fn lambda_version_number(&mut self, id: &str) -> usize {
        let t = self.t;
        let function = self.quietly(|ev| ev.target_function(id, ""));
        let siblings: Vec<&str> = t
            .resources
            .iter()
            .filter(|(_, r)| r.kind == "AWS::Lambda::Version")
            .map(|(v, _)| v.as_str())
            .collect();
        let mut n = 0;
        for v in siblings {
            let f = self.quietly(|ev| ev.target_function(v, ""));
            if f == function {
                n += 1;
            }
            if v == id {
                break;
            }
        }
        self.note(
            format!("resource {id}"),
            format!(
                "the version number Lambda published is not in the template: the import calls it version {n} of \
                 {function} (only its ARN's last part depends on it, the same everywhere in the group)"
            ),
        );
        n
    }

    fn lambda_version_arn(&mut self, id: &str, path: &str) -> Value {
        let function = self.target_function(id, path);
        let n = self.lambda_version_number(id);
        let (partition, region, account) = self.region_account(path);
        Value::String(format!(
            "arn:{partition}:lambda:{region}:{account}:function:{function}:{n}"
        ))
    }

    fn lambda_alias_arn(&mut self, id: &str, path: &str) -> Value {
        let function = self.target_function(id, path);
        let alias = self.member_text(id, "Name", path).unwrap_or_else(|| {
            self.placeholder(
                format!("<alias name of {id}>"),
                format!("{id} has no Name: put the alias name here"),
                path,
            )
            .as_str()
            .unwrap_or_default()
            .to_string()
        });
        let (partition, region, account) = self.region_account(path);
        Value::String(format!(
            "arn:{partition}:lambda:{region}:{account}:function:{function}:{alias}"
        ))
    }

    fn thing_name(&mut self, id: &str, path: &str) -> Value {
        match self.member_text(id, "ThingName", path) {
            Some(name) => Value::String(name),
            None => self.placeholder(
                format!("<name of the thing {id}>"),
                format!(
                    "{id} has no ThingName, so CloudFormation generated one the template cannot hold: put the thing's \
                     name here"
                ),
                path,
            ),
        }
    }

    /// `Fn::Sub`: `"text ${Name} ${Res.Attr} ${!Literal}"`, or `[text, {Name: value}]`.
    fn sub(&mut self, arg: &Value, path: &str) -> Value {
        let (template, vars) =
            match arg {
                Value::String(s) => (s.as_str(), None),
                Value::Array(items) if items.len() == 2 => {
                    match (items[0].as_str(), items[1].as_object()) {
                        (Some(s), Some(vars)) => (s, Some(vars)),
                        _ => return self.placeholder(
                            "<Fn::Sub …>".into(),
                            "Fn::Sub takes a string or [string, {variables}]: put the value here",
                            path,
                        ),
                    }
                }
                _ => {
                    return self.placeholder(
                        "<Fn::Sub …>".into(),
                        "Fn::Sub takes a string or [string, {variables}]: put the value here",
                        path,
                    )
                }
            };
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            if let Some(literal) = after.strip_prefix('!') {
                // `${!Literal}` is the text `${Literal}`.
                out.push_str("${");
                rest = literal;
                continue;
            }
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let name = after[..end].trim();
            let value = match vars.and_then(|v| v.get(name)) {
                Some(v) => self.value(v, path),
                None => match name.split_once('.') {
                    Some((r, a)) if !name.starts_with("AWS::") => Some(self.attribute(r, a, path)),
                    _ => self.reference(name, path),
                },
            };
            out.push_str(&self.text(value, path));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Value::String(out)
    }

    /// A value used inside a string.
    fn text(&mut self, value: Option<Value>, path: &str) -> String {
        match value {
            None => String::new(),
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(other) => self
                .placeholder(
                    format!("<{}>", short(&other)),
                    "a list or object where text belongs: put the text here",
                    path,
                )
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }

    fn join(&mut self, arg: &Value, path: &str) -> Value {
        let parts = arg.as_array().filter(|a| a.len() == 2);
        let Some([delimiter, list]) = parts.map(Vec::as_slice) else {
            return self.placeholder(
                "<Fn::Join …>".into(),
                "Fn::Join takes [delimiter, [values]]: put the value here",
                path,
            );
        };
        let delimiter = delimiter.as_str().unwrap_or_default().to_string();
        let items = match self.value(list, path) {
            Some(Value::Array(items)) => items,
            other => vec![other.unwrap_or(Value::Null)],
        };
        let texts: Vec<String> = items
            .into_iter()
            .map(|item| self.text(Some(item), path))
            .collect();
        Value::String(texts.join(&delimiter))
    }

    fn select(&mut self, arg: &Value, path: &str) -> Option<Value> {
        let parts = arg.as_array().filter(|a| a.len() == 2)?;
        let index = match self.value(&parts[0], path) {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        let list = match self.value(&parts[1], path) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        match index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| list.get(i))
        {
            Some(v) => Some(v.clone()),
            None => Some(self.placeholder(
                format!("<Fn::Select {}>", short(arg)),
                "Fn::Select's index is not in its list: put the value here",
                path,
            )),
        }
    }

    fn split(&mut self, arg: &Value, path: &str) -> Value {
        let parts = arg.as_array().filter(|a| a.len() == 2);
        let Some([delimiter, source]) = parts.map(Vec::as_slice) else {
            return self.placeholder(
                "<Fn::Split …>".into(),
                "Fn::Split takes [delimiter, text]: put the value here",
                path,
            );
        };
        let delimiter = delimiter.as_str().unwrap_or(",").to_string();
        let source = self.value(source, path);
        let text = self.text(source, path);
        Value::Array(
            text.split(delimiter.as_str())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )
    }

    fn choose(&mut self, arg: &Value, path: &str) -> Option<Value> {
        let parts = arg.as_array().filter(|a| a.len() == 3)?;
        let name = parts[0].as_str().unwrap_or_default();
        let decided = self.condition(name, path);
        let branch = match decided {
            Some(true) => &parts[1],
            Some(false) => &parts[2],
            None => {
                self.note(
                    format!("condition {name}"),
                    format!(
                        "it could not be decided (it depends on a value the template does not hold): at {path} the \
                         import took the value for false"
                    ),
                );
                // An undecided value is still the user's to check: say where.
                self.placeholder(
                    format!("<condition {name}>"),
                    format!(
                        "the condition {name} could not be decided: check the values chosen for it"
                    ),
                    path,
                );
                &parts[2]
            }
        };
        self.value(branch, path)
    }

    fn find_in_map(&mut self, arg: &Value, path: &str) -> Value {
        let keys: Vec<String> = match arg.as_array() {
            Some(items) if items.len() == 3 => items
                .iter()
                .map(|k| {
                    let v = self.value(k, path);
                    self.text(v, path)
                })
                .collect(),
            _ => Vec::new(),
        };
        let found = match keys.as_slice() {
            [map, top, second] => self
                .t
                .mappings
                .get(map)
                .and_then(|m| m.get(top))
                .and_then(|m| m.get(second))
                .cloned(),
            _ => None,
        };
        match found {
            Some(v) => v,
            None => self.placeholder(
                format!("<Fn::FindInMap {}>", keys.join(".")),
                "the template's Mappings have no such entry: put the value here",
                path,
            ),
        }
    }

    /// A named condition of the template: `None` when it depends on an unknown.
    pub(crate) fn condition(&mut self, name: &str, path: &str) -> Option<bool> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        let t = self.t;
        let Some(definition) = t.conditions.get(name) else {
            self.placeholder(
                format!("<condition {name}>"),
                format!("the template has no condition {name}: check the values chosen for it"),
                path,
            );
            return None;
        };
        self.depth += 1;
        let out = self.decide(definition, &format!("Conditions.{name}"));
        self.depth -= 1;
        out
    }

    /// A condition function's truth value.
    fn decide(&mut self, v: &Value, path: &str) -> Option<bool> {
        if let Some(name) = v.get("Condition").and_then(Value::as_str) {
            return self.condition(name, path);
        }
        let (name, arg) = intrinsic(v)?;
        let items = arg.as_array().cloned().unwrap_or_default();
        match name {
            "Fn::Equals" if items.len() == 2 => {
                let a = self.value(&items[0], path);
                let a = self.text(a, path);
                let b = self.value(&items[1], path);
                let b = self.text(b, path);
                if self.unknown(&a) || self.unknown(&b) {
                    None
                } else {
                    Some(a == b)
                }
            }
            "Fn::Not" if items.len() == 1 => self.decide(&items[0], path).map(|b| !b),
            "Fn::And" | "Fn::Or" => {
                let and = name == "Fn::And";
                let mut unknown = false;
                for item in &items {
                    match self.decide(item, path) {
                        Some(b) if b != and => return Some(b),
                        Some(_) => {}
                        None => unknown = true,
                    }
                }
                if unknown {
                    None
                } else {
                    Some(and)
                }
            }
            _ => None,
        }
    }

    /// What a group version's `…DefinitionVersionArn` names.
    pub(crate) fn token(&mut self, raw: &Value, path: &str) -> Token {
        match self.value(raw, path) {
            Some(Value::String(s)) => {
                if let Some(id) = s.strip_prefix(VERSION_TOKEN) {
                    Token::Version(id.to_string())
                } else if let Some(id) = s.strip_prefix(LATEST_TOKEN) {
                    Token::Latest(id.to_string())
                } else {
                    Token::Other(s)
                }
            }
            other => Token::Other(other.map_or_else(String::new, |v| v.to_string())),
        }
    }
}

/// `{"Ref": X}` or `{"Fn::GetAtt": [X, "Id"]}` (either form): the resource X a
/// `…DefinitionId` names.
pub(crate) fn referenced_resource(raw: &Value) -> Option<String> {
    let (name, arg) = intrinsic(raw)?;
    match name {
        "Ref" => arg.as_str().map(str::to_string),
        "Fn::GetAtt" => match arg {
            Value::Array(items) if items.len() == 2 && items[1] == "Id" => {
                items[0].as_str().map(str::to_string)
            }
            Value::String(s) => s.strip_suffix(".Id").map(str::to_string),
            _ => None,
        },
        _ => None,
    }
}

/// An intrinsic function: an object whose one member is `Ref` or `Fn::…`.
fn intrinsic(v: &Value) -> Option<(&str, &Value)> {
    let map = v.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let (name, arg) = map.iter().next()?;
    (name == "Ref" || name.starts_with("Fn::")).then_some((name.as_str(), arg))
}

/// A condition function written inline (`Fn::Equals` as a value).
fn single(name: &str, arg: &Value) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(name.to_string(), arg.clone());
    Value::Object(map)
}

fn partition(region: Option<&str>) -> &'static str {
    match region {
        Some(r) if r.starts_with("cn-") => "aws-cn",
        Some(r) if r.starts_with("us-gov-") => "aws-us-gov",
        _ => "aws",
    }
}

/// A value shortened for a placeholder's text.
fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}
