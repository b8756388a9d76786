//! The stream manager's request side (`evergreen_streams::wire` and `model`): the frames a
//! `StreamManagerClient` — or anything else on localhost — sends to its port, each payload
//! decoded as every request the service accepts, a definition validated as the service
//! does, and the request id found in what does not decode. None of it may panic, and a
//! length above the limit must be refused before anything is allocated for it.

#![no_main]

use evergreen_streams::model::{
    AppendMessageRequest, ConnectRequest, DefinitionRequest, ListStreamsRequest, NameRequest,
    ReadMessagesRequest,
};
use evergreen_streams::wire::{decode, read_frame, request_id_of};
use libfuzzer_sys::fuzz_target;

/// A small limit, so the fuzzer meets the "too large" path as often as the others.
const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(async {
        let mut r = data;
        for _ in 0..64 {
            match read_frame(&mut r, MAX).await {
                Ok(Some(frame)) => {
                    let p = &frame.payload;
                    assert!(p.len() <= MAX);
                    let _ = decode::<ConnectRequest>(p);
                    let _ = decode::<AppendMessageRequest>(p);
                    let _ = decode::<NameRequest>(p);
                    let _ = decode::<ListStreamsRequest>(p);
                    let _ = decode::<ReadMessagesRequest>(p);
                    if let Ok(d) = decode::<DefinitionRequest>(p) {
                        let _ = d.definition.validate();
                        let _ = (d.definition.max_size(), d.definition.segment_size());
                    }
                    let _ = request_id_of(p);
                }
                Ok(None) | Err(_) => return,
            }
        }
    });
});
