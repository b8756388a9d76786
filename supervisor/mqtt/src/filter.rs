//! Topic filters as MQTT devices mean them, beside the group's own rule.
//!
//! Two rules meet in the local server, each where it belongs:
//! - a group **subscription's subject** follows Greengrass V1: `#` stands for one or more
//!   levels, so the subject `t/#` routes `t/x` but not `t` (`evergreen_ipc::topic::matches`,
//!   which the router uses: it decides who may hear what);
//! - a **device's own SUBSCRIBE filter** follows MQTT (3.1.1 §4.7, MQTT 5 §4.7): `#` also
//!   matches its parent level (`t/#` matches `t`, MQTT-4.7.1-2), and a filter that starts with
//!   a wildcard matches no topic that starts with `$` (MQTT-4.7.2-1), so a device on `#` does
//!   not receive `$aws/...` shadow traffic routed to it.
//!
//! A message reaches a device when the router routes it there (the subject) **and** one of the
//! device's filters matches it (here).

use evergreen_ipc::topic::filters_intersect;

/// A shared subscription's parts, `$share/{share}/{filter}` (MQTT 5 §4.8.2): `None` for an
/// ordinary filter, `Some(Err(()))` for a malformed shared one (an empty share name or one
/// with a wildcard, or no filter after it).
pub(crate) fn shared(filter: &str) -> Option<Result<(&str, &str), ()>> {
    let rest = filter.strip_prefix("$share/")?;
    Some(match rest.split_once('/') {
        Some((share, inner))
            if !share.is_empty() && !share.contains(['+', '#']) && !inner.is_empty() =>
        {
            Ok((share, inner))
        }
        _ => Err(()),
    })
}

/// The filter that matches topics: the inner filter of a shared subscription, else itself.
pub(crate) fn matching_part(filter: &str) -> &str {
    match shared(filter) {
        Some(Ok((_, inner))) => inner,
        _ => filter,
    }
}

/// Whether the MQTT filter `filter` matches `topic` (both valid), by MQTT's rules.
pub(crate) fn mqtt_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            // `#` is the last level of a valid filter: it matches the rest, or nothing more
            // (the parent level itself).
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether the device filter `filter` can match a topic the group subject `subject` routes:
/// the condition for granting it. The subject is read by the group's rule and the filter by
/// MQTT's, so a filter `t/#` also reaches the subject `t` (through its parent level).
pub(crate) fn reachable(subject: &str, filter: &str) -> bool {
    filters_intersect(subject, filter)
        || filter
            .strip_suffix("/#")
            .is_some_and(|parent| filters_intersect(subject, parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MQTT-4.7.1-2: "sport/tennis/player1/#" matches "sport/tennis/player1" too; "sport/#"
    /// matches "sport".
    #[test]
    fn mqtt_4_7_1_2_multi_level_wildcard_matches_the_parent_level() {
        assert!(mqtt_matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1"
        ));
        assert!(mqtt_matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(mqtt_matches("sport/#", "sport"));
        assert!(mqtt_matches("#", "sport"));
        assert!(!mqtt_matches("sport/#", "sports"));
    }

    /// MQTT-4.7.1-3: "+" matches exactly one level, an empty one included.
    #[test]
    fn mqtt_4_7_1_3_single_level_wildcard_matches_one_level() {
        assert!(mqtt_matches("sport/+", "sport/"));
        assert!(!mqtt_matches("sport/+", "sport"));
        assert!(mqtt_matches("+/+", "/finance"));
        assert!(mqtt_matches("/+", "/finance"));
        assert!(!mqtt_matches("+", "/finance"));
        assert!(mqtt_matches("a/+/c", "a/b/c"));
        assert!(!mqtt_matches("a/+/c", "a/b/d"));
    }

    /// MQTT-4.7.2-1: a filter starting with a wildcard matches no topic starting with `$`.
    #[test]
    fn mqtt_4_7_2_1_wildcards_do_not_match_dollar_topics() {
        assert!(!mqtt_matches("#", "$SYS/x"));
        assert!(!mqtt_matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(mqtt_matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(mqtt_matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(mqtt_matches(
            "$aws/things/t/shadow/#",
            "$aws/things/t/shadow/update"
        ));
    }

    #[test]
    fn shared_filters_are_parsed() {
        assert_eq!(shared("t/#"), None);
        assert_eq!(shared("$share/g/t/#"), Some(Ok(("g", "t/#"))));
        assert_eq!(shared("$share/g/"), Some(Err(())));
        assert_eq!(shared("$share//t"), Some(Err(())));
        assert_eq!(shared("$share/g+/t"), Some(Err(())));
        assert_eq!(shared("$share/g"), Some(Err(())));
        assert_eq!(matching_part("$share/g/a/+"), "a/+");
        assert_eq!(matching_part("a/+"), "a/+");
    }

    #[test]
    fn a_filter_reaches_a_subject_through_its_parent_level() {
        assert!(reachable("t", "t/#"));
        assert!(reachable("t/#", "t/#"));
        assert!(reachable("t/x", "t/#"));
        assert!(reachable("#", "t"));
        assert!(!reachable("u", "t/#"));
        assert!(!reachable("t", "t/x"));
    }
}
