//! Compiled tract plans, one per distinct set of input shapes, in a bounded LRU cache shared
//! across threads.
//!
//! A plan is specialised on concrete shapes: every symbolic dimension (batch, image size,
//! sequence length) is fixed, which lets tract fold shape computations and pick its fastest
//! kernels, and lets models run whose shapes tract cannot follow symbolically.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;

use crate::metrics::ShapeCacheMetrics;

pub(super) type Plan = Arc<TypedSimplePlan>;

/// The shapes of a run's inputs, in signature order: what a plan is specialised on.
pub(super) type ShapeKey = Vec<TVec<usize>>;

/// At most `capacity` plans, the least recently used evicted first. A plan in use by a run
/// lives on until that run ends.
pub(super) struct PlanCache {
    capacity: usize,
    state: Mutex<Lru>,
    metrics: ShapeCacheMetrics,
}

#[derive(Default)]
struct Lru {
    tick: u64,
    plans: HashMap<ShapeKey, (Plan, u64)>,
}

impl PlanCache {
    pub(super) fn new(capacity: usize, metrics: ShapeCacheMetrics) -> PlanCache {
        PlanCache { capacity: capacity.max(1), state: Mutex::new(Lru::default()), metrics }
    }

    /// The plan for `key`, built with `build` on a miss (outside the lock: a slow compilation
    /// does not hold up runs of other shapes).
    pub(super) fn get_or_build(
        &self,
        key: &ShapeKey,
        build: impl FnOnce() -> TractResult<Plan>,
    ) -> TractResult<Plan> {
        if let Some(plan) = self.lookup(key) {
            self.metrics.hits.inc();
            return Ok(plan);
        }
        self.metrics.misses.inc();
        let plan = build()?;
        let mut lru = self.state.lock().map_err(|_| anyhow::anyhow!("plan cache poisoned"))?;
        lru.tick += 1;
        let tick = lru.tick;
        lru.plans.insert(key.clone(), (plan.clone(), tick));
        while lru.plans.len() > self.capacity {
            let oldest = lru.plans.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    lru.plans.remove(&k);
                    self.metrics.evictions.inc();
                }
                None => break,
            }
        }
        self.metrics.plans.set(lru.plans.len() as i64);
        Ok(plan)
    }

    fn lookup(&self, key: &ShapeKey) -> Option<Plan> {
        let mut lru = self.state.lock().ok()?;
        lru.tick += 1;
        let tick = lru.tick;
        let entry = lru.plans.get_mut(key)?;
        entry.1 = tick;
        Some(entry.0.clone())
    }

    #[cfg(test)]
    fn keys(&self) -> Vec<ShapeKey> {
        let lru = self.state.lock().unwrap();
        let mut keys: Vec<ShapeKey> = lru.plans.keys().cloned().collect();
        keys.sort();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> TractResult<Plan> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1]))?;
        model.select_output_outlets(&[x])?;
        model.into_runnable()
    }

    fn key(n: usize) -> ShapeKey {
        vec![tvec![n]]
    }

    #[test]
    fn the_least_recently_used_plan_is_evicted_and_hits_and_misses_are_counted() {
        let metrics = ShapeCacheMetrics::default();
        let cache = PlanCache::new(2, metrics.clone());
        cache.get_or_build(&key(1), plan).unwrap();
        cache.get_or_build(&key(2), plan).unwrap();
        // 1 is used again, so 2 is the least recently used when 3 arrives.
        cache.get_or_build(&key(1), || panic!("cached")).unwrap();
        cache.get_or_build(&key(3), plan).unwrap();
        assert_eq!(cache.keys(), vec![key(1), key(3)]);
        assert_eq!(metrics.hits.get(), 1);
        assert_eq!(metrics.misses.get(), 3);
        assert_eq!(metrics.evictions.get(), 1);
        assert_eq!(metrics.plans.get(), 2);
    }

    #[test]
    fn a_failed_build_is_not_cached() {
        let cache = PlanCache::new(2, ShapeCacheMetrics::default());
        assert!(cache.get_or_build(&key(1), || anyhow::bail!("no")).is_err());
        assert!(cache.keys().is_empty());
        cache.get_or_build(&key(1), plan).unwrap();
        assert_eq!(cache.keys(), vec![key(1)]);
    }
}
