//! Dynamic batching: concurrent requests are merged into one model execution.
//!
//! One task owns the queue. When an inference worker is free it takes the oldest request and
//! its share of the requests queued behind it (the queue divided among the free workers), up
//! to `max_batch` rows, waiting at most `timeout` (counted from the first request's arrival)
//! for more. So an idle server adds no latency and a busy
//! one runs large batches. Requests are only merged when the model has a free, padded batch
//! dimension; otherwise each runs alone, still bounded by the worker count.
//!
//! A model that runs in less than [`INLINE_MAX`] is run on the request's own task when nothing
//! is queued or running: handing it to the queue task and a blocking thread and back costs more
//! than the inference (three thread wake-ups, ~50 µs on a 2-core machine). Under load, requests
//! still meet in the queue and are merged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The message says what failed: the inputs' shapes and what the model accepts, or the
    /// engine's error on these values.
    #[error("{0}")]
    Failed(String),
    #[error("the runtime is shutting down")]
    Closed,
}

/// The longest inference run on a request's task instead of an inference thread: tokio asks
/// for no more than 10 to 100 µs between awaits.
pub const INLINE_MAX: Duration = Duration::from_micros(100);

/// How requests are batched and how many batches run at once.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch: usize,
    pub timeout: Duration,
    pub workers: usize,
    pub max_queue: usize,
    /// Run a request on its own task when nothing is queued or running (for models faster
    /// than [`INLINE_MAX`]).
    pub inline: bool,
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
    /// One permit per inference worker, shared by the queue task and inline runs.
    workers: Arc<Semaphore>,
    /// Executions under way, queued or inline.
    running: Arc<AtomicUsize>,
    inline: bool,
    max_queue: usize,
    metrics: Metrics,
}

impl Batcher {
    /// Starts the batching task for `model` on the current tokio runtime.
    pub fn start(model: Arc<Model>, config: BatchConfig, metrics: Metrics) -> Batcher {
        let max_queue = config.max_queue.max(1);
        let (tx, rx) = mpsc::channel(max_queue);
        let mergeable = model.batch_mode() == BatchMode::Dynamic { padded: true } && config.max_batch > 1;
        let workers = Arc::new(Semaphore::new(config.workers.max(1)));
        let running = Arc::new(AtomicUsize::new(0));
        let queue = run_queue(
            rx,
            model.clone(),
            workers.clone(),
            running.clone(),
            config,
            mergeable,
            metrics.clone(),
        );
        tokio::spawn(queue);
        Batcher { tx, model, workers, running, inline: config.inline, max_queue, metrics }
    }

    /// Runs `inputs` (checked against the model's signature), possibly merged with others.
    pub async fn infer(&self, inputs: TVec<Tensor>) -> Result<TVec<Tensor>, InferError> {
        let (reply, rx) = oneshot::channel();
        let rows = self.model.batch_of(&inputs);
        if self.inline
            && self.tx.capacity() == self.tx.max_capacity()
            && let Some(_running) = Running::claim_idle(&self.running)
            && let Ok(_permit) = self.workers.try_acquire()
        {
            self.metrics.batch_size.observe(rows as f64);
            return run_timed(&self.model, inputs, &self.metrics);
        }
        let job = Job { inputs, rows, enqueued: Instant::now(), reply };
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InferError::QueueFull(self.max_queue),
            mpsc::error::TrySendError::Closed(_) => InferError::Closed,
        })?;
        self.metrics.queue_depth.inc();
        rx.await.map_err(|_| InferError::Closed)?
    }
}

/// Counts one execution for as long as it lives.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn start(count: &Arc<AtomicUsize>) -> Running {
        count.fetch_add(1, Ordering::AcqRel);
        Running(count.clone())
    }

    /// Counts an execution only if none is under way.
    fn claim_idle(count: &Arc<AtomicUsize>) -> Option<Running> {
        count.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).ok().map(|_| Running(count.clone()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn run_queue(
    mut rx: mpsc::Receiver<Job>,
    model: Arc<Model>,
    workers: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    config: BatchConfig,
    mergeable: bool,
    metrics: Metrics,
) {
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
            if rows + job.rows > limit || !same_row_shapes(&jobs[0].inputs, &job.inputs) {
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
        let counted = Running::start(&running);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _counted = counted;
            execute(&model, jobs, &metrics);
        });
    }
}

/// Whether two requests' inputs differ only in their number of rows, so that they can be stacked
/// (a model with free dimensions, say an image size, gets requests of many shapes).
fn same_row_shapes(a: &[Tensor], b: &[Tensor]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.shape().get(1..) == y.shape().get(1..))
}

/// Runs the jobs as one batch and answers each with its rows of the outputs. If the merged
/// batch fails, each job is retried alone so that one bad request does not fail the others.
fn execute(model: &Model, mut jobs: Vec<Job>, metrics: &Metrics) {
    let timed = |inputs: TVec<Tensor>| run_timed(model, inputs, metrics);
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

/// Runs one (possibly merged) batch, recording its time.
fn run_timed(model: &Model, inputs: TVec<Tensor>, metrics: &Metrics) -> Result<TVec<Tensor>, InferError> {
    let start = Instant::now();
    let out = model.run(inputs);
    metrics.inference_seconds.observe(start.elapsed().as_secs_f64());
    out.map_err(|e| InferError::Failed(e.0))
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;
    use crate::model::ModelOptions;

    fn batcher(inline: bool) -> (Batcher, TVec<Tensor>) {
        let model = Model::load(&test_support::model_path("mlp"), ModelOptions::default()).unwrap();
        let inputs = model.sample_inputs().unwrap();
        let config = BatchConfig { max_batch: 8, timeout: Duration::ZERO, workers: 2, max_queue: 16, inline };
        (Batcher::start(Arc::new(model), config, Metrics::new()), inputs)
    }

    #[tokio::test]
    async fn an_idle_batcher_runs_a_fast_model_on_the_calling_task() {
        let (batcher, inputs) = batcher(true);
        // Answered without yielding: no hand-off to the queue task or an inference thread.
        let answer = batcher.infer(inputs.clone()).now_or_never().expect("answered inline");
        assert_eq!(answer.unwrap()[0].shape(), &[1, 10]);
        // With every worker busy, the request waits in the queue instead.
        let busy = batcher.workers.clone().acquire_many_owned(2).await.unwrap();
        let queued = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.infer(inputs).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!queued.is_finished(), "ran although no worker was free");
        drop(busy);
        assert_eq!(queued.await.unwrap().unwrap()[0].shape(), &[1, 10]);
    }

    #[test]
    fn only_requests_whose_rows_have_the_same_shape_are_merged() {
        let image = |rows: usize, h: usize| tvec![Tensor::zero::<f32>(&[rows, 3, h, 32]).unwrap()];
        assert!(same_row_shapes(&image(1, 32), &image(4, 32)));
        assert!(!same_row_shapes(&image(1, 32), &image(1, 64)));
    }

    #[tokio::test]
    async fn without_inline_every_request_goes_through_the_queue() {
        let (batcher, inputs) = batcher(false);
        assert!(batcher.infer(inputs.clone()).now_or_never().is_none());
        assert_eq!(batcher.infer(inputs).await.unwrap()[0].shape(), &[1, 10]);
    }
}
