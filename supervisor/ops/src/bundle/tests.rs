//! Tests of group bundles: export, import into another root, and every refusal.

use super::*;
use evergreen_group::{ConnectorRegistry, ValidationOptions};
use time::OffsetDateTime;

const GROUP: &str = r#"{
  "FunctionDefinitionVersion": { "Functions": [
    { "Id": "native", "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:native:1",
      "FunctionConfiguration": { "Executable": "bin/native", "Pinned": true,
        "Environment": { "Execution": { "IsolationMode": "NoContainer" } } } },
    { "Id": "py", "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:py:1",
      "FunctionConfiguration": { "Executable": "lambda_function.function_handler",
        "CodeUri": "function", "Runtime": "python3.8", "Pinned": true,
        "Environment": { "Execution": { "IsolationMode": "NoContainer" } } } },
    { "Id": "host", "FunctionArn": "arn:aws:lambda:eu-west-1:123456789012:function:host:1",
      "FunctionConfiguration": { "Executable": "/bin/sh", "ExecArgs": "-c true",
        "Environment": { "Execution": { "IsolationMode": "NoContainer" } } } }
  ] }
}"#;

fn loader() -> Loader {
    Loader::new(
        ConnectorRegistry::new(Vec::new()),
        ValidationOptions {
            default_core_thing_arn: "arn:aws:iot:eu-west-1:123456789012:thing/core".into(),
            ..ValidationOptions::default()
        },
    )
}

fn write(path: &Path, content: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, content).expect("write");
    fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
}

/// A group directory with a program and a Python function's code, stored in a new root.
fn stored(tmp: &Path) -> (VersionStore, VersionId) {
    let dir = tmp.join("src");
    write(&dir.join("bin/native"), b"#!/bin/sh\necho native\n", 0o755);
    write(
        &dir.join("function/lambda_function.py"),
        b"def function_handler(e, c):\n    pass\n",
        0o644,
    );
    write(&dir.join("function/lib/helper.py"), b"X = 1\n", 0o644);
    write(&dir.join("group.json"), GROUP.as_bytes(), 0o644);
    let store = VersionStore::open(&tmp.join("root-a"));
    let plan = loader().load(GROUP, "test", dir.clone()).expect("valid");
    let created = store.create(GROUP, &dir, None, &plan).expect("create");
    (store, created.id)
}

fn export_bytes(store: &VersionStore, id: &VersionId) -> Vec<u8> {
    let mut out = Vec::new();
    export(store, id.as_str(), &mut out).expect("export");
    out
}

#[test]
fn a_bundle_carries_the_version_and_its_code_to_another_root_under_the_same_id() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (store, id) = stored(tmp.path());
    let bytes = export_bytes(&store, &id);
    assert_eq!(
        bytes,
        export_bytes(&store, &id),
        "exports are byte for byte the same"
    );
    assert!({
        let path = tmp.path().join("b.tar");
        fs::write(&path, &bytes).expect("write");
        is_bundle(&path)
    });

    // The source files may be gone: the bundle has everything.
    fs::remove_dir_all(tmp.path().join("src/function")).expect("rm");
    let other = VersionStore::open(&tmp.path().join("root-b"));
    let created = import(&other, &loader(), bytes.as_slice(), "b.tar").expect("import");
    assert_eq!(created.id, id);
    assert!(!created.existed);
    let a = store.load(id.as_str()).expect("load a");
    let b = other.load(id.as_str()).expect("load b");
    assert_eq!(a.group, b.group);
    let group: Value = serde_json::from_str(&b.group).expect("json");
    let code = group
        .pointer("/FunctionDefinitionVersion/Functions/1/FunctionConfiguration/CodeUri")
        .and_then(Value::as_str)
        .expect("CodeUri");
    let helper = b.base_dir.join(code).join("lib/helper.py");
    assert_eq!(fs::read(helper).expect("read"), b"X = 1\n");
    // The handler was never taken for a path, the host program never copied.
    assert_eq!(
        group.pointer("/FunctionDefinitionVersion/Functions/1/FunctionConfiguration/Executable"),
        Some(&Value::from("lambda_function.function_handler"))
    );
    assert_eq!(
        group.pointer("/FunctionDefinitionVersion/Functions/2/FunctionConfiguration/Executable"),
        Some(&Value::from("/bin/sh"))
    );
    // Importing again is a no-op.
    let again = import(&other, &loader(), bytes.as_slice(), "b.tar").expect("again");
    assert!(again.existed);
}

/// Rewrites a bundle entry by entry, letting `edit` change or drop each.
fn rewrite(bytes: &[u8], mut edit: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = tar::Builder::new(Vec::new());
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read");
        if let Some(data) = edit(&path, data) {
            header.set_size(data.len() as u64);
            out.append_data(&mut header, &path, data.as_slice())
                .expect("append");
        }
    }
    out.into_inner().expect("finish")
}

fn refused(bytes: &[u8]) -> (String, VersionStore, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tmp");
    let other = VersionStore::open(tmp.path());
    let err = import(&other, &loader(), bytes, "bad.tar").expect_err("refused");
    (err.to_string(), other, tmp)
}

fn nothing_stored(store: &VersionStore) {
    assert!(store.list().expect("list").versions.is_empty());
    let artefacts: Vec<_> = fs::read_dir(store.artefacts().dir())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(artefacts.is_empty(), "{artefacts:?}");
}

#[test]
fn a_changed_artefact_is_refused_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (store, id) = stored(tmp.path());
    let bytes = rewrite(&export_bytes(&store, &id), |path, data| {
        Some(if path.ends_with("lib/helper.py") {
            b"X = 2\n".to_vec()
        } else {
            data
        })
    });
    let (msg, other, _keep) = refused(&bytes);
    assert!(msg.contains("corrupt"), "{msg}");
    nothing_stored(&other);
}

#[test]
fn a_changed_group_or_a_missing_artefact_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (store, id) = stored(tmp.path());
    let bytes = export_bytes(&store, &id);
    let changed = rewrite(&bytes, |path, data| {
        Some(if path == "group.json" {
            String::from_utf8(data)
                .expect("utf8")
                .replace("native", "nativ2")
                .into_bytes()
        } else {
            data
        })
    });
    let (msg, other, _keep) = refused(&changed);
    assert!(msg.contains("hashes to"), "{msg}");
    nothing_stored(&other);

    let missing = rewrite(&bytes, |path, data| {
        (!path.contains("/native")).then_some(data)
    });
    let (msg, other, _keep) = refused(&missing);
    assert!(msg.contains("missing"), "{msg}");
    assert!(other.list().expect("list").versions.is_empty());
}

#[test]
fn a_manifest_in_array_form_is_refused() {
    // serde alone reads `["evergreen-bundle", 1, "<id>"]` as the manifest, by position.
    let tmp = tempfile::tempdir().expect("tmp");
    let (store, id) = stored(tmp.path());
    let bytes = rewrite(&export_bytes(&store, &id), |path, data| {
        Some(if path == "bundle.json" {
            let manifest: Value = serde_json::from_slice(&data).expect("manifest");
            serde_json::to_vec(&serde_json::json!([
                manifest["format"],
                manifest["formatVersion"],
                manifest["version"]
            ]))
            .expect("encode")
        } else {
            data
        })
    });
    let (msg, other, _keep) = refused(&bytes);
    assert!(
        msg.contains("bundle.json: expected an object, found an array"),
        "{msg}"
    );
    nothing_stored(&other);
}

#[test]
fn entries_outside_the_store_links_and_devices_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (store, id) = stored(tmp.path());
    let bytes = export_bytes(&store, &id);
    for (name, kind) in [
        ("artefacts/../../escape", tar::EntryType::Regular),
        ("/etc/evergreen-test-escape", tar::EntryType::Regular),
        ("artefacts/x/link", tar::EntryType::Symlink),
        ("artefacts/x/dev", tar::EntryType::Char),
        ("extra.txt", tar::EntryType::Regular),
    ] {
        // Appended raw, as a hostile tool would write it (the builder refuses `..`).
        let mut raw = bytes[..bytes.len() - 1024].to_vec();
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(&[0u8; 1024]);
        let (msg, other, _keep) = refused(&raw);
        assert!(msg.contains("not a valid group bundle"), "{name}: {msg}");
        nothing_stored(&other);
    }
    assert!(!Path::new("/etc/evergreen-test-escape").exists());
}

#[test]
fn a_version_from_before_artefacts_cannot_be_exported_and_says_why() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (store, id) = stored(tmp.path());
    // Rewrite the stored version as an older Evergreen wrote it: absolute paths, no layout.
    let dir = store.version_dir(&id);
    let old_group = GROUP.replace("bin/native", "/opt/app/native");
    let value: Value = serde_json::from_str(&old_group).expect("json");
    let text = crate::store::canonical_json(&value);
    let old_id = VersionId::of(text.as_bytes());
    let old_dir = store.dir().join(old_id.as_str());
    fs::create_dir_all(&old_dir).expect("mkdir");
    fs::write(old_dir.join(GROUP_FILE), &text).expect("write");
    let meta = serde_json::json!({
        "id": old_id, "created": evergreen_durable::format_time(OffsetDateTime::now_utc()).expect("time"),
        "source": null, "baseDir": "/opt/app",
        "summary": { "components": 3, "subscriptions": 0, "resources": 0, "devices": 0 },
        "createdBy": "evergreen 0.1.0"
    });
    fs::write(old_dir.join(crate::store::META_FILE), meta.to_string()).expect("write");
    assert!(dir.exists());
    let err = export(&store, old_id.as_str(), &mut Vec::new()).expect_err("refused");
    assert!(err.to_string().contains("predates artefacts"), "{err}");
}
