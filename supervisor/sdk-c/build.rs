//! Builds the library's one C file (`gg_log`, C-variadic) and links it into the cdylib with
//! V1's soname and symbol versions.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    println!("cargo:rerun-if-changed=src/gg_log.c");
    println!("cargo:rerun-if-changed=include/greengrasssdk.h");
    println!("cargo:rerun-if-changed=greengrasssdk.map");
    let objects = cc::Build::new()
        .file(dir.join("src/gg_log.c"))
        .include(dir.join("include"))
        .warnings(true)
        .extra_warnings(true)
        .compile_intermediates();
    // The object itself, not an archive: nothing in the Rust code calls `gg_log`, so a static
    // library's member would be left out; and rustc exports only Rust symbols, so the version
    // script below is what exports `gg_log` (with the others, at V1's versions).
    for object in objects {
        println!("cargo:rustc-cdylib-link-arg={}", object.display());
    }
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        dir.join("greengrasssdk.map").display()
    );
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libaws-greengrass-core-sdk-c.so");
}
