//! Topic and topic-filter rules as Greengrass V1 defines them.
//!
//! Owns the *meaning* of a subject: which strings are valid topics and
//! filters, whether a filter matches a topic, and whether two filters can
//! match a common topic. The router's indexed table must agree with
//! [`matches`], which is the naive reference used by its property tests.
//!
//! The Greengrass rule differs from plain MQTT in one place: `#` matches
//! *one or more* remaining levels, so `sensor/#` matches `sensor/` and
//! `sensor/a/b` but not `sensor`.

/// Why a topic or filter is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("a topic that is published to cannot contain the wildcard '{0}'")]
    WildcardInTopic(char),
    #[error("'#' must be the last level of a filter")]
    HashNotLast,
    #[error("a wildcard must occupy a whole level (found '{0}')")]
    WildcardInsideLevel(String),
    #[error("topic contains a NUL character")]
    Nul,
}

/// Checks a topic that a message is published to: no wildcards.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.contains('\0') {
        return Err(TopicError::Nul);
    }
    if let Some(c) = topic.chars().find(|c| *c == '+' || *c == '#') {
        return Err(TopicError::WildcardInTopic(c));
    }
    Ok(())
}

/// Checks a subscription subject: `+` and `#` only as whole levels, `#` last.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::Nul);
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    for (i, level) in levels.iter().enumerate() {
        match *level {
            "#" if i != last => return Err(TopicError::HashNotLast),
            "#" | "+" => {}
            l if l.contains('+') || l.contains('#') => {
                return Err(TopicError::WildcardInsideLevel(l.to_string()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `filter` matches `topic` (both assumed valid). A straightforward
/// level-by-level walk: the reference the router's trie is tested against.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            // `#` needs at least one remaining level (possibly empty).
            (Some("#"), Some(_)) => return true,
            (Some("#"), None) => return false,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some topic exists that both filters match. Used to check that a
/// subscription to or from a connector can ever carry a message.
pub fn filters_intersect(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('/').collect();
    let b: Vec<&str> = b.split('/').collect();
    intersect(&a, &b)
}

fn intersect(a: &[&str], b: &[&str]) -> bool {
    match (a.first(), b.first()) {
        // `#` swallows one or more levels: the other side needs at least one.
        (Some(&"#"), Some(_)) | (Some(_), Some(&"#")) => true,
        (Some(&"#"), None) | (None, Some(&"#")) => false,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(x), Some(y)) => (*x == "+" || *y == "+" || x == y) && intersect(&a[1..], &b[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greengrass_examples() {
        assert!(matches("sensor/#", "sensor/"));
        assert!(matches("sensor/#", "sensor/group-a/id-123"));
        assert!(!matches("sensor/#", "sensor"));
        assert!(matches("sensor/+/input", "sensor/id-123/input"));
        assert!(!matches("sensor/+/input", "sensor/group-a/id-123/input"));
        assert!(matches("#", "a"));
        assert!(matches("+", ""));
        assert!(!matches("a/b", "a"));
        assert!(!matches("a", "a/b"));
    }

    #[test]
    fn filter_validation() {
        assert_eq!(validate_filter("a/#/b"), Err(TopicError::HashNotLast));
        assert_eq!(
            validate_filter("a/b+"),
            Err(TopicError::WildcardInsideLevel("b+".into()))
        );
        assert_eq!(
            validate_filter("a/x#"),
            Err(TopicError::WildcardInsideLevel("x#".into()))
        );
        assert_eq!(validate_filter(""), Err(TopicError::Empty));
        assert!(validate_filter("+/+/#").is_ok());
        assert!(validate_topic("a/+").is_err());
        assert!(validate_topic("a/#").is_err());
        assert!(validate_topic("a/b").is_ok());
    }

    #[test]
    fn intersection() {
        assert!(filters_intersect("serial/+/read/#", "serial/dev1/read/x"));
        assert!(filters_intersect("serial/#", "serial/+/write/#"));
        assert!(!filters_intersect("serial/+/read/#", "serial/dev1/write/x"));
        assert!(!filters_intersect("twilio/txt", "twilio/call"));
        assert!(!filters_intersect("a/#", "a"));
        assert!(filters_intersect("+/b", "a/+"));
        assert!(filters_intersect("#", "x/y/z"));
    }
}
