//! The strict layer: a `Deserializer` that hands every visitor, map, sequence, enum and seed
//! it meets to the type being read wrapped in its own kind, so the rules hold at every depth
//! (the technique of the `serde_ignored` and `serde_path_to_error` crates; the latter sits
//! above this layer and records the path of an error raised here).
//!
//! The three rules and where they live:
//! - a struct is read only from an object: [`Visit::object_only`], set by
//!   `deserialize_struct`, refuses `visit_seq`;
//! - no key twice in one object: [`StrictMap`] writes each key down as it is read (through
//!   [`KeySeed`]) and refuses one it has seen;
//! - an enum variant without data only from a string: `deserialize_enum` reads the value
//!   itself ([`EnumVisit`]) instead of leaving the form to serde_json, which also takes
//!   `{"variant": null}`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, StrDeserializer, StringDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// What a struct given as an array is told.
pub const NOT_AN_OBJECT: &str = "expected an object, found an array";

/// Where an object key is written down while it is read, for the duplicate check.
type KeySlot = RefCell<Option<String>>;

/// The strict deserializer around `D`. Reading a key, it also writes the key into `key`.
pub(crate) struct Strict<'k, D> {
    de: D,
    key: Option<&'k KeySlot>,
}

impl<D> Strict<'static, D> {
    pub(crate) fn new(de: D) -> Self {
        Strict { de, key: None }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.de.$method(Visit::new(visitor, self.key))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any deserialize_bool
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_option deserialize_unit
        deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de
            .deserialize_unit_struct(name, Visit::new(visitor, self.key))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de
            .deserialize_newtype_struct(name, Visit::new(visitor, self.key))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de
            .deserialize_tuple(len, Visit::new(visitor, self.key))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de
            .deserialize_tuple_struct(name, len, Visit::new(visitor, self.key))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de
            .deserialize_struct(name, fields, Visit::object_only(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.de.deserialize_any(EnumVisit(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// The visitor around the type's own: what it is handed next is strict too.
struct Visit<'k, V> {
    inner: V,
    /// Set when the value is an object key: the key is written down here.
    key: Option<&'k KeySlot>,
    /// Set for a struct: an array is refused.
    object_only: bool,
}

impl<'k, V> Visit<'k, V> {
    fn new(inner: V, key: Option<&'k KeySlot>) -> Self {
        Visit {
            inner,
            key,
            object_only: false,
        }
    }

    fn object_only(inner: V) -> Self {
        Visit {
            inner,
            key: None,
            object_only: true,
        }
    }

    /// Writes the key down (JSON keys are strings; a key read as a number arrives as one).
    fn note(&self, key: impl fmt::Display) {
        if let Some(slot) = self.key {
            *slot.borrow_mut() = Some(key.to_string());
        }
    }
}

macro_rules! forward_noted {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.note(v);
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_noted! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.note(&v);
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.note(String::from_utf8_lossy(v));
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.note(String::from_utf8_lossy(v));
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.note(String::from_utf8_lossy(&v));
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Strict::new(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Strict::new(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if self.object_only {
            return Err(de::Error::custom(NOT_AN_OBJECT));
        }
        self.inner.visit_seq(StrictSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(StrictMap::new(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(StrictEnum(data))
    }
}

/// A seed whose value is read strictly.
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict::new(d))
    }
}

/// The seed of an object key: the key read is written into `slot`.
struct KeySeed<'k, S> {
    seed: S,
    slot: &'k KeySlot,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Strict {
            de: d,
            key: Some(self.slot),
        })
    }
}

struct StrictSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// An object's members, each key checked against those before it.
struct StrictMap<A> {
    map: A,
    seen: HashSet<String>,
}

impl<A> StrictMap<A> {
    fn new(map: A) -> Self {
        StrictMap {
            map,
            seen: HashSet::new(),
        }
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let slot = KeySlot::default();
        let key = self.map.next_key_seed(KeySeed { seed, slot: &slot })?;
        if let Some(name) = slot.into_inner() {
            if self.seen.contains(&name) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key `{name}` (a key may appear once in an object)"
                )));
            }
            self.seen.insert(name);
        }
        Ok(key)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// An enum's value, read by the enum's rules rather than serde_json's: a variant without
/// data is its name as a string; a variant with data is an object with that one key.
struct EnumVisit<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for EnumVisit<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.0.visit_enum(StrDeserializer::new(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.0.visit_enum(BorrowedStrDeserializer::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.0.visit_enum(StringDeserializer::new(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(MapEnum(StrictMap::new(map)))
    }
}

/// `{"Variant": value}`.
struct MapEnum<A>(A);

impl<'de, A: MapAccess<'de>> EnumAccess<'de> for MapEnum<A> {
    type Error = A::Error;
    type Variant = MapVariant<A>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        mut self,
        seed: S,
    ) -> Result<(S::Value, MapVariant<A>), A::Error> {
        match self.0.next_key_seed(seed)? {
            Some(variant) => Ok((variant, MapVariant(self.0))),
            None => Err(de::Error::custom(
                "expected a variant name, found an empty object",
            )),
        }
    }
}

struct MapVariant<A>(A);

impl<'de, A: MapAccess<'de>> MapVariant<A> {
    /// The variant's object has no other key.
    fn end<T>(mut self, value: T) -> Result<T, A::Error> {
        match self.0.next_key::<IgnoredAny>()? {
            None => Ok(value),
            Some(_) => Err(de::Error::custom(
                "an object naming a variant has exactly one key",
            )),
        }
    }
}

impl<'de, A: MapAccess<'de>> VariantAccess<'de> for MapVariant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        Err(de::Error::custom(
            "expected a string, found an object (a value without data is written as its name)",
        ))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        mut self,
        seed: T,
    ) -> Result<T::Value, A::Error> {
        let value = self.0.next_value_seed(seed)?;
        self.end(value)
    }

    fn tuple_variant<V: Visitor<'de>>(
        mut self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let value = self.0.next_value_seed(TupleSeed { len, visitor })?;
        self.end(value)
    }

    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let value = self.0.next_value_seed(StructSeed { fields, visitor })?;
        self.end(value)
    }
}

/// A tuple variant's value (the deserializer it is given is already strict).
struct TupleSeed<V> {
    len: usize,
    visitor: V,
}

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for TupleSeed<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_tuple(self.len, self.visitor)
    }
}

/// A struct variant's value (the deserializer it is given is already strict).
struct StructSeed<V> {
    fields: &'static [&'static str],
    visitor: V,
}

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for StructSeed<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_struct("", self.fields, self.visitor)
    }
}

/// An enum some deserializer hands over itself (serde_json never does for a document, but a
/// value inside one stays strict whoever reads it).
struct StrictEnum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for StrictEnum<A> {
    type Error = A::Error;
    type Variant = StrictVariant<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(Seed(seed))?;
        Ok((value, StrictVariant(variant)))
    }
}

struct StrictVariant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for StrictVariant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Visit::new(visitor, None))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Visit::object_only(visitor))
    }
}
