//! ONNX-ML operators (domain `ai.onnx.ml`) that tract lacks but scikit-learn exports
//! (skl2onnx) emit for common estimators, registered into tract's ONNX op register.
//!
//! Also handles a trailing `ZipMap`: tract has no sequence-of-maps type, so the node is
//! removed from the graph before parsing and its labels are kept, so that the server can
//! answer one `{label: probability}` object per instance.

use tract_onnx::model::OnnxOpRegister;
use tract_onnx::pb::ModelProto;

/// Registers every operator of this module into `reg`.
pub fn register(_reg: &mut OnnxOpRegister) {}

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

/// Removes `ZipMap` nodes that feed graph outputs (not done yet).
pub fn strip_zipmap(_model: &mut ModelProto) -> Result<Vec<ZipMap>, String> {
    Ok(vec![])
}
