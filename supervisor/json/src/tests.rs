//! Unit tests of the strict reader: each leniency of serde refused at depth with its path,
//! and what must stay accepted (arrays for sequences, variants with data, ordinary documents).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::*;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Outer {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    inner: Option<Inner>,
    #[serde(default)]
    map: BTreeMap<String, Inner>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Item {
    id: String,
    #[serde(default)]
    config: Option<Inner>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct Inner {
    #[serde(default)]
    a: u32,
    #[serde(default)]
    b: String,
}

/// No `deny_unknown_fields`: serde skips unknown members (and so their repeats).
#[derive(Debug, Deserialize, PartialEq)]
struct Open {
    format: u32,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Policy {
    Always,
    Never,
}

#[derive(Debug, Deserialize, PartialEq)]
enum Shape {
    Unit,
    Newtype(u32),
    Pair(u32, u32),
    Named { x: u32 },
}

fn err<T: for<'a> Deserialize<'a> + std::fmt::Debug>(text: &str) -> Error {
    match from_str::<T>(text) {
        Ok(v) => panic!("{text} was accepted as {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn serde_json_alone_takes_an_array_for_a_struct() {
    // What this crate is for: the plain reader accepts it.
    let lenient: Item = serde_json::from_str(r#"["x", [7, "y"]]"#).expect("serde_json takes it");
    assert_eq!(lenient.id, "x");
}

#[test]
fn a_struct_given_as_an_array_is_refused_at_any_depth_with_its_path() {
    let e = err::<Outer>(r#"[[]]"#);
    assert!(e.path().is_root(), "{e}");
    assert!(e.message().starts_with(NOT_AN_OBJECT), "{e}");

    let e = err::<Outer>(r#"{"Items": [{"Id": "a"}, ["b"]]}"#);
    assert_eq!(e.path().to_string(), "Items[1]");
    assert!(e.message().starts_with(NOT_AN_OBJECT), "{e}");

    let e = err::<Outer>(r#"{"Items": [{"Id": "a", "Config": [3, "x"]}]}"#);
    assert_eq!(
        e.to_string().split(" at line").next(),
        Some("Items[0].Config: expected an object, found an array")
    );

    let e = err::<Outer>(r#"{"Inner": [1]}"#);
    assert_eq!(e.path().to_string(), "Inner");

    let e = err::<Outer>(r#"{"Map": {"k": [1, "b"]}}"#);
    assert_eq!(
        e.path().segments(),
        [Segment::Key("Map".into()), Segment::Key("k".into())]
    );
    assert!(e.message().starts_with(NOT_AN_OBJECT), "{e}");
}

#[test]
fn arrays_stay_arrays_where_a_sequence_is_expected() {
    let v: Outer = from_str(r#"{"Items": [{"Id": "a", "Config": {"A": 1}}]}"#).expect("reads");
    assert_eq!(
        v.items[0].config,
        Some(Inner {
            a: 1,
            b: String::new()
        })
    );
    let pair: (u32, String) = from_str(r#"[1, "x"]"#).expect("tuple");
    assert_eq!(pair, (1, "x".to_string()));
    let list: Vec<Vec<u8>> = from_str("[[1], [], [2, 3]]").expect("nested");
    assert_eq!(list, [vec![1], vec![], vec![2, 3]]);
}

#[test]
fn a_key_given_twice_is_refused_in_every_kind_of_object() {
    // A known field of a derived struct (serde refuses it too).
    let e = err::<Inner>(r#"{"A": 1, "A": 2}"#);
    assert!(e.message().contains("duplicate"), "{e}");
    // An unknown member of a struct that skips unknown members: serde alone takes it.
    assert!(serde_json::from_str::<Open>(r#"{"format": 1, "x": 1, "x": 2}"#).is_ok());
    let e = err::<Open>(r#"{"format": 1, "x": 1, "x": 2}"#);
    assert!(e.message().contains("duplicate key `x`"), "{e}");
    // A map: serde keeps the last.
    // The path names the repeated key.
    let e = err::<BTreeMap<String, u32>>(r#"{"a": 1, "b": 2, "a": 3}"#);
    assert!(e.message().contains("duplicate key `a`"), "{e}");
    assert_eq!(e.path().to_string(), "a");
    // A `Value`, deep down.
    let e = err::<Value>(r#"{"op": "status", "args": [{"x": {"y": 1, "y": 2}}]}"#);
    assert_eq!(e.path().to_string(), "args[0].x.y");
    assert!(e.message().contains("duplicate key `y`"), "{e}");
    let e = err::<Value>(r#"{"op": "status", "op": "reset"}"#);
    assert!(e.message().contains("duplicate key `op`"), "{e}");
    // Inside a map of structs.
    let e = err::<Outer>(r#"{"Map": {"k": {"A": 1}, "k": {"A": 2}}}"#);
    assert_eq!(e.path().to_string(), "Map.k");
}

#[test]
fn equal_keys_in_different_objects_are_fine() {
    let v: Value =
        from_str(r#"{"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 3}, {"x": 4}]}"#).expect("reads");
    assert_eq!(v["c"][1]["x"], 4);
}

#[test]
fn anything_after_the_document_is_refused() {
    assert!(from_str::<Value>("{} {}").is_err());
    assert!(from_str::<Value>("{}x").is_err());
    assert!(from_slice::<Value>(b"[1] ]").is_err());
    assert_eq!(from_str::<Value>(" {} \n").expect("whitespace"), json!({}));
}

#[test]
fn a_variant_without_data_is_a_string_not_an_object() {
    assert_eq!(
        from_str::<Policy>(r#""always""#).expect("name"),
        Policy::Always
    );
    // serde_json alone takes the object form.
    assert_eq!(
        serde_json::from_str::<Policy>(r#"{"never": null}"#).expect("serde_json"),
        Policy::Never
    );
    let e = err::<Policy>(r#"{"never": null}"#);
    assert!(
        e.message().contains("expected a string, found an object"),
        "{e}"
    );
    assert!(err::<Policy>(r#""sometimes""#)
        .message()
        .contains("is not one of the values allowed"));
    assert!(err::<Policy>("3").message().contains("must be"));
    // A string with escapes arrives as an owned string.
    assert_eq!(
        from_str::<Policy>(r#""\u0061lways""#).expect("escaped"),
        Policy::Always
    );
}

#[test]
fn variants_with_data_are_one_key_objects() {
    assert_eq!(from_str::<Shape>(r#""Unit""#).expect("unit"), Shape::Unit);
    assert_eq!(
        from_str::<Shape>(r#"{"Newtype": 4}"#).expect("newtype"),
        Shape::Newtype(4)
    );
    assert_eq!(
        from_str::<Shape>(r#"{"Pair": [1, 2]}"#).expect("pair"),
        Shape::Pair(1, 2)
    );
    assert_eq!(
        from_str::<Shape>(r#"{"Named": {"x": 5}}"#).expect("named"),
        Shape::Named { x: 5 }
    );
    assert!(err::<Shape>(r#"{"Named": [5]}"#)
        .message()
        .starts_with(NOT_AN_OBJECT));
    assert!(err::<Shape>(r#"{"Newtype": 4, "Unit": null}"#)
        .message()
        .contains("exactly one key"));
    assert!(err::<Shape>("{}").message().contains("empty object"));
    assert!(err::<Shape>(r#""Newtype""#).message().contains("must be"));
}

#[test]
fn numbers_and_strings_do_not_stand_for_each_other() {
    assert!(err::<Inner>(r#"{"A": "1"}"#).message().contains("must be"));
    assert!(err::<Inner>(r#"{"B": 1}"#).message().contains("must be"));
    assert!(err::<Inner>(r#"{"A": 1.5}"#).message().contains("must be"));
    assert!(err::<Inner>(r#"{"A": -1}"#).message().contains("must be"));
    assert!(err::<Inner>(r#"{"A": true}"#).message().contains("must be"));
}

#[test]
fn syntax_errors_have_their_place_and_position() {
    let e = err::<Value>(r#"{"a": }"#);
    assert_eq!(e.path().to_string(), "a");
    assert!(e.to_string().contains("line 1 column 7"), "{e}");
    let e = err::<Value>(r#""open"#);
    assert!(e.path().is_root(), "{e}");
    assert_eq!(e.to_string(), e.message());
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    // Within serde_json's recursion limit (128) the layers still fit a test thread's stack.
    let ok = format!("{}{}", "[".repeat(120), "]".repeat(120));
    assert!(from_str::<Value>(&ok).is_ok());
    let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(120), "}".repeat(120));
    assert!(from_str::<Value>(&deep_objects).is_ok());
    let too_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(from_str::<Value>(&too_deep).is_err());
}

#[test]
fn paths_read_as_serde_path_to_error_wrote_them() {
    let path = Path(vec![
        Segment::Key("evergreen".into()),
        Segment::Key("components".into()),
        Segment::Index(2),
        Segment::Key("restart".into()),
    ]);
    assert_eq!(path.to_string(), "evergreen.components[2].restart");
    assert_eq!(Path::default().to_string(), ".");
    assert_eq!(Path(vec![Segment::Index(0)]).to_string(), "[0]");
}

#[test]
fn from_str_all_lists_every_member_at_fault() {
    let text = r#"{"Items": [{"Id": "a", "Confg": 1}], "Inner": {"A": "x"}, "Map": {"k": {"A": -1}}, "Extra": 2}"#;
    let errors = from_str_all::<Outer>(text, 10).expect_err("four mistakes");
    let mut paths: Vec<String> = errors.iter().map(|e| e.path().to_string()).collect();
    // The first is the file's first; the copy's members come in key order.
    assert_eq!(paths[0], "Items[0].Confg", "{errors:?}");
    paths.sort();
    assert_eq!(
        paths,
        ["Extra", "Inner.A", "Items[0].Confg", "Map.k.A"],
        "{errors:?}"
    );
    assert!(errors[0].message().contains("line 1 column"), "{errors:?}");
    assert!(
        errors[1..]
            .iter()
            .all(|e| !e.message().contains(" at line ")),
        "later errors come from the copy, whose lines are not the file's: {errors:?}"
    );
}

#[test]
fn from_str_all_stops_before_an_error_of_its_own_making() {
    // Taking `Id` out (wrong type) makes it missing: that is not reported.
    let errors = from_str_all::<Outer>(r#"{"Items": [{"Id": 5}]}"#, 10).expect_err("bad");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path().to_string(), "Items[0].Id");
    // An array element is never taken out: the paths after it would be renumbered.
    let errors = from_str_all::<Vec<u32>>(r#"[1, "x", "y"]"#, 10).expect_err("bad");
    assert_eq!(errors.len(), 1, "{errors:?}");
    // A variant given as an object is one mistake, not two.
    let errors =
        from_str_all::<BTreeMap<String, Policy>>(r#"{"p": {"never": null}}"#, 10).expect_err("bad");
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn from_str_all_keeps_the_first_error_of_text_that_is_not_json_or_repeats_a_key() {
    let errors = from_str_all::<Outer>(r#"{"Items": [}"#, 10).expect_err("syntax");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let errors =
        from_str_all::<Outer>(r#"{"Inner": {"A": 1, "A": 2}, "Extra": 1}"#, 10).expect_err("dup");
    assert_eq!(errors[0].path().to_string(), "Inner.A", "{errors:?}");
    assert!(
        errors[0].message().starts_with("duplicate key `A`"),
        "{errors:?}"
    );
    assert_eq!(
        from_str_all::<Outer>(r#"{"Inner": {"A": 1}}"#, 10).map(|o| o.inner.map(|i| i.a)),
        Ok(Some(1))
    );
    assert_eq!(
        from_str_all::<Outer>(r#"{"X": 1, "Y": 2, "Z": 3}"#, 2)
            .map_err(|e| e.len())
            .err(),
        Some(2)
    );
}
