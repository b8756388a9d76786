//! Unit tests of the shadow service: requests over a real router, the
//! files it keeps, and restarts that must find them again.

use super::*;

const T: &str = "$aws/things/lamp/shadow";

fn core() -> (tempfile::TempDir, Core) {
    let dir = tempfile::tempdir().expect("temp dir");
    let core = Core::open(&dir.path().join("shadow")).expect("open");
    (dir, core)
}

fn topics(h: &Handled) -> Vec<&str> {
    h.local.iter().map(|(t, _)| t.as_str()).collect()
}

#[test]
fn topics_parse() {
    let t = parse_topic("$aws/things/a/shadow/update/delta").expect("shadow topic");
    assert_eq!(
        (t.thing, t.name, t.op, t.suffix),
        ("a", None, Op::Update, "delta")
    );
    let t = parse_topic("$aws/things/a/shadow/name/n1/get").expect("named");
    assert_eq!(
        (t.thing, t.name, t.op, t.suffix),
        ("a", Some("n1"), Op::Get, "")
    );
    assert_eq!(
        t.topic(Op::Get, "accepted"),
        "$aws/things/a/shadow/name/n1/get/accepted"
    );
    for bad in [
        "a/b",
        "$aws/things/a/other/get",
        "$aws/things/a/shadow/patch",
        "$aws/things/a",
    ] {
        assert_eq!(parse_topic(bad), None, "{bad}");
    }
}

#[test]
fn update_get_delete_round_trip_on_disk() {
    let (dir, mut c) = core();
    let h = c.handle(
        "dev",
        &format!("{T}/update"),
        br#"{"state":{"desired":{"on":true}},"clientToken":"u1"}"#,
        10,
    );
    assert_eq!(
        topics(&h),
        [
            "$aws/things/lamp/shadow/update/accepted",
            "$aws/things/lamp/shadow/update/documents",
            "$aws/things/lamp/shadow/update/delta"
        ]
    );
    assert_eq!(h.answer.as_ref().map(|a| a.0), Some(true));
    assert!(h.cloud.is_empty(), "not synced");
    // A fresh Core on the same directory sees it: it is on disk.
    let mut c2 = Core::open(&dir.path().join("shadow")).expect("reopen");
    let h = c2.handle("dev", &format!("{T}/get"), b"", 11);
    assert_eq!(topics(&h), ["$aws/things/lamp/shadow/get/accepted"]);
    assert_eq!(h.local[0].1["state"]["delta"], json!({"on": true}));
    assert_eq!(h.local[0].1["version"], json!(1));
    let h = c2.handle("dev", &format!("{T}/delete"), br#"{"clientToken":"d"}"#, 12);
    assert_eq!(
        h.local[0].1,
        json!({"version": 1, "timestamp": 12, "clientToken": "d"})
    );
    let h = c2.handle("dev", &format!("{T}/get"), br#"{"clientToken":"g"}"#, 13);
    assert_eq!(topics(&h), ["$aws/things/lamp/shadow/get/rejected"]);
    assert_eq!(
        h.local[0].1,
        json!({"code": 404, "message": "No shadow exists with name: 'lamp'", "timestamp": 13, "clientToken": "g"})
    );
}

#[test]
fn bad_input_is_rejected_never_panics() {
    let (_dir, mut c) = core();
    let cases: Vec<(String, &[u8], u16)> = vec![
        (format!("{T}/update"), b"{oops", 400),
        (format!("{T}/update"), b"\xff\xfe", 400),
        (format!("{T}/get"), b"[]", 400),
        (format!("{T}/update"), br#"{"state":{"desired":5}}"#, 400),
        (
            "$aws/things/bad name/shadow/update".into(),
            br#"{"state":{}}"#,
            400,
        ),
        (
            format!("$aws/things/{}/shadow/get", "x".repeat(129)),
            b"",
            400,
        ),
        ("$aws/things/a/shadow/name/bad~n/get".into(), b"", 400),
        (format!("{T}/delete"), b"", 404),
    ];
    for (topic, payload, code) in cases {
        let h = c.handle("dev", &topic, payload, 1);
        let (ok, answer) = h.answer.clone().expect("answered");
        assert!(!ok, "{topic}");
        assert_eq!(answer["code"], json!(code), "{topic}: {answer}");
        assert!(h.local[0].0.ends_with("/rejected"), "{h:?}");
    }
    // Answer topics and non-shadow topics are ignored, not answered.
    assert_eq!(
        c.handle("dev", &format!("{T}/update/accepted"), b"{}", 1),
        Handled::default()
    );
    assert_eq!(c.handle("dev", "some/topic", b"{}", 1), Handled::default());
}

#[test]
fn corrupt_file_is_a_500_not_a_panic() {
    let (dir, mut c) = core();
    std::fs::write(dir.path().join("shadow").join("lamp.json"), b"garbage").expect("write");
    let h = c.handle("dev", &format!("{T}/get"), b"", 1);
    assert_eq!(h.answer.expect("answered").1["code"], json!(500));
}

#[test]
fn named_shadows_are_separate_files() {
    let (dir, mut c) = core();
    let h = c.handle(
        "dev",
        &format!("{T}/name/cfg/update"),
        br#"{"state":{"reported":{"a":1}}}"#,
        1,
    );
    assert_eq!(
        h.local[0].0,
        "$aws/things/lamp/shadow/name/cfg/update/accepted"
    );
    assert!(dir.path().join("shadow/lamp~cfg.json").exists());
    let h = c.handle("dev", &format!("{T}/get"), b"", 2);
    assert_eq!(h.answer.expect("answered").1["code"], json!(404));
    let h = c.handle("dev", &format!("{T}/name/cfg/delete"), b"", 2);
    assert!(h.answer.expect("answered").0);
}

#[test]
fn synced_local_changes_go_up_and_cloud_changes_come_down_without_echo() {
    let (_dir, mut c) = core();
    assert_eq!(c.set_synced(BTreeSet::from(["lamp".to_string()])), ["lamp"]);
    let h = c.handle(
        "dev",
        &format!("{T}/update"),
        br#"{"state":{"reported":{"on":true}}}"#,
        1,
    );
    assert_eq!(
        h.cloud,
        vec![(
            format!("{T}/update"),
            json!({"state": {"reported": {"on": true}}})
        )]
    );
    // The cloud's echo of that change changes nothing locally.
    let echo = json!({"current": {"state": {"reported": {"on": true}}, "version": 40}});
    let h = c.handle(
        CLOUD,
        &format!("{T}/update/documents"),
        echo.to_string().as_bytes(),
        2,
    );
    assert_eq!(h, Handled::default());
    // A change made in the cloud replaces the local state and is announced locally only.
    let cloud = json!({"current": {"state": {"desired": {"on": false}, "reported": {"on": true}}, "version": 41}});
    let h = c.handle(
        CLOUD,
        &format!("{T}/update/documents"),
        cloud.to_string().as_bytes(),
        3,
    );
    assert_eq!(
        topics(&h),
        [format!("{T}/update/documents"), format!("{T}/update/delta")]
    );
    assert!(h.cloud.is_empty());
    assert_eq!(h.local[1].1["state"], json!({"on": false}));
    assert_eq!(h.local[1].1["version"], json!(2));
    // A cloud-side removal of a key removes it locally.
    let cloud = json!({"state": {"reported": {"on": true}}});
    let h = c.handle(
        CLOUD,
        &format!("{T}/get/accepted"),
        cloud.to_string().as_bytes(),
        4,
    );
    assert_eq!(
        h.local[0].1["current"]["state"],
        json!({"reported": {"on": true}})
    );
    // A request from the cloud is answered but not sent back up.
    let h = c.handle(
        CLOUD,
        &format!("{T}/update"),
        br#"{"state":{"reported":{"x":1}}}"#,
        5,
    );
    assert!(h.answer.expect("answered").0 && h.cloud.is_empty());
    // The cloud lacks the shadow: ours goes up whole.
    let h = c.handle(
        CLOUD,
        &format!("{T}/get/rejected"),
        br#"{"code":404,"message":"No shadow"}"#,
        6,
    );
    assert_eq!(
        h.cloud,
        vec![(
            format!("{T}/update"),
            json!({"state": {"reported": {"on": true, "x": 1}}})
        )]
    );
    // Deleted in the cloud: deleted here, announced locally.
    let h = c.handle(
        CLOUD,
        &format!("{T}/delete/accepted"),
        br#"{"version":41}"#,
        7,
    );
    assert_eq!(topics(&h), [format!("{T}/delete/accepted")]);
    let h = c.handle("dev", &format!("{T}/get"), b"", 8);
    assert_eq!(h.answer.expect("answered").1["code"], json!(404));
    // Local delete goes up; garbage from the cloud is ignored.
    c.handle(
        "dev",
        &format!("{T}/update"),
        br#"{"state":{"reported":{"y":1}}}"#,
        9,
    );
    let h = c.handle("dev", &format!("{T}/delete"), b"", 10);
    assert_eq!(h.cloud, vec![(format!("{T}/delete"), json!({}))]);
    assert_eq!(
        c.handle(CLOUD, &format!("{T}/update/documents"), b"nope", 11),
        Handled::default()
    );
    // A bad shadow name from the cloud is ignored, never used as a file name.
    let named = "$aws/things/lamp/shadow/name/a.b/update/documents";
    assert_eq!(
        c.handle(CLOUD, named, br#"{"current":{"state":{}}}"#, 11),
        Handled::default()
    );
    // Unsynced things ignore the cloud's answer topics.
    let doc = json!({"state": {"reported": {"z": 1}}}).to_string();
    assert_eq!(
        c.handle(
            CLOUD,
            "$aws/things/other/shadow/get/accepted",
            doc.as_bytes(),
            12
        ),
        Handled::default()
    );
}

#[test]
fn replace_patch_turns_old_into_new() {
    let old = json!({"a": 1, "b": {"c": 1, "d": 2}, "gone": 3});
    let new = json!({"a": 1, "b": {"c": 5}, "n": [1]});
    let patch = replace_patch(old.as_object().expect("o"), new.as_object().expect("o"));
    assert_eq!(
        Value::Object(patch.clone()),
        json!({"gone": null, "b": {"d": null, "c": 5}, "n": [1]})
    );
    let mut target = old.as_object().cloned().expect("o");
    document::merge(&mut target, &mut Map::new(), &patch, 1);
    assert_eq!(Value::Object(target), new);
}

use evergreen_group::plan::{CoreSpec, DeviceSpec, LoggerPlan};
use evergreen_runtime::router::{bounded_queue, QueueReceiver, Subscription, SubscriptionTable};

fn plan(synced_device: bool) -> GroupPlan {
    let device = DeviceSpec {
        id: "d".into(),
        thing_arn: "arn:aws:iot:r:1:thing/lamp".into(),
        thing_name: "lamp".into(),
        certificate_arn: "arn:aws:iot:r:1:cert/x".into(),
        sync_shadow: synced_device,
    };
    GroupPlan {
        core: CoreSpec {
            thing_arn: "arn:aws:iot:r:1:thing/core".into(),
            thing_name: "core".into(),
            region: "r".into(),
            account: "1".into(),
            sync_shadow: true,
        },
        components: Default::default(),
        subscriptions: vec![],
        devices: [(device.thing_arn.clone(), device)].into_iter().collect(),
        resources: Default::default(),
        loggers: LoggerPlan::default(),
        stream_manager: None,
    }
}

/// The next message within a bounded wait.
fn next(rx: &mut QueueReceiver) -> Option<Message> {
    for _ in 0..250 {
        if let Ok(m) = rx.try_recv() {
            return Some(m);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

fn body(m: &Message) -> Value {
    serde_json::from_slice(&m.payload).expect("JSON payload")
}

#[test]
fn the_service_routes_answers_follows_deployments_and_syncs_through_the_cloud_sink() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = SubscriptionTable::build([
        Subscription::new("req", "dev", "$aws/things/+/shadow/+", ENDPOINT),
        Subscription::new("ans", ENDPOINT, "$aws/things/lamp/shadow/#", "dev"),
    ])
    .expect("table");
    let router = Arc::new(Router::new(table));
    let (dev_sink, mut dev) = bounded_queue(64);
    router.attach("dev", Arc::new(dev_sink));
    let shadow = ShadowHandle::start(&dir.path().join("shadow"), router.clone()).expect("start");

    // Deployed before the bridge connects: the cloud is asked once it does.
    shadow.deploy(&plan(true));
    assert_eq!(shadow.synced_things(), ["core", "lamp"]);
    let (cloud_sink, mut cloud) = bounded_queue(64);
    shadow.connect_cloud(Arc::new(cloud_sink));
    let asked: Vec<String> = (0..2)
        .filter_map(|_| next(&mut cloud).map(|m| m.topic.to_string()))
        .collect();
    assert_eq!(
        asked,
        ["$aws/things/core/shadow/get", "$aws/things/lamp/shadow/get"]
    );

    // A device's update: answered locally, copied to the cloud.
    let update = br#"{"state":{"reported":{"on":true}}}"#;
    router
        .publish(
            "dev",
            "$aws/things/lamp/shadow/update",
            Arc::from(&update[..]),
        )
        .expect("publish");
    let accepted = next(&mut dev).expect("accepted");
    assert_eq!(&*accepted.topic, "$aws/things/lamp/shadow/update/accepted");
    assert_eq!(&*accepted.source, ENDPOINT);
    let documents = next(&mut dev).expect("documents");
    assert_eq!(
        &*documents.topic,
        "$aws/things/lamp/shadow/update/documents"
    );
    let up = next(&mut cloud).expect("sent up");
    assert_eq!(&*up.topic, "$aws/things/lamp/shadow/update");
    assert_eq!(&*up.source, ENDPOINT);
    assert_eq!(body(&up), json!({"state": {"reported": {"on": true}}}));

    // The cloud sets desired: the device hears documents and delta, nothing goes back up.
    let doc = json!({"current": {"state": {"desired": {"on": false}, "reported": {"on": true}}, "version": 9}});
    shadow
        .cloud_message(
            "$aws/things/lamp/shadow/update/documents",
            Arc::from(doc.to_string().into_bytes()),
        )
        .expect("queued");
    let documents = next(&mut dev).expect("documents");
    assert_eq!(body(&documents)["current"]["version"], json!(2));
    let delta = next(&mut dev).expect("delta");
    assert_eq!(&*delta.topic, "$aws/things/lamp/shadow/update/delta");
    assert_eq!(body(&delta)["state"], json!({"on": false}));

    // A new deployment without SyncShadow for the device: its changes stay local.
    shadow.deploy(&plan(false));
    assert_eq!(shadow.synced_things(), ["core"]);
    router
        .publish(
            "dev",
            "$aws/things/lamp/shadow/update",
            Arc::from(&update[..]),
        )
        .expect("publish");
    assert_eq!(
        &*next(&mut dev).expect("accepted").topic,
        "$aws/things/lamp/shadow/update/accepted"
    );
    assert!(next(&mut dev).is_some(), "documents");
    assert!(
        cloud.try_recv().is_err(),
        "nothing sent up for an unsynced thing"
    );
    // A Lambda-style direct request answers its payload.
    let (ok, answer) = shadow
        .request("fn", "$aws/things/lamp/shadow/get", b"")
        .expect("a request topic");
    assert!(ok);
    assert_eq!(
        serde_json::from_slice::<Value>(&answer).expect("json")["version"],
        json!(3)
    );
    assert_eq!(
        shadow.request("fn", "$aws/things/lamp/shadow/get/accepted", b""),
        None
    );
    assert_eq!(shadow.cloud_dropped(), 0);
}
