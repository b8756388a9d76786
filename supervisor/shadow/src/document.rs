//! The shadow document logic, free of I/O: parsing and checking requests, merging an update
//! (a `null` deletes), computing the delta, metadata timestamps, version checks, and the
//! response payloads, in the shapes AWS IoT's classic device shadow uses.
//!
//! Everything here is a pure function of the stored document, the request and the clock, so
//! the rules are unit tested without a runtime.

use serde_json::{json, Map, Value};

/// Largest request payload accepted, and the longest `clientToken`: AWS IoT's limits, as the
/// core uses them for the requests it answers itself.
pub(crate) use evergreen_runtime::services::{
    MAX_CLIENT_TOKEN, MAX_SHADOW_REQUEST as MAX_REQUEST_BYTES,
};
/// Largest `state` (desired and reported, as JSON text, without metadata) a shadow may hold:
/// AWS IoT's classic limit for a shadow's state document.
pub(crate) const MAX_STATE_BYTES: usize = 8 << 10;
/// Deepest nesting inside `desired` or `reported`, as AWS IoT allows.
pub(crate) const MAX_DEPTH: usize = 6;
/// A deleted shadow's version is remembered this long; a shadow created again within it
/// continues the old numbering (AWS IoT: 48 hours).
pub(crate) const TOMBSTONE_SECS: u64 = 48 * 3600;

/// A refused request: the `code` and `message` of a `/rejected` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub code: u16,
    pub message: String,
}

impl Rejection {
    pub(crate) fn new(code: u16, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
        }
    }

    /// The `/rejected` payload.
    pub(crate) fn payload(&self, client_token: Option<&str>, now: u64) -> Value {
        evergreen_runtime::services::rejected(self.code, &self.message, client_token, now)
    }
}

fn add_token(out: &mut Value, client_token: Option<&str>) {
    if let (Some(token), Value::Object(map)) = (client_token, out) {
        map.insert("clientToken".into(), Value::String(token.into()));
    }
}

/// A stored shadow, live or deleted (a tombstone keeps the version numbering going).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Shadow {
    pub desired: Option<Map<String, Value>>,
    pub reported: Option<Map<String, Value>>,
    pub meta_desired: Option<Map<String, Value>>,
    pub meta_reported: Option<Map<String, Value>>,
    pub version: u64,
    /// Seconds since the epoch of the last change (or of the deletion).
    pub timestamp: u64,
    pub deleted: bool,
}

/// The fields common to every request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Common {
    pub client_token: Option<String>,
    pub version: Option<u64>,
}

/// A checked `/update` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Update {
    pub common: Common,
    /// `None`: not in the request; `Some(None)`: `null`, which deletes the whole section.
    pub desired: Option<Option<Map<String, Value>>>,
    pub reported: Option<Option<Map<String, Value>>>,
    /// The request's `state`, echoed in `/update/accepted`.
    pub state: Value,
}

/// Parses a request body as a JSON object; an empty body is an empty object (the
/// greengrasssdk sends no body for get and delete).
pub(crate) fn parse_body(payload: &[u8]) -> Result<Map<String, Value>, Rejection> {
    if payload.len() > MAX_REQUEST_BYTES {
        return Err(Rejection::new(
            413,
            "The payload exceeds the maximum size allowed",
        ));
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Rejection::new(
            400,
            "Invalid JSON: the payload is not an object",
        )),
        Err(e) => Err(Rejection::new(400, format!("Invalid JSON: {e}"))),
    }
}

/// The `clientToken` of a body if it is a valid one: echoed even when another field is bad.
pub(crate) fn client_token_of(body: &Map<String, Value>) -> Option<String> {
    evergreen_runtime::services::client_token(body)
}

/// Checks `clientToken` and `version`.
pub(crate) fn parse_common(body: &Map<String, Value>) -> Result<Common, Rejection> {
    let client_token = match body.get("clientToken") {
        None => None,
        Some(Value::String(s)) if s.len() <= MAX_CLIENT_TOKEN => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(Rejection::new(
                400,
                format!("clientToken is longer than {MAX_CLIENT_TOKEN} bytes"),
            ))
        }
        Some(_) => return Err(Rejection::new(400, "clientToken must be a string")),
    };
    let version = match body.get("version") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            Rejection::new(400, "Invalid version: must be a non-negative integer")
        })?),
    };
    Ok(Common {
        client_token,
        version,
    })
}

/// Checks an `/update` body.
pub(crate) fn parse_update(body: &Map<String, Value>) -> Result<Update, Rejection> {
    let common = parse_common(body)?;
    let state = match body.get("state") {
        None => return Err(Rejection::new(400, "Missing required node: state")),
        Some(Value::Object(state)) => state,
        Some(_) => return Err(Rejection::new(400, "State node must be an object")),
    };
    if let Some(bad) = state.keys().find(|k| *k != "desired" && *k != "reported") {
        return Err(Rejection::new(
            400,
            format!("State contains an invalid node: '{bad}'"),
        ));
    }
    let section = |name: &str,
                   label: &str|
     -> Result<Option<Option<Map<String, Value>>>, Rejection> {
        match state.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::Object(map)) => {
                if depth(map) > MAX_DEPTH {
                    return Err(Rejection::new(
                        400,
                        format!("JSON contains too many levels of nesting; maximum is {MAX_DEPTH} (in state.{name})"),
                    ));
                }
                Ok(Some(Some(map.clone())))
            }
            Some(_) => Err(Rejection::new(
                400,
                format!("{label} node must be an object"),
            )),
        }
    };
    Ok(Update {
        desired: section("desired", "Desired")?,
        reported: section("reported", "Reported")?,
        state: Value::Object(state.clone()),
        common,
    })
}

/// Levels of objects in `map` (an object of leaves is 1).
fn depth(map: &Map<String, Value>) -> usize {
    1 + map
        .values()
        .map(|v| match v {
            Value::Object(m) => depth(m),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// The metadata of a value set at `now`: the value's shape with a `{"timestamp"}` per leaf
/// (arrays get one per element, as AWS IoT does).
pub(crate) fn metadata_of(value: &Value, now: u64) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), metadata_of(v, now)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| metadata_of(v, now)).collect()),
        _ => json!({ "timestamp": now }),
    }
}

/// The metadata echoed in `/update/accepted`: every key of the request, `null`s included.
fn request_metadata(value: &Value, now: u64) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), request_metadata(v, now)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| metadata_of(v, now)).collect()),
        _ => json!({ "timestamp": now }),
    }
}

/// Merges `patch` into `target` (and its metadata): a `null` deletes the key, an object merges
/// key by key, anything else (arrays included) replaces. An object emptied by `null`s goes too.
pub(crate) fn merge(
    target: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    now: u64,
) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
                meta.remove(key);
            }
            Value::Object(sub) => {
                let Some(Value::Object(existing)) = target.get_mut(key) else {
                    let mut fresh = Map::new();
                    let mut fresh_meta = Map::new();
                    merge(&mut fresh, &mut fresh_meta, sub, now);
                    if fresh.is_empty() && !sub.is_empty() {
                        // Only nulls: nothing to create.
                        target.remove(key);
                        meta.remove(key);
                    } else {
                        target.insert(key.clone(), Value::Object(fresh));
                        meta.insert(key.clone(), Value::Object(fresh_meta));
                    }
                    continue;
                };
                let meta_entry = meta
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !meta_entry.is_object() {
                    *meta_entry = Value::Object(Map::new());
                }
                let mut empty = Map::new();
                let sub_meta = meta_entry.as_object_mut().unwrap_or(&mut empty);
                merge(existing, sub_meta, sub, now);
                if existing.is_empty() && !sub.is_empty() {
                    target.remove(key);
                    meta.remove(key);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
                meta.insert(key.clone(), metadata_of(other, now));
            }
        }
    }
}

/// What `desired` asks that `reported` does not have: keys missing from or different in
/// `reported`, objects compared key by key, arrays and leaves as whole values.
pub(crate) fn delta(
    desired: &Map<String, Value>,
    reported: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, want) in desired {
        let have = reported.and_then(|r| r.get(key));
        match (want, have) {
            (Value::Object(w), Some(Value::Object(h))) => {
                let sub = delta(w, Some(h));
                if !sub.is_empty() {
                    out.insert(key.clone(), Value::Object(sub));
                }
            }
            (w, Some(h)) if w == h => {}
            (w, _) => {
                out.insert(key.clone(), w.clone());
            }
        }
    }
    out
}

/// The part of `meta` (desired's metadata) that covers the keys of `delta`.
fn delta_metadata(delta: &Map<String, Value>, meta: Option<&Map<String, Value>>) -> Value {
    let mut out = Map::new();
    for (key, value) in delta {
        let m = meta.and_then(|m| m.get(key));
        let picked = match (value, m) {
            (Value::Object(sub), Some(Value::Object(sub_meta))) => {
                delta_metadata(sub, Some(sub_meta))
            }
            (_, Some(m)) => m.clone(),
            (v, None) => metadata_of(v, 0),
        };
        out.insert(key.clone(), picked);
    }
    Value::Object(out)
}

impl Shadow {
    /// A live shadow's delta, if desired asks for anything.
    pub(crate) fn delta(&self) -> Option<Map<String, Value>> {
        let desired = self.desired.as_ref()?;
        let d = delta(desired, self.reported.as_ref());
        (!d.is_empty()).then_some(d)
    }

    fn state_value(&self) -> Value {
        let mut state = Map::new();
        if let Some(d) = &self.desired {
            state.insert("desired".into(), Value::Object(d.clone()));
        }
        if let Some(r) = &self.reported {
            state.insert("reported".into(), Value::Object(r.clone()));
        }
        Value::Object(state)
    }

    fn metadata_value(&self) -> Value {
        let mut meta = Map::new();
        if let Some(d) = &self.meta_desired {
            meta.insert("desired".into(), Value::Object(d.clone()));
        }
        if let Some(r) = &self.meta_reported {
            meta.insert("reported".into(), Value::Object(r.clone()));
        }
        Value::Object(meta)
    }

    /// The stored form (also what `/update/documents` carries as `previous`/`current`).
    pub(crate) fn document(&self) -> Value {
        json!({ "state": self.state_value(), "metadata": self.metadata_value(), "version": self.version })
    }

    /// What is written to disk.
    pub(crate) fn to_disk(&self) -> Value {
        if self.deleted {
            return json!({ "deleted": true, "version": self.version, "timestamp": self.timestamp });
        }
        let mut doc = self.document();
        if let Value::Object(map) = &mut doc {
            map.insert("timestamp".into(), json!(self.timestamp));
        }
        doc
    }

    /// Reads the stored form back; `None` if it is not one.
    pub(crate) fn from_disk(value: &Value) -> Option<Shadow> {
        let obj = value.as_object()?;
        let version = obj.get("version")?.as_u64()?;
        let timestamp = obj.get("timestamp").and_then(Value::as_u64).unwrap_or(0);
        if obj.get("deleted").and_then(Value::as_bool) == Some(true) {
            return Some(Shadow {
                version,
                timestamp,
                deleted: true,
                ..Shadow::default()
            });
        }
        let section = |outer: &str, inner: &str| {
            obj.get(outer)
                .and_then(|s| s.get(inner))
                .and_then(Value::as_object)
                .cloned()
        };
        Some(Shadow {
            desired: section("state", "desired"),
            reported: section("state", "reported"),
            meta_desired: section("metadata", "desired"),
            meta_reported: section("metadata", "reported"),
            version,
            timestamp,
            deleted: false,
        })
    }

    /// `/get/accepted`.
    pub(crate) fn get_accepted(&self, client_token: Option<&str>, now: u64) -> Value {
        let mut state = self.state_value();
        if let (Some(d), Value::Object(s)) = (self.delta(), &mut state) {
            s.insert("delta".into(), Value::Object(d));
        }
        let mut out = json!({
            "state": state,
            "metadata": self.metadata_value(),
            "version": self.version,
            "timestamp": now,
        });
        add_token(&mut out, client_token);
        out
    }

    /// `/update/delta` for the current state, if desired differs from reported.
    pub(crate) fn delta_message(&self, client_token: Option<&str>, now: u64) -> Option<Value> {
        let d = self.delta()?;
        let meta = delta_metadata(&d, self.meta_desired.as_ref());
        let mut out =
            json!({ "state": d, "metadata": meta, "version": self.version, "timestamp": now });
        add_token(&mut out, client_token);
        Some(out)
    }

    /// The version a change to this (possibly absent or deleted) shadow must name, if any.
    fn current_version(&self) -> u64 {
        self.version
    }
}

/// What an accepted update produced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Updated {
    pub shadow: Shadow,
    pub accepted: Value,
    pub documents: Value,
    pub delta: Option<Value>,
}

/// Applies an update to `current` (`None`: never existed or its tombstone has expired).
pub(crate) fn apply_update(
    current: Option<&Shadow>,
    update: &Update,
    now: u64,
) -> Result<Updated, Rejection> {
    let base_version = current.map_or(0, Shadow::current_version);
    if let Some(v) = update.common.version {
        if v != base_version {
            return Err(Rejection::new(409, "Version conflict"));
        }
    }
    let previous = current.filter(|s| !s.deleted);
    let mut next = previous.cloned().unwrap_or_default();
    next.deleted = false;
    for (section, meta, patch) in [
        (&mut next.desired, &mut next.meta_desired, &update.desired),
        (
            &mut next.reported,
            &mut next.meta_reported,
            &update.reported,
        ),
    ] {
        match patch {
            None => {}
            Some(None) => {
                *section = None;
                *meta = None;
            }
            Some(Some(p)) => {
                let target = section.get_or_insert_with(Map::new);
                let m = meta.get_or_insert_with(Map::new);
                merge(target, m, p, now);
                // A section emptied by `null`s goes, like an emptied object inside it.
                if target.is_empty() && !p.is_empty() {
                    *section = None;
                    *meta = None;
                }
            }
        }
    }
    let size = serde_json::to_vec(&next.state_value()).map_or(usize::MAX, |v| v.len());
    if size > MAX_STATE_BYTES {
        return Err(Rejection::new(
            413,
            format!("The payload exceeds the maximum size allowed (the shadow's state would be {size} bytes, at most {MAX_STATE_BYTES})"),
        ));
    }
    next.version = base_version + 1;
    next.timestamp = now;

    let token = update.common.client_token.as_deref();
    let mut accepted = json!({
        "state": update.state,
        "metadata": request_metadata(&update.state, now),
        "version": next.version,
        "timestamp": now,
    });
    add_token(&mut accepted, token);
    let mut documents = json!({
        "previous": previous.map(Shadow::document),
        "current": next.document(),
        "timestamp": now,
    });
    add_token(&mut documents, token);
    // AWS IoT sends a delta when the request touched desired and desired still differs.
    let delta = if update.desired.is_some() {
        next.delta_message(token, now)
    } else {
        None
    };
    Ok(Updated {
        shadow: next,
        accepted,
        documents,
        delta,
    })
}

/// Deletes `current`: the tombstone to store and the `/delete/accepted` payload.
pub(crate) fn apply_delete(
    current: Option<&Shadow>,
    common: &Common,
    name: &str,
    now: u64,
) -> Result<(Shadow, Value), Rejection> {
    let Some(live) = current.filter(|s| !s.deleted) else {
        return Err(not_found(name));
    };
    if let Some(v) = common.version {
        if v != live.version {
            return Err(Rejection::new(409, "Version conflict"));
        }
    }
    let tomb = Shadow {
        version: live.version,
        timestamp: now,
        deleted: true,
        ..Shadow::default()
    };
    let mut accepted = json!({ "version": live.version, "timestamp": now });
    add_token(&mut accepted, common.client_token.as_deref());
    Ok((tomb, accepted))
}

/// The 404 AWS IoT answers for a shadow that does not exist.
pub(crate) fn not_found(name: &str) -> Rejection {
    Rejection::new(404, format!("No shadow exists with name: '{name}'"))
}

/// A stored shadow as the service should see it at `now`: an expired tombstone is no shadow.
pub(crate) fn effective(stored: Option<Shadow>, now: u64) -> Option<Shadow> {
    stored.filter(|s| !(s.deleted && now.saturating_sub(s.timestamp) > TOMBSTONE_SECS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn update(v: Value) -> Update {
        parse_update(&obj(v)).expect("valid update")
    }

    #[test]
    fn merge_null_deletes_and_objects_merge() {
        let mut target = obj(json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]}));
        let mut meta = obj(metadata_of(&Value::Object(target.clone()), 10));
        merge(
            &mut target,
            &mut meta,
            &obj(json!({"a": null, "b": {"c": null, "x": 9}, "e": [3]})),
            20,
        );
        assert_eq!(
            Value::Object(target),
            json!({"b": {"d": 3, "x": 9}, "e": [3]})
        );
        assert_eq!(
            Value::Object(meta),
            json!({"b": {"d": {"timestamp": 10}, "x": {"timestamp": 20}}, "e": [{"timestamp": 20}]})
        );
    }

    #[test]
    fn merge_removes_an_object_emptied_by_nulls() {
        let mut target = obj(json!({"b": {"c": 2}}));
        let mut meta = obj(json!({"b": {"c": {"timestamp": 1}}}));
        merge(
            &mut target,
            &mut meta,
            &obj(json!({"b": {"c": null}, "n": {"m": null}})),
            2,
        );
        assert!(target.is_empty(), "{target:?}");
        assert!(meta.is_empty(), "{meta:?}");
    }

    #[test]
    fn delta_is_what_desired_asks_and_reported_lacks() {
        let desired =
            obj(json!({"color": "red", "same": 1, "n": {"a": 1, "b": 2}, "list": [1, 2]}));
        let reported = obj(
            json!({"color": "green", "same": 1, "n": {"a": 1, "b": 3}, "list": [1, 2], "extra": 5}),
        );
        assert_eq!(
            Value::Object(delta(&desired, Some(&reported))),
            json!({"color": "red", "n": {"b": 2}})
        );
        assert_eq!(
            Value::Object(delta(&desired, None)),
            Value::Object(desired.clone())
        );
        assert!(delta(&desired, Some(&desired)).is_empty());
    }

    #[test]
    fn first_update_creates_version_1_with_documents_and_delta() {
        let u = update(json!({"state": {"desired": {"color": "red"}}, "clientToken": "t1"}));
        let out = apply_update(None, &u, 100).expect("accepted");
        assert_eq!(out.shadow.version, 1);
        assert_eq!(
            out.accepted,
            json!({"state": {"desired": {"color": "red"}}, "metadata": {"desired": {"color": {"timestamp": 100}}},
                   "version": 1, "timestamp": 100, "clientToken": "t1"})
        );
        assert_eq!(out.documents["previous"], Value::Null);
        assert_eq!(
            out.documents["current"]["state"],
            json!({"desired": {"color": "red"}})
        );
        assert_eq!(out.documents["current"]["version"], json!(1));
        assert_eq!(out.documents["clientToken"], json!("t1"));
        assert_eq!(
            out.delta,
            Some(
                json!({"state": {"color": "red"}, "metadata": {"color": {"timestamp": 100}},
                        "version": 1, "timestamp": 100, "clientToken": "t1"})
            )
        );
    }

    #[test]
    fn reported_only_update_sends_no_delta_and_matching_report_clears_it() {
        let first = apply_update(
            None,
            &update(json!({"state": {"desired": {"on": true}}})),
            1,
        )
        .expect("ok");
        let second = apply_update(
            Some(&first.shadow),
            &update(json!({"state": {"reported": {"on": false}}})),
            2,
        )
        .expect("ok");
        assert_eq!(second.delta, None, "reported-only updates send no delta");
        assert_eq!(second.shadow.delta(), Some(obj(json!({"on": true}))));
        assert_eq!(second.documents["previous"]["version"], json!(1));
        let third = apply_update(
            Some(&second.shadow),
            &update(json!({"state": {"reported": {"on": true}}})),
            3,
        )
        .expect("ok");
        assert_eq!(third.shadow.delta(), None);
        let emptied = apply_update(
            Some(&third.shadow),
            &update(json!({"state": {"desired": {"on": null}}})),
            4,
        )
        .expect("ok");
        assert_eq!(emptied.shadow.desired, None);
        assert_eq!(
            emptied.documents["current"]["state"],
            json!({"reported": {"on": true}})
        );
        let cleared = apply_update(
            Some(&third.shadow),
            &update(json!({"state": {"reported": null}})),
            4,
        )
        .expect("ok");
        assert_eq!(cleared.shadow.reported, None);
        assert_eq!(cleared.shadow.delta(), Some(obj(json!({"on": true}))));
        assert_eq!(third.shadow.version, 3);
        let get = third.shadow.get_accepted(Some("g"), 4);
        assert_eq!(
            get["state"],
            json!({"desired": {"on": true}, "reported": {"on": true}})
        );
        assert_eq!(get["metadata"]["reported"]["on"], json!({"timestamp": 3}));
        assert_eq!(get["clientToken"], json!("g"));
    }

    #[test]
    fn version_must_match_or_409() {
        let first =
            apply_update(None, &update(json!({"state": {"reported": {"x": 1}}})), 1).expect("ok");
        let stale =
            update(json!({"state": {"reported": {"x": 2}}, "version": 7, "clientToken": "c"}));
        assert_eq!(
            apply_update(Some(&first.shadow), &stale, 2).expect_err("conflict"),
            Rejection::new(409, "Version conflict")
        );
        let right = update(json!({"state": {"reported": {"x": 2}}, "version": 1}));
        assert_eq!(
            apply_update(Some(&first.shadow), &right, 2)
                .expect("ok")
                .shadow
                .version,
            2
        );
        let common = Common {
            client_token: None,
            version: Some(5),
        };
        assert_eq!(
            apply_delete(Some(&first.shadow), &common, "t", 3)
                .expect_err("conflict")
                .code,
            409
        );
    }

    #[test]
    fn delete_keeps_the_version_for_the_next_shadow_until_the_tombstone_expires() {
        let first =
            apply_update(None, &update(json!({"state": {"reported": {"x": 1}}})), 1).expect("ok");
        let second = apply_update(
            Some(&first.shadow),
            &update(json!({"state": {"reported": {"x": 2}}})),
            2,
        )
        .expect("ok");
        let common = Common {
            client_token: Some("d".into()),
            version: None,
        };
        let (tomb, accepted) = apply_delete(Some(&second.shadow), &common, "t", 5).expect("ok");
        assert_eq!(
            accepted,
            json!({"version": 2, "timestamp": 5, "clientToken": "d"})
        );
        assert!(tomb.deleted);
        assert_eq!(
            apply_delete(Some(&tomb), &common, "t", 6).expect_err("gone"),
            Rejection::new(404, "No shadow exists with name: 't'")
        );
        let again = apply_update(
            Some(&tomb),
            &update(json!({"state": {"reported": {"x": 3}}})),
            7,
        )
        .expect("ok");
        assert_eq!(again.shadow.version, 3);
        assert_eq!(again.documents["previous"], Value::Null);
        assert_eq!(effective(Some(tomb.clone()), 5 + TOMBSTONE_SECS + 1), None);
        assert_eq!(effective(Some(tomb.clone()), 6), Some(tomb));
    }

    #[test]
    fn bad_requests_are_refused_with_aws_codes() {
        let cases: Vec<(&[u8], u16, &str)> = vec![
            (b"{not json", 400, "Invalid JSON"),
            (b"[1,2]", 400, "not an object"),
            (
                br#"{"clientToken":"x"}"#,
                400,
                "Missing required node: state",
            ),
            (br#"{"state":3}"#, 400, "State node must be an object"),
            (
                br#"{"state":{"desired":[1]}}"#,
                400,
                "Desired node must be an object",
            ),
            (
                br#"{"state":{"reported":"on"}}"#,
                400,
                "Reported node must be an object",
            ),
            (br#"{"state":{"wanted":{}}}"#, 400, "invalid node: 'wanted'"),
            (br#"{"state":{},"version":-1}"#, 400, "Invalid version"),
            (br#"{"state":{},"version":"1"}"#, 400, "Invalid version"),
            (
                br#"{"state":{},"clientToken":5}"#,
                400,
                "clientToken must be a string",
            ),
            (
                br#"{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}"#,
                400,
                "too many levels of nesting",
            ),
        ];
        for (payload, code, message) in cases {
            let err = parse_body(payload)
                .and_then(|b| parse_update(&b))
                .expect_err(std::str::from_utf8(payload).unwrap_or("?"));
            assert_eq!(err.code, code, "{err:?}");
            assert!(
                err.message.contains(message),
                "{err:?} should say {message}"
            );
        }
        let long = format!(r#"{{"state":{{}},"clientToken":"{}"}}"#, "x".repeat(65));
        let err = parse_body(long.as_bytes())
            .and_then(|b| parse_update(&b))
            .expect_err("long token");
        assert!(err.message.contains("clientToken"), "{err:?}");
        let huge = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(parse_body(&huge).expect_err("too big").code, 413);
        let big = json!({"state": {"reported": {"blob": "x".repeat(MAX_STATE_BYTES)}}});
        assert_eq!(
            apply_update(None, &update(big), 1)
                .expect_err("too big")
                .code,
            413
        );
        assert_eq!(parse_body(b"").expect("empty is {}"), Map::new());
    }

    #[test]
    fn rejection_payload_echoes_the_token() {
        let r = Rejection::new(404, "No shadow exists with name: 't'");
        assert_eq!(
            r.payload(Some("abc"), 9),
            json!({"code": 404, "message": "No shadow exists with name: 't'", "timestamp": 9, "clientToken": "abc"})
        );
        assert_eq!(r.payload(None, 9).get("clientToken"), None);
    }

    #[test]
    fn disk_form_round_trips() {
        let out = apply_update(
            None,
            &update(json!({"state": {"desired": {"a": 1}, "reported": {"a": 2}}})),
            4,
        )
        .expect("ok");
        let back = Shadow::from_disk(&out.shadow.to_disk()).expect("readable");
        assert_eq!(back, out.shadow);
        let tomb = Shadow {
            version: 3,
            timestamp: 8,
            deleted: true,
            ..Shadow::default()
        };
        assert_eq!(Shadow::from_disk(&tomb.to_disk()), Some(tomb));
        assert_eq!(Shadow::from_disk(&json!({"state": {}})), None);
    }
}
