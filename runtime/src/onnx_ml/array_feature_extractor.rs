//! `ArrayFeatureExtractor` (ai.onnx.ml): selects elements of the last axis of X at the indices
//! Y (int64, any shape, taken flat). Output shape: X's shape with the last dimension replaced
//! by the number of indices; a 1-D X gives [1, number of indices] (as in onnxruntime). An index
//! out of range is an error.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_hir::internal::*;

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("ArrayFeatureExtractor", array_feature_extractor);
}

fn array_feature_extractor(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(ArrayFeatureExtractor), vec![]))
}

#[derive(Debug, Clone)]
struct ArrayFeatureExtractor;

impl Expansion for ArrayFeatureExtractor {
    fn name(&self) -> StaticName {
        "ArrayFeatureExtractor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            let out_rank = rank.max(2);
            s.equals(&outputs[0].rank, out_rank as i64)?;
            if rank == 1 {
                s.equals(&outputs[0].shape[0], 1.to_dim())?;
            }
            for axis in 0..rank.saturating_sub(1) {
                s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
            }
            s.given(&inputs[1].shape, move |s, indices| {
                s.equals(&outputs[0].shape[out_rank - 1], indices.iter().product::<TDim>())
            })
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        ensure!(
            model.outlet_fact(inputs[0])?.rank() >= 1,
            "ArrayFeatureExtractor {prefix}: X must have rank 1 or more"
        );
        let mut indices = inputs[1];
        let idt = model.outlet_fact(indices)?.datum_type;
        ensure!(
            [DatumType::I64, DatumType::I32, DatumType::TDim].contains(&idt),
            "ArrayFeatureExtractor {prefix}: the indices must be int64, got {idt:?}"
        );
        if idt != DatumType::I64 {
            indices = model.wire_node(format!("{prefix}.indices_i64"), cast(DatumType::I64), &[indices])?[0];
        }
        model.wire_node(prefix, ArrayFeatureExtractorOp, &[inputs[0], indices])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArrayFeatureExtractorOp;

fn extract<T: Datum + Clone>(x: &Tensor, indices: &[usize], out_shape: &[usize]) -> TractResult<Tensor> {
    let view = x.try_as_plain_ram()?;
    let data = view.as_slice::<T>()?;
    let stride = x.shape().last().copied().unwrap_or(1);
    let rows = data.len().checked_div(stride).unwrap_or(0);
    let mut out = Vec::with_capacity(rows * indices.len());
    for row in 0..rows {
        out.extend(indices.iter().map(|&i| data[row * stride + i].clone()));
    }
    Ok(tract_onnx::tract_core::ndarray::ArrayD::from_shape_vec(out_shape, out)?.into())
}

impl Op for ArrayFeatureExtractorOp {
    fn name(&self) -> StaticName {
        "OnnxMlArrayFeatureExtractor".into()
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for ArrayFeatureExtractorOp {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, y) = tract_onnx::tract_core::args_2!(inputs);
        ensure!(x.rank() >= 1, "ArrayFeatureExtractor: X must have rank 1 or more");
        let stride = x.shape()[x.rank() - 1];
        let y = y.cast_to::<i64>()?;
        let y = y.try_as_plain_ram()?;
        let y = y.as_slice::<i64>()?;
        ensure!(!y.is_empty(), "ArrayFeatureExtractor: no index given");
        let indices = y
            .iter()
            .map(|&i| {
                usize::try_from(i).ok().filter(|&i| i < stride).ok_or_else(|| {
                    format_err!("ArrayFeatureExtractor: index {i} is out of range for {stride} features")
                })
            })
            .collect::<TractResult<Vec<usize>>>()?;
        let mut shape: TVec<usize> = x.shape().into();
        if shape.len() == 1 {
            shape.insert(0, 1);
        }
        let last = shape.len() - 1;
        shape[last] = indices.len();
        let out = match x.datum_type() {
            DatumType::F32 => extract::<f32>(&x, &indices, &shape)?,
            DatumType::F64 => extract::<f64>(&x, &indices, &shape)?,
            DatumType::I64 => extract::<i64>(&x, &indices, &shape)?,
            DatumType::I32 => extract::<i32>(&x, &indices, &shape)?,
            DatumType::I16 => extract::<i16>(&x, &indices, &shape)?,
            DatumType::I8 => extract::<i8>(&x, &indices, &shape)?,
            DatumType::U8 => extract::<u8>(&x, &indices, &shape)?,
            DatumType::Bool => extract::<bool>(&x, &indices, &shape)?,
            DatumType::String => extract::<String>(&x, &indices, &shape)?,
            DatumType::TDim => extract::<TDim>(&x, &indices, &shape)?,
            dt => bail!("ArrayFeatureExtractor: unsupported type {dt:?}"),
        };
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for ArrayFeatureExtractorOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        ensure!(x.rank() >= 1, "ArrayFeatureExtractor: X must have rank 1 or more");
        let n: TDim = inputs[1].shape.iter().product();
        let mut shape: TVec<TDim> = x.shape.to_tvec();
        if shape.len() == 1 {
            shape.insert(0, 1.to_dim());
        }
        let last = shape.len() - 1;
        shape[last] = n;
        Ok(tvec!(x.datum_type.fact(shape)))
    }

    tract_onnx::tract_core::as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use tract_onnx::prelude::*;

    #[test]
    fn selects_columns() {
        let x = tensor2(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let y = tensor1(&[2i64, 0, 2]);
        let out = run("ArrayFeatureExtractor", vec![], &[&x, &y], 1).unwrap();
        assert_eq!(out[0], tensor2(&[[3.0f32, 1.0, 3.0], [6.0, 4.0, 6.0]]));
    }

    #[test]
    fn one_dimensional_x_like_the_labels_of_a_classifier() {
        // skl2onnx: labels[argmax] with argmax of shape [N, 1] gives [1, N].
        let x = tensor1(&[10i64, 20, 30]);
        let y = tensor2(&[[2i64], [0], [1], [2]]);
        let out = run("ArrayFeatureExtractor", vec![], &[&x, &y], 1).unwrap();
        assert_eq!(out[0], tensor2(&[[30i64, 10, 20, 30]]));
        let x = tensor1(&["a".to_string(), "b".to_string()]);
        let y = tensor1(&[1i64]);
        let out = run("ArrayFeatureExtractor", vec![], &[&x, &y], 1).unwrap();
        assert_eq!(out[0], tensor2(&[["b".to_string()]]));
    }

    #[test]
    fn out_of_range_index_is_an_error() {
        let x = tensor2(&[[1.0f32, 2.0]]);
        let err = run_err("ArrayFeatureExtractor", vec![], &[&x, &tensor1(&[2i64])], 1);
        assert!(err.contains("index 2 is out of range for 2 features"), "{err}");
        let err = run_err("ArrayFeatureExtractor", vec![], &[&x, &tensor1(&[-1i64])], 1);
        assert!(err.contains("index -1 is out of range"), "{err}");
    }
}
