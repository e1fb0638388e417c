//! What a model takes and gives: names, datatypes and shapes of its inputs and outputs.

use std::fmt;

use tract_onnx::pb::{GraphProto, ValueInfoProto};
use tract_onnx::prelude::*;

/// One dimension of an input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// Known when the model is loaded.
    Fixed(usize),
    /// The batch dimension shared by every input and output that has one.
    Batch,
    /// Known only from the request (for example an image's height or a sequence length), by
    /// the name the model gives it.
    Free(String),
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

/// The inputs and outputs a model declares in its ONNX graph, read without analysing the graph,
/// so that a model whose symbolic shapes tract cannot follow still has a signature.
///
/// An input's unknown leading dimension is the batch (scikit-learn exports leave it unnamed).
/// Other unknown dimensions keep the name the model gives them; an unnamed one (or `?`, or a
/// name used twice in one tensor) is called `{input}_dim{k}`. An output's unknown leading
/// dimension is taken for the batch when the inputs have one; the engine confirms it.
pub fn declared(graph: &GraphProto) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>), String> {
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<TensorSpec> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .map(|i| declared_tensor(i, "input", true))
        .collect::<Result<_, _>>()?;
    let batched = inputs.iter().any(|s| s.shape.first() == Some(&Dim::Batch));
    let outputs =
        graph.output.iter().map(|o| declared_tensor(o, "output", batched)).collect::<Result<_, _>>()?;
    Ok((inputs, outputs))
}

fn declared_tensor(info: &ValueInfoProto, what: &str, leading_batch: bool) -> Result<TensorSpec, String> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as D;
    use tract_onnx::pb::type_proto::Value as T;
    let name = info.name.clone();
    let Some(T::TensorType(tensor)) = info.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(format!("{what} `{name}` is not a tensor (sequences and maps cannot be served)"));
    };
    let datum_type = tract_onnx::pb::tensor_proto::DataType::try_from(tensor.elem_type)
        .ok()
        .and_then(|dt| DatumType::try_from(dt).ok())
        .ok_or_else(|| format!("{what} `{name}` has an unsupported datatype ({})", tensor.elem_type))?;
    if datatype_name(datum_type) == "UNSUPPORTED" || datum_type == DatumType::F16 {
        return Err(format!("{what} `{name}` has datatype {datum_type:?}, which cannot be sent as JSON"));
    }
    let Some(shape) = &tensor.shape else {
        return Err(format!("{what} `{name}` does not declare its rank"));
    };
    let mut dims = Vec::with_capacity(shape.dim.len());
    for (k, dim) in shape.dim.iter().enumerate() {
        let d = match &dim.value {
            Some(D::DimValue(v)) if *v > 0 => Dim::Fixed(*v as usize),
            _ if k == 0 && leading_batch => Dim::Batch,
            Some(D::DimParam(p)) if !p.is_empty() && p != "?" && !dims.contains(&Dim::Free(p.clone())) => {
                Dim::Free(p.clone())
            }
            _ => Dim::Free(format!("{name}_dim{k}")),
        };
        dims.push(d);
    }
    Ok(TensorSpec { name, datum_type, shape: dims })
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

    fn value_info(name: &str, elem_type: i32, dims: &[Option<&str>]) -> ValueInfoProto {
        use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension::Value as D};
        use tract_onnx::pb::{TensorShapeProto, TypeProto, type_proto};
        let dim = dims
            .iter()
            .map(|d| Dimension {
                denotation: String::new(),
                value: match d {
                    None => None,
                    Some(p) => match p.parse::<i64>() {
                        Ok(v) => Some(D::DimValue(v)),
                        Err(_) => Some(D::DimParam(p.to_string())),
                    },
                },
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                denotation: String::new(),
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type,
                    shape: Some(TensorShapeProto { dim }),
                })),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_signature_comes_from_the_declared_inputs_and_outputs() {
        const FLOAT: i32 = 1;
        const INT64: i32 = 7;
        let graph = GraphProto {
            // PaddleOCR writes `?` for both height and width: two dimensions, not one.
            input: vec![
                value_info("x", FLOAT, &[Some("-1"), Some("3"), Some("?"), Some("?")]),
                value_info("len", INT64, &[None, Some("seq"), Some("seq")]),
                value_info("w", FLOAT, &[Some("4")]),
            ],
            initializer: vec![tract_onnx::pb::TensorProto { name: "w".into(), ..Default::default() }],
            output: vec![value_info("y", FLOAT, &[Some("batch_out"), Some("2")])],
            ..Default::default()
        };
        let (inputs, outputs) = declared(&graph).unwrap();
        assert_eq!(inputs.len(), 2, "initializers are not inputs");
        let free = |s: &str| Dim::Free(s.into());
        assert_eq!(inputs[0].shape, vec![Dim::Batch, Dim::Fixed(3), free("x_dim2"), free("x_dim3")]);
        assert_eq!(inputs[1].shape, vec![Dim::Batch, free("seq"), free("len_dim2")]);
        assert_eq!(inputs[1].datum_type, DatumType::I64);
        assert_eq!(outputs[0].shape, vec![Dim::Batch, Dim::Fixed(2)]);

        let bad = GraphProto { input: vec![value_info("s", 10, &[Some("1")])], ..Default::default() };
        assert!(declared(&bad).unwrap_err().contains("input `s`"));
        let untyped = GraphProto {
            output: vec![ValueInfoProto { name: "m".into(), ..Default::default() }],
            ..Default::default()
        };
        assert_eq!(
            declared(&untyped).unwrap_err(),
            "output `m` is not a tensor (sequences and maps cannot be served)"
        );
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
