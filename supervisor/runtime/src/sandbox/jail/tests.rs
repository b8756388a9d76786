//! Tests of the jail, kept apart from its code for length.

use std::ffi::CString;
use std::path::PathBuf;

use super::*;

fn spec() -> JailSpec {
    JailSpec {
        root_dir: PathBuf::from("/rt/containers/fn.1"),
        hostname: "fn".into(),
        cgroup_procs: vec![
            PathBuf::from("/cg/memory/evergreen/rt-1/fn.1/cgroup.procs"),
            PathBuf::from("/cg/pids/evergreen/rt-1/fn.1/cgroup.procs"),
        ],
        system: vec![
            SystemPath {
                path: "/usr".into(),
                link: None,
                directory: true,
            },
            SystemPath {
                path: "/lib".into(),
                link: Some("usr/lib".into()),
                directory: false,
            },
            SystemPath {
                path: "/etc/resolv.conf".into(),
                link: None,
                directory: false,
            },
        ],
        binds: vec![
            BindMount {
                source: "/dev/ttyUSB0".into(),
                target: "/dev/ttyUSB0".into(),
                read_write: true,
                directory: false,
                device: true,
            },
            BindMount {
                source: "/srv/data".into(),
                target: "/data/in".into(),
                read_write: false,
                directory: true,
                device: false,
            },
            BindMount {
                source: "/usr/bin/evergreen".into(),
                target: "/usr/bin/evergreen".into(),
                read_write: false,
                directory: false,
                device: false,
            },
        ],
        working_dir: None,
        links: vec![("/dev/ttyV0".into(), "/dev/pts/3".into())],
        uid: Some(1001),
        gid: Some(1002),
        groups: vec![20, 1002],
        capabilities: CapabilityPlan::container(),
    }
}

fn position(plan: &JailPlan, wanted: impl Fn(&Step) -> bool) -> usize {
    plan.steps.iter().position(wanted).expect("step present")
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no nul")
}

#[test]
fn the_sequence_is_in_the_jailer_order() {
    let plan = JailPlan::build(&spec()).expect("plan");
    let cgroup = position(&plan, |s| matches!(s, Step::JoinCgroup(_)));
    let unshare = position(&plan, |s| *s == Step::Unshare);
    let fork = position(&plan, |s| *s == Step::ForkInit);
    let private = position(&plan, |s| *s == Step::MakeMountsPrivate);
    let first_bind = position(&plan, |s| matches!(s, Step::Bind { .. }));
    let pivot = position(&plan, |s| matches!(s, Step::PivotRoot { .. }));
    let detach = position(&plan, |s| matches!(s, Step::DetachOldRoot(_)));
    let caps = position(&plan, |s| *s == Step::DropBoundingCapabilities { keep: 0 });
    let setuid = position(&plan, |s| matches!(s, Step::SetUid(1001)));
    let clear = position(&plan, |s| {
        *s == Step::SetCapabilities {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }
    });
    let nnp = position(&plan, |s| *s == Step::NoNewPrivileges);
    assert_eq!(plan.steps[0], Step::DieWithParent);
    assert!(cgroup < unshare && unshare < fork && fork < private);
    assert_eq!(
        plan.steps[fork + 1],
        Step::DieWithParent,
        "PID 1 dies with its waiter"
    );
    assert!(private < first_bind && first_bind < pivot && pivot < detach);
    assert!(detach < caps && caps < setuid && setuid < clear && clear < nnp);
    // The seccomp filter needs no_new_privs and comes last, so no jail step runs under it;
    // on an architecture without a filter, no_new_privs is the last step.
    let filtered = usize::from(seccomp::SUPPORTED);
    assert_eq!(
        nnp,
        plan.steps.len() - 2 - filtered,
        "no_new_privs is the last jail step before the filter"
    );
    if seccomp::SUPPORTED {
        assert!(matches!(plan.steps[nnp + 1], Step::Seccomp(_)));
    }
    // /proc is mounted, then its kernel settings made read-only and its secrets masked,
    // all before the root is switched.
    let proc_mount = position(&plan, |s| matches!(s, Step::MountProc(_)));
    let sys = position(&plan, |s| {
        *s == Step::ReadOnly(c("/rt/containers/fn.1/proc/sys"))
    });
    let kcore = position(&plan, |s| {
        *s == Step::Mask(c("/rt/containers/fn.1/proc/kcore"))
    });
    assert!(proc_mount < sys && sys < kcore && kcore < pivot);
    assert_eq!(
        plan.steps.last(),
        Some(&Step::ForkComponent),
        "init stays PID 1 only once it is as jailed as the component"
    );
}

#[test]
fn system_paths_are_read_only_and_links_stay_links() {
    let plan = JailPlan::build(&spec()).expect("plan");
    assert!(plan.steps.contains(&Step::Bind {
        source: c("/usr"),
        target: c("/rt/containers/fn.1/usr"),
        remount: libc::MS_RDONLY | MS_HARDEN,
    }));
    assert!(plan.steps.contains(&Step::Symlink {
        target: c("usr/lib"),
        link: c("/rt/containers/fn.1/lib"),
    }));
    assert!(plan
        .steps
        .contains(&Step::Touch(c("/rt/containers/fn.1/etc/resolv.conf"))));
}

#[test]
fn resources_keep_their_access_and_devices_keep_dev() {
    let plan = JailPlan::build(&spec()).expect("plan");
    assert!(plan.steps.contains(&Step::Bind {
        source: c("/dev/ttyUSB0"),
        target: c("/rt/containers/fn.1/dev/ttyUSB0"),
        remount: libc::MS_NOSUID,
    }));
    assert!(plan.steps.contains(&Step::Bind {
        source: c("/srv/data"),
        target: c("/rt/containers/fn.1/data/in"),
        remount: libc::MS_NOSUID | libc::MS_RDONLY | libc::MS_NODEV,
    }));
    // The executable under /usr is already visible: no second mount.
    assert!(!plan.steps.iter().any(|s| matches!(s,
            Step::Bind { source, .. } if source.as_bytes() == b"/usr/bin/evergreen")));
    // /data is created once, before /data/in.
    let data = position(&plan, |s| {
        *s == Step::MakeDir(c("/rt/containers/fn.1/data"))
    });
    let data_in = position(&plan, |s| {
        *s == Step::MakeDir(c("/rt/containers/fn.1/data/in"))
    });
    assert!(data < data_in);
}

#[test]
fn host_links_to_files_are_bound_and_links_to_dirs_kept() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("real-dir");
    let file = tmp.path().join("stub-resolv.conf");
    std::fs::create_dir(&dir).expect("dir");
    std::fs::write(&file, "nameserver 127.0.0.53\n").expect("file");
    let dir_link = tmp.path().join("lib");
    let file_link = tmp.path().join("resolv.conf");
    std::os::unix::fs::symlink("real-dir", &dir_link).expect("link");
    std::os::unix::fs::symlink("stub-resolv.conf", &file_link).expect("link");
    let dangling = tmp.path().join("gone");
    std::os::unix::fs::symlink("nowhere", &dangling).expect("link");
    let d = SystemPath::probe(&dir_link).expect("dir link");
    assert_eq!(d.link, Some(PathBuf::from("real-dir")));
    let f = SystemPath::probe(&file_link).expect("file link");
    assert_eq!((f.link, f.directory), (None, false));
    assert_eq!(SystemPath::probe(&dangling), None);
}

#[test]
fn device_links_are_made_inside_the_container() {
    let plan = JailPlan::build(&spec()).expect("plan");
    let link = position(&plan, |s| {
        *s == Step::Symlink {
            target: c("/dev/pts/3"),
            link: c("/rt/containers/fn.1/dev/ttyV0"),
        }
    });
    let pivot = position(&plan, |s| matches!(s, Step::PivotRoot { .. }));
    assert!(link < pivot);
}

#[test]
fn groups_put_the_primary_group_first_once() {
    let plan = JailPlan::build(&spec()).expect("plan");
    assert!(plan.steps.contains(&Step::SetGroups(vec![1002, 20])));
}

#[test]
fn a_destination_inside_a_system_path_is_refused() {
    let mut s = spec();
    s.binds.push(BindMount {
        source: "/srv/x".into(),
        target: "/usr/share/x".into(),
        read_write: true,
        directory: true,
        device: false,
    });
    let err = JailPlan::build(&s).expect_err("refused");
    assert!(
        err.to_string().contains("read-only system path /usr"),
        "{err}"
    );
    let mut s = spec();
    s.binds[1].target = "/data/../etc".into();
    assert!(JailPlan::build(&s).is_err());
}

#[test]
fn a_plan_that_keeps_capabilities_carries_them_as_masks_and_keeps_them_across_setuid() {
    use caps::Capability::{CAP_NET_BIND_SERVICE, CAP_NET_RAW};
    let mut keeping = spec();
    let keep: caps::CapsHashSet = [CAP_NET_BIND_SERVICE, CAP_NET_RAW].into_iter().collect();
    keeping.capabilities = CapabilityPlan {
        effective: keep.clone(),
        permitted: keep.clone(),
        inheritable: keep.clone(),
        bounding: keep.clone(),
        ambient: [CAP_NET_BIND_SERVICE].into_iter().collect(),
    };
    let mask = (1u64 << 10) | (1u64 << 13);
    assert_eq!(
        keeping.capabilities.masks(),
        CapabilityMasks {
            effective: mask,
            permitted: mask,
            inheritable: mask,
            bounding: mask,
            ambient: 1 << 10,
        }
    );
    let plan = JailPlan::build(&keeping).expect("plan");
    let bounding = position(&plan, |s| {
        *s == Step::DropBoundingCapabilities { keep: mask }
    });
    let keepcaps = position(&plan, |s| *s == Step::KeepCapabilities);
    let setuid = position(&plan, |s| matches!(s, Step::SetUid(1001)));
    let set = position(&plan, |s| {
        *s == Step::SetCapabilities {
            effective: mask,
            permitted: mask,
            inheritable: mask,
        }
    });
    let ambient = position(&plan, |s| *s == Step::RaiseAmbient(1 << 10));
    assert!(bounding < keepcaps && keepcaps < setuid && setuid < set && set < ambient);
    // The container's plan keeps nothing, so it needs no keepcaps and raises nothing.
    let plain = JailPlan::build(&spec()).expect("plan");
    assert!(!plain
        .steps
        .iter()
        .any(|s| *s == Step::KeepCapabilities || matches!(s, Step::RaiseAmbient(_))));
}
