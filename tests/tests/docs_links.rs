//! The documentation's links hold: every relative link in README.md, docs/, ARCHITECTURE.md,
//! packaging/README.md and examples/README.md names a file of the repository, and every
//! `#anchor` a heading of that file (GitHub's rule: lower case, punctuation dropped, spaces to
//! hyphens). The README's reference moved into docs/ pages; a link left pointing at the old
//! place would send a reader nowhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The repository's top directory (this crate is `tests/`).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The Markdown files whose links are checked.
fn documents() -> Vec<PathBuf> {
    let top = repo();
    let mut files: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "packaging/README.md"]
        .iter()
        .map(|f| top.join(f))
        .collect();
    for dir in ["docs", "examples"] {
        let Ok(entries) = std::fs::read_dir(top.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    // A link in a heading counts by its label.
    let mut text = String::new();
    let mut chars = heading.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ']' && chars.peek() == Some(&'(') {
            for c in chars.by_ref() {
                if c == ')' {
                    break;
                }
            }
            continue;
        }
        text.push(c);
    }
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .into_iter()
        .filter_map(|line| {
            let hashes = line.chars().take_while(|c| *c == '#').count();
            (1..=6)
                .contains(&hashes)
                .then(|| line[hashes..].strip_prefix(' '))
                .flatten()
                .map(slug)
        })
        .collect()
}

/// `(label, target)` of every inline link `[label](target)` outside code.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in prose(text) {
        // Inline code cannot hold a link; drop it so `a[0](x)` in code is not taken for one.
        let mut plain = String::new();
        let mut code = false;
        for c in line.chars() {
            if c == '`' {
                code = !code;
            } else if !code {
                plain.push(c);
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn docs_every_relative_link_and_anchor_resolves() {
    let top = repo();
    let mut broken = Vec::new();
    let docs = documents();
    assert!(
        docs.iter().any(|d| d.ends_with("docs/README.md")),
        "docs/README.md (the index) is missing"
    );
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("read a document");
        let dir = doc.parent().expect("a file has a directory");
        for target in links(&text) {
            let target = target.split_whitespace().next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target, None),
            };
            let file = if path.is_empty() {
                doc.clone()
            } else {
                dir.join(path)
            };
            let name = doc.strip_prefix(&top).unwrap_or(doc).display().to_string();
            if !file.exists() {
                broken.push(format!("{name}: {target}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    broken.push(format!("{name}: {target}: no heading with that anchor"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn docs_slug_follows_github() {
    assert_eq!(slug("Install on a gateway"), "install-on-a-gateway");
    assert_eq!(slug("32-bit ARM"), "32-bit-arm");
    assert_eq!(
        slug("`evergreen check`: the health check"),
        "evergreen-check-the-health-check"
    );
    assert_eq!(
        slug("What an acknowledgement to the cloud means, per path"),
        "what-an-acknowledgement-to-the-cloud-means-per-path"
    );
}
