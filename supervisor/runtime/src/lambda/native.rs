//! Native functions (`Runtime` `executable`, programs linked against the Greengrass Core SDK
//! for C) on the lambda link: Evergreen's `libaws-greengrass-core-sdk-c.so`
//! (`supervisor/sdk-c`) found at start and copied to `<root>/runtime/lib/`, and the
//! environment a native function's child gets, whose `LD_LIBRARY_PATH` leads its loader to
//! that copy.
//!
//! A copy rather than the original: a build tree has it under cargo's name
//! (`libaws_greengrass_core_sdk_c.so`, not the soname a function needs), and a function in a
//! container sees only what is bound into it (the runtime directory is).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::python::{link_environment, PythonLaunch};
use super::LambdaHub;

/// The library's file name and soname, as Greengrass V1 shipped it.
pub const LIBRARY: &str = "libaws-greengrass-core-sdk-c.so";
/// Cargo's name for the same library in a build tree.
const CARGO_LIBRARY: &str = "libaws_greengrass_core_sdk_c.so";
/// Where the deb and rpm packages install it.
pub const PACKAGED_DIR: &str = "/usr/lib/evergreen";

/// The environment variable naming the library to use instead (a build or install elsewhere).
pub const LIBRARY_VAR: &str = "EVERGREEN_C_SDK_LIBRARY";

/// The library this runtime's functions get: the file `EVERGREEN_C_SDK_LIBRARY` names (when
/// set, it alone), else next to the `evergreen` program (a build tree), else in `lib/evergreen/`
/// beside the program's directory (the tarball's `install.sh` puts it in
/// `/usr/local/lib/evergreen/` for `/usr/local/bin/evergreen`), else in the packages' directory.
pub fn find_library(exe: &Path, named: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    if let Some(named) = named.filter(|n| !n.is_empty()) {
        let named = PathBuf::from(named);
        return named.is_file().then_some(named);
    }
    let beside = exe.parent().map(|dir| {
        [
            dir.join(LIBRARY),
            dir.join(CARGO_LIBRARY),
            dir.join("../lib/evergreen").join(LIBRARY),
        ]
    });
    beside
        .into_iter()
        .flatten()
        .chain(std::iter::once(Path::new(PACKAGED_DIR).join(LIBRARY)))
        .find(|p| p.is_file())
}

/// Copies `library` to `dir/LIBRARY` (created if needed), world-readable so functions running
/// as another user can load it.
pub fn install(dir: &Path, library: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let bytes = std::fs::read(library)?;
    // Write-then-rename: a function starting meanwhile never maps a half-written file.
    evergreen_durable::write_atomic(&dir.join(LIBRARY), &bytes, evergreen_durable::Mode::Public)
}

/// The environment of a native function's child: the lambda link's (as a Python function's)
/// and `LD_LIBRARY_PATH` with the library's directory first (before the function's own
/// `LD_LIBRARY_PATH`, if its `Environment.Variables` set one).
pub(crate) fn environment(
    hub: &LambdaHub,
    launch: &PythonLaunch<'_>,
    library_dir: &Path,
    own: Option<&std::ffi::OsStr>,
) -> Vec<(OsString, OsString)> {
    let mut path = OsString::from(library_dir.as_os_str());
    if let Some(own) = own.filter(|o| !o.is_empty()) {
        path.push(":");
        path.push(own);
    }
    let mut env: Vec<(OsString, OsString)> = link_environment(hub, launch)
        .into_iter()
        .map(|(k, v)| (k.into(), v))
        .collect();
    env.push(("LD_LIBRARY_PATH".into(), path));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_found_beside_the_program_under_either_name_and_copied() {
        let dir = tempfile::tempdir().expect("tmp");
        let exe = dir.path().join("evergreen");
        assert!(find_library(&exe, None).is_none_or(|p| p.starts_with(PACKAGED_DIR)));
        std::fs::write(dir.path().join(CARGO_LIBRARY), b"ELF").expect("write");
        let found = find_library(&exe, None).expect("found");
        let missing = dir.path().join("nowhere.so");
        assert_eq!(find_library(&exe, Some(missing.as_os_str())), None);
        assert_eq!(
            find_library(&exe, Some(found.as_os_str())),
            Some(found.clone())
        );
        let prefix = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(prefix.path().join("bin")).expect("mkdir");
        std::fs::create_dir_all(prefix.path().join("lib/evergreen")).expect("mkdir");
        std::fs::write(prefix.path().join("lib/evergreen").join(LIBRARY), b"ELF").expect("write");
        let installed = find_library(&prefix.path().join("bin/evergreen"), None).expect("found");
        assert!(
            installed.ends_with(Path::new("bin/../lib/evergreen").join(LIBRARY)),
            "{}",
            installed.display()
        );
        let out = dir.path().join("runtime/lib");
        install(&out, &found).expect("install");
        install(&out, &found).expect("again");
        assert_eq!(std::fs::read(out.join(LIBRARY)).expect("read"), b"ELF");
    }
}
