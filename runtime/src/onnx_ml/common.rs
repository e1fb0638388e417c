//! Helpers shared by the ONNX-ML operators: attribute parsing, the post transforms and the
//! score arithmetic of onnxruntime (the reference implementation the test models are checked
//! against), and float wrappers that give ops the `Eq` tract requires.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;

/// An `f64` compared by its bits, so that op structs holding floats can be `Eq`.
#[derive(Clone, Copy, Debug, Default)]
pub struct F64(pub f64);

impl PartialEq for F64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for F64 {}

/// The input types of the numeric operators: float, double, int64 and int32, plus TDim,
/// which tract uses for int64 (it parses ONNX `Cast(to=int64)` into TDim).
pub const NUMERIC_INPUTS: [DatumType; 5] =
    [DatumType::F32, DatumType::F64, DatumType::I64, DatumType::I32, DatumType::TDim];

/// `Node <name> (<op_type>)`, to prefix load errors.
pub fn describe(node: &NodeProto) -> String {
    format!("Node {} ({})", node.name, node.op_type)
}

/// An INTS attribute, empty when absent.
pub fn ints(node: &NodeProto, name: &str) -> TractResult<Vec<i64>> {
    Ok(node.get_attr_opt_vec::<i64>(name)?.unwrap_or_default())
}

/// A STRINGS attribute, empty when absent.
pub fn strings(node: &NodeProto, name: &str) -> TractResult<Vec<String>> {
    Ok(node.get_attr_opt_vec::<String>(name)?.unwrap_or_default())
}

/// A FLOATS attribute or its `<name>_as_tensor` (double) variant, as f64. `None` when neither is
/// set (or when the one set is empty); an error when both are.
pub fn floats_or_tensor(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Option<Vec<f64>>> {
    let floats: Option<Vec<f32>> = node.get_attr_opt_vec(name)?;
    let tensor_name = format!("{name}_as_tensor");
    let tensor: Option<&TensorProto> = node.get_attr_opt(&tensor_name)?;
    let floats = floats.filter(|f| !f.is_empty());
    match (floats, tensor) {
        (Some(_), Some(_)) => {
            bail!("{}: only one of `{name}` and `{tensor_name}` may be set", describe(node))
        }
        (Some(f), None) => Ok(Some(f.into_iter().map(f64::from).collect())),
        (None, Some(t)) => {
            let t =
                ctx.load_tensor(t).with_context(|| format!("{}: loading `{tensor_name}`", describe(node)))?;
            let t = t.cast_to::<f64>()?;
            let values = t.try_as_plain_ram()?.as_slice::<f64>()?.to_vec();
            Ok(Some(values).filter(|v| !v.is_empty()))
        }
        (None, None) => Ok(None),
    }
}

/// The `post_transform` attribute of the classifiers and regressors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

pub fn post_transform(node: &NodeProto) -> TractResult<PostTransform> {
    match node.get_attr_opt::<&str>("post_transform")?.unwrap_or("NONE") {
        "NONE" => Ok(PostTransform::None),
        "LOGISTIC" => Ok(PostTransform::Logistic),
        "SOFTMAX" => Ok(PostTransform::Softmax),
        "SOFTMAX_ZERO" => Ok(PostTransform::SoftmaxZero),
        "PROBIT" => Ok(PostTransform::Probit),
        other => bail!(
            "{}: unknown post_transform {other:?} (expected NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO or PROBIT)",
            describe(node)
        ),
    }
}

/// onnxruntime's logistic function (computed on |x| for stability).
pub fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

/// onnxruntime's approximation of the inverse error function.
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

pub fn probit(x: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * x - 1.0)
}

fn softmax(values: &mut [f32]) {
    let max = values.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Softmax that leaves (near) zero scores out of the exponentiation.
fn softmax_zero(values: &mut [f32]) {
    let max = values.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Applies a post transform to a row of two or more scores, in place.
pub fn transform_scores(post: PostTransform, values: &mut [f32]) {
    match post {
        PostTransform::None => {}
        PostTransform::Logistic => values.iter_mut().for_each(|v| *v = logistic(*v)),
        PostTransform::Probit => values.iter_mut().for_each(|v| *v = probit(*v)),
        PostTransform::Softmax => softmax(values),
        PostTransform::SoftmaxZero => softmax_zero(values),
    }
}

/// The stride onnxruntime uses for per-feature attributes: the only dimension of a 1-D input,
/// the second one otherwise.
pub fn feature_stride(shape: &[usize]) -> TractResult<usize> {
    match shape {
        [] => bail!("expected an input of rank 1 or more, got a scalar"),
        [c] => Ok(*c),
        [_, c, ..] => Ok(*c),
    }
}

/// Same as [`feature_stride`], for a symbolic shape.
pub fn feature_stride_dim(shape: &[TDim]) -> Option<&TDim> {
    match shape {
        [] => None,
        [c] => Some(c),
        [_, c, ..] => Some(c),
    }
}

#[cfg(test)]
pub mod test_util {
    //! Builds one-node ONNX models and runs them through tract (parse, type, declutter,
    //! optimize, run), with the operators of this module registered.

    use super::*;
    use tract_onnx::pb::attribute_proto::AttributeType;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
    use tract_onnx::pb::{
        AttributeProto, GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
        ValueInfoProto, type_proto,
    };

    pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    pub fn attr_int(name: &str, v: i64) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
    }

    pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Floats as i32,
            floats: v.to_vec(),
            ..Default::default()
        }
    }

    pub fn attr_float(name: &str, v: f32) -> AttributeProto {
        AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: v, ..Default::default() }
    }

    pub fn attr_string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::String as i32,
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    pub fn attr_strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Strings as i32,
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    /// A TENSOR attribute holding doubles.
    pub fn attr_double_tensor(name: &str, v: &[f64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Tensor as i32,
            t: Some(TensorProto {
                dims: vec![v.len() as i64],
                data_type: DataType::Double as i32,
                double_data: v.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn elem_type(dt: DatumType) -> i32 {
        (match dt {
            DatumType::F32 => DataType::Float,
            DatumType::F64 => DataType::Double,
            DatumType::I64 => DataType::Int64,
            DatumType::I32 => DataType::Int32,
            DatumType::String => DataType::String,
            DatumType::Bool => DataType::Bool,
            other => panic!("no ONNX type for {other:?} in tests"),
        }) as i32
    }

    fn value_info(name: &str, dt: Option<DatumType>, shape: Option<&[usize]>) -> ValueInfoProto {
        let r#type = dt.map(|dt| TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem_type(dt),
                shape: shape.map(|s| TensorShapeProto {
                    dim: s
                        .iter()
                        .map(|d| Dimension {
                            denotation: String::new(),
                            value: Some(dimension::Value::DimValue(*d as i64)),
                        })
                        .collect(),
                }),
            })),
        });
        ValueInfoProto { name: name.into(), r#type, doc_string: String::new() }
    }

    /// A model made of one `ai.onnx.ml` node of type `op`, with graph inputs `x0, x1, ..`
    /// typed after `inputs` and outputs `y0, y1, ..`.
    pub fn one_node_model(
        op: &str,
        attributes: Vec<AttributeProto>,
        inputs: &[&Tensor],
        n_outputs: usize,
    ) -> ModelProto {
        let input_names: Vec<String> = (0..inputs.len()).map(|i| format!("x{i}")).collect();
        let output_names: Vec<String> = (0..n_outputs).map(|i| format!("y{i}")).collect();
        let node = NodeProto {
            name: "node".into(),
            op_type: op.into(),
            domain: "ai.onnx.ml".into(),
            input: input_names.clone(),
            output: output_names.clone(),
            attribute: attributes,
            ..Default::default()
        };
        let graph = GraphProto {
            name: "test".into(),
            node: vec![node],
            input: input_names
                .iter()
                .zip(inputs)
                .map(|(n, t)| value_info(n, Some(t.datum_type()), Some(t.shape())))
                .collect(),
            output: output_names.iter().map(|n| value_info(n, None, None)).collect(),
            ..Default::default()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![
                OperatorSetIdProto { domain: String::new(), version: 17 },
                OperatorSetIdProto { domain: "ai.onnx.ml".into(), version: 3 },
            ],
            graph: Some(graph),
            ..Default::default()
        }
    }

    /// Parses a model with the operators of this module registered.
    pub fn load(proto: &ModelProto) -> TractResult<InferenceModel> {
        let mut onnx = tract_onnx::onnx();
        crate::onnx_ml::register(&mut onnx.op_register);
        onnx.model_for_proto_model(proto)
    }

    /// Runs a one-node model on `inputs` and returns its outputs.
    pub fn run(
        op: &str,
        attributes: Vec<AttributeProto>,
        inputs: &[&Tensor],
        n_outputs: usize,
    ) -> TractResult<Vec<Tensor>> {
        let proto = one_node_model(op, attributes, inputs, n_outputs);
        let model = load(&proto)?.into_typed()?.into_decluttered()?.into_optimized()?;
        let plan = model.into_runnable()?;
        let values: TVec<TValue> = inputs.iter().map(|t| (*t).clone().into_tvalue()).collect();
        Ok(plan.run(values)?.into_iter().map(|v| v.into_tensor()).collect())
    }

    /// The error of `run`, as text (panics if it succeeds).
    pub fn run_err(
        op: &str,
        attributes: Vec<AttributeProto>,
        inputs: &[&Tensor],
        n_outputs: usize,
    ) -> String {
        match run(op, attributes, inputs, n_outputs) {
            Ok(out) => panic!("expected an error, got {out:?}"),
            Err(e) => format!("{e:?}"),
        }
    }

    pub fn f32s(t: &Tensor) -> Vec<f32> {
        t.cast_to::<f32>().unwrap().try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec()
    }

    pub fn assert_close(got: &[f32], expected: &[f32]) {
        assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
        for (g, e) in got.iter().zip(expected) {
            let ok = (g.is_nan() && e.is_nan()) || (g - e).abs() <= 1e-5 * e.abs().max(1.0);
            assert!(ok, "{got:?} vs {expected:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_matches_the_usual_formula() {
        for x in [-30.0f32, -2.0, -0.5, 0.0, 0.5, 2.0, 30.0] {
            let expected = 1.0 / (1.0 + (-x).exp());
            assert!((logistic(x) - expected).abs() < 1e-6, "{x}");
        }
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut v = [1.0f32, 2.0, 3.0];
        transform_scores(PostTransform::Softmax, &mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[0] < v[1] && v[1] < v[2]);
        let mut z = [0.0f32, 2.0, 3.0];
        transform_scores(PostTransform::SoftmaxZero, &mut z);
        assert!((z.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(z[0] < 0.01);
    }

    #[test]
    fn probit_is_the_inverse_normal_cdf() {
        assert!(probit(0.5).abs() < 1e-4);
        assert!((probit(0.975) - 1.96).abs() < 1e-2);
        assert!((probit(0.025) + 1.96).abs() < 1e-2);
    }
}
