//! `TreeEnsembleClassifier` (ai.onnx.ml), overriding tract's own, which does not match
//! onnxruntime on skl2onnx models: it rejects a single base value for two classes (binary
//! GradientBoosting), picks the label of a binary model by argmax over a half-empty score row,
//! and mishandles BRANCH_GTE. Outputs: the label [N] (int64 or string) and the scores
//! [N, classes] (float). This follows onnxruntime exactly, including its binary conventions:
//! when every vote goes to one class id, the scores are [1 - s, s] (all weights positive, label
//! by s > 0.5) or [-s, s] / [logistic(-s), logistic(s)] (mixed signs, label by s > 0).

use std::collections::HashSet;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::common::{
    F64, PostTransform, describe, floats_or_tensor, ints, logistic, post_transform, probit, strings,
    transform_scores,
};
use super::tree::{Acc, Ensemble, Rows, batch_dim, read_rows};

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("TreeEnsembleClassifier", tree_ensemble_classifier);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Labels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Labels {
    fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Str(v) => v.len(),
        }
    }

    fn datum_type(&self) -> DatumType {
        match self {
            Labels::Int(_) => DatumType::I64,
            Labels::Str(_) => DatumType::String,
        }
    }
}

fn tree_ensemble_classifier(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let int_labels = ints(node, "classlabels_int64s")?;
    let str_labels = strings(node, "classlabels_strings")?;
    let labels = match (int_labels.is_empty(), str_labels.is_empty()) {
        (false, true) => Labels::Int(int_labels),
        (true, false) => Labels::Str(str_labels),
        _ => bail!(
            "{}: exactly one of `classlabels_int64s` and `classlabels_strings` must be set",
            describe(node)
        ),
    };
    let n_classes = labels.len();
    ensure!(n_classes >= 2, "{}: at least 2 class labels are needed", describe(node));
    let base_values = floats_or_tensor(ctx, node, "base_values")?.unwrap_or_default();
    ensure!(
        base_values.is_empty()
            || base_values.len() == n_classes
            || (n_classes == 2 && base_values.len() == 1),
        "{}: {} base_values for {n_classes} classes",
        describe(node),
        base_values.len()
    );
    let ensemble = Ensemble::parse(ctx, node, "class", n_classes)?;
    let class_ids: HashSet<i64> = ints(node, "class_ids")?.into_iter().collect();
    let weights = floats_or_tensor(ctx, node, "class_weights")?.unwrap_or_default();
    let op = TreeEnsembleClassifierOp {
        ensemble: Arc::new(ensemble),
        labels,
        base_values: base_values.into_iter().map(F64).collect(),
        post_transform: post_transform(node)?,
        binary_case: n_classes == 2 && class_ids.len() == 1,
        weights_all_positive: weights.iter().all(|&w| w >= 0.0 || w.is_nan()),
    };
    Ok((expand(TreeEnsembleClassifier { op }), vec![]))
}

#[derive(Debug, Clone)]
struct TreeEnsembleClassifier {
    op: TreeEnsembleClassifierOp,
}

impl Expansion for TreeEnsembleClassifier {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifier".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 2)?;
        s.equals(&outputs[0].datum_type, self.op.labels.datum_type())?;
        s.equals(&outputs[0].rank, 1)?;
        s.equals(&outputs[1].datum_type, DatumType::F32)?;
        s.equals(&outputs[1].rank, 2)?;
        s.equals(&outputs[1].shape[1], self.op.labels.len().to_dim())?;
        s.equals(&outputs[0].shape[0], &outputs[1].shape[0])?;
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
        self.op.ensemble.check_input_fact(&format!("TreeEnsembleClassifier {prefix}"), fact)?;
        model.wire_node(prefix, self.op.clone(), inputs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEnsembleClassifierOp {
    pub ensemble: Arc<Ensemble>,
    pub labels: Labels,
    pub base_values: Vec<F64>,
    pub post_transform: PostTransform,
    /// Two classes and every vote for the same class id.
    pub binary_case: bool,
    pub weights_all_positive: bool,
}

/// The label of a row: a class index, or (onnxruntime's two-class fallback) the literal
/// label 0 or 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    Index(usize),
    Literal(i64),
}

impl TreeEnsembleClassifierOp {
    /// Turns the summed votes of a row into its scores (written to `out`) and its label.
    fn finalize<T: Acc>(&self, scores: &mut [T], has: &mut [bool], out: &mut [f32]) -> Label {
        let n = scores.len();
        let base: Vec<T> = self.base_values.iter().map(|b| T::from_f64(b.0)).collect();
        let zero = T::default();
        // -1: none, 0/1: binary, all weights positive, 2/3: binary, mixed signs.
        let mut add_second_class = -1;
        let mut len = n;
        let label;
        if n > 2 {
            for (k, &b) in base.iter().enumerate() {
                scores[k] = if has[k] { scores[k] + b } else { b };
                has[k] = true;
            }
            let mut best: Option<usize> = None;
            for k in 0..n {
                if has[k] && best.is_none_or(|b| scores[k] > scores[b]) {
                    best = Some(k);
                }
            }
            label = Label::Index(best.unwrap_or(0));
        } else {
            match base.len() {
                2 if has[1] => {
                    scores[1] = base[1] + scores[0];
                    scores[0] = -scores[1];
                }
                2 => {
                    scores[1] = scores[1] + base[1];
                    scores[0] = scores[0] + base[0];
                }
                1 => {
                    scores[0] = scores[0] + base[0];
                    if !has[1] {
                        len = 1;
                    }
                }
                _ => {
                    add_second_class = 3;
                    if !has[1] {
                        len = 1;
                    }
                }
            }
            let positive = if len == 2 && has[1] {
                scores[1]
            } else if has[0] {
                scores[0]
            } else {
                zero
            };
            label = if self.binary_case {
                let (threshold, second) =
                    if self.weights_all_positive { (T::from_f64(0.5), 0) } else { (zero, 2) };
                if positive > threshold {
                    add_second_class = second;
                    Label::Index(1)
                } else {
                    add_second_class = second + 1;
                    Label::Index(0)
                }
            } else if positive > zero {
                Label::Literal(1)
            } else {
                Label::Literal(0)
            };
        }

        out.iter_mut().for_each(|o| *o = 0.0);
        if len >= 2 {
            for k in 0..len {
                out[k] = if has[k] { scores[k].to_f32() } else { 0.0 };
            }
            transform_scores(self.post_transform, &mut out[..len]);
        } else {
            let s = if has[0] { scores[0].to_f32() } else { 0.0 };
            match (self.post_transform, add_second_class) {
                (PostTransform::Probit, _) => out[0] = probit(s),
                (_, 0 | 1) => {
                    out[0] = 1.0 - s;
                    out[1] = s;
                }
                (PostTransform::Logistic, 2 | 3) => {
                    out[0] = logistic(-s);
                    out[1] = logistic(s);
                }
                (_, 2 | 3) => {
                    out[0] = -s;
                    out[1] = s;
                }
                _ => out[0] = s,
            }
        }
        label
    }

    fn eval_rows<T: Acc>(&self, data: &[T], n: usize, c: usize, out: &mut [f32], labels: &mut Vec<Label>) {
        let k = self.ensemble.n_outputs;
        let mut scores = vec![T::default(); k];
        let mut has = vec![false; k];
        for i in 0..n {
            let row = &data[i * c..][..c];
            scores.iter_mut().for_each(|s| *s = T::default());
            has.iter_mut().for_each(|h| *h = false);
            for &root in &self.ensemble.roots {
                for &(class, w) in self.ensemble.leaf(root, row) {
                    scores[class] = scores[class] + T::from_f64(w.0);
                    has[class] = true;
                }
            }
            labels.push(self.finalize(&mut scores, &mut has, &mut out[i * k..][..k]));
        }
    }

    fn label_tensor(&self, labels: &[Label]) -> TractResult<Tensor> {
        Ok(match &self.labels {
            Labels::Int(names) => {
                let v: Vec<i64> = labels
                    .iter()
                    .map(|l| match *l {
                        Label::Index(i) => names[i],
                        Label::Literal(v) => v,
                    })
                    .collect();
                tensor1(&v)
            }
            Labels::Str(names) => {
                let v: Vec<String> = labels
                    .iter()
                    .map(|l| match *l {
                        Label::Index(i) => names[i].clone(),
                        // Literal 0 or 1: onnxruntime indexes the string labels with it.
                        Label::Literal(v) => names[v as usize].clone(),
                    })
                    .collect();
                tensor1(&v)
            }
        })
    }
}

impl Op for TreeEnsembleClassifierOp {
    fn name(&self) -> StaticName {
        "OnnxMlTreeEnsembleClassifier".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} trees, {} classes, {:?}, binary case: {}",
            self.ensemble.n_trees(),
            self.labels.len(),
            self.post_transform,
            self.binary_case
        )])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for TreeEnsembleClassifierOp {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = tract_onnx::tract_core::args_1!(inputs);
        let (n, c, rows) = read_rows(&self.ensemble, &x).context("TreeEnsembleClassifier")?;
        let k = self.ensemble.n_outputs;
        let mut scores = vec![0f32; n * k];
        let mut labels = Vec::with_capacity(n);
        match rows {
            Rows::F32(data) => self.eval_rows(&data, n, c, &mut scores, &mut labels),
            Rows::F64(data) => self.eval_rows(&data, n, c, &mut scores, &mut labels),
        }
        Ok(tvec!(
            self.label_tensor(&labels)?.into_tvalue(),
            Tensor::from_shape(&[n, k], &scores)?.into_tvalue()
        ))
    }
}

impl TypedOp for TreeEnsembleClassifierOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = batch_dim(inputs[0]);
        Ok(tvec!(self.labels.datum_type().fact([n.clone()]), f32::fact([n, self.labels.len().to_dim()])))
    }

    tract_onnx::tract_core::as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use tract_onnx::pb::AttributeProto;
    use tract_onnx::prelude::*;

    /// Two stumps on feature 0: tree 0 splits at 0.5, tree 1 at 1.5 (BRANCH_GTE in tree 1).
    /// Votes: `votes[t][leaf]` = list of (class, weight), leaf 0 = true branch.
    fn model(votes: [[&[(i64, f32)]; 2]; 2], mut extra: Vec<AttributeProto>) -> Vec<AttributeProto> {
        let (mut ids, mut nodeids, mut treeids, mut weights) = (vec![], vec![], vec![], vec![]);
        for (t, leaves) in votes.iter().enumerate() {
            for (l, leaf) in leaves.iter().enumerate() {
                for &(class, w) in leaf.iter() {
                    ids.push(class);
                    nodeids.push(l as i64 + 1);
                    treeids.push(t as i64);
                    weights.push(w);
                }
            }
        }
        let mut attrs = vec![
            attr_ints("nodes_treeids", &[0, 0, 0, 1, 1, 1]),
            attr_ints("nodes_nodeids", &[0, 1, 2, 0, 1, 2]),
            attr_ints("nodes_featureids", &[0, 0, 0, 0, 0, 0]),
            attr_floats("nodes_values", &[0.5, 0.0, 0.0, 1.5, 0.0, 0.0]),
            attr_strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_GTE", "LEAF", "LEAF"]),
            attr_ints("nodes_truenodeids", &[1, 0, 0, 1, 0, 0]),
            attr_ints("nodes_falsenodeids", &[2, 0, 0, 2, 0, 0]),
            attr_ints("class_ids", &ids),
            attr_ints("class_nodeids", &nodeids),
            attr_ints("class_treeids", &treeids),
            attr_floats("class_weights", &weights),
        ];
        attrs.append(&mut extra);
        attrs
    }

    /// x = 0 reaches (tree 0 true, tree 1 false), 1 reaches (false, false), 2 (false, true).
    fn x() -> Tensor {
        tensor2(&[[0.0f32], [1.0], [2.0]])
    }

    fn run2(attrs: Vec<AttributeProto>) -> (Tensor, Vec<f32>) {
        let out = run("TreeEnsembleClassifier", attrs, &[&x()], 2).unwrap();
        assert_eq!(out[1].shape()[0], 3);
        (out[0].clone(), f32s(&out[1]))
    }

    #[test]
    fn multiclass_with_base_values_and_softmax() {
        let attrs = model(
            [[&[(0, 1.0)], &[(1, 1.0)]], [&[(2, 2.0)], &[(0, 0.5)]]],
            vec![
                attr_ints("classlabels_int64s", &[10, 20, 30]),
                attr_floats("base_values", &[0.1, 0.2, 0.3]),
                attr_string("post_transform", "SOFTMAX"),
            ],
        );
        let (labels, scores) = run2(attrs);
        assert_eq!(labels, tensor1(&[10i64, 20, 30]));
        let softmax = |v: [f32; 3]| {
            let e: Vec<f32> = v.iter().map(|x| x.exp()).collect();
            let s: f32 = e.iter().sum();
            e.into_iter().map(|x| x / s).collect::<Vec<_>>()
        };
        let mut expected = softmax([1.6, 0.2, 0.3]);
        expected.extend(softmax([0.6, 1.2, 0.3]));
        expected.extend(softmax([0.1, 1.2, 2.3]));
        assert_close(&scores, &expected);
    }

    #[test]
    fn binary_random_forest_layout() {
        // skl2onnx RandomForest: positive-class probability on class id 0 only.
        let attrs = model(
            [[&[(0, 0.1)], &[(0, 0.4)]], [&[(0, 0.45)], &[(0, 0.05)]]],
            vec![attr_strings("classlabels_strings", &["no", "yes"])],
        );
        let (labels, scores) = run2(attrs);
        assert_eq!(labels, tensor1(&["no".to_string(), "no".to_string(), "yes".to_string()]));
        assert_close(&scores, &[0.85, 0.15, 0.55, 0.45, 0.15, 0.85]);
    }

    #[test]
    fn binary_gradient_boosting_layout() {
        // skl2onnx GradientBoosting: one base value, mixed-sign weights on class 0, LOGISTIC.
        let attrs = model(
            [[&[(0, -1.0)], &[(0, 0.5)]], [&[(0, 2.0)], &[(0, -0.25)]]],
            vec![
                attr_ints("classlabels_int64s", &[0, 1]),
                attr_floats("base_values", &[-0.5]),
                attr_string("post_transform", "LOGISTIC"),
            ],
        );
        let (labels, scores) = run2(attrs);
        let s = [-1.75f32, -0.25, 2.0];
        assert_eq!(labels, tensor1(&[0i64, 0, 1]));
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let expected: Vec<f32> = s.iter().flat_map(|&s| [sig(-s), sig(s)]).collect();
        assert_close(&scores, &expected);
    }

    #[test]
    fn two_classes_with_votes_for_both() {
        let attrs = model(
            [
                [&[(0, 0.75), (1, 0.25)], &[(0, 0.25), (1, 0.75)]],
                [&[(0, 0.5), (1, 0.5)], &[(0, 0.0), (1, 0.0)]],
            ],
            vec![attr_ints("classlabels_int64s", &[0, 1])],
        );
        let (labels, scores) = run2(attrs);
        assert_eq!(labels, tensor1(&[1i64, 1, 1]));
        assert_close(&scores, &[0.75, 0.25, 0.25, 0.75, 0.75, 1.25]);
    }

    #[test]
    fn bad_attributes_are_load_errors() {
        let votes: [[&[(i64, f32)]; 2]; 2] = [[&[(0, 1.0)], &[(1, 1.0)]], [&[(0, 1.0)], &[(1, 1.0)]]];
        let err = run_err("TreeEnsembleClassifier", model(votes, vec![]), &[&x()], 2);
        assert!(err.contains("classlabels"), "{err}");
        let err = run_err(
            "TreeEnsembleClassifier",
            model(
                votes,
                vec![attr_ints("classlabels_int64s", &[0, 1]), attr_floats("base_values", &[1.0, 2.0, 3.0])],
            ),
            &[&x()],
            2,
        );
        assert!(err.contains("3 base_values for 2 classes"), "{err}");
        let err = run_err(
            "TreeEnsembleClassifier",
            model(
                [[&[(0, 1.0)], &[(5, 1.0)]], [&[(0, 1.0)], &[(1, 1.0)]]],
                vec![attr_ints("classlabels_int64s", &[0, 1])],
            ),
            &[&x()],
            2,
        );
        assert!(err.contains("`class_ids` contains 5"), "{err}");
    }
}
