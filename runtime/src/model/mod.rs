//! An ONNX model loaded with tract, ready to run batches from any thread.
//!
//! Loading gives unknown leading dimensions a batch symbol (scikit-learn exports leave them
//! unnamed), types and declutters the graph once, and then compiles plans specialised for
//! concrete batch sizes on demand: a concrete plan runs several times faster than a symbolic
//! one on small models. Batches are padded up to the next compiled size (see [`padded_size`]), so
//! a handful of plans serve every batch size.

mod kernels;
mod plans;
pub mod signature;

use std::path::Path;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, GenericFactoid, ShapeFactoid};

use crate::onnx_ml::{self, ZipMap};
use plans::Plans;
pub use signature::{BatchMode, Dim, TensorSpec};

/// Why a model could not be loaded. The process that serves it exits with this message.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the model file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the file is not a valid ONNX model: {0}")]
    Parse(String),
    #[error("the model is not supported: {0}")]
    Unsupported(String),
    #[error("the model failed its warm-up inference: {0}")]
    WarmUp(String),
}

/// Tuning of how a model runs.
#[derive(Debug, Clone, Copy)]
pub struct ModelOptions {
    /// Largest batch one plan runs; larger requests are split into chunks of it.
    pub max_plan_batch: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions { max_plan_batch: 64 }
    }
}

/// A loaded model. Cheap to share behind an `Arc`; `run` may be called from many threads.
pub struct Model {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    zipmaps: Vec<ZipMap>,
    mode: BatchMode,
    plans: Plans,
    max_plan_batch: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

fn tract_message(e: &TractError) -> String {
    format!("{e:#}")
}

impl Model {
    /// Loads a model file.
    pub fn load(path: &Path, options: ModelOptions) -> Result<Model, LoadError> {
        let bytes = std::fs::read(path)
            .map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
        Model::from_bytes(&bytes, options)
    }

    /// Loads a model from the bytes of an ONNX file.
    pub fn from_bytes(bytes: &[u8], options: ModelOptions) -> Result<Model, LoadError> {
        let mut onnx = tract_onnx::onnx();
        onnx_ml::register(&mut onnx.op_register);
        let mut proto =
            onnx.proto_model_for_read(&mut &*bytes).map_err(|e| LoadError::Parse(tract_message(&e)))?;
        let zipmaps = onnx_ml::strip_zipmap(&mut proto).map_err(|e| LoadError::Unsupported(e.to_string()))?;
        let output_names: Vec<String> = proto
            .graph
            .as_ref()
            .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
            .unwrap_or_default();
        let mut model =
            onnx.model_for_proto_model(&proto).map_err(|e| LoadError::Unsupported(tract_message(&e)))?;

        let (inputs, batch) = fix_input_facts(&mut model)?;
        let typed = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .map_err(|e| LoadError::Unsupported(tract_message(&e)))?;
        let outputs = output_specs(&typed, &output_names, batch.as_ref())?;
        let mode = batch_mode(&inputs, &outputs);
        let max_plan_batch = options.max_plan_batch.max(1).next_power_of_two();
        let plans = Plans::new(typed, batch, mode);
        Ok(Model { inputs, outputs, zipmaps, mode, plans, max_plan_batch })
    }

    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    pub fn batch_mode(&self) -> BatchMode {
        self.mode
    }

    /// The labels of the `ZipMap` that fed output `name`, if any.
    pub fn zipmap(&self, name: &str) -> Option<&ZipMap> {
        self.zipmaps.iter().find(|z| z.output == name)
    }

    /// Number of rows in a set of inputs that has been checked against the signature.
    pub fn batch_of(&self, inputs: &[Tensor]) -> usize {
        match self.mode {
            BatchMode::None => 1,
            _ => inputs.first().and_then(|t| t.shape().first().copied()).unwrap_or(1),
        }
    }

    /// Runs the model on inputs in signature order. With a batch dimension, any number of rows
    /// is accepted: the rows are run in chunks through plans compiled for padded sizes.
    pub fn run(&self, inputs: TVec<Tensor>) -> TractResult<TVec<Tensor>> {
        match self.mode {
            BatchMode::Dynamic { padded: true } => self.run_chunked(inputs, None),
            BatchMode::Fixed(b) => self.run_chunked(inputs, Some(b)),
            BatchMode::Dynamic { padded: false } | BatchMode::None => {
                let plan = self.plans.for_inputs(&inputs, &self.inputs)?;
                let out = plan.run(inputs.into_iter().map(TValue::from).collect())?;
                out.into_iter().map(output_tensor).collect()
            }
        }
    }

    /// Splits `inputs` into chunks of at most one plan's batch, pads each chunk up to a compiled
    /// size (`fixed`, or the next power of two), runs them and joins the outputs.
    fn run_chunked(&self, inputs: TVec<Tensor>, fixed: Option<usize>) -> TractResult<TVec<Tensor>> {
        let rows = inputs.first().map_or(0, |t| t.shape().first().copied().unwrap_or(0));
        anyhow::ensure!(rows > 0, "no rows to run");
        let chunk = fixed.unwrap_or(self.max_plan_batch);
        let mut parts: Vec<TVec<Tensor>> = Vec::with_capacity(rows.div_ceil(chunk));
        for start in (0..rows).step_by(chunk) {
            let len = chunk.min(rows - start);
            let size = fixed.unwrap_or_else(|| padded_size(len));
            let plan = self.plans.for_batch(size)?;
            let chunk_inputs: TVec<TValue> = if start == 0 && len == rows && size == rows {
                inputs.iter().map(|t| TValue::from(t.clone())).collect()
            } else {
                inputs
                    .iter()
                    .map(|t| pad_rows(t, start, len, size).map(TValue::from))
                    .collect::<TractResult<_>>()?
            };
            let out = plan.run(chunk_inputs)?;
            let out = out
                .into_iter()
                .map(|v| {
                    let t = output_tensor(v)?;
                    if size == len { Ok(t) } else { t.slice(0, 0, len) }
                })
                .collect::<TractResult<TVec<Tensor>>>()?;
            parts.push(out);
        }
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        (0..self.outputs.len())
            .map(|o| {
                let pieces: Vec<&Tensor> = parts.iter().map(|p| &p[o]).collect();
                Tensor::stack_tensors(0, &pieces)
            })
            .collect()
    }

    /// Zero-valued inputs of the smallest runnable batch, for warm-up.
    pub fn sample_inputs(&self) -> TractResult<TVec<Tensor>> {
        let rows = match self.mode {
            BatchMode::Fixed(b) => b,
            _ => 1,
        };
        self.inputs
            .iter()
            .map(|spec| {
                let shape: Vec<usize> = spec
                    .shape
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => *n,
                        Dim::Batch => rows,
                        Dim::Free(_) => 1,
                    })
                    .collect();
                if spec.datum_type == DatumType::String {
                    let empty = vec![String::new(); shape.iter().product()];
                    return Ok(tract_ndarray::ArrayD::from_shape_vec(shape, empty)?.into());
                }
                Tensor::zero_dt(spec.datum_type, &shape)
            })
            .collect()
    }

    /// Runs inferences on zeros, so that a model that loads but cannot run fails early and the
    /// first request does not pay for compiling the batch-1 plan. Returns how long one
    /// inference takes once warm (the fastest of a few).
    pub fn warm_up(&self) -> Result<std::time::Duration, LoadError> {
        let inputs = self.sample_inputs().map_err(|e| LoadError::WarmUp(tract_message(&e)))?;
        let mut fastest = std::time::Duration::MAX;
        for _ in 0..4 {
            let start = std::time::Instant::now();
            self.run(inputs.clone()).map_err(|e| LoadError::WarmUp(tract_message(&e)))?;
            fastest = fastest.min(start.elapsed());
        }
        Ok(fastest)
    }

    /// Compiles the plans of every padded batch size up to `max_batch`, so that no request
    /// pays for compilation. Meant to run in the background once the model serves.
    pub fn precompile(&self, max_batch: usize) {
        if let BatchMode::Dynamic { padded: true } = self.mode {
            let mut size = 1;
            while size <= max_batch.min(self.max_plan_batch) {
                if let Err(e) = self.plans.for_batch(size) {
                    tracing::warn!(size, error = %tract_message(&e), "could not compile a batch plan");
                    return;
                }
                size = padded_size(size + 1);
            }
        }
    }
}

/// An output as served: tract computes some integer outputs (shapes, counts) as symbolic
/// dimensions, which are plain `INT64` once concrete.
fn output_tensor(v: TValue) -> TractResult<Tensor> {
    let t = v.into_tensor();
    if t.datum_type() == DatumType::TDim { t.cast_to::<i64>().map(|c| c.into_owned()) } else { Ok(t) }
}

/// The compiled batch size that `rows` rows are padded up to: powers of two and the midpoints
/// between them (1, 2, 3, 4, 6, 8, 12, 16, 24, ...), so that padding wastes at most a third of
/// a batch while a handful of plans (each with its own packed weights) serve every size.
pub fn padded_size(rows: usize) -> usize {
    let pow = rows.max(1).next_power_of_two();
    let mid = pow / 4 * 3;
    if rows <= mid && mid >= 3 { mid } else { pow }
}

/// Rows `start..start + len` of `t`, padded to `size` rows by repeating the last one.
fn pad_rows(t: &Tensor, start: usize, len: usize, size: usize) -> TractResult<Tensor> {
    let rows = t.slice(0, start, start + len)?;
    if size == len {
        return Ok(rows);
    }
    let last = t.slice(0, start + len - 1, start + len)?;
    let mut pieces = Vec::with_capacity(1 + size - len);
    pieces.push(&rows);
    pieces.extend(std::iter::repeat_n(&last, size - len));
    Tensor::stack_tensors(0, &pieces)
}

/// Gives every input a complete fact: its datatype, and a shape whose unknown leading
/// dimension is the batch symbol and whose other unknown dimensions are symbols of their own.
fn fix_input_facts(model: &mut InferenceModel) -> Result<(Vec<TensorSpec>, Option<Symbol>), LoadError> {
    let mut specs = Vec::new();
    let mut batch: Option<Symbol> = None;
    let outlets = model.input_outlets().map_err(|e| LoadError::Unsupported(tract_message(&e)))?.to_vec();
    for (ix, outlet) in outlets.iter().enumerate() {
        let name = model.node(outlet.node).name.clone();
        let fact = model.input_fact(ix).map_err(|e| LoadError::Unsupported(tract_message(&e)))?.clone();
        let datum_type = fact
            .datum_type
            .concretize()
            .ok_or_else(|| LoadError::Unsupported(format!("input `{name}` does not declare its datatype")))?;
        if signature::datatype_name(datum_type) == "UNSUPPORTED" || datum_type == DatumType::F16 {
            return Err(LoadError::Unsupported(format!(
                "input `{name}` has datatype {datum_type:?}, which cannot be sent as JSON"
            )));
        }
        if fact.shape.is_open() {
            return Err(LoadError::Unsupported(format!("input `{name}` does not declare its rank")));
        }
        let mut shape = Vec::new();
        let mut dims = TVec::new();
        for (k, dim) in fact.shape.dims().enumerate() {
            let known = dim.concretize();
            let (spec_dim, tdim) = match known {
                Some(TDim::Val(v)) if v >= 0 => (Dim::Fixed(v as usize), TDim::Val(v)),
                other if k == 0 => {
                    let sym = match (&batch, other) {
                        (Some(b), _) => b.clone(),
                        (None, Some(TDim::Sym(s))) => s,
                        (None, _) => model.sym("N"),
                    };
                    batch = Some(sym.clone());
                    (Dim::Batch, TDim::Sym(sym))
                }
                Some(TDim::Sym(s)) => (Dim::Free(TDim::Sym(s.clone())), TDim::Sym(s)),
                _ => {
                    let sym = model.sym(&format!("{name}_dim{k}"));
                    (Dim::Free(TDim::Sym(sym.clone())), TDim::Sym(sym))
                }
            };
            shape.push(spec_dim);
            dims.push(GenericFactoid::Only(tdim));
        }
        model
            .set_input_fact(ix, InferenceFact::dt_shape(datum_type, ShapeFactoid::closed(dims)))
            .map_err(|e| LoadError::Unsupported(tract_message(&e)))?;
        specs.push(TensorSpec { name, datum_type, shape });
    }
    Ok((specs, batch))
}

fn output_specs(
    typed: &TypedModel,
    names: &[String],
    batch: Option<&Symbol>,
) -> Result<Vec<TensorSpec>, LoadError> {
    let count = typed.output_outlets().map_err(|e| LoadError::Unsupported(tract_message(&e)))?.len();
    (0..count)
        .map(|ix| {
            let fact = typed.output_fact(ix).map_err(|e| LoadError::Unsupported(tract_message(&e)))?;
            let name = names.get(ix).cloned().unwrap_or_else(|| format!("output_{ix}"));
            let shape = fact
                .shape
                .iter()
                .enumerate()
                .map(|(k, d)| match d {
                    TDim::Val(v) if *v >= 0 => Dim::Fixed(*v as usize),
                    TDim::Sym(s) if k == 0 && Some(s) == batch => Dim::Batch,
                    other => Dim::Free(other.clone()),
                })
                .collect();
            // Served as INT64: see `output_tensor`.
            let datum_type = match fact.datum_type {
                DatumType::TDim => DatumType::I64,
                dt => dt,
            };
            Ok(TensorSpec { name, datum_type, shape })
        })
        .collect()
}

/// Decides how requests map onto the batch dimension (see [`BatchMode`]).
fn batch_mode(inputs: &[TensorSpec], outputs: &[TensorSpec]) -> BatchMode {
    let any_free = |specs: &[TensorSpec]| {
        specs.iter().any(|s| s.shape.iter().skip(1).any(|d| !matches!(d, Dim::Fixed(_))))
    };
    if inputs.is_empty() || any_free(inputs) {
        return BatchMode::None;
    }
    if inputs.iter().all(|s| s.shape.first() == Some(&Dim::Batch)) {
        let padded = outputs.iter().all(|s| s.shape.first() == Some(&Dim::Batch));
        return BatchMode::Dynamic { padded };
    }
    if let Some(Dim::Fixed(b)) = inputs[0].shape.first() {
        let b = *b;
        let leading_b = |s: &TensorSpec| s.shape.first() == Some(&Dim::Fixed(b));
        if b > 0 && inputs.iter().all(leading_b) && outputs.iter().all(leading_b) {
            return BatchMode::Fixed(b);
        }
    }
    BatchMode::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: Vec<Dim>) -> TensorSpec {
        TensorSpec { name: "t".into(), datum_type: DatumType::F32, shape }
    }

    #[test]
    fn batch_mode_follows_the_leading_dimensions() {
        let batched = spec(vec![Dim::Batch, Dim::Fixed(4)]);
        let fixed = spec(vec![Dim::Fixed(1), Dim::Fixed(4)]);
        let scalar = spec(vec![]);
        let mode =
            |i: &TensorSpec, o: &TensorSpec| batch_mode(std::slice::from_ref(i), std::slice::from_ref(o));
        assert_eq!(mode(&batched, &batched), BatchMode::Dynamic { padded: true });
        assert_eq!(mode(&batched, &scalar), BatchMode::Dynamic { padded: false });
        assert_eq!(mode(&fixed, &fixed), BatchMode::Fixed(1));
        assert_eq!(mode(&fixed, &scalar), BatchMode::None);
        assert_eq!(mode(&scalar, &scalar), BatchMode::None);
        let sequence = spec(vec![Dim::Batch, Dim::Free(TDim::Val(0))]);
        assert_eq!(mode(&sequence, &batched), BatchMode::None);
    }

    #[test]
    fn batches_pad_to_powers_of_two_and_midpoints() {
        let sizes: Vec<usize> = (1..=17).map(padded_size).collect();
        assert_eq!(sizes, vec![1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16, 24]);
        assert_eq!(padded_size(0), 1);
    }

    #[test]
    fn pad_rows_repeats_the_last_row() {
        let t = Tensor::from_shape(&[3, 2], &[1f32, 2., 3., 4., 5., 6.]).unwrap();
        let padded = pad_rows(&t, 1, 2, 4).unwrap();
        assert_eq!(padded.shape(), &[4, 2]);
        let view = padded.to_plain_array_view::<f32>().unwrap();
        assert_eq!(view.iter().copied().collect::<Vec<_>>(), vec![3., 4., 5., 6., 5., 6., 5., 6.]);
    }
}
