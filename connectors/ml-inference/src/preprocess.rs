//! Request bodies into the model's input tensor: JPEG and PNG images
//! (decoded, resized, laid out and normalised as [`InputSpec`] says), or a
//! float32 tensor as `.npy` or raw little-endian bytes. Everything here is
//! outside input: sizes are checked before allocating, and image decoding
//! runs under [`image::Limits`] so a small PNG cannot ask for gigabytes.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::InferenceError;

/// The largest width or height of an image the service decodes.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// The most memory one decode may allocate (an RGBA 8192×8192 image).
pub const MAX_DECODE_BYTES: u64 = 256 << 20;

/// How the model lays out its image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Layout {
    /// `[1, 3, height, width]`: MXNet's and PyTorch's layout.
    #[serde(rename = "NCHW")]
    Nchw,
    /// `[1, height, width, 3]`: TensorFlow's layout.
    #[serde(rename = "NHWC")]
    Nhwc,
}

/// The order of the three colour channels the model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum ChannelOrder {
    #[serde(rename = "RGB")]
    Rgb,
    /// OpenCV-trained models (Caffe's, many Neo exports).
    #[serde(rename = "BGR")]
    Bgr,
}

/// The model's input and how an image becomes it: each 8-bit pixel value
/// `p` of model channel `c` becomes `(p * scale - mean[c]) / std[c]`
/// (`mean` and `std` are in the model's channel order).
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    pub order: ChannelOrder,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl InputSpec {
    /// The input tensor's shape.
    pub fn shape(&self) -> Vec<usize> {
        let (h, w) = (self.height as usize, self.width as usize);
        match self.layout {
            Layout::Nchw => vec![1, 3, h, w],
            Layout::Nhwc => vec![1, h, w, 3],
        }
    }

    /// The number of values in the input tensor.
    pub fn len(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }

    /// Never empty: width and height are at least 1.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The input tensor for the body of a request of `content_type`.
    pub fn tensor(&self, content_type: &str, body: &[u8]) -> Result<Vec<f32>, InferenceError> {
        match media_type(content_type).as_str() {
            "image/jpeg" | "image/jpg" => Ok(self.image(&decode(body, ImageFormat::Jpeg)?)),
            "image/png" => Ok(self.image(&decode(body, ImageFormat::Png)?)),
            "application/x-npy" => {
                let (shape, data) = parse_npy(body)?;
                if shape != self.shape() {
                    return Err(InferenceError::Shape {
                        expected: self.shape(),
                        got: shape,
                    });
                }
                Ok(data)
            }
            "application/octet-stream" => {
                if body.len() != 4 * self.len() {
                    return Err(InferenceError::Shape {
                        expected: self.shape(),
                        got: vec![body.len() / 4],
                    });
                }
                Ok(floats(body))
            }
            "" => Err(InferenceError::NoContentType),
            _ => Err(InferenceError::ContentType(content_type.to_string())),
        }
    }

    /// The input tensor for an RGB image of any size: resized to the
    /// model's input with a triangle (bilinear) filter, as MXNet's
    /// `image.imresize` and OpenCV's default resize interpolate (the
    /// aspect ratio is not kept: the whole image is the input, so
    /// normalised box coordinates map straight back onto it).
    pub fn image(&self, image: &RgbImage) -> Vec<f32> {
        let resized;
        let image = if image.dimensions() == (self.width, self.height) {
            image
        } else {
            resized = image::imageops::resize(image, self.width, self.height, FilterType::Triangle);
            &resized
        };
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = vec![0f32; self.len()];
        for (x, y, pixel) in image.enumerate_pixels() {
            let (x, y) = (x as usize, y as usize);
            for c in 0..3 {
                let source = match self.order {
                    ChannelOrder::Rgb => c,
                    ChannelOrder::Bgr => 2 - c,
                };
                let value = (f32::from(pixel.0[source]) * self.scale - self.mean[c]) / self.std[c];
                let index = match self.layout {
                    Layout::Nchw => c * h * w + y * w + x,
                    Layout::Nhwc => (y * w + x) * 3 + c,
                };
                out[index] = value;
            }
        }
        out
    }
}

/// `image/JPEG; q=1` → `image/jpeg`.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes an image of `format` into 8-bit RGB (grey and alpha images are
/// converted; alpha is dropped).
fn decode(body: &[u8], format: ImageFormat) -> Result<RgbImage, InferenceError> {
    let name = match format {
        ImageFormat::Png => "PNG",
        _ => "JPEG",
    };
    let fail = |reason: String| InferenceError::Decode {
        format: name,
        reason,
    };
    let mut reader = ImageReader::with_format(Cursor::new(body), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| fail(e.to_string()))?;
    Ok(image.to_rgb8())
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn npy_error(reason: impl Into<String>) -> InferenceError {
    InferenceError::Decode {
        format: "a float32 .npy array",
        reason: reason.into(),
    }
}

/// Reads a NumPy `.npy` file (format 1, 2 or 3) of little-endian float32 in
/// C order: its shape and values.
pub fn parse_npy(body: &[u8]) -> Result<(Vec<usize>, Vec<f32>), InferenceError> {
    let rest = body
        .strip_prefix(b"\x93NUMPY")
        .ok_or_else(|| npy_error("no \\x93NUMPY magic"))?;
    let (header_len, rest) = match rest {
        [1, _, a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        [2 | 3, _, a, b, c, d, rest @ ..] => (
            usize::try_from(u32::from_le_bytes([*a, *b, *c, *d]))
                .map_err(|_| npy_error("header too long"))?,
            rest,
        ),
        _ => return Err(npy_error("unknown format version")),
    };
    if rest.len() < header_len {
        return Err(npy_error("the header is cut short"));
    }
    let (header, data) = rest.split_at(header_len);
    let header = std::str::from_utf8(header).map_err(|_| npy_error("the header is not text"))?;
    let field = |key: &str| -> Result<&str, InferenceError> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or_else(|| npy_error(format!("the header has no '{key}'")))?;
        let value = header[at + key.len() + 2..].trim_start();
        value
            .strip_prefix(':')
            .map(str::trim_start)
            .ok_or_else(|| npy_error(format!("no value for '{key}'")))
    };
    let descr = field("descr")?;
    if !(descr.starts_with("'<f4'") || descr.starts_with("'=f4'")) {
        return Err(npy_error(format!(
            "dtype {} is not little-endian float32 ('<f4')",
            descr.split(',').next().unwrap_or(descr)
        )));
    }
    if !field("fortran_order")?.starts_with("False") {
        return Err(npy_error("Fortran order is not supported"));
    }
    let shape = field("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| npy_error("the shape is not a tuple"))?;
    let mut dims = Vec::new();
    for d in inner.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        dims.push(
            d.parse::<usize>()
                .map_err(|_| npy_error(format!("shape dimension {d:?}")))?,
        );
    }
    let count = dims
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(*d))
        .ok_or_else(|| npy_error("the shape overflows"))?;
    if count.checked_mul(4) != Some(data.len()) {
        return Err(npy_error(format!(
            "{} data bytes for shape {dims:?} ({count} float32)",
            data.len()
        )));
    }
    Ok((dims, floats(data)))
}

/// Writes `data` of `shape` as a format 1 `.npy` file of little-endian
/// float32 (for callers that send tensors, and for tests).
pub fn write_npy(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // The data starts on a 64-byte boundary: magic (6) + version (2) + length (2).
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
// A failed unwrap is the test failing.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(layout: Layout, order: ChannelOrder) -> InputSpec {
        InputSpec {
            layout,
            width: 2,
            height: 1,
            order,
            scale: 1.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    fn image() -> RgbImage {
        RgbImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap()
    }

    #[test]
    fn layouts_and_channel_orders() {
        assert_eq!(
            spec(Layout::Nchw, ChannelOrder::Rgb).image(&image()),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        assert_eq!(
            spec(Layout::Nhwc, ChannelOrder::Rgb).image(&image()),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(
            spec(Layout::Nhwc, ChannelOrder::Bgr).image(&image()),
            [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]
        );
        let mut s = spec(Layout::Nchw, ChannelOrder::Bgr);
        s.scale = 0.5;
        s.mean = [1.0, 0.0, 0.0];
        s.std = [1.0, 1.0, 2.0];
        // Model channel 0 is blue (3, 6), then green, then red halved twice.
        assert_eq!(s.image(&image()), [0.5, 2.0, 1.0, 2.5, 0.25, 1.0]);
    }

    #[test]
    fn npy_round_trip_and_refusals() {
        let data = [1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0];
        let bytes = write_npy(&[1, 2, 3], &data);
        assert_eq!((bytes.len() - 4 * data.len()) % 64, 0);
        assert_eq!(parse_npy(&bytes), Ok((vec![1, 2, 3], data.to_vec())));
        assert_eq!(parse_npy(&write_npy(&[6], &data)).map(|p| p.0), Ok(vec![6]));
        assert!(parse_npy(&bytes[..bytes.len() - 1]).is_err());
        assert!(parse_npy(b"\x93NUMPY").is_err());
        assert!(parse_npy(b"PK\x03\x04").is_err());
        let f8 = String::from_utf8_lossy(&bytes).replace("<f4", "<f8");
        assert!(parse_npy(f8.as_bytes()).is_err());
    }

    #[test]
    fn raw_tensors_and_content_types() {
        let s = spec(Layout::Nchw, ChannelOrder::Rgb);
        let raw: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        assert_eq!(
            s.tensor("application/octet-stream", &raw),
            Ok(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
        );
        assert!(matches!(
            s.tensor("application/octet-stream", &raw[..20]),
            Err(InferenceError::Shape { .. })
        ));
        assert_eq!(
            s.tensor("text/plain", b""),
            Err(InferenceError::ContentType("text/plain".into()))
        );
        assert_eq!(s.tensor(" ", b""), Err(InferenceError::NoContentType));
        assert!(matches!(
            s.tensor("Image/PNG; charset=x", b"not a png"),
            Err(InferenceError::Decode { format: "PNG", .. })
        ));
        assert!(matches!(
            s.tensor("image/jpeg", b"\xff\xd8\xff"),
            Err(InferenceError::Decode { format: "JPEG", .. })
        ));
    }
}
