//! The launcher's decisions: a trial is started and counted, a crash loop and a slot that does
//! not verify roll back, nothing unverified is ever started, and a package install wins.

use super::*;

fn slot(version: &str) -> Slot {
    Slot {
        version: version.into(),
        sha256: format!("sha-of-{version}"),
    }
}

fn trial(version: &str) -> Trial {
    Trial {
        slot: slot(version),
        fleet: "factory".into(),
        sequence: 4,
        starts: 0,
        from_version: "0.1.0".into(),
    }
}

/// Every slot verifies, at `/slots/<version>`.
fn good(s: &Slot) -> Result<PathBuf, String> {
    Ok(PathBuf::from(format!("/slots/{}", s.version)))
}

#[test]
fn a_trial_is_started_and_counted_until_it_rolls_back() {
    let mut boot = Boot {
        active: Some(slot("0.2.0")),
        trial: Some(trial("0.3.0")),
        ..Boot::default()
    };
    let mut notes = Vec::new();
    for start in 1..=3 {
        assert_eq!(
            decide(&mut boot, "0.1.0", 3, good, &mut notes),
            Launch::Slot {
                version: "0.3.0".into(),
                path: "/slots/0.3.0".into(),
                trial: true
            }
        );
        assert_eq!(boot.trial.as_ref().map(|t| t.starts), Some(start));
    }
    // Three starts, never healthy: the active release comes back, and the outcome says why.
    assert_eq!(
        decide(&mut boot, "0.1.0", 3, good, &mut notes),
        Launch::Slot {
            version: "0.2.0".into(),
            path: "/slots/0.2.0".into(),
            trial: false
        }
    );
    assert_eq!(boot.trial, None);
    let outcome = boot.outcome.clone().expect("an outcome");
    assert_eq!(outcome.state, State::RolledBack);
    assert_eq!(outcome.code.as_deref(), Some("CrashLoop"));
    assert_eq!((outcome.fleet.as_str(), outcome.sequence), ("factory", 4));
    assert!(
        notes.iter().any(|n| n.contains("rolling back")),
        "{notes:?}"
    );
}

#[test]
fn nothing_unverified_starts_and_the_stable_binary_is_the_floor() {
    // The trial's binary was changed on disk: rolled back without starting it.
    let mut boot = Boot {
        active: Some(slot("0.2.0")),
        trial: Some(trial("0.3.0")),
        ..Boot::default()
    };
    let only_active = |s: &Slot| {
        if s.version == "0.2.0" {
            good(s)
        } else {
            Err("digest differs".to_string())
        }
    };
    let mut notes = Vec::new();
    assert!(matches!(
        decide(&mut boot, "0.1.0", 3, only_active, &mut notes),
        Launch::Slot { trial: false, ref version, .. } if version == "0.2.0"
    ));
    assert_eq!(
        boot.outcome.as_ref().and_then(|o| o.code.as_deref()),
        Some("SlotNotVerified")
    );

    // The active release does not verify either: the stable binary runs.
    let mut boot = Boot {
        active: Some(slot("0.2.0")),
        trial: Some(trial("0.3.0")),
        ..Boot::default()
    };
    let none = |_: &Slot| Err::<PathBuf, _>("gone".to_string());
    assert_eq!(
        decide(&mut boot, "0.1.0", 3, none, &mut notes),
        Launch::Stable
    );
    assert_eq!(boot.active, None);
}

#[test]
fn a_commit_makes_the_trial_active_and_records_success() {
    let mut boot = Boot {
        active: Some(slot("0.2.0")),
        trial: Some(trial("0.3.0")),
        ..Boot::default()
    };
    let outcome = boot.commit().expect("committed");
    assert_eq!(outcome.state, State::Success);
    assert_eq!(boot.active, Some(slot("0.3.0")));
    assert_eq!(boot.trial, None);
    assert_eq!(boot.commit(), None, "nothing left to commit");
}

#[test]
fn a_package_install_after_the_fleet_update_wins() {
    let mut boot = Boot {
        active: Some(slot("0.2.0")),
        trial: Some(trial("0.3.0")),
        stable_version: Some("0.1.0".into()),
        ..Boot::default()
    };
    let mut notes = Vec::new();
    // Same stable binary: the trial runs.
    assert!(matches!(
        decide(&mut boot.clone(), "0.1.0", 3, good, &mut notes),
        Launch::Slot { trial: true, .. }
    ));
    // apt upgraded the stable binary to 0.4.0: it runs, and the trial is reported superseded.
    assert_eq!(
        decide(&mut boot, "0.4.0", 3, good, &mut notes),
        Launch::Stable
    );
    assert_eq!((boot.active.clone(), boot.trial.clone()), (None, None));
    assert_eq!(
        boot.outcome.as_ref().and_then(|o| o.code.as_deref()),
        Some("SupersededByPackage")
    );
    assert_eq!(boot.stable_version.as_deref(), Some("0.4.0"));
    // A later fleet update works as before.
    boot.trial = Some(trial("0.5.0"));
    assert!(matches!(
        decide(&mut boot, "0.4.0", 3, good, &mut notes),
        Launch::Slot { trial: true, .. }
    ));
}

#[test]
fn slots_install_verify_and_make_room() {
    let dir = tempfile::tempdir().expect("dir");
    let slots = Slots::new(dir.path());
    let download = |bytes: &[u8]| {
        let p = dir.path().join("download");
        std::fs::write(&p, bytes).expect("write");
        p
    };
    let a = slots
        .install("0.2.0", &download(b"binary a"), None)
        .expect("install a");
    let b = slots
        .install("0.3.0", &download(b"binary b"), Some("0.2.0"))
        .expect("install b");
    assert!(a.exists() && b.exists());
    assert!(slots.holds(&b));
    let sb = Slot {
        version: "0.3.0".into(),
        sha256: crate::state::digest(b"binary b"),
    };
    assert_eq!(slots.verify(&sb), Ok(b.clone()));
    // A third install keeps only itself and the active one.
    slots
        .install("0.4.0", &download(b"binary c"), Some("0.3.0"))
        .expect("install c");
    assert!(!a.exists(), "0.2.0 was neither active nor new");
    // Tampered on disk: no longer verifies.
    std::fs::write(&b, b"binary B").expect("tamper");
    assert!(slots.verify(&sb).is_err());
    // The boot record round-trips.
    assert_eq!(slots.load(), Ok(None));
    let boot = Boot {
        active: Some(sb),
        ..Boot::default()
    };
    slots.save(&boot).expect("save");
    assert_eq!(slots.load(), Ok(Some(boot)));
}
