//! Whatever a device sends, decoding never panics: random bytes through the
//! reply decoders, and hostile peers on loopback through the client.

use std::time::Duration;

use evergreen_connector_ethernet_ip::cip::{self, TagPath, HEADER_LEN};
use evergreen_connector_ethernet_ip::client::{Client, ClientError, TagError};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_replies_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = cip::unconnected_data(&bytes);
        let _ = cip::read_tag_reply(&bytes);
        let mut h = [0u8; HEADER_LEN];
        let n = bytes.len().min(HEADER_LEN);
        h[..n].copy_from_slice(&bytes[..n]);
        let _ = cip::Header::decode(&h);
    }

    #[test]
    fn read_tag_replies_with_a_valid_head_and_random_data_never_panic(
        status in prop_oneof![Just(0u8), Just(6u8), any::<u8>()],
        ext in 0u8..4,
        data in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut b = vec![0xCC, 0, status, ext];
        b.extend_from_slice(&data);
        let _ = cip::read_tag_reply(&b);
    }

    #[test]
    fn any_text_path_parses_or_is_refused_without_panicking(text in "\\PC{0,60}") {
        if let Ok(p) = TagPath::parse(&text) {
            prop_assert_eq!(p.encode().len() % 2, 0);
        }
    }
}

/// A peer that answers RegisterSession properly, then sends `reply` to the
/// first SendRRData (after fixing up its context when `echo_context`), then
/// closes.
async fn hostile(reply: Vec<u8>, echo_context: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        // RegisterSession: its header and 4-byte payload.
        let mut h = [0u8; HEADER_LEN];
        let mut version = [0u8; 4];
        if s.read_exact(&mut h).await.is_err() || s.read_exact(&mut version).await.is_err() {
            return;
        }
        let mut ok = h;
        ok[4..8].copy_from_slice(&9u32.to_le_bytes());
        ok[2..4].copy_from_slice(&4u16.to_le_bytes());
        let _ = s.write_all(&ok).await;
        let _ = s.write_all(&[1, 0, 0, 0]).await;
        if s.read_exact(&mut h).await.is_err() {
            return;
        }
        let len = usize::from(u16::from_le_bytes([h[2], h[3]]));
        let mut body = vec![0u8; len];
        let _ = s.read_exact(&mut body).await;
        let mut reply = reply;
        if echo_context && reply.len() >= HEADER_LEN {
            reply[12..20].copy_from_slice(&h[12..20]);
        }
        let _ = s.write_all(&reply).await;
    });
    port
}

async fn read_from(port: u16) -> Result<Result<cip::CipValue, TagError>, ClientError> {
    let mut c = Client::connect("127.0.0.1", port, Duration::from_secs(2))
        .await
        .expect("session");
    c.read_tag(&TagPath::parse("Count").expect("path")).await
}

fn header(command: u16, length: u16, status: u32) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN];
    h[0..2].copy_from_slice(&command.to_le_bytes());
    h[2..4].copy_from_slice(&length.to_le_bytes());
    h[8..12].copy_from_slice(&status.to_le_bytes());
    h
}

#[tokio::test]
async fn a_peer_closing_mid_reply_is_a_transport_error() {
    // Announces 40 bytes, sends 3, closes.
    let mut r = header(cip::SEND_RR_DATA, 40, 0);
    r.extend_from_slice(&[1, 2, 3]);
    let got = read_from(hostile(r, true).await).await;
    assert!(matches!(got, Err(ClientError::Protocol(_))), "{got:?}");
    let got = read_from(hostile(Vec::new(), true).await).await;
    assert!(matches!(got, Err(ClientError::Closed)), "{got:?}");
}

#[tokio::test]
async fn a_reply_out_of_step_is_a_transport_error() {
    let got = read_from(hostile(header(cip::SEND_RR_DATA, 0, 0), false).await).await;
    assert!(matches!(got, Err(ClientError::Protocol(_))), "{got:?}");
}

#[tokio::test]
async fn a_short_or_garbled_reply_in_a_whole_frame_is_a_bad_tag_not_a_panic() {
    let body = [
        0u8, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0xB2, 0, 3, 0, 0xCC, 0, 0,
    ];
    let mut r = header(cip::SEND_RR_DATA, body.len() as u16, 0);
    r.extend_from_slice(&body);
    let got = read_from(hostile(r, true).await).await;
    assert!(matches!(got, Ok(Err(TagError::Reply(_)))), "{got:?}");
    let got = read_from(hostile(header(cip::SEND_RR_DATA, 0, 8), true).await).await;
    assert!(
        matches!(got, Ok(Err(TagError::Encapsulation(8)))),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_silent_peer_is_a_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let keep = tokio::spawn(async move {
        let s = listener.accept().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let got = Client::connect("127.0.0.1", port, Duration::from_millis(300)).await;
    assert!(matches!(got, Err(ClientError::Timeout(_))), "{got:?}");
    keep.abort();
}
