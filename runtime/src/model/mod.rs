//! An ONNX model, loaded on one of two engines and ready to run batches from any thread.
//!
//! The signature (names, datatypes and shapes of inputs and outputs) is read from the graph's
//! declared inputs and outputs, so it does not depend on an engine's analysis. The model then
//! runs on tract (plans compiled per distinct input shape, see [`tract`] and [`plans`]) or on
//! onnxruntime (see [`onnxruntime`]); `auto` takes tract when the model loads and answers there.
//! On tract, batches are padded up to the next compiled size (see [`padded_size`]), so a handful
//! of plans serve every batch size.

mod kernels;
pub mod onnxruntime;
mod plans;
pub mod signature;
mod tract;

use std::path::Path;
use std::time::Duration;

use tract_onnx::prelude::*;

use crate::metrics::ShapeCacheMetrics;
use crate::onnx_ml::{self, ZipMap};
pub use onnxruntime::OnnxruntimeOptions;
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
    #[error("the onnxruntime engine cannot start: {0}")]
    Engine(String),
}

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// tract, built in.
    #[default]
    Tract,
    /// onnxruntime, from a library given at run time.
    Onnxruntime,
    /// tract when the model loads and answers there, else onnxruntime.
    Auto,
}

/// Tuning of how a model runs.
#[derive(Clone)]
pub struct ModelOptions {
    /// Largest batch one tract plan runs; larger requests are split into chunks of it.
    pub max_plan_batch: usize,
    pub engine: EngineChoice,
    /// Most tract plans kept (one per distinct set of input shapes).
    pub shape_cache_size: usize,
    pub shape_cache_metrics: ShapeCacheMetrics,
    pub onnxruntime: OnnxruntimeOptions,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            max_plan_batch: 64,
            engine: EngineChoice::Tract,
            shape_cache_size: 32,
            shape_cache_metrics: ShapeCacheMetrics::default(),
            onnxruntime: OnnxruntimeOptions::default(),
        }
    }
}

enum Engine {
    Tract(Box<tract::TractEngine>),
    Onnxruntime(onnxruntime::OrtEngine),
}

/// A run that failed, with a message naming the inputs' shapes and what the model accepts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

/// A loaded model. Cheap to share behind an `Arc`; `run` may be called from many threads.
pub struct Model {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    zipmaps: Vec<ZipMap>,
    mode: BatchMode,
    engine: Engine,
    max_plan_batch: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("engine", &self.engine_name())
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Sizes tried for dimensions only a request fixes (image sizes, lengths) when the model is
/// warmed up: small, then a common multiple of CNN strides, then a length audio models accept.
const SAMPLE_SIZES: [usize; 3] = [32, 512, 1];

impl Model {
    /// Loads a model file.
    pub fn load(path: &Path, options: ModelOptions) -> Result<Model, LoadError> {
        let bytes = std::fs::read(path)
            .map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
        Model::from_bytes(&bytes, options)
    }

    /// Loads a model from the bytes of an ONNX file on the engine `options` names.
    pub fn from_bytes(bytes: &[u8], options: ModelOptions) -> Result<Model, LoadError> {
        let onnx = tract_onnx::onnx();
        let mut proto = onnx
            .proto_model_for_read(&mut &*bytes)
            .map_err(|e| LoadError::Parse(tract::tract_message(&e)))?;
        let zipmaps = onnx_ml::strip_zipmap(&mut proto).map_err(|e| LoadError::Unsupported(e.to_string()))?;
        let graph = proto.graph.as_ref().ok_or_else(|| LoadError::Parse("the model has no graph".into()))?;
        let (inputs, outputs) = signature::declared(graph).map_err(LoadError::Unsupported)?;
        let max_plan_batch = options.max_plan_batch.max(1).next_power_of_two();
        let base = |engine| {
            let mode = batch_mode(&inputs, &outputs);
            Model {
                inputs: inputs.clone(),
                outputs: outputs.clone(),
                zipmaps: zipmaps.clone(),
                mode,
                engine,
                max_plan_batch,
            }
        };
        let on_tract = || -> Result<Model, LoadError> {
            let loaded =
                tract::load(&proto, &inputs, options.shape_cache_size, options.shape_cache_metrics.clone())?;
            let mut model = base(Engine::Tract(Box::new(loaded.engine)));
            match loaded.output_batch {
                Some(batch) => model.set_output_batch(&batch),
                None => model.confirm_output_batch(),
            }
            Ok(model)
        };
        let on_onnxruntime = || -> Result<Model, LoadError> {
            let stripped;
            let bytes = if zipmaps.is_empty() {
                bytes
            } else {
                stripped = prost::Message::encode_to_vec(&proto);
                &stripped[..]
            };
            let engine = onnxruntime::OrtEngine::load(bytes, &inputs, &outputs, &options.onnxruntime)?;
            let mut model = base(Engine::Onnxruntime(engine));
            model.confirm_output_batch();
            Ok(model)
        };
        let accelerator = options.onnxruntime.accelerator.as_deref().filter(|a| !a.is_empty());
        match options.engine {
            EngineChoice::Tract => on_tract(),
            EngineChoice::Onnxruntime => on_onnxruntime(),
            // tract runs on the CPU only: with an accelerator, onnxruntime comes first.
            EngineChoice::Auto if accelerator.is_some() => match on_onnxruntime() {
                Ok(model) => {
                    tracing::info!(
                        accelerator,
                        "engine auto: the machine has an accelerator; onnxruntime serves"
                    );
                    Ok(model)
                }
                Err(on_ort) => {
                    tracing::warn!(reason = %on_ort, accelerator, "engine auto: onnxruntime cannot serve; trying tract on the CPU");
                    on_tract().map_err(|on_tract| {
                        LoadError::Unsupported(format!("on onnxruntime: {on_ort}; on tract: {on_tract}"))
                    })
                }
            },
            EngineChoice::Auto => match on_tract().and_then(|m| m.answers().map(|_| m)) {
                Ok(model) => {
                    tracing::info!("engine auto: the model loads and answers on tract");
                    Ok(model)
                }
                Err(on_tract) => {
                    tracing::warn!(reason = %on_tract, "engine auto: the model does not run on tract; trying onnxruntime");
                    on_onnxruntime().map_err(|on_ort| {
                        LoadError::Unsupported(format!("on tract: {on_tract}; on onnxruntime: {on_ort}"))
                    })
                }
            },
        }
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

    /// `tract` or `onnxruntime`.
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Tract(_) => "tract",
            Engine::Onnxruntime(_) => "onnxruntime",
        }
    }

    /// Where the model runs: `cpu`, or `cuda` for onnxruntime's CUDA execution provider.
    pub fn execution_provider(&self) -> &'static str {
        match &self.engine {
            Engine::Tract(_) => "cpu",
            Engine::Onnxruntime(e) => e.provider(),
        }
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

    /// Whether the model has dimensions besides the batch that only requests fix.
    pub fn has_free_dims(&self) -> bool {
        self.inputs.iter().any(|s| s.row_shape(self.mode).iter().any(|d| !matches!(d, Dim::Fixed(_))))
    }

    /// Runs the model on inputs in signature order. With a batch dimension, any number of rows
    /// is accepted: on tract the rows run in chunks through plans compiled for padded sizes.
    pub fn run(&self, inputs: TVec<Tensor>) -> Result<TVec<Tensor>, RunError> {
        match (&self.engine, self.mode) {
            (Engine::Tract(_), BatchMode::Dynamic { padded: true }) => self.run_chunked(inputs, None),
            (_, BatchMode::Fixed(b)) => self.run_chunked(inputs, Some(b)),
            _ => self.run_once(inputs),
        }
    }

    fn run_once(&self, inputs: TVec<Tensor>) -> Result<TVec<Tensor>, RunError> {
        match &self.engine {
            Engine::Tract(engine) => engine.run(inputs).map_err(|e| match e {
                tract::TractRunError::Shape(reason, shapes) => RunError(format!(
                    "the model cannot run inputs of shape {}; it accepts {}: {reason}",
                    self.shapes_text(&shapes),
                    self.accepted_text()
                )),
                tract::TractRunError::Failed(reason) => {
                    RunError(format!("the model failed on this input: {reason}"))
                }
            }),
            Engine::Onnxruntime(engine) => engine.run(&inputs).map_err(|reason| {
                let shapes: Vec<TVec<usize>> = inputs.iter().map(|t| t.shape().into()).collect();
                RunError(format!(
                    "the model failed on inputs of shape {}; it accepts {}: {reason}",
                    self.shapes_text(&shapes),
                    self.accepted_text()
                ))
            }),
        }
    }

    /// `` `x` [1, 3, 64, 64], `y` [1] ``: the shapes of a run's inputs.
    fn shapes_text(&self, shapes: &[TVec<usize>]) -> String {
        let parts: Vec<String> =
            self.inputs.iter().zip(shapes).map(|(s, t)| format!("`{}` {:?}", s.name, &t[..])).collect();
        parts.join(", ")
    }

    /// `` `x` [N, 3, H, W] (FP32) ``: what the model declares.
    fn accepted_text(&self) -> String {
        let parts: Vec<String> = self
            .inputs
            .iter()
            .map(|s| format!("`{}` {} ({})", s.name, TensorSpec::shape_text(&s.shape), s.datatype()))
            .collect();
        parts.join(", ")
    }

    /// Splits `inputs` into chunks of at most one plan's batch, pads each chunk up to a compiled
    /// size (`fixed`, or the next power of two), runs them and joins the outputs.
    fn run_chunked(&self, inputs: TVec<Tensor>, fixed: Option<usize>) -> Result<TVec<Tensor>, RunError> {
        let failed = |e: TractError| RunError(format!("the model failed on this input: {e:#}"));
        let rows = inputs.first().map_or(0, |t| t.shape().first().copied().unwrap_or(0));
        if rows == 0 {
            return Err(RunError("no rows to run".into()));
        }
        let chunk = fixed.unwrap_or(self.max_plan_batch);
        let mut parts: Vec<TVec<Tensor>> = Vec::with_capacity(rows.div_ceil(chunk));
        for start in (0..rows).step_by(chunk) {
            let len = chunk.min(rows - start);
            let size = fixed.unwrap_or_else(|| padded_size(len));
            let chunk_inputs: TVec<Tensor> = if start == 0 && len == rows && size == rows {
                inputs.clone()
            } else {
                inputs
                    .iter()
                    .map(|t| pad_rows(t, start, len, size))
                    .collect::<TractResult<_>>()
                    .map_err(failed)?
            };
            let out = self.run_once(chunk_inputs)?;
            let out = out
                .into_iter()
                .map(|t| if size == len { Ok(t) } else { t.slice(0, 0, len) })
                .collect::<TractResult<TVec<Tensor>>>()
                .map_err(failed)?;
            parts.push(out);
        }
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        (0..self.outputs.len())
            .map(|o| {
                let pieces: Vec<&Tensor> = parts.iter().map(|p| &p[o]).collect();
                Tensor::stack_tensors(0, &pieces).map_err(failed)
            })
            .collect()
    }

    /// Zero-valued inputs of `rows` rows (or the fixed batch), with `free` for every dimension
    /// only a request fixes.
    pub fn sample_inputs_with(&self, rows: usize, free: usize) -> TractResult<TVec<Tensor>> {
        let rows = match self.mode {
            BatchMode::Fixed(b) => b,
            _ => rows,
        };
        self.inputs
            .iter()
            .map(|spec| {
                let shape: Vec<usize> = spec
                    .shape
                    .iter()
                    .enumerate()
                    .map(|(k, d)| match d {
                        Dim::Fixed(n) => *n,
                        Dim::Batch if k == 0 && self.mode != BatchMode::None => rows,
                        Dim::Batch => 1,
                        Dim::Free(_) => free,
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

    /// Zero-valued inputs of the smallest runnable batch, for warm-up.
    pub fn sample_inputs(&self) -> TractResult<TVec<Tensor>> {
        self.sample_inputs_with(1, SAMPLE_SIZES[0])
    }

    /// The first sample of `rows` rows that runs, with its outputs. Without dimensions that
    /// only requests fix there is one sample to try; with them, each of [`SAMPLE_SIZES`].
    fn first_sample_that_runs(&self, rows: usize) -> Result<(TVec<Tensor>, TVec<Tensor>), RunError> {
        let sizes: &[usize] = if self.has_free_dims() { &SAMPLE_SIZES } else { &SAMPLE_SIZES[..1] };
        let mut last = RunError("no sample".into());
        for &free in sizes {
            let inputs = self.sample_inputs_with(rows, free).map_err(|e| RunError(format!("{e:#}")))?;
            match self.run(inputs.clone()) {
                Ok(out) => return Ok((inputs, out)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Runs a sample, so that a model that loads but cannot run fails here.
    fn answers(&self) -> Result<(), LoadError> {
        self.first_sample_that_runs(1).map(|_| ()).map_err(|e| LoadError::WarmUp(e.0))
    }

    /// Runs inferences on zeros, so that a model that loads but cannot run fails early and the
    /// first request does not pay for compiling the batch-1 plan. Returns how long one
    /// inference takes once warm (the fastest of a few). A model with dimensions only requests
    /// fix, none of whose sample sizes runs, is not refused (its valid sizes are unknown): it
    /// warms up on its first request, and `Duration::MAX` is returned.
    pub fn warm_up(&self) -> Result<Duration, LoadError> {
        let inputs = match self.first_sample_that_runs(1) {
            Ok((inputs, _)) => inputs,
            Err(e) if self.has_free_dims() => {
                tracing::warn!(reason = %e, "no sample input size runs; the model warms up on its first request");
                return Ok(Duration::MAX);
            }
            Err(e) => return Err(LoadError::WarmUp(e.0)),
        };
        let mut fastest = Duration::MAX;
        for _ in 0..4 {
            let start = std::time::Instant::now();
            self.run(inputs.clone()).map_err(|e| LoadError::WarmUp(e.0))?;
            fastest = fastest.min(start.elapsed());
        }
        Ok(fastest)
    }

    /// Compiles the tract plans of every padded batch size up to `max_batch`, so that no
    /// request pays for compilation. Meant to run in the background once the model serves.
    pub fn precompile(&self, max_batch: usize) {
        if !matches!(self.engine, Engine::Tract(_)) || self.has_free_dims() {
            return;
        }
        if let BatchMode::Dynamic { padded: true } = self.mode {
            let mut size = 1;
            while size <= max_batch.min(self.max_plan_batch) {
                let run = self
                    .sample_inputs_with(size, 1)
                    .map_err(|e| RunError(format!("{e:#}")))
                    .and_then(|i| self.run_once(i));
                if let Err(e) = run {
                    tracing::warn!(size, error = %e, "could not compile a batch plan");
                    return;
                }
                size = padded_size(size + 1);
            }
        }
    }

    /// Marks the outputs whose leading dimension the engine's analysis found to be the batch.
    fn set_output_batch(&mut self, batch: &[bool]) {
        for (spec, is_batch) in self.outputs.iter_mut().zip(batch) {
            match (spec.shape.first(), is_batch) {
                (Some(Dim::Batch), false) => spec.shape[0] = Dim::Free(format!("{}_dim0", spec.name)),
                (Some(Dim::Free(_)), true) => spec.shape[0] = Dim::Batch,
                _ => {}
            }
        }
        self.mode = batch_mode(&self.inputs, &self.outputs);
    }

    /// For a model whose outputs' batch dimension no analysis confirmed: runs samples of 1 and
    /// 2 rows and keeps as batch the outputs whose leading dimension followed the rows. Without
    /// a sample that runs, no output counts as batched (requests are then not merged).
    fn confirm_output_batch(&mut self) {
        if !matches!(self.mode, BatchMode::Dynamic { .. }) {
            return;
        }
        let one = self.first_sample_that_runs(1);
        let two = self.first_sample_that_runs(2);
        let batch: Vec<bool> = match (one, two) {
            (Ok((_, one)), Ok((_, two))) => one
                .iter()
                .zip(two.iter())
                .map(|(a, b)| a.shape().first() == Some(&1) && b.shape().first() == Some(&2))
                .collect(),
            _ => vec![false; self.outputs.len()],
        };
        self.set_output_batch(&batch);
    }
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

/// Decides how requests map onto the batch dimension (see [`BatchMode`]).
fn batch_mode(inputs: &[TensorSpec], outputs: &[TensorSpec]) -> BatchMode {
    if inputs.is_empty() {
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
        // Other dimensions free (an image's size, a sequence's length): still batched by rows.
        let sequence = spec(vec![Dim::Batch, Dim::Free("length".into())]);
        assert_eq!(mode(&sequence, &batched), BatchMode::Dynamic { padded: true });
        let state = spec(vec![Dim::Fixed(2), Dim::Batch]);
        assert_eq!(batch_mode(&[sequence, state], std::slice::from_ref(&batched)), BatchMode::None);
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
