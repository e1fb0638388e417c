//! `Imputer` (ai.onnx.ml): replaces the values equal to `replaced_value_float` (or NaNs when
//! that is NaN) or `replaced_value_int64` by `imputed_value_floats` / `imputed_value_int64s`
//! (one value for all features, or one per feature). Output type = input type.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_hir::internal::*;

use super::common::{F64, describe, feature_stride, feature_stride_dim, ints};

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("Imputer", imputer);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imputation {
    /// For float and double inputs.
    Float { imputed: Vec<F64>, replaced: F64 },
    /// For int64 and int32 inputs.
    Int { imputed: Vec<i64>, replaced: i64 },
}

fn imputer(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let floats: Vec<f32> = node.get_attr_opt_vec("imputed_value_floats")?.unwrap_or_default();
    let int64s = ints(node, "imputed_value_int64s")?;
    let imputation = match (floats.is_empty(), int64s.is_empty()) {
        (false, true) => Imputation::Float {
            imputed: floats.into_iter().map(|f| F64(f.into())).collect(),
            replaced: F64(node.get_attr_opt::<f32>("replaced_value_float")?.unwrap_or(0.0).into()),
        },
        (true, false) => Imputation::Int {
            imputed: int64s,
            replaced: node.get_attr_opt::<i64>("replaced_value_int64")?.unwrap_or(0),
        },
        _ => bail!(
            "{}: exactly one of `imputed_value_floats` and `imputed_value_int64s` must be set",
            describe(node)
        ),
    };
    Ok((expand(Imputer { imputation }), vec![]))
}

#[derive(Debug, Clone)]
struct Imputer {
    imputation: Imputation,
}

impl Expansion for Imputer {
    fn name(&self) -> StaticName {
        "Imputer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?;
        let dt = fact.datum_type;
        let (allowed, n) = match &self.imputation {
            Imputation::Float { imputed, .. } => ([DatumType::F32, DatumType::F64], imputed.len()),
            Imputation::Int { imputed, .. } => ([DatumType::I64, DatumType::I32], imputed.len()),
        };
        // tract parses int64 casts into TDim: impute those as int64.
        let as_int64 = matches!(self.imputation, Imputation::Int { .. }) && dt == DatumType::TDim;
        ensure!(
            allowed.contains(&dt) || as_int64,
            "Imputer {prefix}: input type {dt:?} does not match the imputed values ({:?} or {:?} expected)",
            allowed[0],
            allowed[1]
        );
        ensure!(fact.rank() >= 1, "Imputer {prefix}: the input must have rank 1 or more");
        if n > 1
            && let Some(Ok(features)) = feature_stride_dim(fact.shape.dims()).map(|d| d.to_usize())
        {
            ensure!(features == n, "Imputer {prefix}: {n} imputed values for {features} input features");
        }
        let op = ImputerOp { imputation: self.imputation.clone() };
        if as_int64 {
            let x = model.wire_node(format!("{prefix}.to_i64"), cast(DatumType::I64), inputs)?;
            let y = model.wire_node(format!("{prefix}.impute"), op, &x)?;
            model.wire_node(prefix, cast(DatumType::TDim), &y)
        } else {
            model.wire_node(prefix, op, inputs)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImputerOp {
    pub imputation: Imputation,
}

/// Replaces in place, like onnxruntime: per-feature values are indexed by `i % stride`.
fn impute<T: Copy + PartialEq>(
    data: &mut [T],
    stride: usize,
    imputed: &[T],
    is_missing: impl Fn(T) -> bool,
) -> TractResult<()> {
    let per_feature = imputed.len() == stride;
    ensure!(
        per_feature || imputed.len() == 1,
        "Imputer: {} imputed values for {stride} input features",
        imputed.len()
    );
    for (i, x) in data.iter_mut().enumerate() {
        if is_missing(*x) {
            *x = if per_feature { imputed[i % stride] } else { imputed[0] };
        }
    }
    Ok(())
}

impl Op for ImputerOp {
    fn name(&self) -> StaticName {
        "OnnxMlImputer".into()
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for ImputerOp {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut x = tract_onnx::tract_core::args_1!(inputs).into_tensor();
        let stride = feature_stride(x.shape())?;
        let dt = x.datum_type();
        let mut view = x.try_as_plain_ram_mut()?;
        match (&self.imputation, dt) {
            (Imputation::Float { imputed, replaced }, DatumType::F32) => {
                let values: Vec<f32> = imputed.iter().map(|v| v.0 as f32).collect();
                let replaced = replaced.0 as f32;
                let data = view.as_slice_mut::<f32>()?;
                impute(data, stride, &values, |x| (x.is_nan() && replaced.is_nan()) || x == replaced)?
            }
            (Imputation::Float { imputed, replaced }, DatumType::F64) => {
                let values: Vec<f64> = imputed.iter().map(|v| v.0).collect();
                let replaced = replaced.0;
                let data = view.as_slice_mut::<f64>()?;
                impute(data, stride, &values, |x| (x.is_nan() && replaced.is_nan()) || x == replaced)?
            }
            (Imputation::Int { imputed, replaced }, DatumType::I64) => {
                let data = view.as_slice_mut::<i64>()?;
                impute(data, stride, imputed, |x| x == *replaced)?
            }
            (Imputation::Int { imputed, replaced }, DatumType::I32) => {
                let values: Vec<i32> = imputed.iter().map(|&v| v as i32).collect();
                let data = view.as_slice_mut::<i32>()?;
                impute(data, stride, &values, |x| i64::from(x) == *replaced)?
            }
            (_, dt) => bail!("Imputer: unsupported input type {dt:?} for these imputed values"),
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for ImputerOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    tract_onnx::tract_core::as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use tract_onnx::prelude::*;

    #[test]
    fn replaces_nan_per_feature() {
        let x = tensor2(&[[f32::NAN, 2.0, 3.0], [4.0, f32::NAN, f32::NAN]]);
        let out = run(
            "Imputer",
            vec![
                attr_floats("imputed_value_floats", &[10.0, 20.0, 30.0]),
                attr_float("replaced_value_float", f32::NAN),
            ],
            &[&x],
            1,
        )
        .unwrap();
        assert_eq!(out[0].datum_type(), DatumType::F32);
        assert_close(&f32s(&out[0]), &[10.0, 2.0, 3.0, 4.0, 20.0, 30.0]);
    }

    #[test]
    fn replaces_a_sentinel_with_one_value() {
        let x = tensor2(&[[-1.0f32, 2.0], [f32::NAN, -1.0]]);
        let out = run(
            "Imputer",
            vec![attr_floats("imputed_value_floats", &[0.5]), attr_float("replaced_value_float", -1.0)],
            &[&x],
            1,
        )
        .unwrap();
        // NaN is not the replaced value here: it stays.
        assert_close(&f32s(&out[0]), &[0.5, 2.0, f32::NAN, 0.5]);
    }

    #[test]
    fn default_replaced_value_is_zero() {
        let x = tensor2(&[[0.0f32, 2.0]]);
        let out = run("Imputer", vec![attr_floats("imputed_value_floats", &[7.0])], &[&x], 1).unwrap();
        assert_close(&f32s(&out[0]), &[7.0, 2.0]);
    }

    #[test]
    fn int64_input() {
        let x = tensor2(&[[-1i64, 5], [3, -1]]);
        let out = run(
            "Imputer",
            vec![attr_ints("imputed_value_int64s", &[8, 9]), attr_int("replaced_value_int64", -1)],
            &[&x],
            1,
        )
        .unwrap();
        assert_eq!(out[0], tensor2(&[[8i64, 5], [3, 9]]));
    }

    #[test]
    fn int64_from_an_onnx_cast_which_tract_types_as_tdim() {
        let x = tensor2(&[[-1.0f32, 5.0], [3.0, -1.0]]);
        let mut proto = one_node_model(
            "Imputer",
            vec![attr_ints("imputed_value_int64s", &[8]), attr_int("replaced_value_int64", -1)],
            &[&x],
            1,
        );
        let graph = proto.graph.as_mut().unwrap();
        graph.node[0].input = vec!["cast".into()];
        graph.node.insert(
            0,
            tract_onnx::pb::NodeProto {
                name: "cast".into(),
                op_type: "Cast".into(),
                input: vec!["x0".into()],
                output: vec!["cast".into()],
                attribute: vec![attr_int("to", 7)],
                ..Default::default()
            },
        );
        let model = load(&proto).unwrap().into_typed().unwrap().into_optimized().unwrap();
        let out = model.into_runnable().unwrap().run(tvec!(x.into_tvalue())).unwrap();
        assert_eq!(*out[0].cast_to::<i64>().unwrap(), tensor2(&[[8i64, 5], [3, 8]]));
    }

    #[test]
    fn bad_attributes_and_types_are_load_errors() {
        let x = tensor2(&[[1.0f32, 2.0]]);
        let err = run_err("Imputer", vec![], &[&x], 1);
        assert!(err.contains("exactly one of"), "{err}");
        let err = run_err("Imputer", vec![attr_ints("imputed_value_int64s", &[1])], &[&x], 1);
        assert!(err.contains("does not match"), "{err}");
        let err = run_err("Imputer", vec![attr_floats("imputed_value_floats", &[1.0, 2.0, 3.0])], &[&x], 1);
        assert!(err.contains("3 imputed values for 2 input features"), "{err}");
    }
}
