//! Data types and transformations: registers (or bits) read from a device
//! into the value a reading carries.
//!
//! Pure functions only. Registers arrive as 16-bit words, each big-endian on
//! the wire; a tag's words are laid out as bytes `A B C D …` (first register's
//! high byte first) and the transformation reorders them before they are
//! read as a big-endian number:
//!
//! | `transformation` | 32-bit order | what it undoes |
//! |---|---|---|
//! | `noSwap` | `A B C D` | nothing: big-endian, most significant register first |
//! | `byteSwap` | `B A D C` | bytes swapped inside each register |
//! | `wordSwap` | `C D A B` | registers in reverse order (least significant first) |
//! | `byteWordSwap` | `D C B A` | both: a little-endian device |
//!
//! For 64-bit types `wordSwap` reverses all four registers. Strings and
//! hexdumps take the same reordering (a `byteSwap` fixes devices that store
//! two characters per register low byte first).

use std::fmt::Write as _;

/// `srcDataType`: how the device stores the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrcType {
    /// A coil or discrete input, or a register that is non-zero.
    Bool,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
    /// IEEE 754 single precision (2 registers).
    Float,
    /// IEEE 754 double precision (4 registers).
    Double,
    /// The bytes, as lower-case hexadecimal (`size` registers).
    Hexdump,
    /// Text, one byte per character, bytes above 0x7f replaced (`size` registers).
    Ascii,
    /// Text in UTF-8, invalid sequences replaced (`size` registers).
    Utf8,
    /// Text in ISO 8859-1 (`size` registers).
    Iso8859,
}

impl SrcType {
    /// Accepts the SiteWise spellings and the obvious aliases, ignoring case.
    pub fn parse(text: &str) -> Result<SrcType, String> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "bool" | "boolean" | "bit" | "coil" => SrcType::Bool,
            "int16" | "short" => SrcType::Int16,
            "uint16" | "ushort" | "word" => SrcType::UInt16,
            "int32" | "int" => SrcType::Int32,
            "uint32" | "uint" => SrcType::UInt32,
            "int64" | "long" => SrcType::Int64,
            "uint64" | "ulong" => SrcType::UInt64,
            "float" | "float32" => SrcType::Float,
            "double" | "float64" => SrcType::Double,
            "hexdump" => SrcType::Hexdump,
            "string" | "ascii" => SrcType::Ascii,
            "utf8" | "utf-8" => SrcType::Utf8,
            "iso8859" | "iso8859-1" | "iso-8859-1" | "latin1" => SrcType::Iso8859,
            _ => {
                return Err(format!(
                "{text:?} is not a known type: bool, int16, uint16, int32, uint32, int64, uint64, \
                     float, double, hexdump, ascii (or string), utf8, iso8859"
            ))
            }
        })
    }

    /// The canonical name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            SrcType::Bool => "bool",
            SrcType::Int16 => "int16",
            SrcType::UInt16 => "uint16",
            SrcType::Int32 => "int32",
            SrcType::UInt32 => "uint32",
            SrcType::Int64 => "int64",
            SrcType::UInt64 => "uint64",
            SrcType::Float => "float",
            SrcType::Double => "double",
            SrcType::Hexdump => "hexdump",
            SrcType::Ascii => "ascii",
            SrcType::Utf8 => "utf8",
            SrcType::Iso8859 => "iso8859",
        }
    }

    /// Registers a value of this type takes, or `None` for the
    /// variable-width types whose `size` says it.
    pub fn registers(self) -> Option<u16> {
        match self {
            SrcType::Bool | SrcType::Int16 | SrcType::UInt16 => Some(1),
            SrcType::Int32 | SrcType::UInt32 | SrcType::Float => Some(2),
            SrcType::Int64 | SrcType::UInt64 | SrcType::Double => Some(4),
            SrcType::Hexdump | SrcType::Ascii | SrcType::Utf8 | SrcType::Iso8859 => None,
        }
    }

    fn is_text(self) -> bool {
        self.registers().is_none()
    }

    /// Whether a value of this type can become `dst`: text only becomes a
    /// string; numbers and booleans become anything.
    pub fn converts_to(self, dst: DstType) -> Result<(), String> {
        if self.is_text() && dst != DstType::String {
            return Err(format!(
                "{} can only become \"string\", not {:?}",
                self.name(),
                dst.name()
            ));
        }
        Ok(())
    }
}

/// `dstDataType`: the SiteWise value types a reading carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstType {
    Boolean,
    Integer,
    Double,
    String,
}

impl DstType {
    pub fn parse(text: &str) -> Result<DstType, String> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "boolean" | "bool" => DstType::Boolean,
            "integer" | "int" => DstType::Integer,
            "double" | "float" => DstType::Double,
            "string" => DstType::String,
            _ => {
                return Err(format!(
                    "{text:?} is not a known type: boolean, integer, double, string"
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DstType::Boolean => "boolean",
            DstType::Integer => "integer",
            DstType::Double => "double",
            DstType::String => "string",
        }
    }
}

/// `transformation`: see the module docs for the byte orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    NoSwap,
    ByteSwap,
    WordSwap,
    ByteWordSwap,
}

impl Transform {
    pub fn parse(text: &str) -> Result<Transform, String> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "noswap" | "none" => Transform::NoSwap,
            "byteswap" => Transform::ByteSwap,
            "wordswap" => Transform::WordSwap,
            "bytewordswap" => Transform::ByteWordSwap,
            _ => {
                return Err(format!(
                "{text:?} is not a known transformation: noSwap, byteSwap, wordSwap, byteWordSwap"
            ))
            }
        })
    }

    /// The tag's bytes in the order they are read, from its registers.
    pub fn bytes(self, registers: &[u16]) -> Vec<u8> {
        let words: Vec<u16> = match self {
            Transform::NoSwap | Transform::ByteSwap => registers.to_vec(),
            Transform::WordSwap | Transform::ByteWordSwap => {
                registers.iter().rev().copied().collect()
            }
        };
        let swap = matches!(self, Transform::ByteSwap | Transform::ByteWordSwap);
        words
            .into_iter()
            .flat_map(|w| {
                let b = w.to_be_bytes();
                if swap {
                    [b[1], b[0]]
                } else {
                    b
                }
            })
            .collect()
    }
}

/// A reading's value, as it goes into JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Boolean(bool),
    Integer(i64),
    Double(f64),
    String(String),
}

impl Value {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Boolean(b) => (*b).into(),
            Value::Integer(i) => (*i).into(),
            // Only finite doubles are ever built (see `Number::to_double`),
            // so this never turns into null.
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::String(s) => s.clone().into(),
        }
    }
}

/// A number as the device stored it, before conversion.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Bool(bool),
    Int(i128),
    Float(f64),
}

/// Decodes a register tag. `registers` holds exactly the tag's registers.
/// An `Err` says why the reading has no value (it is published `BAD`).
pub fn decode_registers(
    src: SrcType,
    transform: Transform,
    dst: DstType,
    registers: &[u16],
) -> Result<Value, String> {
    if let Some(width) = src.registers() {
        if registers.len() != usize::from(width) {
            return Err(format!(
                "{} needs {width} register(s), got {}",
                src.name(),
                registers.len()
            ));
        }
    }
    let bytes = transform.bytes(registers);
    let be = |n: usize| -> [u8; 8] {
        // Right-aligned into 8 bytes; `n` is the type's width, checked above.
        let mut out = [0u8; 8];
        out[8 - n..].copy_from_slice(&bytes[..n]);
        out
    };
    let number = match src {
        SrcType::Bool => Number::Bool(registers.iter().any(|r| *r != 0)),
        SrcType::Int16 => Number::Int(i128::from(i16::from_be_bytes([bytes[0], bytes[1]]))),
        SrcType::UInt16 => Number::Int(i128::from(u16::from_be_bytes([bytes[0], bytes[1]]))),
        SrcType::Int32 => Number::Int(i128::from(i32::from_be_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3],
        ]))),
        SrcType::UInt32 => Number::Int(i128::from(u64::from_be_bytes(be(4)))),
        SrcType::Int64 => Number::Int(i128::from(i64::from_be_bytes(be(8)))),
        SrcType::UInt64 => Number::Int(i128::from(u64::from_be_bytes(be(8)))),
        SrcType::Float => Number::Float(f64::from(f32::from_be_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3],
        ]))),
        SrcType::Double => Number::Float(f64::from_be_bytes(be(8))),
        SrcType::Hexdump => {
            let mut hex = String::with_capacity(bytes.len() * 2);
            for b in &bytes {
                let _ = write!(hex, "{b:02x}");
            }
            return Ok(Value::String(hex));
        }
        SrcType::Ascii => {
            let text: String = trim_nul(&bytes)
                .iter()
                .map(|b| {
                    if b.is_ascii() {
                        char::from(*b)
                    } else {
                        char::REPLACEMENT_CHARACTER
                    }
                })
                .collect();
            return Ok(Value::String(text));
        }
        SrcType::Utf8 => {
            return Ok(Value::String(
                String::from_utf8_lossy(trim_nul(&bytes)).into_owned(),
            ))
        }
        SrcType::Iso8859 => {
            return Ok(Value::String(
                trim_nul(&bytes).iter().map(|b| char::from(*b)).collect(),
            ))
        }
    };
    convert(number, dst)
}

/// Decodes a bit tag (coil or discrete input).
pub fn decode_bit(bit: bool, dst: DstType) -> Result<Value, String> {
    convert(Number::Bool(bit), dst)
}

/// Strings are padded with NULs to whole registers; the padding is not text.
fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

fn convert(n: Number, dst: DstType) -> Result<Value, String> {
    match dst {
        DstType::Boolean => Ok(Value::Boolean(match n {
            Number::Bool(b) => b,
            Number::Int(i) => i != 0,
            Number::Float(f) => f != 0.0,
        })),
        DstType::Integer => match n {
            Number::Bool(b) => Ok(Value::Integer(i64::from(b))),
            Number::Int(i) => i64::try_from(i)
                .map(Value::Integer)
                .map_err(|_| format!("{i} does not fit a 64-bit integer")),
            // Rounded to the nearest integer; what cannot be one is no reading.
            Number::Float(f) => {
                let r = f.round();
                if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&r) {
                    // In range (checked just above), so the cast is exact.
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(Value::Integer(r as i64))
                } else {
                    Err(format!("{f} cannot be an integer"))
                }
            }
        },
        DstType::Double => {
            let d = match n {
                Number::Bool(b) => f64::from(u8::from(b)),
                // Exact up to 2^53, the nearest double beyond: a double's nature.
                #[allow(clippy::cast_precision_loss)]
                Number::Int(i) => i as f64,
                Number::Float(f) => f,
            };
            if d.is_finite() {
                Ok(Value::Double(d))
            } else {
                Err(format!("{d} is not a finite number (JSON cannot carry it)"))
            }
        }
        DstType::String => Ok(Value::String(match n {
            Number::Bool(b) => b.to_string(),
            Number::Int(i) => i.to_string(),
            Number::Float(f) => f.to_string(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(bytes: &[u8]) -> Vec<u16> {
        bytes
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn float_in_every_byte_order() {
        let x: f32 = 1234.5;
        let [a, b, c, d] = x.to_be_bytes();
        for (transform, wire) in [
            (Transform::NoSwap, [a, b, c, d]),
            (Transform::ByteSwap, [b, a, d, c]),
            (Transform::WordSwap, [c, d, a, b]),
            (Transform::ByteWordSwap, [d, c, b, a]),
        ] {
            assert_eq!(
                decode_registers(SrcType::Float, transform, DstType::Double, &regs(&wire)),
                Ok(Value::Double(1234.5)),
                "{transform:?}"
            );
        }
    }

    #[test]
    fn sixty_four_bit_word_swap_reverses_all_four_registers() {
        let x: f64 = -0.1;
        let be = x.to_be_bytes();
        let mut wire = be;
        wire.reverse();
        assert_eq!(
            decode_registers(
                SrcType::Double,
                Transform::ByteWordSwap,
                DstType::Double,
                &regs(&wire)
            ),
            Ok(Value::Double(-0.1))
        );
        let r = regs(&be);
        let swapped: Vec<u16> = r.iter().rev().copied().collect();
        assert_eq!(
            decode_registers(
                SrcType::Double,
                Transform::WordSwap,
                DstType::Double,
                &swapped
            ),
            Ok(Value::Double(-0.1))
        );
        let big: u64 = 0x0102_0304_0506_0708;
        assert_eq!(
            decode_registers(
                SrcType::UInt64,
                Transform::NoSwap,
                DstType::Integer,
                &regs(&big.to_be_bytes())
            ),
            Ok(Value::Integer(0x0102_0304_0506_0708))
        );
        assert_eq!(
            decode_registers(
                SrcType::Int64,
                Transform::NoSwap,
                DstType::Integer,
                &[0xffff; 4]
            ),
            Ok(Value::Integer(-1))
        );
        assert!(
            decode_registers(
                SrcType::UInt64,
                Transform::NoSwap,
                DstType::Integer,
                &[0xffff; 4]
            )
            .is_err(),
            "u64::MAX does not fit an i64"
        );
    }

    #[test]
    fn integers_signs_and_conversions() {
        let d = |src, dst, r: &[u16]| decode_registers(src, Transform::NoSwap, dst, r);
        assert_eq!(
            d(SrcType::Int16, DstType::Integer, &[0xfffe]),
            Ok(Value::Integer(-2))
        );
        assert_eq!(
            d(SrcType::UInt16, DstType::Integer, &[0xfffe]),
            Ok(Value::Integer(65534))
        );
        assert_eq!(
            d(SrcType::Int32, DstType::Integer, &[0xffff, 0xfffd]),
            Ok(Value::Integer(-3))
        );
        assert_eq!(
            d(SrcType::UInt32, DstType::Integer, &[0xffff, 0xfffd]),
            Ok(Value::Integer(4_294_967_293))
        );
        assert_eq!(
            d(SrcType::Int16, DstType::Double, &[0xfffe]),
            Ok(Value::Double(-2.0))
        );
        assert_eq!(
            d(SrcType::Int16, DstType::String, &[0xfffe]),
            Ok(Value::String("-2".into()))
        );
        assert_eq!(
            d(SrcType::UInt16, DstType::Boolean, &[0]),
            Ok(Value::Boolean(false))
        );
        assert_eq!(
            d(SrcType::Bool, DstType::Boolean, &[7]),
            Ok(Value::Boolean(true))
        );
        assert_eq!(
            decode_registers(
                SrcType::Int16,
                Transform::ByteSwap,
                DstType::Integer,
                &[0x0100]
            ),
            Ok(Value::Integer(1))
        );
        let f = 2.5f32.to_be_bytes();
        assert_eq!(
            d(SrcType::Float, DstType::Integer, &regs(&f)),
            Ok(Value::Integer(3))
        );
        assert_eq!(
            d(SrcType::Float, DstType::String, &regs(&f)),
            Ok(Value::String("2.5".into()))
        );
        let nan = f32::NAN.to_be_bytes();
        assert!(d(SrcType::Float, DstType::Double, &regs(&nan)).is_err());
        assert!(d(SrcType::Float, DstType::Integer, &regs(&nan)).is_err());
        assert!(
            d(SrcType::Float, DstType::Double, &[1]).is_err(),
            "wrong width"
        );
        assert_eq!(decode_bit(true, DstType::Integer), Ok(Value::Integer(1)));
        assert_eq!(decode_bit(false, DstType::Double), Ok(Value::Double(0.0)));
    }

    #[test]
    fn text_and_hexdump() {
        let d = |src, t, r: &[u16]| decode_registers(src, t, DstType::String, r);
        let text = regs(b"PUMP-7\0\0");
        assert_eq!(
            d(SrcType::Ascii, Transform::NoSwap, &text),
            Ok(Value::String("PUMP-7".into()))
        );
        let swapped = regs(b"UPPM7-\0\0");
        assert_eq!(
            d(SrcType::Ascii, Transform::ByteSwap, &swapped),
            Ok(Value::String("PUMP-7".into()))
        );
        assert_eq!(
            d(SrcType::Utf8, Transform::NoSwap, &regs("é!!".as_bytes())),
            Ok(Value::String("é!!".into()))
        );
        assert_eq!(
            d(SrcType::Iso8859, Transform::NoSwap, &[0xe921]),
            Ok(Value::String("é!".into()))
        );
        assert_eq!(
            d(SrcType::Ascii, Transform::NoSwap, &[0xe921]),
            Ok(Value::String("\u{fffd}!".into()))
        );
        assert_eq!(
            d(SrcType::Hexdump, Transform::NoSwap, &[0x0a1b, 0x2c3d]),
            Ok(Value::String("0a1b2c3d".into()))
        );
        assert_eq!(
            d(SrcType::Hexdump, Transform::WordSwap, &[0x0a1b, 0x2c3d]),
            Ok(Value::String("2c3d0a1b".into()))
        );
    }

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!(SrcType::parse("FLOAT"), Ok(SrcType::Float));
        assert_eq!(SrcType::parse("hexdump"), Ok(SrcType::Hexdump));
        assert!(SrcType::parse("float16").is_err());
        assert_eq!(
            Transform::parse("byteWordSwap"),
            Ok(Transform::ByteWordSwap)
        );
        assert_eq!(DstType::parse("Double"), Ok(DstType::Double));
        assert!(DstType::parse("decimal").is_err());
        assert!(SrcType::Hexdump.converts_to(DstType::Double).is_err());
        assert!(SrcType::Int16.converts_to(DstType::Boolean).is_ok());
    }
}
