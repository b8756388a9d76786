//! The decoders of outside input never panic: any bytes as a body of each
//! content type, as an `.npy` header, or as the ML SDK's client context
//! are an answer or an error.

use evergreen_connector_ml_inference::preprocess::{
    parse_npy, write_npy, ChannelOrder, InputSpec, Layout,
};
use evergreen_connector_ml_inference::service::Request;
use proptest::prelude::*;

fn spec() -> InputSpec {
    InputSpec {
        layout: Layout::Nchw,
        width: 4,
        height: 3,
        order: ChannelOrder::Rgb,
        scale: 1.0,
        mean: [0.0; 3],
        std: [1.0; 3],
    }
}

const TYPES: [&str; 5] = [
    "image/jpeg",
    "image/png",
    "application/x-npy",
    "application/octet-stream",
    "text/plain",
];

proptest! {
    #[test]
    fn any_body_is_an_answer_or_an_error(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for content_type in TYPES {
            let _ = spec().tensor(content_type, &body);
        }
        let _ = parse_npy(&body);
        let _ = Request::from_invoke(&body, Vec::new());
    }

    #[test]
    fn mutated_npy_files_never_panic(at in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
        let mut npy = write_npy(&[1, 3, 3, 4], &[0.5; 36]);
        let at = at % npy.len();
        npy[at] = byte;
        npy.truncate(npy.len().saturating_sub(cut % 8));
        if let Ok((shape, data)) = parse_npy(&npy) {
            prop_assert_eq!(shape.iter().product::<usize>(), data.len());
        }
        let _ = spec().tensor("application/x-npy", &npy);
    }

    #[test]
    fn any_client_context_json_is_read_or_refused(
        content_type in proptest::option::of(".{0,20}"),
        accept in proptest::option::of(".{0,20}"),
    ) {
        let mut custom = serde_json::Map::new();
        if let Some(c) = &content_type {
            custom.insert("Content-Type".into(), c.clone().into());
        }
        if let Some(a) = &accept {
            custom.insert("Accept".into(), a.clone().into());
        }
        let context = serde_json::json!({ "custom": custom }).to_string();
        match Request::from_invoke(context.as_bytes(), vec![1]) {
            Ok(r) => {
                prop_assert_eq!(Some(&r.content_type), content_type.as_ref());
                prop_assert_eq!(r.accept, accept.unwrap_or_default());
            }
            Err(_) => prop_assert!(content_type.is_none_or(|c| c.trim().is_empty())),
        }
    }
}
