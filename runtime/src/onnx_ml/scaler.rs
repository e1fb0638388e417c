//! `Scaler` (ai.onnx.ml): `Y = (X - offset) * scale`, per feature or with one value for all,
//! output float. Expands into tract's core Cast, Sub and Mul, so it is decluttered and
//! optimized like any arithmetic.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::math::{mul, sub};
use tract_onnx::tract_hir::internal::*;

use super::common::{NUMERIC_INPUTS, describe, feature_stride_dim};

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("Scaler", scaler);
}

#[derive(Debug, Clone)]
struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

fn scaler(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scale: Vec<f32> = node.get_attr_opt_vec("scale")?.unwrap_or_default();
    let offset: Vec<f32> = node.get_attr_opt_vec("offset")?.unwrap_or_default();
    ensure!(!scale.is_empty(), "{}: attribute `scale` is missing or empty", describe(node));
    ensure!(
        offset.len() == scale.len(),
        "{}: `offset` has {} values but `scale` has {}",
        describe(node),
        offset.len(),
        scale.len()
    );
    Ok((expand(Scaler { offset, scale }), vec![]))
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank();
        ensure!(rank >= 1, "Scaler {prefix}: the input must have rank 1 or more");
        let dt = fact.datum_type;
        ensure!(
            NUMERIC_INPUTS.contains(&dt),
            "Scaler {prefix}: unsupported input type {dt:?} (float, double, int64 or int32)"
        );
        let n = self.scale.len();
        // Per-feature values apply along the feature axis (the last one of a rank 1 or 2 input).
        let const_shape: TVec<usize> = if n == 1 {
            tvec![1; rank]
        } else {
            ensure!(
                rank <= 2,
                "Scaler {prefix}: per-feature offset/scale need a rank 1 or 2 input, got rank {rank}"
            );
            if let Some(Ok(features)) = feature_stride_dim(fact.shape.dims()).map(|d| d.to_usize()) {
                ensure!(
                    features == n,
                    "Scaler {prefix}: {n} offset/scale values for {features} input features"
                );
            }
            let mut shape = tvec![1; rank];
            shape[rank - 1] = n;
            shape
        };
        let offset = tensor1(&self.offset).into_shape(&const_shape)?;
        let scale = tensor1(&self.scale).into_shape(&const_shape)?;
        let mut x = inputs[0];
        if dt != DatumType::F32 {
            x = model.wire_node(format!("{prefix}.to_f32"), cast(DatumType::F32), &[x])?[0];
        }
        let offset = model.add_const(format!("{prefix}.offset"), offset)?;
        let scale = model.add_const(format!("{prefix}.scale"), scale)?;
        let centered = model.wire_node(format!("{prefix}.sub"), sub(), &[x, offset])?[0];
        model.wire_node(format!("{prefix}.mul"), mul(), &[centered, scale])
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use tract_onnx::prelude::*;

    #[test]
    fn per_feature_and_scalar() {
        let x = tensor2(&[[1.0f32, 2.0], [3.0, 4.0]]);
        let out = run(
            "Scaler",
            vec![attr_floats("offset", &[1.0, 2.0]), attr_floats("scale", &[2.0, 0.5])],
            &[&x],
            1,
        )
        .unwrap();
        assert_eq!(out[0].shape(), &[2, 2]);
        assert_close(&f32s(&out[0]), &[0.0, 0.0, 4.0, 1.0]);

        let out = run("Scaler", vec![attr_floats("offset", &[1.0]), attr_floats("scale", &[10.0])], &[&x], 1)
            .unwrap();
        assert_close(&f32s(&out[0]), &[0.0, 10.0, 20.0, 30.0]);
    }

    #[test]
    fn integer_input_gives_float_output() {
        let x = tensor2(&[[1i64, 5], [-3, 0]]);
        let out = run(
            "Scaler",
            vec![attr_floats("offset", &[1.0, 1.0]), attr_floats("scale", &[1.0, -1.0])],
            &[&x],
            1,
        )
        .unwrap();
        assert_eq!(out[0].datum_type(), DatumType::F32);
        assert_close(&f32s(&out[0]), &[0.0, -4.0, -4.0, 1.0]);
    }

    #[test]
    fn bad_attributes_are_load_errors() {
        let x = tensor2(&[[1.0f32, 2.0]]);
        let err = run_err("Scaler", vec![attr_floats("offset", &[1.0])], &[&x], 1);
        assert!(err.contains("scale"), "{err}");
        let err = run_err(
            "Scaler",
            vec![attr_floats("offset", &[1.0]), attr_floats("scale", &[1.0, 2.0])],
            &[&x],
            1,
        );
        assert!(err.contains("offset"), "{err}");
        let err = run_err(
            "Scaler",
            vec![attr_floats("offset", &[1.0, 2.0, 3.0]), attr_floats("scale", &[1.0, 2.0, 3.0])],
            &[&x],
            1,
        );
        assert!(err.contains("3 offset/scale values for 2 input features"), "{err}");
    }
}
