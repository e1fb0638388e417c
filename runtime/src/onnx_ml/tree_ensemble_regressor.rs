//! `TreeEnsembleRegressor` (ai.onnx.ml): output float [N, n_targets], the leaf values of all
//! trees aggregated with `aggregate_function` (SUM, AVERAGE, MIN, MAX), plus `base_values`,
//! then `post_transform`. Semantics of onnxruntime, including its quirks: with one target only
//! the PROBIT transform applies and each leaf counts its first vote; with several targets a
//! target that no leaf voted for stays 0.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::common::{
    F64, PostTransform, describe, floats_or_tensor, post_transform, probit, transform_scores,
};
use super::tree::{Acc, Ensemble, Rows, batch_dim, read_rows};

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("TreeEnsembleRegressor", tree_ensemble_regressor);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

fn tree_ensemble_regressor(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let n_targets = node.get_attr_opt::<i64>("n_targets")?.unwrap_or(0);
    let n_targets = usize::try_from(n_targets).ok().filter(|&n| n > 0).ok_or_else(|| {
        format_err!("{}: `n_targets` must be set and positive, got {n_targets}", describe(node))
    })?;
    let aggregate = match node.get_attr_opt::<&str>("aggregate_function")?.unwrap_or("SUM") {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => bail!(
            "{}: unknown aggregate_function {other:?} (expected SUM, AVERAGE, MIN or MAX)",
            describe(node)
        ),
    };
    let base_values = floats_or_tensor(ctx, node, "base_values")?.unwrap_or_default();
    ensure!(
        base_values.is_empty() || base_values.len() == n_targets,
        "{}: {} base_values for {n_targets} targets",
        describe(node),
        base_values.len()
    );
    let op = TreeEnsembleRegressorOp {
        ensemble: Arc::new(Ensemble::parse(ctx, node, "target", n_targets)?),
        aggregate,
        base_values: base_values.into_iter().map(F64).collect(),
        post_transform: post_transform(node)?,
    };
    Ok((expand(TreeEnsembleRegressor { op }), vec![]))
}

#[derive(Debug, Clone)]
struct TreeEnsembleRegressor {
    op: TreeEnsembleRegressorOp,
}

impl Expansion for TreeEnsembleRegressor {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
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
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[1], self.op.ensemble.n_outputs.to_dim())?;
        s.given(&inputs[0].rank, move |s, rank| {
            if rank == 2 {
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])
            } else {
                s.equals(&outputs[0].shape[0], 1.to_dim())
            }
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?;
        self.op.ensemble.check_input_fact(&format!("TreeEnsembleRegressor {prefix}"), fact)?;
        model.wire_node(prefix, self.op.clone(), inputs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEnsembleRegressorOp {
    pub ensemble: Arc<Ensemble>,
    pub aggregate: Aggregate,
    pub base_values: Vec<F64>,
    pub post_transform: PostTransform,
}

impl TreeEnsembleRegressorOp {
    fn vote<T: Acc>(&self, score: &mut T, has: &mut bool, w: T) {
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => *score = *score + w,
            Aggregate::Min => {
                if !*has || w < *score {
                    *score = w
                }
            }
            Aggregate::Max => {
                if !*has || w > *score {
                    *score = w
                }
            }
        }
        *has = true;
    }

    fn eval_rows<T: Acc>(&self, data: &[T], n: usize, c: usize, out: &mut [f32]) {
        let k = self.ensemble.n_outputs;
        let n_trees = T::from_usize(self.ensemble.n_trees());
        let base: Vec<T> = self.base_values.iter().map(|b| T::from_f64(b.0)).collect();
        let mut scores = vec![T::default(); k];
        let mut has = vec![false; k];
        for i in 0..n {
            let row = &data[i * c..][..c];
            scores.iter_mut().for_each(|s| *s = T::default());
            has.iter_mut().for_each(|h| *h = false);
            for &root in &self.ensemble.roots {
                let votes = self.ensemble.leaf(root, row);
                if k == 1 {
                    // onnxruntime's single-target path takes the first vote of the leaf.
                    if let Some(&(_, w)) = votes.first() {
                        self.vote(&mut scores[0], &mut has[0], T::from_f64(w.0));
                    }
                } else {
                    for &(t, w) in votes {
                        self.vote(&mut scores[t], &mut has[t], T::from_f64(w.0));
                    }
                }
            }
            let row_out = &mut out[i * k..][..k];
            if k == 1 {
                let origin = base.first().copied().unwrap_or_default();
                let s = match self.aggregate {
                    Aggregate::Sum => scores[0] + origin,
                    Aggregate::Average => scores[0] / n_trees + origin,
                    Aggregate::Min | Aggregate::Max if has[0] => scores[0] + origin,
                    Aggregate::Min | Aggregate::Max => origin,
                };
                row_out[0] = if self.post_transform == PostTransform::Probit {
                    probit(s.to_f32())
                } else {
                    s.to_f32()
                };
            } else {
                for j in 0..k {
                    let b = base.get(j).copied().unwrap_or_default();
                    let s = match self.aggregate {
                        Aggregate::Sum => scores[j] + b,
                        Aggregate::Average => scores[j] / n_trees + b,
                        Aggregate::Min | Aggregate::Max => b + scores[j],
                    };
                    row_out[j] = if has[j] { s.to_f32() } else { 0.0 };
                }
                transform_scores(self.post_transform, row_out);
            }
        }
    }
}

impl Op for TreeEnsembleRegressorOp {
    fn name(&self) -> StaticName {
        "OnnxMlTreeEnsembleRegressor".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} trees, {} targets, {:?}, {:?}",
            self.ensemble.n_trees(),
            self.ensemble.n_outputs,
            self.aggregate,
            self.post_transform
        )])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for TreeEnsembleRegressorOp {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = tract_onnx::tract_core::args_1!(inputs);
        let (n, c, rows) = read_rows(&self.ensemble, &x).context("TreeEnsembleRegressor")?;
        let k = self.ensemble.n_outputs;
        let mut out = vec![0f32; n * k];
        match rows {
            Rows::F32(data) => self.eval_rows(&data, n, c, &mut out),
            Rows::F64(data) => self.eval_rows(&data, n, c, &mut out),
        }
        Ok(tvec!(Tensor::from_shape(&[n, k], &out)?.into_tvalue()))
    }
}

impl TypedOp for TreeEnsembleRegressorOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact([batch_dim(inputs[0]), self.ensemble.n_outputs.to_dim()])))
    }

    tract_onnx::tract_core::as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use tract_onnx::pb::AttributeProto;
    use tract_onnx::prelude::*;

    /// Two stumps on feature 0 (threshold 0.5) and feature 1 (threshold 1.0):
    /// tree 0 votes 1 / 2, tree 1 votes 10 / 20 for target 0, and 100 / 200 for target 1.
    fn stumps(extra: Vec<AttributeProto>, n_targets: i64) -> Vec<AttributeProto> {
        let mut ids = vec![0, 0, 0, 0];
        let mut nodeids = vec![1, 2, 1, 2];
        let mut treeids = vec![0, 0, 1, 1];
        let mut weights = vec![1.0, 2.0, 10.0, 20.0];
        if n_targets == 2 {
            ids.extend([1, 1]);
            nodeids.extend([1, 2]);
            treeids.extend([1, 1]);
            weights.extend([100.0, 200.0]);
        }
        let mut attrs = vec![
            attr_int("n_targets", n_targets),
            attr_ints("nodes_treeids", &[0, 0, 0, 1, 1, 1]),
            attr_ints("nodes_nodeids", &[0, 1, 2, 0, 1, 2]),
            attr_ints("nodes_featureids", &[0, 0, 0, 1, 0, 0]),
            attr_floats("nodes_values", &[0.5, 0.0, 0.0, 1.0, 0.0, 0.0]),
            attr_strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"]),
            attr_ints("nodes_truenodeids", &[1, 0, 0, 1, 0, 0]),
            attr_ints("nodes_falsenodeids", &[2, 0, 0, 2, 0, 0]),
            attr_ints("nodes_missing_value_tracks_true", &[1, 0, 0, 0, 0, 0]),
            attr_ints("target_ids", &ids),
            attr_ints("target_nodeids", &nodeids),
            attr_ints("target_treeids", &treeids),
            attr_floats("target_weights", &weights),
        ];
        attrs.extend(extra);
        attrs
    }

    fn x() -> Tensor {
        // rows: (true, true), (false, false), (NaN -> true, false)
        tensor2(&[[0.0f32, 0.0], [1.0, 2.0], [f32::NAN, 5.0]])
    }

    #[test]
    fn sum_with_base_value() {
        let out =
            run("TreeEnsembleRegressor", stumps(vec![attr_floats("base_values", &[0.5])], 1), &[&x()], 1)
                .unwrap();
        assert_eq!(out[0].shape(), &[3, 1]);
        assert_close(&f32s(&out[0]), &[11.5, 22.5, 21.5]);
    }

    #[test]
    fn average_min_max() {
        let agg = |a: &str| {
            let attrs = stumps(vec![attr_string("aggregate_function", a)], 1);
            f32s(&run("TreeEnsembleRegressor", attrs, &[&x()], 1).unwrap()[0])
        };
        assert_close(&agg("AVERAGE"), &[5.5, 11.0, 10.5]);
        assert_close(&agg("MIN"), &[1.0, 2.0, 1.0]);
        assert_close(&agg("MAX"), &[10.0, 20.0, 20.0]);
    }

    #[test]
    fn two_targets_with_softmax() {
        let attrs = stumps(vec![attr_string("post_transform", "SOFTMAX")], 2);
        let out = run("TreeEnsembleRegressor", attrs, &[&tensor2(&[[1.0f32, 0.0]])], 1).unwrap();
        // raw scores: target 0 = 2 + 10, target 1 = 100
        let (a, b) = (12f32, 100f32);
        let e = (a - b).exp();
        assert_close(&f32s(&out[0]), &[e / (1.0 + e), 1.0 / (1.0 + e)]);
    }

    #[test]
    fn double_input_and_one_row() {
        let out = run("TreeEnsembleRegressor", stumps(vec![], 1), &[&tensor1(&[1.0f64, 0.0])], 1).unwrap();
        assert_eq!(out[0].shape(), &[1, 1]);
        assert_close(&f32s(&out[0]), &[12.0]);
    }

    #[test]
    fn bad_attributes_are_load_errors() {
        let x = x();
        let mut attrs = stumps(vec![], 1);
        attrs.retain(|a| a.name != "n_targets");
        assert!(run_err("TreeEnsembleRegressor", attrs, &[&x], 1).contains("n_targets"));

        let attrs = stumps(vec![attr_string("aggregate_function", "MEDIAN")], 1);
        assert!(run_err("TreeEnsembleRegressor", attrs, &[&x], 1).contains("MEDIAN"));

        let mut attrs = stumps(vec![], 1);
        attrs.retain(|a| a.name != "nodes_falsenodeids");
        attrs.push(attr_ints("nodes_falsenodeids", &[7, 0, 0, 2, 0, 0]));
        let err = run_err("TreeEnsembleRegressor", attrs, &[&x], 1);
        assert!(err.contains("node 7 of tree 0, which does not exist"), "{err}");

        let mut attrs = stumps(vec![], 1);
        attrs.retain(|a| a.name != "target_ids");
        attrs.push(attr_ints("target_ids", &[0, 0, 3, 0]));
        let err = run_err("TreeEnsembleRegressor", attrs, &[&x], 1);
        assert!(err.contains("`target_ids` contains 3"), "{err}");

        let mut attrs = stumps(vec![], 1);
        attrs.retain(|a| a.name != "nodes_modes");
        attrs.push(attr_strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF", "SPLIT", "LEAF", "LEAF"]));
        assert!(run_err("TreeEnsembleRegressor", attrs, &[&x], 1).contains("SPLIT"));

        // A cycle: node 1 of tree 0 branches back to the root.
        let mut attrs = stumps(vec![], 1);
        attrs.retain(|a| !["nodes_modes", "nodes_truenodeids"].contains(&a.name.as_str()));
        attrs.push(attr_strings(
            "nodes_modes",
            &["BRANCH_LEQ", "BRANCH_LEQ", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"],
        ));
        attrs.push(attr_ints("nodes_truenodeids", &[1, 0, 0, 1, 0, 0]));
        let err = run_err("TreeEnsembleRegressor", attrs, &[&x], 1);
        assert!(err.contains("cycle"), "{err}");

        // Too few features for the trees.
        let err = run_err("TreeEnsembleRegressor", stumps(vec![], 1), &[&tensor2(&[[1.0f32]])], 1);
        assert!(err.contains("feature 1 but the input has 1 features"), "{err}");
    }
}
