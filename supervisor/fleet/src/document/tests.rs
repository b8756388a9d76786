//! Documents as an operator signs them and as a gateway checks them: every refusal the issue
//! names (unsigned, tampered, wrong key, replayed, oversize, another gateway's), and the
//! redelivery of an accepted one.

use super::*;
use crate::state::{FleetState, Verdict};

fn me() -> Identity {
    Identity {
        thing: "gw-1".into(),
        groups: vec!["line-1".into()],
    }
}

fn doc(sequence: u64) -> Document {
    Document {
        fleet: "factory".into(),
        sequence,
        created_at: None,
        targets: Targets {
            things: vec!["gw-1".into()],
            groups: vec![],
        },
        bundle: Some(artefact(10)),
        release: None,
    }
}

fn artefact(size: u64) -> BundleRef {
    BundleRef {
        sha256: "ab".repeat(32),
        size,
        url: Some("https://example.com/b.tar".into()),
        inline: None,
    }
}

fn bundle(d: &mut Document) -> &mut BundleRef {
    d.bundle.as_mut().expect("a bundle document")
}

fn key() -> SigningKey {
    SigningKey::generate().expect("key").1
}

const MAX: u64 = 1 << 20;

#[test]
fn a_signed_document_for_this_gateway_verifies() {
    let k = key();
    let signed = k.sign(&doc(1)).expect("sign");
    assert_eq!(verify(&signed, &[k.public()], &me(), MAX), Ok(doc(1)));
}

#[test]
fn a_group_target_reaches_its_members_only() {
    let k = key();
    let mut d = doc(1);
    d.targets = Targets {
        things: vec![],
        groups: vec!["line-1".into()],
    };
    let signed = k.sign(&d).expect("sign");
    assert!(verify(&signed, &[k.public()], &me(), MAX).is_ok());
    let other = Identity {
        thing: "gw-2".into(),
        groups: vec!["line-2".into()],
    };
    assert!(matches!(
        verify(&signed, &[k.public()], &other, MAX),
        Err(Refusal::NotForThisGateway(_))
    ));
}

#[test]
fn unsigned_documents_are_refused() {
    let bare = serde_json::to_vec(&doc(1)).expect("json");
    assert!(matches!(
        verify(&bare, &[key().public()], &me(), MAX),
        Err(Refusal::Unsigned(_))
    ));
}

#[test]
fn a_tampered_document_is_refused() {
    let k = key();
    let signed = k.sign(&doc(1)).expect("sign");
    let mut envelope: Envelope = serde_json::from_slice(&signed).expect("envelope");
    envelope.document = envelope.document.replace("example.com", "evil.example");
    let tampered = serde_json::to_vec(&envelope).expect("json");
    assert_eq!(
        verify(&tampered, &[k.public()], &me(), MAX),
        Err(Refusal::BadSignature)
    );
}

#[test]
fn a_key_the_gateway_does_not_trust_is_refused() {
    let signed = key().sign(&doc(1)).expect("sign");
    assert!(matches!(
        verify(&signed, &[key().public()], &me(), MAX),
        Err(Refusal::UntrustedKey(_))
    ));
    // Claiming a trusted key while signing with another fails on the signature.
    let trusted = key();
    let mut envelope: Envelope = serde_json::from_slice(&signed).expect("envelope");
    envelope.key = trusted.public().to_base64();
    let forged = serde_json::to_vec(&envelope).expect("json");
    assert_eq!(
        verify(&forged, &[trusted.public()], &me(), MAX),
        Err(Refusal::BadSignature)
    );
}

#[test]
fn oversize_documents_and_bundles_are_refused() {
    let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    assert_eq!(
        verify(&big, &[key().public()], &me(), MAX),
        Err(Refusal::Oversize(MAX_ENVELOPE_BYTES + 1))
    );
    let k = key();
    let mut d = doc(1);
    bundle(&mut d).size = MAX + 1;
    let signed = k.sign(&d).expect("sign");
    assert!(matches!(
        verify(&signed, &[k.public()], &me(), MAX),
        Err(Refusal::BundleTooLarge { .. })
    ));
}

#[test]
fn unknown_fields_and_bad_urls_are_refused() {
    let k = key();
    let mut d = doc(1);
    bundle(&mut d).url = Some("ftp://example.com/b".into());
    let signed = k.sign(&d).expect("sign");
    assert!(matches!(
        verify(&signed, &[k.public()], &me(), MAX),
        Err(Refusal::BadUrl(_))
    ));
    // A field this build does not know, signed: refused, never ignored.
    let text =
        serde_json::to_string(&doc(1))
            .expect("json")
            .replacen('{', "{\"runAsRoot\":true,", 1);
    let envelope = Envelope {
        format: FORMAT.into(),
        key: k.public().to_base64(),
        signature: BASE64.encode(k.0.sign(text.as_bytes()).as_ref()),
        document: text,
    };
    let signed = serde_json::to_vec(&envelope).expect("json");
    assert!(matches!(
        verify(&signed, &[k.public()], &me(), MAX),
        Err(Refusal::Malformed(_))
    ));
}

#[test]
fn older_sequences_are_replays_and_the_accepted_one_is_recognised() {
    let dir = tempfile::tempdir().expect("dir");
    let mut state = FleetState::open(dir.path()).expect("state");
    let d5 = doc(5);
    let t5 = serde_json::to_string(&d5).expect("json");
    assert_eq!(state.judge(&d5, &t5), Ok(Verdict::Apply));
    state.accept(&d5, &t5).expect("accept");
    assert_eq!(state.judge(&d5, &t5), Ok(Verdict::Resume));
    state.finish("factory", "Success").expect("finish");

    // Survives a restart.
    let state = FleetState::open(dir.path()).expect("reopen");
    assert_eq!(state.judge(&d5, &t5), Ok(Verdict::Done("Success".into())));
    let d4 = doc(4);
    assert!(matches!(
        state.judge(&d4, &serde_json::to_string(&d4).expect("json")),
        Err(Refusal::Replayed {
            got: 4,
            applied: 5,
            ..
        })
    ));
    // The same sequence with other content is a replay too.
    let mut other = doc(5);
    bundle(&mut other).size = 11;
    assert!(matches!(
        state.judge(&other, &serde_json::to_string(&other).expect("json")),
        Err(Refusal::Replayed { .. })
    ));
    assert_eq!(
        state.judge(&doc(6), &serde_json::to_string(&doc(6)).expect("json")),
        Ok(Verdict::Apply)
    );
}

#[test]
fn a_release_gives_each_gateway_the_binary_for_its_target() {
    let k = key();
    let mut d = doc(1);
    d.bundle = None;
    d.release = Some(Release {
        version: "0.9.0".into(),
        binaries: [(target().to_string(), artefact(20))].into(),
    });
    let signed = k.sign(&d).expect("sign");
    let verified = verify(&signed, &[k.public()], &me(), MAX).expect("verifies");
    assert_eq!(
        verified.content(target()),
        Ok(Content::Release {
            version: "0.9.0",
            binary: &artefact(20)
        })
    );

    // No binary for this target: refused, naming what the release has.
    let mut other = d.clone();
    other.release = Some(Release {
        version: "0.9.0".into(),
        binaries: [("riscv64".to_string(), artefact(20))].into(),
    });
    let refused = verify(&k.sign(&other).expect("sign"), &[k.public()], &me(), MAX);
    assert!(
        matches!(&refused, Err(Refusal::NoBinaryForTarget { offered, .. }) if offered == "riscv64"),
        "{refused:?}"
    );

    // A version that could climb out of the slots directory.
    for bad in ["../x", "", ".hidden", "a/b", &"9".repeat(65)] {
        let mut d = d.clone();
        if let Some(r) = d.release.as_mut() {
            r.version = bad.to_string();
        }
        assert!(
            matches!(
                verify(&k.sign(&d).expect("sign"), &[k.public()], &me(), MAX),
                Err(Refusal::Malformed(_))
            ),
            "{bad:?}"
        );
    }

    // Both a bundle and a release, or neither: malformed.
    let mut both = d.clone();
    both.bundle = Some(artefact(10));
    let mut neither = d;
    neither.release = None;
    for d in [both, neither] {
        assert!(matches!(
            verify(&k.sign(&d).expect("sign"), &[k.public()], &me(), MAX),
            Err(Refusal::Malformed(_))
        ));
    }
}
