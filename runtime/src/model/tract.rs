//! The tract engine: plans compiled per distinct input shape and kept in an LRU cache.
//!
//! At load, the graph is typed and decluttered once with every unknown input dimension as a
//! symbol; each plan then binds the symbols to the request's sizes (`set_symbols`) and is
//! optimised for them. Many real exports compute shapes in ways tract cannot follow
//! symbolically (a `Reshape` whose shape input is computed, `Concat`s of upsampled feature maps
//! whose sizes only agree for concrete sizes, ...). Such a model still loads: each plan is then
//! analysed from the ONNX graph with the request's concrete input shapes, where every shape
//! computation folds to a constant.

use std::collections::HashMap;

use anyhow::{Context, bail};

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{GenericFactoid, ShapeFactoid};

use super::LoadError;
pub(super) use super::plans::ShapeKey;
use super::plans::{Plan, PlanCache};
use super::signature::{Dim, TensorSpec};
use crate::metrics::ShapeCacheMetrics;
use crate::onnx_ml;

pub(super) struct TractEngine {
    source: Source,
    plans: PlanCache,
}

enum Source {
    /// Typed once with symbolic dimensions; `symbols[input][dim]` is the symbol of each
    /// dimension not fixed by the model.
    Symbolic { model: TypedModel, symbols: Vec<Vec<Option<Symbol>>> },
    /// tract could not type the graph symbolically: each plan is analysed with concrete shapes.
    Concrete { model: InferenceModel },
}

pub(super) fn tract_message(e: &TractError) -> String {
    format!("{e:#}")
}

/// What loading found out besides the engine.
pub(super) struct Loaded {
    pub engine: TractEngine,
    /// For each output, whether its leading dimension is the batch, when the symbolic analysis
    /// could tell (`None` for a model analysed per shape).
    pub output_batch: Option<Vec<bool>>,
}

/// Loads `proto` (ZipMaps already stripped) for inputs `specs` (the graph's declared inputs).
pub(super) fn load(
    proto: &ModelProto,
    specs: &[TensorSpec],
    cache_size: usize,
    metrics: ShapeCacheMetrics,
) -> Result<Loaded, LoadError> {
    if let Some(graph) = &proto.graph {
        onnx_ml::check_linear_coefficients(graph).map_err(LoadError::Unsupported)?;
    }
    let mut onnx = tract_onnx::onnx();
    onnx_ml::register(&mut onnx.op_register);
    let model = onnx.model_for_proto_model(proto).map_err(|e| LoadError::Unsupported(tract_message(&e)))?;
    let outlets = model.input_outlets().map_err(|e| LoadError::Unsupported(tract_message(&e)))?;
    let names: Vec<&str> = outlets.iter().map(|o| model.node(o.node).name.as_str()).collect();
    let declared: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    if names != declared {
        return Err(LoadError::Unsupported(format!(
            "tract sees the inputs {names:?} where the graph declares {declared:?}"
        )));
    }
    let plans = PlanCache::new(cache_size, metrics);
    match symbolic(model.clone(), specs) {
        Ok((typed, symbols, batch)) => {
            let output_batch = (0..typed.output_outlets().map_or(0, |o| o.len()))
                .map(|ix| {
                    typed.output_fact(ix).is_ok_and(|f| {
                        matches!((f.shape.iter().next(), &batch), (Some(TDim::Sym(s)), Some(b)) if s == b)
                    })
                })
                .collect();
            let source = Source::Symbolic { model: typed, symbols };
            Ok(Loaded { engine: TractEngine { source, plans }, output_batch: Some(output_batch) })
        }
        Err(e) => {
            tracing::info!(
                reason = %tract_message(&e),
                "tract cannot analyse the model with symbolic dimensions; it is analysed per input shape"
            );
            Ok(Loaded {
                engine: TractEngine { source: Source::Concrete { model }, plans },
                output_batch: None,
            })
        }
    }
}

type Symbolic = (TypedModel, Vec<Vec<Option<Symbol>>>, Option<Symbol>);

/// Types and declutters the model with a symbol for every dimension the inputs leave open: one
/// batch symbol shared by every input, and one per other name.
fn symbolic(mut model: InferenceModel, specs: &[TensorSpec]) -> TractResult<Symbolic> {
    let batch = specs.iter().any(|s| s.shape.contains(&Dim::Batch)).then(|| model.sym("N"));
    let mut symbols = Vec::with_capacity(specs.len());
    for (ix, spec) in specs.iter().enumerate() {
        let mut dims = TVec::new();
        let mut syms = Vec::new();
        for d in &spec.shape {
            let sym = match d {
                Dim::Fixed(n) => {
                    dims.push(GenericFactoid::Only(TDim::Val(*n as i64)));
                    syms.push(None);
                    continue;
                }
                Dim::Batch => batch.clone().context("batch symbol")?,
                Dim::Free(name) => model.sym(name),
            };
            dims.push(GenericFactoid::Only(TDim::Sym(sym.clone())));
            syms.push(Some(sym));
        }
        model.set_input_fact(ix, InferenceFact::dt_shape(spec.datum_type, ShapeFactoid::closed(dims)))?;
        symbols.push(syms);
    }
    let typed = model.into_typed()?.into_decluttered()?;
    Ok((typed, symbols, batch))
}

impl TractEngine {
    /// The plan for inputs of these shapes, from the cache or compiled now. An error means the
    /// model cannot run inputs of these shapes.
    fn plan(&self, inputs: &[Tensor], key: &ShapeKey) -> TractResult<Plan> {
        self.plans.get_or_build(key, || {
            let optimized = match &self.source {
                Source::Symbolic { model, symbols } => {
                    let mut values: HashMap<Symbol, TDim> = HashMap::new();
                    for (shape, syms) in key.iter().zip(symbols) {
                        for (n, sym) in shape.iter().zip(syms) {
                            let Some(sym) = sym else { continue };
                            let value = TDim::Val(*n as i64);
                            if let Some(previous) = values.insert(sym.clone(), value.clone())
                                && previous != value
                            {
                                bail!(
                                    "dimension `{sym}` is {previous} in one input and {value} in another; inputs must agree on it"
                                );
                            }
                        }
                    }
                    model.set_symbols(&values)?.into_optimized()?
                }
                Source::Concrete { model } => {
                    let mut model = model.clone();
                    for (ix, t) in inputs.iter().enumerate() {
                        model.set_input_fact(ix, InferenceFact::dt_shape(t.datum_type(), t.shape()))?;
                    }
                    model.into_optimized()?
                }
            };
            super::kernels::swap_in(optimized)?.into_runnable()
        })
    }

    /// Runs inputs in signature order. `Err(Shape)` when no plan can be built for their shapes.
    pub(super) fn run(&self, inputs: TVec<Tensor>) -> Result<TVec<Tensor>, TractRunError> {
        let key: ShapeKey = inputs.iter().map(|t| t.shape().into()).collect();
        let plan = self.plan(&inputs, &key).map_err(|e| TractRunError::Shape(tract_message(&e), key))?;
        let out = plan
            .run(inputs.into_iter().map(TValue::from).collect())
            .map_err(|e| TractRunError::Failed(tract_message(&e)))?;
        out.into_iter()
            .map(output_tensor)
            .collect::<TractResult<_>>()
            .map_err(|e| TractRunError::Failed(tract_message(&e)))
    }
}

/// Why tract did not run: the shapes (given) have no plan, or the run itself failed.
pub(super) enum TractRunError {
    Shape(String, ShapeKey),
    Failed(String),
}

/// An output as served: tract computes some integer outputs (shapes, counts) as symbolic
/// dimensions, which are plain `INT64` once concrete.
fn output_tensor(v: TValue) -> TractResult<Tensor> {
    let t = v.into_tensor();
    if t.datum_type() == DatumType::TDim { t.cast_to::<i64>().map(|c| c.into_owned()) } else { Ok(t) }
}
