//! Who may use the control socket: the rule on a peer's `SO_PEERCRED`
//! credentials. It owns only the rule; the server reads the credentials.

/// A user and group id pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ids {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl Ids {
    /// The runtime's own effective ids.
    pub(crate) fn of_process() -> Self {
        Ids {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }
}

/// Whether a peer with credentials `peer` may use the socket of a runtime
/// running as `runtime`: root, the same user, or the same (effective) group.
/// Supplementary groups are not in `SO_PEERCRED`; a member of the runtime's
/// group uses it with `sg <group> -c 'evergreen status'`.
pub(crate) fn peer_allowed(peer: Ids, runtime: Ids) -> bool {
    peer.uid == 0 || peer.uid == runtime.uid || peer.gid == runtime.gid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_rule() {
        let runtime = Ids {
            uid: 1000,
            gid: 1000,
        };
        let allowed = |uid, gid| peer_allowed(Ids { uid, gid }, runtime);
        assert!(allowed(0, 0), "root");
        assert!(allowed(0, 4242), "root in any group");
        assert!(allowed(1000, 4242), "the runtime's user");
        assert!(allowed(4242, 1000), "the runtime's group");
        assert!(!allowed(65534, 65534), "nobody");
        assert!(!allowed(1001, 1001), "another user");
        let as_root = Ids { uid: 0, gid: 0 };
        assert!(!peer_allowed(Ids { uid: 5, gid: 6 }, as_root));
        assert!(peer_allowed(Ids { uid: 5, gid: 0 }, as_root));
    }
}
