//! The IPC frame decoder (`evergreen_ipc::codec`) on what a child writes to its stdout and
//! what the supervisor writes to its stdin: arbitrary bytes, decoded frame after frame as
//! both messages, each decoded frame re-encoded and decoded again to the same message.
//!
//! The first byte picks the maximum body length (small maxima reach the `TooLarge` path
//! without megabytes of input); the rest is the stream.

#![no_main]

use evergreen_ipc::codec::{decode_frame, encode_frame, FrameError, HEADER_LEN};
use evergreen_ipc::{FromChild, ToChild};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else {
        return;
    };
    // 16 B .. 1 MiB (the default maximum) in powers of two.
    let max = 16usize << (pick % 17);
    decode_all::<FromChild>(stream, max);
    decode_all::<ToChild>(stream, max);
});

/// Decodes frames from the front of `stream` until it runs out or one is refused.
fn decode_all<T>(mut stream: &[u8], max: usize)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    loop {
        match decode_frame::<T>(stream, max) {
            Ok(Some((msg, used))) => {
                // A frame is a header and a body no longer than the maximum.
                assert!(used >= HEADER_LEN && used - HEADER_LEN <= max && used <= stream.len());
                round_trip(&msg, &stream[..used], max);
                stream = &stream[used..];
            }
            // Not a whole frame yet: only possible when the header or the body is cut short.
            Ok(None) => {
                if let Some(header) = stream.get(..HEADER_LEN) {
                    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
                    assert!(stream.len() < HEADER_LEN + len as usize);
                }
                return;
            }
            Err(FrameError::TooLarge { len, max: m }) => {
                assert!(len > m && m == max);
                return;
            }
            Err(FrameError::Malformed(_)) => return,
            Err(e) => panic!("decoding a byte slice cannot fail with {e:?}"),
        }
    }
}

/// Encoding a decoded message gives a frame no longer than the one it came from (bincode
/// writes the shortest varints; its decoder also takes longer forms) that decodes to the
/// same message, and encoding that again gives the same bytes.
fn round_trip<T>(msg: &T, original: &[u8], max: usize)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut out = Vec::new();
    if let Err(e) = encode_frame(msg, max, &mut out) {
        panic!("a message decoded from a frame within the maximum must encode: {e:?}");
    }
    assert!(out.len() <= original.len());
    let (again, used) = decode_frame::<T>(&out, max)
        .expect("a frame we encoded decodes")
        .expect("a frame we encoded is whole");
    assert_eq!(used, out.len());
    assert_eq!(&again, msg);
    let mut twice = Vec::new();
    encode_frame(&again, max, &mut twice).expect("encodes again");
    assert_eq!(out, twice);
}
