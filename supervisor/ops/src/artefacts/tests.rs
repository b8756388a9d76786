//! Tests of the artefact store: names, digests, copies and checks on real files.

use super::*;
use serde_json::json;

fn write(path: &Path, content: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, content).expect("write");
    fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

/// A Python function's directory, with bytecode that must be left out.
fn function_dir(dir: &Path) {
    write(
        &dir.join("lambda_function.py"),
        b"def function_handler(e, c):\n    return e\n",
        0o644,
    );
    write(&dir.join("pkg/__init__.py"), b"", 0o644);
    write(&dir.join("pkg/tool.sh"), b"#!/bin/sh\n", 0o755);
    write(
        &dir.join("__pycache__/lambda_function.cpython-311.pyc"),
        b"junk",
        0o644,
    );
    write(&dir.join("pkg/old.pyc"), b"junk", 0o644);
}

#[test]
fn a_program_is_stored_under_the_sha256_of_its_bytes_with_its_name() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ArtefactStore::open(&tmp.path().join("root"));
    let source = tmp.path().join("src/monitor");
    write(&source, b"#!/bin/sh\necho hi\n", 0o750);
    let reference = store
        .add(&source, Role::Program, "Executable")
        .expect("add");
    let digest = hex(&Sha256::digest(b"#!/bin/sh\necho hi\n"));
    assert_eq!(reference, format!("artefacts/{digest}/monitor"));
    let stored = store.path_of(&digest, "monitor");
    assert_eq!(mode(&stored), 0o555);
    assert_eq!(fs::read(&stored).expect("read"), b"#!/bin/sh\necho hi\n");
    // Functions running as other users reach it.
    assert_eq!(mode(store.dir()) & 0o005, 0o005);
    store.check(&reference, "Executable").expect("intact");
    // Adding it again writes nothing new and names the same artefact.
    assert_eq!(
        store
            .add(&source, Role::Program, "Executable")
            .expect("again"),
        reference
    );
    let leftovers: Vec<_> = fs::read_dir(store.dir())
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(TMP_PREFIX))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary directories left: {leftovers:?}"
    );
}

#[test]
fn a_program_that_is_not_executable_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ArtefactStore::open(tmp.path());
    let source = tmp.path().join("notes.txt");
    write(&source, b"x", 0o644);
    let err = store
        .add(
            &source,
            Role::Program,
            "Functions[0].FunctionConfiguration.Executable",
        )
        .expect_err("refused");
    assert!(err.to_string().contains("not an executable file"), "{err}");
}

/// One edit of a function directory.
type Change = Box<dyn Fn(&Path)>;

#[test]
fn a_code_tree_is_copied_read_only_without_bytecode_and_its_digest_is_stable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ArtefactStore::open(&tmp.path().join("root"));
    let (a, b) = (tmp.path().join("a/function"), tmp.path().join("b/function"));
    function_dir(&a);
    function_dir(&b);
    let ra = store.add(&a, Role::Code, "CodeUri").expect("add a");
    let rb = store.add(&b, Role::Code, "CodeUri").expect("add b");
    assert_eq!(
        ra, rb,
        "the same tree from another directory is the same artefact"
    );
    let (digest, name) = parse_reference(&ra).expect("a reference");
    assert_eq!(name, "function");
    let stored = store.path_of(digest, name);
    assert!(stored.join("lambda_function.py").is_file());
    assert!(!stored.join("__pycache__").exists());
    assert!(!stored.join("pkg/old.pyc").exists());
    assert_eq!(mode(&stored), 0o555);
    assert_eq!(mode(&stored.join("pkg")), 0o555);
    assert_eq!(mode(&stored.join("lambda_function.py")), 0o444);
    assert_eq!(mode(&stored.join("pkg/tool.sh")), 0o555);
    assert_eq!(digest_of(&stored, "CodeUri").expect("digest"), digest);

    // Content, the execute bit and names each change the digest.
    let changes: [(&str, Change); 3] = [
        (
            "content",
            Box::new(|d| write(&d.join("pkg/__init__.py"), b"x = 1\n", 0o644)),
        ),
        (
            "mode",
            Box::new(|d| {
                write(
                    &d.join("lambda_function.py"),
                    b"def function_handler(e, c):\n    return e\n",
                    0o755,
                )
            }),
        ),
        (
            "name",
            Box::new(|d| fs::rename(d.join("pkg/tool.sh"), d.join("pkg/tool2.sh")).expect("mv")),
        ),
    ];
    for (what, change) in changes {
        let dir = tmp.path().join(format!("c-{what}/function"));
        function_dir(&dir);
        change(&dir);
        let other = digest_of(&dir, "CodeUri").expect("digest");
        assert_ne!(other, digest, "a change of {what} must change the digest");
    }
}

#[test]
fn links_are_followed_so_the_version_keeps_what_they_pointed_at() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ArtefactStore::open(&tmp.path().join("root"));
    let outside = tmp.path().join("shared.py");
    write(&outside, b"VALUE = 1\n", 0o644);
    let dir = tmp.path().join("function");
    write(&dir.join("main.py"), b"import shared\n", 0o644);
    std::os::unix::fs::symlink(&outside, dir.join("shared.py")).expect("ln");
    let reference = store.add(&dir, Role::Code, "CodeUri").expect("add");
    let (digest, name) = parse_reference(&reference).expect("reference");
    write(&outside, b"VALUE = 2\n", 0o644);
    let copy = store.path_of(digest, name).join("shared.py");
    assert!(!fs::symlink_metadata(&copy)
        .expect("stat")
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(copy).expect("read"), b"VALUE = 1\n");
}

#[test]
fn special_files_and_link_loops_are_refused_clearly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ArtefactStore::open(&tmp.path().join("root"));
    let dir = tmp.path().join("function");
    write(&dir.join("main.py"), b"", 0o644);
    std::os::unix::fs::symlink(&dir, dir.join("loop")).expect("ln");
    let err = store.add(&dir, Role::Code, "CodeUri").expect_err("a loop");
    assert!(err.to_string().contains("deeper than"), "{err}");

    let fifo_dir = tmp.path().join("fifo");
    fs::create_dir_all(&fifo_dir).expect("mkdir");
    let fifo = fifo_dir.join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let err = store
        .add(&fifo_dir, Role::Code, "CodeUri")
        .expect_err("a fifo");
    assert!(
        err.to_string().contains("neither a file nor a directory"),
        "{err}"
    );
    // Nothing half-copied is left behind.
    let names: Vec<_> = fs::read_dir(store.dir())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_tampered_tree_is_corrupt() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = ArtefactStore::open(&tmp.path().join("root"));
    let dir = tmp.path().join("function");
    function_dir(&dir);
    let reference = store.add(&dir, Role::Code, "CodeUri").expect("add");
    let (digest, name) = parse_reference(&reference).expect("reference");
    let pkg = store.path_of(digest, name).join("pkg");
    fs::set_permissions(&pkg, Permissions::from_mode(0o755)).expect("chmod");
    write(&pkg.join("extra.py"), b"evil()\n", 0o644);
    assert!(matches!(
        store.check(&reference, "CodeUri"),
        Err(ArtefactError::Corrupt { .. })
    ));
}

#[test]
fn slots_are_programs_and_python_code_never_handlers_or_host_programs() {
    let group = json!({ "FunctionDefinitionVersion": { "Functions": [
        { "FunctionConfiguration": { "Executable": "bin/native" } },
        { "FunctionConfiguration": { "Executable": "lambda_function.function_handler", "CodeUri": "fn" } },
        { "FunctionConfiguration": { "Executable": "app.main", "Runtime": "python3.8", "CodeUri": "app.zip" } },
        { "FunctionConfiguration": { "Executable": "/usr/bin/python3", "ExecArgs": "x.py" } },
        { "FunctionConfiguration": { "Executable": "/opt/vendor/agent" } },
        { "FunctionConfiguration": { } },
        { "FunctionConfiguration": { "Executable": "bin/c-fn", "Runtime": "executable" } }
    ]}});
    let got: Vec<(String, Role)> = slots(&group)
        .into_iter()
        .map(|s| (s.field, s.role))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "Functions[0].FunctionConfiguration.Executable".to_string(),
                Role::Program
            ),
            (
                "Functions[1].FunctionConfiguration.CodeUri".to_string(),
                Role::Code
            ),
            (
                "Functions[2].FunctionConfiguration.CodeUri".to_string(),
                Role::Code
            ),
            (
                "Functions[4].FunctionConfiguration.Executable".to_string(),
                Role::Program
            ),
            // A native function (Runtime executable) is a program, like a plain one.
            (
                "Functions[6].FunctionConfiguration.Executable".to_string(),
                Role::Program
            ),
        ]
    );
}

#[test]
fn references_are_exactly_a_digest_and_one_name() {
    let d = "a".repeat(64);
    assert_eq!(
        parse_reference(&format!("artefacts/{d}/fn")),
        Some((d.as_str(), "fn"))
    );
    for bad in [
        format!("artefacts/{d}/../x"),
        format!("artefacts/{d}/a/b"),
        format!("artefacts/{d}/"),
        format!("artefacts/{}/fn", "A".repeat(64)),
        format!("artefacts/{}/fn", "a".repeat(63)),
        format!("/artefacts/{d}/fn"),
        format!("artefacts/{d}/.tmp-1"),
    ] {
        assert_eq!(parse_reference(&bad), None, "{bad}");
    }
}
