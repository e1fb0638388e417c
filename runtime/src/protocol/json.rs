//! Conversions between JSON values and typed tensors, shared by both protocols.
//!
//! Input: JSON leaves are read into a column of the input's datatype, checking every element.
//! Output: tensors are serialised straight from their buffers (no intermediate JSON tree), so
//! `f32` values print in their shortest `f32` form.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;
use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::prelude::*;

use super::InvalidRequest;
use crate::model::signature::datatype_name;
use crate::onnx_ml::{ZipMap, ZipMapLabels};

/// A JSON leaf read as one element of a tensor.
pub trait FromJson: Datum + Sized {
    fn from_json(v: &Value) -> Option<Self>;
}

/// An integral JSON number, also when written as a float without a fraction (`2.0`).
fn integral(v: &Value) -> Option<i128> {
    if let Some(i) = v.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = v.as_u64() {
        return Some(u.into());
    }
    let f = v.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 1e19).then_some(f as i128)
}

macro_rules! from_json_int {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(v: &Value) -> Option<Self> {
                integral(v).and_then(|i| <$t>::try_from(i).ok())
            }
        }
    )*};
}
from_json_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl FromJson for f32 {
    fn from_json(v: &Value) -> Option<Self> {
        v.as_f64().map(|f| f as f32)
    }
}

impl FromJson for f64 {
    fn from_json(v: &Value) -> Option<Self> {
        v.as_f64()
    }
}

impl FromJson for bool {
    fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Number(_) => match integral(v) {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            _ => None,
        }
    }
}

impl FromJson for String {
    fn from_json(v: &Value) -> Option<Self> {
        v.as_str().map(str::to_owned)
    }
}

/// Calls `$body` with `$T` bound to the Rust type of datatype `$dt`, or evaluates `$else`
/// for datatypes JSON cannot carry.
macro_rules! with_datum {
    ($dt:expr, $T:ident => $body:expr, else $other:expr) => {
        match $dt {
            DatumType::Bool => {
                type $T = bool;
                $body
            }
            DatumType::U8 => {
                type $T = u8;
                $body
            }
            DatumType::U16 => {
                type $T = u16;
                $body
            }
            DatumType::U32 => {
                type $T = u32;
                $body
            }
            DatumType::U64 => {
                type $T = u64;
                $body
            }
            DatumType::I8 => {
                type $T = i8;
                $body
            }
            DatumType::I16 => {
                type $T = i16;
                $body
            }
            DatumType::I32 => {
                type $T = i32;
                $body
            }
            DatumType::I64 => {
                type $T = i64;
                $body
            }
            DatumType::F32 => {
                type $T = f32;
                $body
            }
            DatumType::F64 => {
                type $T = f64;
                $body
            }
            DatumType::String => {
                type $T = String;
                $body
            }
            _ => $other,
        }
    };
}
pub(crate) use with_datum;

/// What a JSON leaf of datatype `dt` should look like, for error messages.
pub fn leaf_kind(dt: DatumType) -> &'static str {
    match dt {
        DatumType::Bool => "booleans",
        DatumType::String => "strings",
        DatumType::F32 | DatumType::F64 => "numbers",
        _ => "integers in range",
    }
}

/// A typed tensor from row-major elements.
pub fn tensor_from_vec<T: Datum>(shape: &[usize], data: Vec<T>) -> Result<Tensor, InvalidRequest> {
    ArrayD::from_shape_vec(IxDyn(shape), data)
        .map(Tensor::from)
        .map_err(|e| InvalidRequest(format!("data does not fit shape {shape:?}: {e}")))
}

/// Reads every leaf of `value` (nested arrays of any depth, or a single leaf) in row-major order.
pub fn flatten_leaves<T: FromJson>(
    value: &Value,
    out: &mut Vec<T>,
    what: &dyn Fn() -> String,
) -> Result<(), InvalidRequest> {
    match value {
        Value::Array(items) => {
            for item in items {
                flatten_leaves(item, out, what)?;
            }
            Ok(())
        }
        leaf => match T::from_json(leaf) {
            Some(x) => {
                out.push(x);
                Ok(())
            }
            None => Err(InvalidRequest(format!(
                "{}: expected {} of datatype {}, got {}",
                what(),
                leaf_kind(T::datum_type()),
                datatype_name(T::datum_type()),
                short(leaf)
            ))),
        },
    }
}

/// A short rendering of a JSON value for error messages.
pub fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 40 { format!("{}...", &text[..text.floor_char_boundary(40)]) } else { text }
}

/// Serialises a row-major buffer as nested JSON arrays of `shape`.
struct Nested<'a, T> {
    data: &'a [T],
    shape: &'a [usize],
}

impl<T: Serialize> Serialize for Nested<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.shape.split_first() {
            None => match self.data.first() {
                Some(x) => x.serialize(s),
                None => s.serialize_unit(),
            },
            Some((&n, rest)) => {
                let stride: usize = rest.iter().product();
                let mut seq = s.serialize_seq(Some(n))?;
                for i in 0..n {
                    let data = self.data.get(i * stride..(i + 1) * stride).unwrap_or(&[]);
                    seq.serialize_element(&Nested { data, shape: rest })?;
                }
                seq.end()
            }
        }
    }
}

/// Part of a tensor to serialise: the whole of it, one row of it, or its flat buffer.
#[derive(Clone, Copy)]
pub enum Part {
    Whole,
    Row(usize),
    Flat,
}

/// Serialises `part` of `tensor` as JSON, nested by its shape unless `Part::Flat`.
pub struct TensorJson<'a> {
    pub tensor: &'a Tensor,
    pub part: Part,
}

fn serialize_part<T: Datum + Serialize, S: Serializer>(
    tensor: &Tensor,
    part: Part,
    s: S,
) -> Result<S::Ok, S::Error> {
    let data =
        tensor.try_as_plain_ram().and_then(|p| p.as_slice::<T>()).map_err(serde::ser::Error::custom)?;
    let shape = tensor.shape();
    match part {
        Part::Whole => Nested { data, shape }.serialize(s),
        Part::Flat => data.serialize(s),
        Part::Row(i) => {
            let rest = shape.get(1..).unwrap_or(&[]);
            let stride: usize = rest.iter().product();
            let data = data.get(i * stride..(i + 1) * stride).unwrap_or(&[]);
            Nested { data, shape: rest }.serialize(s)
        }
    }
}

impl Serialize for TensorJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        with_datum!(self.tensor.datum_type(), T => serialize_part::<T, S>(self.tensor, self.part, s),
        else Err(serde::ser::Error::custom(format!(
            "outputs of datatype {:?} cannot be written as JSON",
            self.tensor.datum_type()
        ))))
    }
}

/// One row of a `ZipMap`-fed output as `{label: probability}`.
pub struct ZipMapJson<'a> {
    pub tensor: &'a Tensor,
    pub part: Part,
    pub zipmap: &'a ZipMap,
}

impl Serialize for ZipMapJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let data = self.tensor.cast_to::<f32>().map_err(serde::ser::Error::custom)?;
        let all =
            data.try_as_plain_ram().and_then(|p| p.as_slice::<f32>()).map_err(serde::ser::Error::custom)?;
        let classes = self.tensor.shape().last().copied().unwrap_or(0);
        let row = match self.part {
            Part::Row(i) => all.get(i * classes..(i + 1) * classes).unwrap_or(&[]),
            Part::Whole | Part::Flat => all,
        };
        let mut map = s.serialize_map(Some(row.len()))?;
        for (ix, p) in row.iter().enumerate() {
            match &self.zipmap.labels {
                ZipMapLabels::Int64(labels) => match labels.get(ix) {
                    Some(label) => map.serialize_entry(&label.to_string(), p)?,
                    None => map.serialize_entry(&ix.to_string(), p)?,
                },
                ZipMapLabels::Strings(labels) => match labels.get(ix) {
                    Some(label) => map.serialize_entry(label, p)?,
                    None => map.serialize_entry(&ix.to_string(), p)?,
                },
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn leaves<T: FromJson>(v: Value) -> Result<Vec<T>, InvalidRequest> {
        let mut out = Vec::new();
        flatten_leaves(&v, &mut out, &|| "input `x`".to_string())?;
        Ok(out)
    }

    #[test]
    fn leaves_are_checked_against_the_datatype() {
        assert_eq!(leaves::<f32>(json!([[1, 2.5], [3, 4]])).unwrap(), vec![1., 2.5, 3., 4.]);
        assert_eq!(leaves::<i64>(json!([1, 2.0, -3])).unwrap(), vec![1, 2, -3]);
        assert!(leaves::<i64>(json!([1.5])).is_err());
        assert!(leaves::<u8>(json!([256])).is_err());
        assert_eq!(leaves::<bool>(json!([true, 0, 1])).unwrap(), vec![true, false, true]);
        let err = leaves::<f32>(json!([1, "a"])).unwrap_err();
        assert_eq!(err.0, "input `x`: expected numbers of datatype FP32, got \"a\"");
    }

    #[test]
    fn tensors_serialise_whole_by_row_and_flat() {
        let t = Tensor::from_shape(&[2, 2], &[1f32, 0.1, 3., 4.]).unwrap();
        let whole = serde_json::to_string(&TensorJson { tensor: &t, part: Part::Whole }).unwrap();
        assert_eq!(whole, "[[1.0,0.1],[3.0,4.0]]");
        let row = serde_json::to_string(&TensorJson { tensor: &t, part: Part::Row(1) }).unwrap();
        assert_eq!(row, "[3.0,4.0]");
        let flat = serde_json::to_string(&TensorJson { tensor: &t, part: Part::Flat }).unwrap();
        assert_eq!(flat, "[1.0,0.1,3.0,4.0]");
        let v = Tensor::from_shape(&[2], &[7i64, 8]).unwrap();
        let scalar = serde_json::to_string(&TensorJson { tensor: &v, part: Part::Row(1) }).unwrap();
        assert_eq!(scalar, "8");
    }

    #[test]
    fn zipmap_rows_become_label_maps() {
        let t = Tensor::from_shape(&[1, 2], &[0.25f32, 0.75]).unwrap();
        let zipmap = ZipMap { output: "p".into(), labels: ZipMapLabels::Int64(vec![3, 9]) };
        let json =
            serde_json::to_string(&ZipMapJson { tensor: &t, part: Part::Row(0), zipmap: &zipmap }).unwrap();
        assert_eq!(json, r#"{"3":0.25,"9":0.75}"#);
    }
}
