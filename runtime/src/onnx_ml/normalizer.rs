//! `Normalizer` (ai.onnx.ml), overriding tract's own. tract normalizes along the last axis,
//! divides by max |x| for `MAX` and clamps the norm with an epsilon; onnxruntime (the reference
//! for skl2onnx models) normalizes along axis 1 (axis 0 of a 1-D input), divides by the plain
//! maximum for `MAX`, and copies a row unchanged when its norm is 0. This follows onnxruntime.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ndarray::Axis;
use tract_onnx::tract_hir::internal::*;

use super::common::{NUMERIC_INPUTS, describe};

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("Normalizer", normalizer);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Norm {
    Max,
    L1,
    L2,
}

fn normalizer(_ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let norm = match node.get_attr_opt::<&str>("norm")?.unwrap_or("MAX") {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => bail!("{}: unknown norm {other:?} (expected MAX, L1 or L2)", describe(node)),
    };
    Ok((expand(Normalizer { norm }), vec![]))
}

#[derive(Debug, Clone)]
struct Normalizer {
    norm: Norm,
}

impl Expansion for Normalizer {
    fn name(&self) -> StaticName {
        "Normalizer".into()
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
        let fact = model.outlet_fact(inputs[0])?;
        ensure!(fact.rank() >= 1, "Normalizer {prefix}: the input must have rank 1 or more");
        ensure!(
            NUMERIC_INPUTS.contains(&fact.datum_type),
            "Normalizer {prefix}: unsupported input type {:?} (float, double, int64 or int32)",
            fact.datum_type
        );
        model.wire_node(prefix, NormalizerOp { norm: self.norm }, inputs)
    }
}

/// The typed normalizer: float output, same shape as the input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizerOp {
    pub norm: Norm,
}

impl Op for NormalizerOp {
    fn name(&self) -> StaticName {
        "OnnxMlNormalizer".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("norm: {:?}", self.norm)])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for NormalizerOp {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = tract_onnx::tract_core::args_1!(inputs);
        ensure!(input.rank() >= 1, "Normalizer: the input must have rank 1 or more");
        let mut x = input.cast_to::<f32>()?.into_owned().into_plain_array::<f32>()?;
        let axis = if x.ndim() == 1 { 0 } else { 1 };
        for mut lane in x.lanes_mut(Axis(axis)) {
            match self.norm {
                Norm::Max => {
                    let max = lane.iter().fold(f32::MIN, |m, &v| if m < v { v } else { m });
                    if max != 0.0 {
                        lane.iter_mut().for_each(|v| *v /= max);
                    }
                }
                Norm::L1 => {
                    let sum: f32 = lane.iter().map(|v| v.abs()).sum();
                    if sum != 0.0 {
                        lane.iter_mut().for_each(|v| *v /= sum);
                    }
                }
                Norm::L2 => {
                    let sum: f32 = lane.iter().map(|v| v * v).sum();
                    if sum != 0.0 {
                        lane.iter_mut().for_each(|v| {
                            let magnitude = (*v * *v / sum).sqrt();
                            *v = if *v < 0.0 { -magnitude } else { magnitude };
                        });
                    }
                }
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl TypedOp for NormalizerOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    tract_onnx::tract_core::as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use tract_onnx::prelude::*;

    fn norm(norm: &str, x: &Tensor) -> Vec<f32> {
        let out = run("Normalizer", vec![attr_string("norm", norm)], &[x], 1).unwrap();
        assert_eq!(out[0].shape(), x.shape());
        f32s(&out[0])
    }

    #[test]
    fn max_divides_by_the_plain_maximum_like_onnxruntime() {
        let x = tensor2(&[[-2.0f32, -1.0, 0.0], [0.0, 0.0, 0.0], [1.0, -3.0, 2.0], [-4.0, -2.0, -1.0]]);
        assert_close(&norm("MAX", &x), &[-2.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.5, -1.5, 1.0, 4.0, 2.0, 1.0]);
    }

    #[test]
    fn l1_and_l2_keep_signs_and_zero_rows() {
        let x = tensor2(&[[3.0f32, -4.0], [0.0, 0.0]]);
        assert_close(&norm("L1", &x), &[3.0 / 7.0, -4.0 / 7.0, 0.0, 0.0]);
        assert_close(&norm("L2", &x), &[0.6, -0.8, 0.0, 0.0]);
    }

    #[test]
    fn rank_1_and_integer_inputs() {
        let x = tensor1(&[3i64, 4]);
        assert_close(&norm("L2", &x), &[0.6, 0.8]);
    }

    #[test]
    fn rank_3_normalizes_along_axis_1() {
        // Like onnxruntime: pairs (1, 3) and (2, 4) are normalized.
        let x = tensor3(&[[[1.0f32, 2.0], [3.0, 4.0]]]);
        assert_close(&norm("L1", &x), &[0.25, 2.0 / 6.0, 0.75, 4.0 / 6.0]);
    }

    #[test]
    fn unknown_norm_is_a_load_error() {
        let x = tensor2(&[[1.0f32]]);
        let err = run_err("Normalizer", vec![attr_string("norm", "L3")], &[&x], 1);
        assert!(err.contains("unknown norm"), "{err}");
    }
}
