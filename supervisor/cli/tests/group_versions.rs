//! `evergreen group create-version | list | show` as a user meets them: the
//! real binary, a runtime root and a configuration file in a temporary
//! directory (never the machine's /etc/evergreen/config.json).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    /// A directory with a configuration and the two programs the example group names
    /// (`bin/producer`, `bin/consumer`): a version carries its programs, so they must exist.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("config.json"), "{}").expect("write config");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        for name in ["producer", "consumer"] {
            let program = bin.join(name);
            std::fs::write(&program, format!("#!/bin/sh\necho {name}\n")).expect("write");
            std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        Root { dir }
    }

    /// A copy of `examples/<name>` beside the programs.
    fn example(&self, name: &str) -> PathBuf {
        let copy = self.path().join(name);
        std::fs::copy(example(name), &copy).expect("copy the example");
        copy
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn runtime_root(&self) -> PathBuf {
        self.path().join("root")
    }

    /// `evergreen group <args> --config <tmp>/config.json --root <tmp>/root`.
    fn group(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_evergreen"))
            .arg("group")
            .args(args)
            .arg("--config")
            .arg(self.path().join("config.json"))
            .arg("--root")
            .arg(self.runtime_root())
            .output()
            .expect("run evergreen")
    }

    fn versions(&self) -> PathBuf {
        self.runtime_root().join("deployments/versions")
    }

    /// Stores `file` and returns the id from the first line of stdout.
    fn create(&self, file: &Path) -> String {
        let out = self.group(&["create-version", &file.display().to_string()]);
        assert!(out.status.success(), "{}", text(&out));
        let id = stdout(&out).lines().next().unwrap_or_default().to_string();
        assert_eq!(id.len(), 64, "{}", text(&out));
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        id
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

#[test]
fn create_version_stores_the_example_once_and_prints_its_id() {
    let root = Root::new();
    let file = root.example("function-to-function.json");
    let id = root.create(&file);

    let dir = root.versions().join(&id);
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o750);
    assert_eq!(mode(&dir.join("group.json")), 0o440);
    assert_eq!(mode(&dir.join("meta.json")), 0o440);

    // The relative Executable now names the stored copy of the program, by digest.
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("group.json")).expect("read"))
            .expect("json");
    let exe = stored
        .pointer("/FunctionDefinitionVersion/Functions/0/FunctionConfiguration/Executable")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert!(
        exe.starts_with("artefacts/") && exe.ends_with("/producer"),
        "{exe}"
    );
    let copy = root.runtime_root().join("deployments").join(exe);
    assert_eq!(
        std::fs::read_to_string(copy).expect("the stored program"),
        "#!/bin/sh\necho producer\n"
    );

    // Again: the same id, nothing written.
    let before = std::fs::read(dir.join("meta.json")).expect("read");
    let out = root.group(&["create-version", &file.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out).lines().next(), Some(id.as_str()));
    assert!(text(&out).contains("already stored"), "{}", text(&out));
    assert_eq!(std::fs::read(dir.join("meta.json")).expect("read"), before);
    assert_eq!(std::fs::read_dir(root.versions()).expect("ls").count(), 1);
}

#[test]
fn whitespace_and_key_order_keep_the_id_and_content_changes_it() {
    let root = Root::new();
    let original = std::fs::read_to_string(example("function-to-function.json")).expect("read");
    // Both copies in one directory, so their Executables resolve alike.
    let a = root.path().join("a.json");
    std::fs::write(&a, &original).expect("write");
    let value: serde_json::Value = serde_json::from_str(&original).expect("json");
    let b = root.path().join("b.json");
    std::fs::write(
        &b,
        format!(
            "{{\"SubscriptionDefinitionVersion\": {},\n\n  \"FunctionDefinitionVersion\":{}}}",
            value["SubscriptionDefinitionVersion"], value["FunctionDefinitionVersion"]
        ),
    )
    .expect("write");
    let c = root.path().join("c.json");
    std::fs::write(&c, original.replace("readings/+", "readings/#")).expect("write");

    let id_a = root.create(&a);
    assert_eq!(root.create(&b), id_a);
    assert_ne!(root.create(&c), id_a);
}

#[test]
fn list_shows_every_version_newest_first() {
    let root = Root::new();
    let out = root.group(&["list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "", "an empty store lists nothing");
    assert!(
        text(&out).contains("no group versions stored"),
        "{}",
        text(&out)
    );
    assert_eq!(
        json(&root.group(&["list", "--json"])),
        serde_json::json!([])
    );

    let file = root.example("function-to-function.json");
    let first = root.create(&file);
    let other = root.path().join("other.json");
    std::fs::write(
        &other,
        std::fs::read_to_string(&file)
            .expect("read")
            .replace("readings/+", "other/+"),
    )
    .expect("write");
    let second = root.create(&other);

    let out = root.group(&["list"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID "), "{table}");
    assert!(lines[1].starts_with(&second[..12]), "newest first: {table}");
    assert!(lines[2].starts_with(&first[..12]), "{table}");
    assert!(lines[2].contains("function-to-function.json"), "{table}");
    let cols: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        &cols[2..4],
        ["2", "1"],
        "components, subscriptions: {table}"
    );

    let listed = json(&root.group(&["list", "--json"]));
    assert_eq!(listed[0]["id"], second.as_str());
    assert_eq!(listed[1]["id"], first.as_str());
    assert_eq!(listed[1]["summary"]["components"], 2);
    assert_eq!(listed[1]["summary"]["subscriptions"], 1);
    let created = listed[1]["created"].as_str().unwrap_or_default();
    assert!(
        created.len() == 24 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
}

#[test]
fn show_accepts_a_unique_prefix_and_refuses_others() {
    let root = Root::new();
    let id = root.create(&root.example("function-to-function.json"));

    let out = root.group(&["show", &id[..8]]);
    assert!(out.status.success(), "{}", text(&out));
    let group = json(&out);
    assert!(
        stdout(&out).contains("\n  \"FunctionDefinitionVersion\""),
        "pretty"
    );
    assert_eq!(
        group["SubscriptionDefinitionVersion"]["Subscriptions"][0]["Subject"],
        "readings/+"
    );

    let out = root.group(&["show", &id.to_uppercase(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = json(&out);
    assert_eq!(shown["meta"]["id"], id.as_str());
    assert_eq!(shown["group"], group);
    assert!(shown["meta"]["source"]
        .as_str()
        .unwrap_or_default()
        .ends_with("function-to-function.json"));

    let out = root.group(&["show", &id[..5]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("too short"), "{}", text(&out));

    let unknown = if id.starts_with("000000") {
        "111111"
    } else {
        "000000"
    };
    let out = root.group(&["show", unknown]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("no stored group version matches {unknown}")),
        "{}",
        text(&out)
    );

    // A second entry sharing the first 6 digits makes that prefix ambiguous.
    let mut twin = id.clone().into_bytes();
    twin[6] = if twin[6] == b'0' { b'1' } else { b'0' };
    let twin = String::from_utf8(twin).expect("hex");
    std::fs::create_dir(root.versions().join(&twin)).expect("mkdir");
    let out = root.group(&["show", &id[..6]]);
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("ambiguous"), "{t}");
    assert!(t.contains(&id[..12]) && t.contains(&twin[..12]), "{t}");
}

#[test]
fn an_invalid_group_is_refused_with_every_error_and_nothing_is_stored() {
    let root = Root::new();
    // The full example with its CloudWatch connector swapped for an unknown one.
    let full = std::fs::read_to_string(example("full-group.json")).expect("example");
    let file = root.path().join("invalid-group.json");
    std::fs::write(
        &file,
        full.replace(
            "connectors/CloudWatchMetrics/versions/5",
            "connectors/DockerApplicationDeployer/versions/7",
        ),
    )
    .expect("write");
    let out = root.group(&["create-version", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let validate = Command::new(env!("CARGO_BIN_EXE_evergreen"))
        .arg("validate")
        .arg(&file)
        .arg("--config")
        .arg(root.path().join("config.json"))
        .output()
        .expect("run evergreen");
    assert_eq!(validate.status.code(), Some(1));
    // The very lines `evergreen validate` prints.
    assert_eq!(stdout(&out), stdout(&validate));
    assert!(
        stdout(&out).contains("unknown connector `DockerApplicationDeployer`"),
        "{}",
        text(&out)
    );
    assert!(!root.versions().exists());

    let out = root.group(&["create-version", "/nonexistent/group.json"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("cannot read group file"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_missing_configuration_file_is_a_configuration_error() {
    let root = Root::new();
    let out = Command::new(env!("CARGO_BIN_EXE_evergreen"))
        .args(["group", "list", "--config"])
        .arg(root.path().join("absent.json"))
        .arg("--root")
        .arg(root.runtime_root())
        .output()
        .expect("run evergreen");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("absent.json"), "{}", text(&out));
}

#[test]
fn a_tampered_version_is_reported_and_never_used() {
    let root = Root::new();
    let file = root.example("function-to-function.json");
    let id = root.create(&file);
    let stored = root.versions().join(&id).join("group.json");
    let original = std::fs::read_to_string(&stored).expect("read");
    let tampered = original.replace("readings/+", "readings/#");
    assert_ne!(tampered, original);
    std::fs::set_permissions(&stored, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    std::fs::write(&stored, &tampered).expect("write");

    let out = root.group(&["show", &id[..12]]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(stdout(&out), "", "nothing of it is printed");
    assert!(text(&out).contains("is corrupt"), "{}", text(&out));

    let out = root.group(&["list"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is corrupt"), "{}", text(&out));
    assert!(!stdout(&out).contains(&id[..12]), "{}", text(&out));

    // Storing the same group again neither succeeds nor repairs it.
    let out = root.group(&["create-version", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is corrupt"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&stored).expect("read"), tampered);
}
