//! The stored form of what a message carries beyond topic, source and payload (its QoS and
//! RETAIN flags and its MQTT 5 properties), shared by the session store's queued messages and
//! the retained messages; and the little reader both decode with.

use std::sync::Arc;

use evergreen_runtime::router::{Meta, PublishProps};

/// Bit of the flags byte: published at QoS 0.
const AT_MOST_ONCE: u8 = 1;
/// Bit of the flags byte: published at QoS 2.
const EXACTLY_ONCE: u8 = 2;
/// Bit of the flags byte: published with RETAIN.
const RETAIN: u8 = 4;

/// `[u16 le length][bytes]`: every field is an MQTT string or binary, at most 65535 bytes.
pub(crate) fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
}

fn put_opt(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    out.push(u8::from(bytes.is_some()));
    if let Some(b) = bytes {
        put(out, b);
    }
}

/// `[flags][has props]` then, with props, `[u16 count][name][value]…`, the response topic,
/// correlation data and content type each as `[present][string]`, `[payload format: 0 none,
/// 1 UTF-8]` and `[u64 le expires at, 0 none]`.
pub(crate) fn put_meta(out: &mut Vec<u8>, meta: &Meta) {
    let mut flags = 0;
    if meta.at_most_once {
        flags |= AT_MOST_ONCE;
    }
    if meta.exactly_once {
        flags |= EXACTLY_ONCE;
    }
    if meta.retain {
        flags |= RETAIN;
    }
    out.push(flags);
    let Some(p) = meta.props.as_deref() else {
        out.push(0);
        return;
    };
    out.push(1);
    let n = u16::try_from(p.user.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_le_bytes());
    for (k, v) in p.user.iter().take(usize::from(n)) {
        put(out, k.as_bytes());
        put(out, v.as_bytes());
    }
    put_opt(out, p.response_topic.as_deref().map(str::as_bytes));
    put_opt(out, p.correlation_data.as_deref());
    put_opt(out, p.content_type.as_deref().map(str::as_bytes));
    out.push(u8::from(p.utf8_payload == Some(true)));
    out.extend_from_slice(&p.expires_at.unwrap_or(0).to_le_bytes());
}

/// Reads what [`put_meta`] wrote.
pub(crate) fn read_meta(r: &mut Reader<'_>) -> Option<Meta> {
    let flags = r.byte()?;
    let props = match r.byte()? {
        0 => None,
        _ => {
            let n = r.take(2)?;
            let n = u16::from_le_bytes([n[0], n[1]]);
            let mut user = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                user.push((r.string()?, r.string()?));
            }
            let response_topic = r.opt_string()?;
            let correlation_data = r.opt()?.map(<[u8]>::to_vec);
            let content_type = r.opt_string()?;
            let utf8_payload = (r.byte()? != 0).then_some(true);
            let at = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
            Some(Arc::new(PublishProps {
                user,
                response_topic,
                correlation_data,
                content_type,
                utf8_payload,
                expires_at: (at != 0).then_some(at),
            }))
        }
    };
    Some(Meta {
        at_most_once: flags & AT_MOST_ONCE != 0,
        exactly_once: flags & EXACTLY_ONCE != 0,
        retain: flags & RETAIN != 0,
        props,
    })
}

/// Reads fields off a stored record; every read is bounds-checked (`None` past the end).
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn field(&mut self) -> Option<&'a [u8]> {
        let len = self.take(2)?;
        self.take(usize::from(u16::from_le_bytes([len[0], len[1]])))
    }

    pub(crate) fn string(&mut self) -> Option<String> {
        String::from_utf8(self.field()?.to_vec()).ok()
    }

    fn opt(&mut self) -> Option<Option<&'a [u8]>> {
        match self.byte()? {
            0 => Some(None),
            _ => Some(Some(self.field()?)),
        }
    }

    fn opt_string(&mut self) -> Option<Option<String>> {
        match self.opt()? {
            None => Some(None),
            Some(b) => Some(Some(String::from_utf8(b.to_vec()).ok()?)),
        }
    }

    /// Everything not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }
}
