//! Unpacking and granting, on archives built here with the same crates'
//! writers (the S3 side is tested end to end against moto in
//! tests/tests/ml_models.rs).

use std::io::Write;

use super::*;

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name to build hostile archives too.
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, *data).expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (path, data) in entries {
        w.start_file(*path, opts).expect("start");
        w.write_all(data).expect("write");
    }
    w.finish().expect("zip").into_inner()
}

#[test]
fn tar_gz_zip_and_bare_files_are_unpacked() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = dir.path().join("a");
    std::fs::create_dir(&a).expect("dir");
    extract(
        &tar_gz(&[("model.onnx", b"onnx"), ("sub/labels.txt", b"cat\ndog\n")]),
        "m.tar.gz",
        &a,
        1 << 20,
    )
    .expect("tar.gz");
    assert_eq!(std::fs::read(a.join("model.onnx")).expect("file"), b"onnx");
    assert_eq!(
        std::fs::read(a.join("sub/labels.txt")).expect("file"),
        b"cat\ndog\n"
    );
    let z = dir.path().join("z");
    std::fs::create_dir(&z).expect("dir");
    extract(
        &zip_of(&[("m/model.onnx", b"zipped")]),
        "m.zip",
        &z,
        1 << 20,
    )
    .expect("zip");
    assert_eq!(
        std::fs::read(z.join("m/model.onnx")).expect("file"),
        b"zipped"
    );
    let b = dir.path().join("b");
    std::fs::create_dir(&b).expect("dir");
    extract(b"\x08\x01raw onnx", "model.onnx", &b, 1 << 20).expect("bare");
    assert_eq!(
        std::fs::read(b.join("model.onnx")).expect("file"),
        b"\x08\x01raw onnx"
    );
}

#[test]
fn entries_outside_the_tree_and_bombs_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    for (archive, what) in [
        (tar_gz(&[("../evil", b"x")]), "tar .."),
        (tar_gz(&[("/etc/evil", b"x")]), "tar absolute"),
        (zip_of(&[("../evil", b"x")]), "zip .."),
    ] {
        let d = tempfile::tempdir_in(dir.path()).expect("tmp");
        let e = extract(&archive, "m", d.path(), 1 << 20).expect_err(what);
        assert!(matches!(e, ExtractError::Escapes(_)), "{what}: {e}");
    }
    assert!(!dir.path().join("evil").exists());
    let d = tempfile::tempdir_in(dir.path()).expect("tmp");
    let big = vec![0u8; 4096];
    let e = extract(&tar_gz(&[("a", &big), ("b", &big)]), "m", d.path(), 6000).expect_err("bomb");
    assert!(matches!(e, ExtractError::TooLarge(6000)), "{e}");
    let e = extract(&zip_of(&[("a", &big), ("b", &big)]), "m", d.path(), 6000).expect_err("bomb");
    assert!(matches!(e, ExtractError::TooLarge(6000)), "{e}");
}

#[test]
fn read_only_grants_link_to_the_cache_and_read_write_ones_copy_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("ml-cache");
    unpack_into_cache(&cache, "abc", &tar_gz(&[("model.onnx", b"v1")]), "m").expect("unpack");
    let tree = cache.join("abc");
    let ro = dir.path().join("ml/ro");
    grant("ro", &tree, &ro, false, None).expect("grant ro");
    assert!(ro.symlink_metadata().expect("link").is_symlink());
    assert_eq!(std::fs::read(ro.join("model.onnx")).expect("read"), b"v1");
    assert!(
        std::fs::write(tree.join("model.onnx"), b"x").is_err() || nix::unistd::geteuid().is_root(),
        "the cached tree is read-only"
    );
    let rw = dir.path().join("ml/rw");
    grant("rw", &tree, &rw, true, None).expect("grant rw");
    std::fs::write(rw.join("model.onnx"), b"tuned").expect("a rw copy is writable");
    // The same archive again keeps what was written; another one replaces it.
    grant("rw", &tree, &rw, true, None).expect("again");
    assert_eq!(
        std::fs::read(rw.join("model.onnx")).expect("read"),
        b"tuned"
    );
    unpack_into_cache(&cache, "def", &tar_gz(&[("model.onnx", b"v2")]), "m").expect("unpack");
    grant("rw", &cache.join("def"), &rw, true, None).expect("new archive");
    assert_eq!(std::fs::read(rw.join("model.onnx")).expect("read"), b"v2");
    // A read-only grant replaces the directory a read-write one left.
    grant("rw", &cache.join("def"), &rw, false, None).expect("to ro");
    assert!(rw.symlink_metadata().expect("link").is_symlink());
}

#[test]
fn an_unknown_group_owner_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("ml-cache");
    unpack_into_cache(&cache, "abc", &tar_gz(&[("m", b"v")]), "m").expect("unpack");
    let e = grant(
        "r",
        &cache.join("abc"),
        &dir.path().join("ml/r"),
        false,
        Some("no-such-group-evergreen"),
    )
    .expect_err("refused");
    assert!(e.to_string().contains("no such group"), "{e}");
}

#[test]
fn uris_and_etags() {
    assert_eq!(split_uri("s3://b/k/m.tar.gz"), Some(("b", "k/m.tar.gz")));
    assert_eq!(split_uri("s3://b/"), None);
    assert_eq!(split_uri("https://b/k"), None);
    assert!(is_md5_etag("0123456789abcdef0123456789ABCDEF"));
    assert!(!is_md5_etag("0123456789abcdef0123456789abcdef-2"));
}

#[test]
fn a_nocontainer_destination_becomes_a_link_but_never_replaces_a_foreign_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let grant_a = dir.path().join("ml/a");
    let grant_b = dir.path().join("ml/b");
    let dest = dir.path().join("host/ml/model");
    host_link("a", &dest, &grant_a).expect("created");
    assert_eq!(std::fs::read_link(&dest).expect("link"), grant_a);
    host_link("a", &dest, &grant_a).expect("already there");
    // Another resource of ours may take the path over (a changed group).
    host_link("b", &dest, &grant_b).expect("ours");
    assert_eq!(std::fs::read_link(&dest).expect("link"), grant_b);
    let foreign = dir.path().join("host/data");
    std::fs::create_dir_all(&foreign).expect("dir");
    let e = host_link("a", &foreign, &grant_a).expect_err("refused");
    assert!(e.to_string().contains("is not Evergreen's link"), "{e}");
    assert!(foreign.is_dir(), "left alone");
}
