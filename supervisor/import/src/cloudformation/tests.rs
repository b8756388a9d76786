//! The evaluator and the group version's resolution on small templates.

use serde_json::{json, Value};

use super::eval::Eval;
use super::*;

fn template(value: Value) -> Template {
    Template::from_documents(&[Document {
        path: "t.json".into(),
        value,
    }])
    .expect("a template")
}

fn eval(t: &Template, v: Value, region: Option<&str>) -> (Value, Report) {
    let mut ev = Eval::new(t, region, Some("123456789012"));
    let out = ev.value(&v, "X").expect("a value");
    let mut report = Report::default();
    ev.finish(&mut report);
    (out, report)
}

#[test]
fn sub_join_select_split_and_pseudo_parameters_evaluate() {
    let t = template(json!({
        "Parameters": {"Thing": {"Type": "String", "Default": "Core"}, "Names": {"Type": "CommaDelimitedList", "Default": "a, b"}},
        "Resources": {"Fn": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "TempMonitor"}}}
    }));
    let (v, report) = eval(
        &t,
        json!({
            "sub": {"Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:thing/${Thing}${!Literal}"},
            "sub2": {"Fn::Sub": ["${Fn.Arn}:${Alias}", {"Alias": "GG"}]},
            "join": {"Fn::Join": [":", ["arn:aws:iot", {"Ref": "AWS::Region"}, "x"]]},
            "select": {"Fn::Select": ["1", {"Ref": "Names"}]},
            "split": {"Fn::Split": ["/", "a/b"]},
            "gone": {"Ref": "AWS::NoValue"}
        }),
        Some("eu-west-1"),
    );
    assert_eq!(
        v,
        json!({
            "sub": "arn:aws:iot:eu-west-1:123456789012:thing/Core${Literal}",
            "sub2": "arn:aws:lambda:eu-west-1:123456789012:function:TempMonitor:GG",
            "join": "arn:aws:iot:eu-west-1:x",
            "select": "b",
            "split": ["a", "b"]
        })
    );
    assert!(report.todos().next().is_none(), "{report:?}");
    assert!(report
        .findings
        .iter()
        .any(|f| f.subject == "parameter Thing"));
}

#[test]
fn unknowns_become_placeholders_listed_once_with_every_place() {
    let t = template(json!({
        "Parameters": {"Cert": {"Type": "String"}},
        "Resources": {"C": {"Type": "AWS::IoT::Certificate", "Properties": {}}}
    }));
    let (v, report) = eval(
        &t,
        json!({"a": {"Fn::Sub": "x:${AWS::Region}"}, "b": {"Ref": "AWS::Region"}, "c": {"Ref": "Cert"},
               "d": {"Fn::GetAtt": ["C", "Arn"]}, "e": {"Fn::ImportValue": "Shared"}}),
        None,
    );
    assert_eq!(v["a"], "x:<AWS::Region>");
    assert_eq!(v["c"], "<parameter Cert>");
    assert_eq!(v["d"], "<GetAtt C.Arn>");
    let todos: Vec<_> = report.todos().collect();
    assert_eq!(todos.len(), 4, "{todos:?}");
    let region = todos
        .iter()
        .find(|f| f.subject == "<AWS::Region>")
        .expect("region listed");
    assert!(region.message.contains("--region"), "{region:?}");
    assert!(region.message.contains("X.a, X.b"), "{region:?}");
}

#[test]
fn conditions_choose_branches_and_unknowns_are_said() {
    let t = template(json!({
        "Parameters": {"Env": {"Type": "String", "Default": "prod"}, "Other": {"Type": "String"}},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
                       "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
                       "Unknown": {"Fn::Equals": [{"Ref": "Other"}, "x"]}},
        "Resources": {"R": {"Type": "AWS::IoT::Thing"}}
    }));
    let (v, report) = eval(
        &t,
        json!({"a": {"Fn::If": ["IsProd", "yes", "no"]}, "b": {"Fn::If": ["NotProd", "yes", "no"]},
               "c": {"Fn::If": ["Unknown", "yes", "no"]}}),
        None,
    );
    assert_eq!(v, json!({"a": "yes", "b": "no", "c": "no"}));
    assert!(report.todos().any(|f| f.subject == "<condition Unknown>"));
}

#[test]
fn a_reference_cycle_stops() {
    let t = template(json!({"Resources": {
        "A": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": {"Ref": "B"}}},
        "B": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": {"Ref": "A"}}}
    }}));
    let (v, report) = eval(&t, json!({"Ref": "A"}), None);
    assert!(v.as_str().is_some_and(|s| s.contains("circular")), "{v}");
    assert!(report.todos().any(|f| f.subject == "<circular reference>"));
}

#[test]
fn the_group_version_follows_refs_and_latest_version_arns() {
    let t = json!({"Resources": {
        "Functions": {"Type": "AWS::Greengrass::FunctionDefinition", "Properties": {"Name": "f",
            "InitialVersion": {"Functions": [{"Id": "a", "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:a:1",
                "FunctionConfiguration": {"Executable": "a.h"}}]}}},
        "Subs": {"Type": "AWS::Greengrass::SubscriptionDefinition", "Properties": {"Name": "s"}},
        "SubsV1": {"Type": "AWS::Greengrass::SubscriptionDefinitionVersion", "Properties": {
            "SubscriptionDefinitionId": {"Ref": "Subs"}, "Subscriptions": [{"Id": "s1", "Source": "cloud", "Subject": "t", "Target": "cloud"}]}},
        "Unused": {"Type": "AWS::Greengrass::LoggerDefinition", "Properties": {"InitialVersion": {"Loggers": []}}},
        "Group": {"Type": "AWS::Greengrass::Group", "Properties": {"Name": "g", "InitialVersion": {
            "FunctionDefinitionVersionArn": {"Fn::GetAtt": ["Functions", "LatestVersionArn"]},
            "SubscriptionDefinitionVersionArn": {"Ref": "SubsV1"}}}}
    }});
    let options = Options {
        source: crate::Source::CloudFormation,
        region: None,
        account: None,
        write_code: false,
        registry: evergreen_group::ConnectorRegistry::default(),
    };
    let mut report = Report::default();
    let collected = collect(
        &[Document {
            path: "t.json".into(),
            value: t,
        }],
        &options,
        &mut report,
    )
    .expect("collected");
    let kinds: Vec<Kind> = collected.definitions.keys().copied().collect();
    assert_eq!(kinds, [Kind::Function, Kind::Subscription]);
    assert_eq!(
        collected.definitions[&Kind::Subscription].body,
        json!({"Subscriptions": [{"Id": "s1", "Source": "cloud", "Subject": "t", "Target": "cloud"}]})
    );
    assert!(report
        .findings
        .iter()
        .any(|f| f.subject == "resource Unused" && f.message.contains("left out")));
    assert!(report.todos().next().is_none(), "{report:?}");
}
