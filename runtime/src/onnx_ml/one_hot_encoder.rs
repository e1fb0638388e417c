//! `OneHotEncoder` (ai.onnx.ml): each input value becomes a float vector with a 1 at the index
//! of its category in `cats_int64s` (or `cats_strings`); output shape = input shape + [number
//! of categories]. Float, double and int32 inputs are truncated to int64 first. An unknown
//! category gives all zeros when `zeros` is 1 (the default), an error when it is 0.

use std::collections::HashMap;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::common::{NUMERIC_INPUTS, describe, ints, strings};

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("OneHotEncoder", one_hot_encoder);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Categories {
    Ints(HashMap<i64, usize>),
    Strings(HashMap<String, usize>),
}

fn index_of<K: std::hash::Hash + Eq>(cats: Vec<K>) -> HashMap<K, usize> {
    // Like onnxruntime, a repeated category maps to its last position.
    cats.into_iter().enumerate().map(|(i, c)| (c, i)).collect()
}

fn one_hot_encoder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let cats_int64s = ints(node, "cats_int64s")?;
    let cats_strings = strings(node, "cats_strings")?;
    let (categories, n) = match (cats_int64s.is_empty(), cats_strings.is_empty()) {
        (false, true) => {
            let n = cats_int64s.len();
            (Categories::Ints(index_of(cats_int64s)), n)
        }
        (true, false) => {
            let n = cats_strings.len();
            (Categories::Strings(index_of(cats_strings)), n)
        }
        _ => bail!(
            "{}: exactly one of `cats_int64s` and `cats_strings` must be set and non-empty",
            describe(node)
        ),
    };
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    Ok((expand(OneHotEncoder { op: OneHotEncoderOp { categories, n, zeros } }), vec![]))
}

#[derive(Debug, Clone)]
struct OneHotEncoder {
    op: OneHotEncoderOp,
}

impl Expansion for OneHotEncoder {
    fn name(&self) -> StaticName {
        "OneHotEncoder".into()
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
        s.equals(&outputs[0].rank, inputs[0].rank.bex() + 1)?;
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            for axis in 0..rank {
                s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
            }
            s.equals(&outputs[0].shape[rank], self.op.n.to_dim())
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        let ok = match self.op.categories {
            Categories::Ints(_) => NUMERIC_INPUTS.contains(&dt),
            Categories::Strings(_) => dt == DatumType::String,
        };
        ensure!(
            ok,
            "OneHotEncoder {prefix}: input type {dt:?} does not match the categories ({})",
            match self.op.categories {
                Categories::Ints(_) => "cats_int64s: int64, int32, float or double expected",
                Categories::Strings(_) => "cats_strings: string expected",
            }
        );
        model.wire_node(prefix, self.op.clone(), inputs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneHotEncoderOp {
    pub categories: Categories,
    pub n: usize,
    pub zeros: bool,
}

impl OneHotEncoderOp {
    fn encode<K: std::fmt::Debug>(
        &self,
        keys: impl Iterator<Item = K>,
        find: impl Fn(&K) -> Option<usize>,
        out: &mut [f32],
    ) -> TractResult<()> {
        for (i, key) in keys.enumerate() {
            match find(&key) {
                Some(ix) => out[i * self.n + ix] = 1.0,
                None if self.zeros => {}
                None => bail!("OneHotEncoder: unknown category {key:?} (and zeros = 0)"),
            }
        }
        Ok(())
    }
}

impl Op for OneHotEncoderOp {
    fn name(&self) -> StaticName {
        "OnnxMlOneHotEncoder".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} categories, zeros: {}", self.n, self.zeros)])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for OneHotEncoderOp {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = tract_onnx::tract_core::args_1!(inputs);
        let mut shape: TVec<usize> = x.shape().into();
        shape.push(self.n);
        let mut out = vec![0f32; shape.iter().product()];
        match &self.categories {
            Categories::Ints(map) => {
                let x = match x.datum_type() {
                    // Truncation towards zero, like a C++ static_cast.
                    DatumType::F32 => {
                        let v = x.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
                        v.into_iter().map(|f| f as i64).collect::<Vec<_>>()
                    }
                    DatumType::F64 => {
                        let v = x.try_as_plain_ram()?.as_slice::<f64>()?.to_vec();
                        v.into_iter().map(|f| f as i64).collect::<Vec<_>>()
                    }
                    _ => x.cast_to::<i64>()?.try_as_plain_ram()?.as_slice::<i64>()?.to_vec(),
                };
                self.encode(x.into_iter(), |k| map.get(k).copied(), &mut out)?
            }
            Categories::Strings(map) => {
                let x = x.try_as_plain_ram()?;
                let x = x.as_slice::<String>()?;
                self.encode(x.iter(), |k| map.get(*k).copied(), &mut out)?
            }
        }
        Ok(tvec!(Tensor::from_shape(&shape, &out)?.into_tvalue()))
    }
}

impl TypedOp for OneHotEncoderOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.to_tvec();
        shape.push(self.n.to_dim());
        Ok(tvec!(f32::fact(shape)))
    }

    tract_onnx::tract_core::as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use tract_onnx::prelude::*;

    #[test]
    fn ints_with_unknown_category_as_zeros() {
        let x = tensor2(&[[5i64], [1], [7]]);
        let out = run("OneHotEncoder", vec![attr_ints("cats_int64s", &[1, 2, 5])], &[&x], 1).unwrap();
        assert_eq!(out[0].shape(), &[3, 1, 3]);
        assert_close(&f32s(&out[0]), &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn unknown_category_is_an_error_when_zeros_is_0() {
        let x = tensor1(&[1i64, 7]);
        let attrs = vec![attr_ints("cats_int64s", &[1, 2]), attr_int("zeros", 0)];
        let err = run_err("OneHotEncoder", attrs.clone(), &[&x], 1);
        assert!(err.contains("unknown category 7"), "{err}");
        let ok = tensor1(&[2i64, 1]);
        let out = run("OneHotEncoder", attrs, &[&ok], 1).unwrap();
        assert_close(&f32s(&out[0]), &[0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn floats_are_truncated() {
        let x = tensor1(&[2.7f32, -0.5]);
        let out = run("OneHotEncoder", vec![attr_ints("cats_int64s", &[0, 2])], &[&x], 1).unwrap();
        assert_close(&f32s(&out[0]), &[0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn strings() {
        let x = tensor1(&["b".to_string(), "z".to_string(), "a".to_string()]);
        let out = run("OneHotEncoder", vec![attr_strings("cats_strings", &["a", "b"])], &[&x], 1).unwrap();
        assert_eq!(out[0].shape(), &[3, 2]);
        assert_close(&f32s(&out[0]), &[0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn bad_attributes_are_load_errors() {
        let x = tensor1(&[1i64]);
        let err = run_err("OneHotEncoder", vec![], &[&x], 1);
        assert!(err.contains("exactly one of"), "{err}");
        let err = run_err("OneHotEncoder", vec![attr_strings("cats_strings", &["a"])], &[&x], 1);
        assert!(err.contains("does not match"), "{err}");
    }
}
