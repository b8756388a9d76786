//! The man pages and completion scripts the packages ship (`packaging/man/`,
//! `packaging/completions/`) are what this build's command line generates: a change to a
//! command or an option without running `packaging/generate-docs.sh` fails here, as a stale
//! licence inventory fails `packaging/licenses.sh --check`.

use std::path::{Path, PathBuf};

use evergreen::docs::{completions, man_pages, Shell};

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging")
}

fn assert_same(path: &Path, generated: &[u8]) {
    let committed = std::fs::read(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what this build generates: run packaging/generate-docs.sh and commit the result",
        path.display()
    );
}

#[test]
fn the_shipped_man_pages_are_the_generated_ones() {
    let dir = packaging().join("man");
    let pages = man_pages().expect("render");
    for (name, text) in &pages {
        assert_same(&dir.join(name), text);
    }
    // No page is left behind for a command that is gone.
    let mut shipped: Vec<String> = std::fs::read_dir(&dir)
        .expect("packaging/man")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    shipped.sort();
    let mut expected: Vec<String> = pages.into_iter().map(|(n, _)| n).collect();
    expected.sort();
    assert_eq!(shipped, expected, "run packaging/generate-docs.sh");
}

#[test]
fn the_shipped_completions_are_the_generated_ones() {
    let dir = packaging().join("completions");
    assert_same(&dir.join("evergreen.bash"), &completions(Shell::Bash));
    assert_same(&dir.join("_evergreen"), &completions(Shell::Zsh));
    assert_same(&dir.join("evergreen.fish"), &completions(Shell::Fish));
}
