//! ONNX-ML operators (domain `ai.onnx.ml`) that tract lacks but scikit-learn exports
//! (skl2onnx) emit for common estimators, registered into tract's ONNX op register.
//!
//! Also handles a trailing `ZipMap`: tract has no sequence-of-maps type, so the node is
//! removed from the graph before parsing and its labels are kept, so that the server can
//! answer one `{label: probability}` object per instance.
//!
//! The semantics follow onnxruntime, the reference the exported models are checked against
//! (`tests/models/make_sklearn_models.py`). Every operator parses and validates its attributes
//! at load, declares inference rules (so a symbolic batch dimension flows through) and turns
//! into a typed operator (tract core ops, or an op of this module with `output_facts`), so that
//! models can be typed, decluttered, concretized and optimized.
//!
//! Added: `ArrayFeatureExtractor`, `Imputer`, `LabelEncoder`, `OneHotEncoder`, `Scaler`,
//! `TreeEnsembleRegressor`. Replaced (tract's own differ from onnxruntime): `Normalizer`,
//! `TreeEnsembleClassifier`. tract's `LinearClassifier`, `LinearRegressor` and
//! `CategoryMapper` are kept.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::{ModelProto, NodeProto};
use tract_onnx::tract_hir::internal::*;

mod array_feature_extractor;
mod common;
mod imputer;
mod label_encoder;
mod linear_check;
mod normalizer;
mod one_hot_encoder;
mod scaler;
mod tree;
mod tree_ensemble_classifier;
mod tree_ensemble_regressor;
mod zipmap;

pub use linear_check::check as check_linear_coefficients;
pub use zipmap::ZipMapError;

/// Registers every operator of this module into `reg`.
pub fn register(reg: &mut OnnxOpRegister) {
    array_feature_extractor::register(reg);
    imputer::register(reg);
    label_encoder::register(reg);
    normalizer::register(reg);
    one_hot_encoder::register(reg);
    scaler::register(reg);
    tree_ensemble_classifier::register(reg);
    tree_ensemble_regressor::register(reg);
    reg.insert("ZipMap", zipmap_left_in_graph);
}

/// A `ZipMap` that [`strip_zipmap`] did not remove (its output is not a graph output).
fn zipmap_left_in_graph(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    bail!(
        "Node {} (ZipMap): sequence-of-maps values are not supported; a ZipMap is only \
         supported as the producer of a graph output, removed with onnx_ml::strip_zipmap",
        node.name
    )
}

/// A `ZipMap` node removed from the graph: the graph output `output` now carries the
/// probabilities tensor `[N, classes]`, to be served as one map per row.
#[derive(Debug, Clone, PartialEq)]
pub struct ZipMap {
    /// Name of the graph output (unchanged from the original model).
    pub output: String,
    /// Class labels, in column order.
    pub labels: ZipMapLabels,
}

/// The labels of a `ZipMap` (`classlabels_int64s` or `classlabels_strings`).
#[derive(Debug, Clone, PartialEq)]
pub enum ZipMapLabels {
    Int64(Vec<i64>),
    Strings(Vec<String>),
}

impl ZipMapLabels {
    /// The number of labels (columns of the probabilities tensor).
    pub fn len(&self) -> usize {
        match self {
            ZipMapLabels::Int64(v) => v.len(),
            ZipMapLabels::Strings(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels as the strings used for JSON keys (decimal for int64 labels).
    pub fn to_strings(&self) -> Vec<String> {
        match self {
            ZipMapLabels::Int64(v) => v.iter().map(|l| l.to_string()).collect(),
            ZipMapLabels::Strings(v) => v.clone(),
        }
    }
}

/// Removes `ZipMap` nodes that feed graph outputs, rewiring each such output to the
/// probabilities tensor and fixing its declared type. Returns what was removed.
pub fn strip_zipmap(model: &mut ModelProto) -> Result<Vec<ZipMap>, ZipMapError> {
    zipmap::strip(model)
}
