//! Dynamic batching: concurrent requests are merged into one model execution.
//!
//! One task owns the queue. When an inference worker is free it takes the oldest request and
//! its share of the requests queued behind it (the queue divided among the free workers), up
//! to `max_batch` rows, waiting at most `timeout` (counted from the first request's arrival)
//! for more. So an idle server adds no latency and a busy
//! one runs large batches. Requests are only merged when the model has a free, padded batch
//! dimension; otherwise each runs alone, still bounded by the worker count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tract_onnx::prelude::*;

use crate::metrics::Metrics;
use crate::model::{BatchMode, Model};

/// Why an inference did not produce outputs.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("the server is at capacity ({0} requests waiting); retry later")]
    QueueFull(usize),
    #[error("the model failed on this input: {0}")]
    Failed(String),
    #[error("the runtime is shutting down")]
    Closed,
}

/// How requests are batched and how many batches run at once.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch: usize,
    pub timeout: Duration,
    pub workers: usize,
    pub max_queue: usize,
}

struct Job {
    inputs: TVec<Tensor>,
    rows: usize,
    enqueued: Instant,
    reply: oneshot::Sender<Result<TVec<Tensor>, InferError>>,
}

/// The queue in front of a model. Cloning shares the queue.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    model: Arc<Model>,
    max_queue: usize,
    metrics: Metrics,
}

impl Batcher {
    /// Starts the batching task for `model` on the current tokio runtime.
    pub fn start(model: Arc<Model>, config: BatchConfig, metrics: Metrics) -> Batcher {
        let max_queue = config.max_queue.max(1);
        let (tx, rx) = mpsc::channel(max_queue);
        let mergeable = model.batch_mode() == BatchMode::Dynamic { padded: true } && config.max_batch > 1;
        tokio::spawn(run_queue(rx, model.clone(), config, mergeable, metrics.clone()));
        Batcher { tx, model, max_queue, metrics }
    }

    /// Runs `inputs` (checked against the model's signature), possibly merged with others.
    pub async fn infer(&self, inputs: TVec<Tensor>) -> Result<TVec<Tensor>, InferError> {
        let (reply, rx) = oneshot::channel();
        let rows = self.model.batch_of(&inputs);
        let job = Job { inputs, rows, enqueued: Instant::now(), reply };
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InferError::QueueFull(self.max_queue),
            mpsc::error::TrySendError::Closed(_) => InferError::Closed,
        })?;
        self.metrics.queue_depth.inc();
        rx.await.map_err(|_| InferError::Closed)?
    }
}

async fn run_queue(
    mut rx: mpsc::Receiver<Job>,
    model: Arc<Model>,
    config: BatchConfig,
    mergeable: bool,
    metrics: Metrics,
) {
    let workers = Arc::new(Semaphore::new(config.workers.max(1)));
    let mut carried: Option<Job> = None;
    loop {
        let Ok(permit) = workers.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut rows = first.rows;
        let deadline = tokio::time::Instant::from_std(first.enqueued + config.timeout);
        // Without a timeout, take a fair share of what is queued, so that a burst keeps every
        // free worker busy instead of piling onto the first one. With a timeout, wait for a
        // full batch as asked.
        let limit = if config.timeout.is_zero() {
            let free = workers.available_permits() + 1;
            config.max_batch.min(rows + rx.len().div_ceil(free))
        } else {
            config.max_batch
        };
        let mut jobs = vec![first];
        while mergeable && rows < limit {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) if !config.timeout.is_zero() => {
                    tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten()
                }
                Err(_) => None,
            };
            let Some(job) = next else { break };
            if rows + job.rows > limit {
                carried = Some(job);
                break;
            }
            rows += job.rows;
            jobs.push(job);
        }
        metrics.queue_depth.sub(jobs.len() as i64);
        metrics.batch_size.observe(rows as f64);
        let model = model.clone();
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            execute(&model, jobs, &metrics);
        });
    }
}

/// Runs the jobs as one batch and answers each with its rows of the outputs. If the merged
/// batch fails, each job is retried alone so that one bad request does not fail the others.
fn execute(model: &Model, mut jobs: Vec<Job>, metrics: &Metrics) {
    let timed = |inputs: TVec<Tensor>| {
        let start = Instant::now();
        let out = model.run(inputs);
        metrics.inference_seconds.observe(start.elapsed().as_secs_f64());
        out.map_err(|e| InferError::Failed(format!("{e:#}")))
    };
    if jobs.len() == 1 {
        if let Some(job) = jobs.pop() {
            let _ = job.reply.send(timed(job.inputs));
        }
        return;
    }
    let merged: TractResult<TVec<Tensor>> = (0..jobs[0].inputs.len())
        .map(|ix| {
            let parts: Vec<&Tensor> = jobs.iter().map(|j| &j.inputs[ix]).collect();
            Tensor::stack_tensors(0, &parts)
        })
        .collect();
    let outputs = match merged.map_err(|e| InferError::Failed(format!("{e:#}"))).and_then(&timed) {
        Ok(outputs) => outputs,
        Err(_) => {
            for job in jobs {
                let _ = job.reply.send(timed(job.inputs));
            }
            return;
        }
    };
    let mut start = 0;
    for job in jobs {
        let rows = job.rows;
        let mine: Result<TVec<Tensor>, InferError> = outputs
            .iter()
            .map(|t| t.slice(0, start, start + rows))
            .collect::<TractResult<_>>()
            .map_err(|e| InferError::Failed(format!("{e:#}")));
        start += rows;
        let _ = job.reply.send(mine);
    }
}
