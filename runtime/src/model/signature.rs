//! What a model takes and gives: names, datatypes and shapes of its inputs and outputs.

use std::fmt;

use tract_onnx::prelude::*;

/// One dimension of an input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// Known when the model is loaded.
    Fixed(usize),
    /// The batch dimension shared by every input and output that has one.
    Batch,
    /// Known only from the request (for example a sequence length); a symbol or an
    /// expression of symbols.
    Free(TDim),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Batch => write!(f, "N"),
            Dim::Free(s) => write!(f, "{s}"),
        }
    }
}

/// Name, datatype and shape of one input or output tensor.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub datum_type: DatumType,
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    /// The datatype's name in the Open Inference Protocol (`FP32`, `INT64`, `BYTES`, ...).
    pub fn datatype(&self) -> &'static str {
        datatype_name(self.datum_type)
    }

    /// Shape as the Open Inference Protocol writes it: `-1` for a dimension not fixed at load.
    pub fn v2_shape(&self) -> Vec<i64> {
        self.shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n as i64,
                _ => -1,
            })
            .collect()
    }

    /// The shape of one instance: the shape without its batch dimension, if the model has one.
    pub fn row_shape(&self, mode: BatchMode) -> &[Dim] {
        match mode {
            BatchMode::None => &self.shape,
            BatchMode::Dynamic { .. } | BatchMode::Fixed(_) => self.shape.get(1..).unwrap_or(&[]),
        }
    }

    /// Human-readable shape for error messages, for example `[N, 64]`.
    pub fn shape_text(shape: &[Dim]) -> String {
        let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
        format!("[{}]", dims.join(", "))
    }
}

/// The name the Open Inference Protocol uses for a tract datatype.
pub fn datatype_name(dt: DatumType) -> &'static str {
    match dt {
        DatumType::Bool => "BOOL",
        DatumType::U8 => "UINT8",
        DatumType::U16 => "UINT16",
        DatumType::U32 => "UINT32",
        DatumType::U64 => "UINT64",
        DatumType::I8 => "INT8",
        DatumType::I16 => "INT16",
        DatumType::I32 => "INT32",
        DatumType::I64 => "INT64",
        DatumType::F16 => "FP16",
        DatumType::F32 => "FP32",
        DatumType::F64 => "FP64",
        DatumType::String => "BYTES",
        _ => "UNSUPPORTED",
    }
}

/// The tract datatype of an Open Inference Protocol datatype name.
pub fn datum_type_of(name: &str) -> Option<DatumType> {
    Some(match name {
        "BOOL" => DatumType::Bool,
        "UINT8" => DatumType::U8,
        "UINT16" => DatumType::U16,
        "UINT32" => DatumType::U32,
        "UINT64" => DatumType::U64,
        "INT8" => DatumType::I8,
        "INT16" => DatumType::I16,
        "INT32" => DatumType::I32,
        "INT64" => DatumType::I64,
        "FP32" => DatumType::F32,
        "FP64" => DatumType::F64,
        "BYTES" => DatumType::String,
        _ => return None,
    })
}

/// How requests map onto the model's batch dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    /// Every input has a free leading batch dimension and nothing else free: concurrent
    /// requests can be merged, and batches padded up to a compiled size when `padded`
    /// (every output carries the batch dimension first, so padding rows can be cut off).
    Dynamic { padded: bool },
    /// Every input's leading dimension is fixed to this size: instances are run in chunks of it.
    Fixed(usize),
    /// No batch dimension: each instance is one whole set of inputs.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_names_round_trip() {
        for dt in [
            DatumType::Bool,
            DatumType::U8,
            DatumType::U16,
            DatumType::U32,
            DatumType::U64,
            DatumType::I8,
            DatumType::I16,
            DatumType::I32,
            DatumType::I64,
            DatumType::F32,
            DatumType::F64,
            DatumType::String,
        ] {
            assert_eq!(datum_type_of(datatype_name(dt)), Some(dt));
        }
        assert_eq!(datum_type_of("FP16"), None);
    }

    #[test]
    fn row_shape_drops_only_the_batch_dimension() {
        let spec = TensorSpec {
            name: "x".into(),
            datum_type: DatumType::F32,
            shape: vec![Dim::Batch, Dim::Fixed(3), Dim::Fixed(4)],
        };
        let dynamic = BatchMode::Dynamic { padded: true };
        assert_eq!(spec.row_shape(dynamic), &[Dim::Fixed(3), Dim::Fixed(4)]);
        assert_eq!(spec.v2_shape(), vec![-1, 3, 4]);
        assert_eq!(TensorSpec::shape_text(&spec.shape), "[N, 3, 4]");
        let fixed = TensorSpec { shape: vec![Dim::Fixed(1), Dim::Fixed(4)], ..spec };
        assert_eq!(fixed.row_shape(BatchMode::Fixed(1)), &[Dim::Fixed(4)]);
        assert_eq!(fixed.row_shape(BatchMode::None), &[Dim::Fixed(1), Dim::Fixed(4)]);
    }
}
