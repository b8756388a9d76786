//! OPC UA node filters (`OpcUaRootPath`): paths like `/WA/**/Counter*`
//! matched against a node's browse path (`/` + browse names from the
//! Objects folder down).
//!
//! The SiteWise guide's rules: `*` matches one level (and, inside a level,
//! any run of characters: `PLC*`), `**` matches several levels, and a path
//! ending in `/` selects everything under it (`/WA/`). Here `**` also
//! matches zero levels, so `/**/PLC*` selects `/PLC1`. A trailing `/*`
//! selects the direct children only, as the wildcard table says (the
//! guide's property-group example lists grandchildren of a `/Tank/*` source
//! filter **[doc inconsistency]**; use `/Tank/` or `/Tank/**` for those).
//! Matching is plain recursion over at most [`MAX_DEPTH`] levels.

/// Deepest path a filter or a browse may have.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// `**`
    Any,
    /// A level, with `*` as a wildcard inside it.
    Glob(String),
}

/// One parsed `rootPath`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFilter {
    text: String,
    segs: Vec<Seg>,
}

impl PathFilter {
    pub fn parse(text: &str) -> Result<PathFilter, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("{text:?} must start with /"));
        };
        let mut segs: Vec<Seg> = Vec::new();
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            let last = parts.len() - 1;
            for (i, p) in parts.iter().enumerate() {
                match *p {
                    "" if i == last => segs.push(Seg::Any),
                    "" => return Err(format!("{text:?} has an empty level (//)")),
                    "**" => segs.push(Seg::Any),
                    p => segs.push(Seg::Glob(p.to_string())),
                }
            }
        } else {
            segs.push(Seg::Any);
        }
        if segs.len() > MAX_DEPTH {
            return Err(format!("{text:?} is deeper than {MAX_DEPTH} levels"));
        }
        Ok(PathFilter {
            text: text.to_string(),
            segs,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the node at `path` is selected.
    pub fn matches(&self, path: &str) -> bool {
        let levels = levels(path);
        matches(&self.segs, &levels)
    }

    /// Whether a node below `path` (or `path` itself) may be selected.
    pub fn may_match_below(&self, path: &str) -> bool {
        let levels = levels(path);
        viable(&self.segs, &levels)
    }
}

fn levels(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|l| !l.is_empty())
        .take(MAX_DEPTH + 1)
        .collect()
}

fn matches(p: &[Seg], s: &[&str]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((Seg::Any, rest)) => (0..=s.len()).any(|k| matches(rest, &s[k..])),
        Some((Seg::Glob(g), rest)) => !s.is_empty() && glob(g, s[0]) && matches(rest, &s[1..]),
    }
}

fn viable(p: &[Seg], s: &[&str]) -> bool {
    match (p.split_first(), s.split_first()) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some((Seg::Any, _)), _) => true,
        (Some((Seg::Glob(g), rest)), Some((first, more))) => glob(g, first) && viable(rest, more),
    }
}

/// `*` inside one level: any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAMS: &[&str] = &[
        "/WA/Factory 1/Line 1/PLC1",
        "/WA/Factory 1/Line 1/PLC2",
        "/WA/Factory 1/Line 2/Counter1",
        "/WA/Factory 1/Line 2/PLC1",
        "/OR/Factory 1/Line 1/PLC1",
        "/OR/Factory 1/Line 2/Counter2",
    ];

    fn selected(filter: &str) -> Vec<&'static str> {
        let f = PathFilter::parse(filter).expect("valid");
        STREAMS.iter().copied().filter(|s| f.matches(s)).collect()
    }

    #[test]
    fn the_guide_examples_select_what_it_says() {
        assert_eq!(selected("/WA/").len(), 4);
        assert_eq!(selected("/*/*/*/PLC*").len(), 4);
        assert_eq!(selected("/**/PLC*"), selected("/*/*/*/PLC*"));
        assert_eq!(
            selected("/WA/**/Counter*"),
            vec!["/WA/Factory 1/Line 2/Counter1"]
        );
        assert_eq!(selected("/**/Line 2/Counter*").len(), 2);
        assert_eq!(selected("/").len(), 6);
        let f = PathFilter::parse("/Plant/*").expect("valid");
        assert!(f.matches("/Plant/a") && !f.matches("/Plant/a/b") && !f.matches("/Other/a"));
        assert!(f.may_match_below("/Plant") && !f.may_match_below("/Other"));
        for bad in ["Plant", "/a//b", ""] {
            assert!(PathFilter::parse(bad).is_err(), "{bad}");
        }
    }
}
