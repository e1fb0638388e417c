//! Compiled execution plans, specialised per batch size and shared across threads.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use tract_onnx::prelude::*;

use super::signature::{BatchMode, Dim, TensorSpec};

/// At most this many plans specialised on request-given dimensions are kept; beyond it, the
/// symbolic plan serves (slower, but memory stays bounded whatever clients send).
const MAX_SPECIALISED: usize = 32;

type Plan = Arc<TypedSimplePlan>;

pub(super) struct Plans {
    /// The decluttered model with its symbols still free.
    model: TypedModel,
    batch: Option<Symbol>,
    mode: BatchMode,
    /// Plans keyed by the values of the model's symbols, in `symbols` order.
    specialised: RwLock<HashMap<Vec<i64>, Plan>>,
    /// The plan for any value of the symbols, compiled on first need.
    symbolic: OnceLock<Plan>,
}

impl Plans {
    pub(super) fn new(model: TypedModel, batch: Option<Symbol>, mode: BatchMode) -> Plans {
        Plans { model, batch, mode, specialised: RwLock::new(HashMap::new()), symbolic: OnceLock::new() }
    }

    /// The plan for `rows` rows of a model with a batch dimension and nothing else free.
    pub(super) fn for_batch(&self, rows: usize) -> TractResult<Plan> {
        match &self.batch {
            Some(b) if matches!(self.mode, BatchMode::Dynamic { .. }) => {
                self.specialised(vec![rows as i64], || HashMap::from([(b.clone(), TDim::Val(rows as i64))]))
            }
            _ => self.specialised(vec![], HashMap::new),
        }
    }

    /// The plan for inputs whose shapes were checked against `specs`: specialised on the
    /// values the inputs give the model's symbols.
    pub(super) fn for_inputs(&self, inputs: &[Tensor], specs: &[TensorSpec]) -> TractResult<Plan> {
        if matches!(self.mode, BatchMode::Dynamic { padded: false }) {
            return self.symbolic();
        }
        let mut values: HashMap<Symbol, TDim> = HashMap::new();
        for (tensor, spec) in inputs.iter().zip(specs) {
            for (dim, actual) in spec.shape.iter().zip(tensor.shape()) {
                let symbol = match dim {
                    Dim::Batch => self.batch.clone(),
                    Dim::Free(TDim::Sym(s)) => Some(s.clone()),
                    _ => None,
                };
                if let Some(s) = symbol {
                    values.insert(s, TDim::Val(*actual as i64));
                }
            }
        }
        let mut key: Vec<(String, i64)> =
            values.iter().map(|(s, v)| (s.to_string(), v.to_i64().unwrap_or(-1))).collect();
        key.sort();
        let key: Vec<i64> = key.into_iter().map(|(_, v)| v).collect();
        let cached = self.specialised.read().map(|m| m.len()).unwrap_or(0);
        let known = self.specialised.read().map(|m| m.contains_key(&key)).unwrap_or(false);
        if !known && cached >= MAX_SPECIALISED {
            return self.symbolic();
        }
        self.specialised(key, || values)
    }

    fn specialised(
        &self,
        key: Vec<i64>,
        values: impl FnOnce() -> HashMap<Symbol, TDim>,
    ) -> TractResult<Plan> {
        if let Some(plan) = self.specialised.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(plan);
        }
        let values = values();
        let model = if values.is_empty() { self.model.clone() } else { self.model.set_symbols(&values)? };
        let plan = super::kernels::swap_in(model.into_optimized()?)?.into_runnable()?;
        let mut map = self.specialised.write().map_err(|_| anyhow::anyhow!("plan cache poisoned"))?;
        Ok(map.entry(key).or_insert(plan).clone())
    }

    fn symbolic(&self) -> TractResult<Plan> {
        if let Some(plan) = self.symbolic.get() {
            return Ok(plan.clone());
        }
        let plan = super::kernels::swap_in(self.model.clone().into_optimized()?)?.into_runnable()?;
        Ok(self.symbolic.get_or_init(|| plan).clone())
    }
}
