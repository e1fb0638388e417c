//! The tree ensemble shared by `TreeEnsembleRegressor` and `TreeEnsembleClassifier`: parsed and
//! validated at load (no cycles, no dangling node ids, output ids in range), evaluated like
//! onnxruntime (the reference for skl2onnx models): float thresholds and accumulation for
//! float/int inputs, double for double inputs, missing values following
//! `nodes_missing_value_tracks_true`.

use std::collections::HashMap;
use std::ops::{Add, Div, Neg};

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::common::{F64, NUMERIC_INPUTS, describe, feature_stride_dim, floats_or_tensor, ints, strings};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Branch {
        mode: Mode,
        feature: usize,
        threshold: F64,
        missing_goes_true: bool,
        if_true: usize,
        if_false: usize,
    },
    /// Its votes: `weights[start..end]`.
    Leaf { start: usize, end: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ensemble {
    pub nodes: Vec<Node>,
    /// The first node of each tree (as listed in the attributes).
    pub roots: Vec<usize>,
    /// Leaf votes: (target or class index, weight).
    pub weights: Vec<(usize, F64)>,
    /// Number of targets (regressor) or classes (classifier).
    pub n_outputs: usize,
    /// Number of input features the trees need (largest feature id + 1).
    pub n_features: usize,
}

/// The accumulation type: f32, or f64 for double inputs (like onnxruntime).
pub trait Acc:
    Copy + PartialOrd + Add<Output = Self> + Div<Output = Self> + Neg<Output = Self> + Default
{
    fn from_f64(v: f64) -> Self;
    fn from_usize(v: usize) -> Self;
    fn to_f32(self) -> f32;
    fn is_nan(self) -> bool;
}

impl Acc for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn from_usize(v: usize) -> Self {
        v as f32
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Acc for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn from_usize(v: usize) -> Self {
        v as f64
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

fn parse_mode(node: &NodeProto, s: &str) -> TractResult<Option<Mode>> {
    Ok(Some(match s {
        "BRANCH_LEQ" => Mode::Leq,
        "BRANCH_LT" => Mode::Lt,
        "BRANCH_GTE" => Mode::Gte,
        "BRANCH_GT" => Mode::Gt,
        "BRANCH_EQ" => Mode::Eq,
        "BRANCH_NEQ" => Mode::Neq,
        "LEAF" => return Ok(None),
        other => bail!("{}: unknown node mode {other:?} in `nodes_modes`", describe(node)),
    }))
}

fn ensure_len<T>(node: &NodeProto, name: &str, v: &[T], n: usize) -> TractResult<()> {
    ensure!(
        v.len() == n,
        "{}: `{name}` has {} values, expected {n} (one per node or vote)",
        describe(node),
        v.len()
    );
    Ok(())
}

impl Ensemble {
    /// Parses the `nodes_*` attributes and the leaf votes `<votes>_ids`, `<votes>_nodeids`,
    /// `<votes>_treeids`, `<votes>_weights` (votes = "target" or "class").
    pub fn parse(
        ctx: &ParsingContext,
        node: &NodeProto,
        votes: &str,
        n_outputs: usize,
    ) -> TractResult<Ensemble> {
        let what = describe(node);
        let tree_ids = ints(node, "nodes_treeids")?;
        let n = tree_ids.len();
        ensure!(n > 0, "{what}: `nodes_treeids` is missing or empty");
        let node_ids = ints(node, "nodes_nodeids")?;
        let feature_ids = ints(node, "nodes_featureids")?;
        let true_ids = ints(node, "nodes_truenodeids")?;
        let false_ids = ints(node, "nodes_falsenodeids")?;
        let modes = strings(node, "nodes_modes")?;
        let values = floats_or_tensor(ctx, node, "nodes_values")?.unwrap_or_default();
        let missing = ints(node, "nodes_missing_value_tracks_true")?;
        ensure_len(node, "nodes_nodeids", &node_ids, n)?;
        ensure_len(node, "nodes_featureids", &feature_ids, n)?;
        ensure_len(node, "nodes_truenodeids", &true_ids, n)?;
        ensure_len(node, "nodes_falsenodeids", &false_ids, n)?;
        ensure_len(node, "nodes_modes", &modes, n)?;
        ensure_len(node, "nodes_values", &values, n)?;
        ensure!(
            missing.len() <= n,
            "{what}: `nodes_missing_value_tracks_true` has more values than there are nodes"
        );

        let mut index = HashMap::with_capacity(n);
        for i in 0..n {
            if index.insert((tree_ids[i], node_ids[i]), i).is_some() {
                bail!("{what}: node {} of tree {} is defined twice", node_ids[i], tree_ids[i]);
            }
        }
        let find = |tree: i64, id: i64, field: &str| {
            index.get(&(tree, id)).copied().ok_or_else(|| {
                format_err!("{what}: `{field}` refers to node {id} of tree {tree}, which does not exist")
            })
        };

        // Leaf votes, grouped per node in the (tree, node, position) order of onnxruntime.
        let ids = ints(node, &format!("{votes}_ids"))?;
        let vote_nodes = ints(node, &format!("{votes}_nodeids"))?;
        let vote_trees = ints(node, &format!("{votes}_treeids"))?;
        let vote_weights = floats_or_tensor(ctx, node, &format!("{votes}_weights"))?.unwrap_or_default();
        ensure!(!ids.is_empty(), "{what}: `{votes}_ids` is missing or empty");
        ensure_len(node, &format!("{votes}_nodeids"), &vote_nodes, ids.len())?;
        ensure_len(node, &format!("{votes}_treeids"), &vote_trees, ids.len())?;
        ensure_len(node, &format!("{votes}_weights"), &vote_weights, ids.len())?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| (vote_trees[i], vote_nodes[i], i));
        let mut votes_of: Vec<Vec<(usize, F64)>> = vec![vec![]; n];
        for i in order {
            let at = find(vote_trees[i], vote_nodes[i], &format!("{votes}_nodeids"))?;
            let output = usize::try_from(ids[i]).ok().filter(|&o| o < n_outputs).ok_or_else(|| {
                format_err!(
                    "{what}: `{votes}_ids` contains {}, expected 0 to {}",
                    ids[i],
                    n_outputs.saturating_sub(1)
                )
            })?;
            votes_of[at].push((output, F64(vote_weights[i])));
        }

        let mut nodes = Vec::with_capacity(n);
        let mut weights = vec![];
        let mut n_features = 0;
        for i in 0..n {
            let mode = parse_mode(node, &modes[i])?;
            nodes.push(match mode {
                Some(mode) => {
                    let feature = usize::try_from(feature_ids[i])
                        .map_err(|_| format_err!("{what}: negative feature id {}", feature_ids[i]))?;
                    n_features = n_features.max(feature + 1);
                    let if_true = find(tree_ids[i], true_ids[i], "nodes_truenodeids")?;
                    let if_false = find(tree_ids[i], false_ids[i], "nodes_falsenodeids")?;
                    ensure!(
                        if_true != i && if_false != i,
                        "{what}: node {} of tree {} points to itself",
                        node_ids[i],
                        tree_ids[i]
                    );
                    Node::Branch {
                        mode,
                        feature,
                        threshold: F64(values[i]),
                        missing_goes_true: missing.get(i).is_some_and(|&m| m == 1),
                        if_true,
                        if_false,
                    }
                }
                None => {
                    // Votes attached to branch nodes are ignored, as in onnxruntime.
                    let start = weights.len();
                    weights.extend(votes_of[i].iter().copied());
                    Node::Leaf { start, end: weights.len() }
                }
            });
        }
        let roots = (0..n).filter(|&i| i == 0 || tree_ids[i] != tree_ids[i - 1]).collect();
        let ensemble = Ensemble { nodes, roots, weights, n_outputs, n_features };
        ensemble.check_acyclic().with_context(|| what.clone())?;
        Ok(ensemble)
    }

    /// A cycle would make evaluation loop forever: refuse it at load.
    fn check_acyclic(&self) -> TractResult<()> {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let mut state = vec![NEW; self.nodes.len()];
        let mut stack: Vec<(usize, usize)> = vec![];
        for start in 0..self.nodes.len() {
            if state[start] != NEW {
                continue;
            }
            state[start] = OPEN;
            stack.push((start, 0));
            while let Some(top) = stack.last_mut() {
                let (at, next_child) = *top;
                let children = match self.nodes[at] {
                    Node::Branch { if_true, if_false, .. } => [Some(if_true), Some(if_false)],
                    Node::Leaf { .. } => [None, None],
                };
                match children.get(next_child).copied().flatten() {
                    Some(child) => {
                        top.1 += 1;
                        match state[child] {
                            OPEN => bail!("the trees contain a cycle"),
                            NEW => {
                                state[child] = OPEN;
                                stack.push((child, 0));
                            }
                            _ => {}
                        }
                    }
                    None => {
                        state[at] = DONE;
                        stack.pop();
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks the number of features of a typed input, when it is known.
    pub fn check_input_fact(&self, op: &str, fact: &TypedFact) -> TractResult<()> {
        ensure!(
            fact.rank() == 1 || fact.rank() == 2,
            "{op}: the input must have rank 1 or 2, got {}",
            fact.rank()
        );
        ensure!(
            NUMERIC_INPUTS.contains(&fact.datum_type),
            "{op}: unsupported input type {:?} (float, double, int64 or int32)",
            fact.datum_type
        );
        if let Some(Ok(c)) = feature_stride_dim(fact.shape.dims()).map(|d| d.to_usize()) {
            ensure!(
                c >= self.n_features,
                "{op}: the trees use feature {} but the input has {c} features",
                self.n_features - 1
            );
        }
        Ok(())
    }

    /// The votes of the leaf that `row` reaches from `root`.
    pub fn leaf<T: Acc>(&self, root: usize, row: &[T]) -> &[(usize, F64)] {
        let mut at = root;
        loop {
            match &self.nodes[at] {
                Node::Leaf { start, end } => return &self.weights[*start..*end],
                Node::Branch { mode, feature, threshold, missing_goes_true, if_true, if_false } => {
                    let x = row[*feature];
                    let t = T::from_f64(threshold.0);
                    let goes_true = match mode {
                        Mode::Leq => x <= t,
                        Mode::Lt => x < t,
                        Mode::Gte => x >= t,
                        Mode::Gt => x > t,
                        Mode::Eq => x == t,
                        Mode::Neq => x != t,
                    } || (*missing_goes_true && x.is_nan());
                    at = if goes_true { *if_true } else { *if_false };
                }
            }
        }
    }

    /// The number of trees, as onnxruntime counts them (for AVERAGE).
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }
}

/// The (N, features) shape of a tree ensemble input (a 1-D input is one row).
pub fn rows_and_features(shape: &[usize]) -> TractResult<(usize, usize)> {
    match shape {
        [c] => Ok((1, *c)),
        [n, c] => Ok((*n, *c)),
        _ => bail!("tree ensembles take inputs of rank 1 or 2, got shape {shape:?}"),
    }
}

/// The batch dimension of the outputs for a typed input.
pub fn batch_dim(fact: &TypedFact) -> TDim {
    if fact.rank() == 2 { fact.shape[0].clone() } else { 1.to_dim() }
}

/// The input values of a tree ensemble, in the accumulation type onnxruntime uses for them.
pub enum Rows {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Reads an input tensor: (rows, features per row, values).
pub fn read_rows(ensemble: &Ensemble, input: &Tensor) -> TractResult<(usize, usize, Rows)> {
    let (n, c) = rows_and_features(input.shape())?;
    ensure!(
        c >= ensemble.n_features,
        "the trees use feature {} but the input has {c} features",
        ensemble.n_features.saturating_sub(1)
    );
    let rows = if input.datum_type() == DatumType::F64 {
        Rows::F64(input.try_as_plain_ram()?.as_slice::<f64>()?.to_vec())
    } else {
        let cast = input.cast_to::<f32>()?;
        Rows::F32(cast.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
    };
    Ok((n, c, rows))
}
