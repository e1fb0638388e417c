//! Serving benchmark: tract in-process vs onnxruntime in-process, `platform-runtime` over HTTP
//! (dynamic batching on and off), the FastAPI + uvicorn + onnxruntime baseline and BentoML with
//! onnxruntime and its adaptive batching, on the test MLP and CNN, batch 1 per request, at concurrency 1, 4 and 16; on the test CNN also the
//! onnxruntime engine with batching on and off. Then two real models from PyPI wheels (the
//! PP-OCRv4 text detector, a CNN, and Silero VAD's LSTM over a sequence), on both engines:
//! in-process (tract, the runtime's onnxruntime engine, and onnxruntime from Python) and over
//! HTTP (Open Inference Protocol V2 with binary tensors, as tritonclient sends them).
//!
//!     cargo bench -p runtime --bench serving
//!
//! Needs the Python baseline environment in `.venv` at the repository root
//! (`python3 -m venv .venv && .venv/bin/pip install -r bench/requirements.txt`), and for the
//! BentoML rows (skipped without it) BentoML in its own `.venv-bentoml`
//! (`python3 -m venv .venv-bentoml && .venv-bentoml/bin/pip install -r bench/requirements-bentoml.txt`).
//!
//! Environment: `BENCH_SECONDS` (measuring time per cell, default 3), `BENCH_WARMUP_SECONDS`
//! (default 1), `BENCH_MODELS` (comma-separated subset of `mlp,cnn,ocr_det,vad_sequence`). The
//! real models and the onnxruntime library come from `tests/models/real_models.py`.
//!
//! The load generator (`test_support::load`, shared with `control-plane/benches/dataplane.rs`)
//! runs in this process: exactly C request loops, each on its own keep-alive
//! HTTP/1.1 connection to 127.0.0.1, each sending its next request when the previous answer has
//! arrived. Every latency that completes inside the measuring window is recorded. The report
//! (a markdown table and the goals with PASS/FAIL) is printed and written to
//! `target/bench/serving.md`. A missed goal never fails the process.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use runtime::model::{Dim, EngineChoice, Model, ModelOptions, OnnxruntimeOptions};
use test_support::load::{self, CpuSnapshot, CpuUse, Server};
use tract_onnx::prelude::*;

const CONCURRENCIES: [usize; 3] = [1, 4, 16];
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

const TRACT: &str = "tract in-process";
const ORT: &str = "onnxruntime in-process";
const RUNTIME_ON: &str = "platform-runtime, batching on";
const RUNTIME_OFF: &str = "platform-runtime, batching off";
const FASTAPI: &str = "FastAPI + uvicorn (2 workers)";
const BENTOML: &str = "BentoML, adaptive batching (2 workers)";
const ORT_ENGINE: &str = "onnxruntime engine in-process";
const RUNTIME_TRACT: &str = "platform-runtime on tract";
const RUNTIME_ORT: &str = "platform-runtime on onnxruntime";
const RUNTIME_ORT_ON: &str = "platform-runtime on onnxruntime, batching on";
const RUNTIME_ORT_OFF: &str = "platform-runtime on onnxruntime, batching off";

/// The test models and the real ones, in the order they are measured.
const MODELS: [&str; 4] = ["mlp", "cnn", "ocr_det", "vad_sequence"];
const REAL_MODELS: [&str; 2] = ["ocr_det", "vad_sequence"];

struct Settings {
    seconds: f64,
    warmup: f64,
    models: Vec<String>,
    root: PathBuf,
    out_dir: PathBuf,
    /// Where `tests/models/real_models.py` put the real models, and the onnxruntime library.
    real_dir: PathBuf,
    onnxruntime_lib: PathBuf,
}

/// One measured cell of the table.
struct Cell {
    model: String,
    contender: &'static str,
    concurrency: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
    cpu: CpuUse,
    /// platform-runtime only, from its `/metrics` over the measuring window: mean rows per
    /// model execution, and cores spent inside model executions.
    batching: Option<(f64, f64)>,
}

/// tract in-process, one thread, several rows per run: what dynamic batching can gain.
struct BatchCost {
    model: String,
    engine: &'static str,
    rows: usize,
    p50_us: f64,
}

fn main() {
    // `cargo bench` passes `--bench`; there are no other arguments.
    if let Err(e) = run() {
        eprintln!("serving bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let settings = settings()?;
    std::fs::create_dir_all(settings.out_dir.join("logs"))?;
    let venv = settings.root.join(".venv/bin");
    ensure!(
        venv.join("python").exists() && venv.join("uvicorn").exists(),
        "the Python baseline needs {}: run `python3 -m venv .venv && .venv/bin/pip install -r bench/requirements.txt` at the repository root",
        venv.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .enable_all()
        .build()?;

    eprintln!(
        "serving bench: {} s per cell after {} s of warm-up, models {:?}",
        settings.seconds, settings.warmup, settings.models
    );
    let mut cells = Vec::new();
    let mut costs = Vec::new();
    for name in &settings.models {
        if REAL_MODELS.contains(&name.as_str()) {
            bench_real_model(&settings, &rt, name, &mut cells)?;
        } else {
            bench_model(&settings, &rt, name, &mut cells, &mut costs)?;
        }
    }
    let report = report(&settings, &cells, &costs);
    println!("\n{report}");
    let path = settings.out_dir.join("serving.md");
    std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("serving bench: report written to {}", path.display());
    Ok(())
}

fn settings() -> anyhow::Result<Settings> {
    let float = |name: &str, default: f64| load::env_number(name, default, 600.0).map_err(anyhow::Error::msg);
    let models = match std::env::var("BENCH_MODELS") {
        Ok(v) if !v.trim().is_empty() => {
            let list: Vec<String> =
                v.split(',').map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect();
            for m in &list {
                ensure!(
                    MODELS.contains(&m.as_str()),
                    "BENCH_MODELS: unknown model {m:?} ({})",
                    MODELS.join(", ")
                );
            }
            list
        }
        _ => MODELS.iter().map(|m| m.to_string()).collect(),
    };
    let (real_dir, manifest) = test_support::real_models();
    let onnxruntime_lib = PathBuf::from(manifest["onnxruntime_lib"].as_str().context("onnxruntime_lib")?);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("no workspace root")?.to_path_buf();
    Ok(Settings {
        seconds: float("BENCH_SECONDS", 3.0)?,
        warmup: float("BENCH_WARMUP_SECONDS", 1.0)?,
        models,
        out_dir: load::report_dir(&root),
        root,
        real_dir,
        onnxruntime_lib,
    })
}

fn bench_model(
    s: &Settings,
    rt: &tokio::runtime::Runtime,
    name: &str,
    cells: &mut Vec<Cell>,
    costs: &mut Vec<BatchCost>,
) -> anyhow::Result<()> {
    let model_path = s.root.join(format!("tests/models/{name}.onnx"));
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.root.join(format!("tests/models/{name}.json")))
            .with_context(|| format!("reading the reference of {name}"))?,
    )?;
    let instance =
        reference["vertex"]["instances"].get(0).cloned().context("the reference has no vertex.instances")?;
    let body = Bytes::from(serde_json::to_vec(&serde_json::json!({ "instances": [instance] }))?);

    // (a) tract in-process.
    let model = Model::load(&model_path, ModelOptions::default())
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", model_path.display()))?;
    model.warm_up().map_err(|e| anyhow::anyhow!("warming up {name}: {e}"))?;
    let input = input_tensor(&model, &instance)?;
    let inputs = tvec![input.clone()];
    for c in CONCURRENCIES {
        eprintln!("serving bench: {name}: {TRACT}, concurrency {c}");
        cells.push(inprocess_cell(s, name, TRACT, &model, &inputs, c));
    }
    for rows in [1, 2, 4, 8, 16, 32] {
        costs.push(batch_cost(s, name, "tract", &model, &input, rows)?);
    }
    drop(model);

    // (a') onnxruntime in-process, one thread.
    eprintln!("serving bench: {name}: {ORT}");
    cells.push(onnxruntime_cell(s, name, &model_path, None)?);

    // The CNN on the onnxruntime engine: its cost per row in a batch, and batching over HTTP.
    if name == "cnn" {
        let model = Model::load(&model_path, onnxruntime_options(s))
            .map_err(|e| anyhow::anyhow!("loading {} on onnxruntime: {e}", model_path.display()))?;
        eprintln!("serving bench: {name}: {ORT_ENGINE}");
        cells.push(inprocess_cell(s, name, ORT_ENGINE, &model, &inputs, 1));
        for rows in [1, 2, 4, 8, 16, 32] {
            costs.push(batch_cost(s, name, "onnxruntime", &model, &input, rows)?);
        }
        drop(model);
    }

    // (b) platform-runtime over HTTP, batching on (the defaults) and off; for the CNN also on
    // the onnxruntime engine.
    let request = Request::vertex(body);
    let mut runs = vec![
        (RUNTIME_ON, "batching-on", vec!["--engine", "tract"], &CONCURRENCIES[..]),
        (RUNTIME_OFF, "batching-off", vec!["--engine", "tract", "--max-batch-size", "1"], &[16][..]),
    ];
    if name == "cnn" {
        runs.push((RUNTIME_ORT_ON, "onnxruntime-batching-on", vec!["--engine", "onnxruntime"], &[16][..]));
        runs.push((
            RUNTIME_ORT_OFF,
            "onnxruntime-batching-off",
            vec!["--engine", "onnxruntime", "--max-batch-size", "1"],
            &[16][..],
        ));
    }
    for (contender, tag, args, concurrencies) in runs {
        let (mut server, port) = start_runtime(s, name, &model_path, contender, tag, &args)?;
        rt.block_on(wait_ready(&mut server, port, "/health", None))?;
        for &c in concurrencies {
            eprintln!("serving bench: {name}: {contender}, concurrency {c}");
            cells.push(rt.block_on(http_cell(s, name, contender, &server, port, &request, c))?);
        }
        drop(server);
    }

    // (c) FastAPI + uvicorn + onnxruntime, 2 workers; (d) BentoML + onnxruntime, 2 workers,
    // adaptive batching (its batchable API answers the bare array of predictions).
    let mut fastapi = Command::new(s.root.join(".venv/bin/uvicorn"));
    fastapi.args(["bench.fastapi_server:app", "--workers", "2", "--host", "127.0.0.1"]);
    let ready = ("/health", "Application startup complete");
    python_server(s, rt, name, &model_path, FASTAPI, fastapi, ready, &request, cells)?;
    let bentoml = s.root.join(".venv-bentoml/bin/bentoml");
    if bentoml.exists() {
        let mut cmd = Command::new(bentoml);
        cmd.args(["serve", "bench.bentoml_service:OnnxModel", "--host", "127.0.0.1"])
            .env("BENTOML_DO_NOT_TRACK", "True")
            .env("BENTOML_HOME", s.out_dir.join("bentoml-home"));
        let request = Request { expect: b"[[", ..request };
        let ready = ("/readyz", "Service OnnxModel initialized");
        python_server(s, rt, name, &model_path, BENTOML, cmd, ready, &request, cells)?;
    } else {
        eprintln!(
            "serving bench: no .venv-bentoml, skipping BentoML: `python3 -m venv .venv-bentoml && .venv-bentoml/bin/pip install -r bench/requirements-bentoml.txt`"
        );
    }
    Ok(())
}

/// A Python server of the model with 2 workers (`cmd`, given `--port` and `MODEL_PATH` here),
/// ready when `ready.0` answers 200 and its log holds `ready.1` once per worker; measured at
/// every concurrency, then stopped with its workers.
#[allow(clippy::too_many_arguments)]
fn python_server(
    s: &Settings,
    rt: &tokio::runtime::Runtime,
    name: &str,
    model_path: &Path,
    contender: &'static str,
    mut cmd: Command,
    ready: (&str, &str),
    request: &Request,
    cells: &mut Vec<Cell>,
) -> anyhow::Result<()> {
    let port = test_support::free_port();
    cmd.args(["--port", &port.to_string()]).env("MODEL_PATH", model_path).current_dir(&s.root);
    let tag = contender.split([' ', ',']).next().unwrap_or("python").to_lowercase();
    let log = s.out_dir.join(format!("logs/{name}-{tag}.log"));
    let mut server = Server::start(contender, cmd, &log).map_err(anyhow::Error::msg)?;
    rt.block_on(wait_ready(&mut server, port, ready.0, Some((ready.1, 2))))?;
    for c in CONCURRENCIES {
        eprintln!("serving bench: {name}: {contender}, concurrency {c}");
        cells.push(rt.block_on(http_cell(s, name, contender, &server, port, request, c))?);
    }
    Ok(())
}

fn onnxruntime_options(s: &Settings) -> ModelOptions {
    ModelOptions {
        engine: EngineChoice::Onnxruntime,
        onnxruntime: OnnxruntimeOptions {
            library: Some(s.onnxruntime_lib.clone()),
            sessions: 1,
            accelerator: None,
        },
        ..ModelOptions::default()
    }
}

/// Starts `platform-runtime` on a model with `args` (besides its defaults) on a free port.
fn start_runtime(
    s: &Settings,
    name: &str,
    model_path: &Path,
    contender: &'static str,
    tag: &str,
    args: &[&str],
) -> anyhow::Result<(Server, u16)> {
    let port = test_support::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_platform-runtime"));
    cmd.arg("--model")
        .arg(model_path)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--onnxruntime-lib")
        .arg(&s.onnxruntime_lib)
        .args(args);
    for var in [
        "AIP_PREDICT_ROUTE",
        "AIP_HEALTH_ROUTE",
        "AIP_ACCELERATOR_TYPE",
        "PLATFORM_MAX_BATCH_SIZE",
        "PLATFORM_BATCH_TIMEOUT",
        "PLATFORM_WORKERS",
        "PLATFORM_MAX_QUEUE",
        "PLATFORM_MAX_INSTANCES",
        "PLATFORM_SHAPE_CACHE_SIZE",
    ] {
        cmd.env_remove(var);
    }
    let log = s.out_dir.join(format!("logs/{name}-runtime-{tag}.log"));
    Ok((Server::start(contender, cmd, &log).map_err(anyhow::Error::msg)?, port))
}

/// A real model from a PyPI wheel, with the inputs of its reference file: in-process on tract,
/// on the runtime's onnxruntime engine and on onnxruntime from Python (one thread each), then
/// over HTTP on each engine at concurrency 1 (V2 with binary tensors).
fn bench_real_model(
    s: &Settings,
    rt: &tokio::runtime::Runtime,
    name: &str,
    cells: &mut Vec<Cell>,
) -> anyhow::Result<()> {
    let model_path = s.real_dir.join(format!("{name}.onnx"));
    let reference_path = s.real_dir.join(format!("{name}.json"));
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&reference_path).with_context(|| format!("reading {}", reference_path.display()))?,
    )?;
    let tract = Model::load(&model_path, ModelOptions::default())
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", model_path.display()))?;
    let names: Vec<String> = tract.inputs().iter().map(|i| i.name.clone()).collect();
    let inputs = reference_inputs(&reference, &names)?;
    ensure!(tract.run(inputs.clone()).is_ok(), "{name} does not run on tract");
    eprintln!("serving bench: {name}: {TRACT}");
    cells.push(inprocess_cell(s, name, TRACT, &tract, &inputs, 1));
    drop(tract);

    let ort = Model::load(&model_path, onnxruntime_options(s))
        .map_err(|e| anyhow::anyhow!("loading {} on onnxruntime: {e}", model_path.display()))?;
    eprintln!("serving bench: {name}: {ORT_ENGINE}");
    cells.push(inprocess_cell(s, name, ORT_ENGINE, &ort, &inputs, 1));
    drop(ort);

    eprintln!("serving bench: {name}: {ORT}");
    cells.push(onnxruntime_cell(s, name, &model_path, Some(&reference_path))?);

    let request = Request::v2_binary(&reference, &names)?;
    for (contender, engine) in [(RUNTIME_TRACT, "tract"), (RUNTIME_ORT, "onnxruntime")] {
        let (mut server, port) =
            start_runtime(s, name, &model_path, contender, engine, &["--engine", engine])?;
        rt.block_on(wait_ready(&mut server, port, "/health", None))?;
        eprintln!("serving bench: {name}: {contender}, concurrency 1");
        cells.push(rt.block_on(http_cell(s, name, contender, &server, port, &request, 1))?);
        drop(server);
    }
    Ok(())
}

/// The tensors of a reference file's `inputs`, in the model's input order (`names`).
fn reference_inputs(reference: &serde_json::Value, names: &[String]) -> anyhow::Result<TVec<Tensor>> {
    names
        .iter()
        .map(|name| {
            let t = &reference["inputs"][name];
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .context("shape")?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize).context("dimension"))
                .collect::<anyhow::Result<_>>()?;
            let data = t["data"].as_array().context("data")?;
            match t["datatype"].as_str() {
                Some("FP32") => {
                    let v: Vec<f32> = data.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect();
                    Ok(Tensor::from_shape(&shape, &v)?)
                }
                Some("INT64") => {
                    let v: Vec<i64> = data.iter().map(|x| x.as_i64().unwrap_or(0)).collect();
                    Ok(Tensor::from_shape(&shape, &v)?)
                }
                other => bail!("unsupported datatype {other:?} in the reference"),
            }
        })
        .collect()
}

/// What a load generator sends, and the marker of a good answer.
#[derive(Clone)]
struct Request {
    path: &'static str,
    content_type: &'static str,
    json_length: Option<usize>,
    body: Bytes,
    expect: &'static [u8],
}

impl Request {
    fn vertex(body: Bytes) -> Request {
        Request {
            path: "/predict",
            content_type: "application/json",
            json_length: None,
            body,
            expect: b"\"predictions\"",
        }
    }

    /// An Open Inference Protocol request with every input and output as binary data.
    fn v2_binary(reference: &serde_json::Value, names: &[String]) -> anyhow::Result<Request> {
        let mut header_inputs = Vec::new();
        let mut binary = Vec::new();
        for (name, tensor) in names.iter().zip(reference_inputs(reference, names)?) {
            let t = &reference["inputs"][name];
            let bytes = tensor.try_as_plain_ram().map(|p| p.as_bytes().to_vec())?;
            header_inputs.push(serde_json::json!({
                "name": name, "datatype": t["datatype"], "shape": t["shape"],
                "parameters": {"binary_data_size": bytes.len()},
            }));
            binary.extend_from_slice(&bytes);
        }
        let header = serde_json::to_vec(
            &serde_json::json!({"inputs": header_inputs, "parameters": {"binary_data_output": true}}),
        )?;
        let json_length = header.len();
        let mut body = header;
        body.extend_from_slice(&binary);
        Ok(Request {
            path: "/v2/models/model/infer",
            content_type: "application/octet-stream",
            json_length: Some(json_length),
            body: Bytes::from(body),
            expect: b"\"outputs\"",
        })
    }

    /// The request to the server at `base`, for the shared load generator.
    fn at(&self, base: &str) -> load::Request {
        let r = load::Request::post(
            format!("{base}{}", self.path),
            self.content_type,
            self.body.clone(),
            self.expect,
        );
        match self.json_length {
            Some(n) => r.header("inference-header-content-length", &n.to_string()),
            None => r,
        }
    }
}

/// The instance as a batch-1 tensor of the model's (single, FP32) input.
fn input_tensor(model: &Model, instance: &serde_json::Value) -> anyhow::Result<Tensor> {
    ensure!(model.inputs().len() == 1, "the benchmark models have one input");
    let spec = &model.inputs()[0];
    ensure!(spec.datum_type == f32::datum_type(), "the benchmark models take FP32");
    let shape: Vec<usize> = spec
        .shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Batch | Dim::Free(_) => 1,
        })
        .collect();
    let mut data = Vec::new();
    flatten(instance, &mut data)?;
    ensure!(
        data.len() == shape.iter().product::<usize>(),
        "the instance has {} values, the input {:?} needs {}",
        data.len(),
        shape,
        shape.iter().product::<usize>()
    );
    Tensor::from_shape(&shape, &data)
}

fn flatten(v: &serde_json::Value, out: &mut Vec<f32>) -> anyhow::Result<()> {
    match v {
        serde_json::Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        serde_json::Value::Number(n) => {
            out.push(n.as_f64().context("not a number")? as f32);
            Ok(())
        }
        other => bail!("unexpected value in an instance: {other}"),
    }
}

/// Median time of one run of `rows` copies of the instance, on this thread.
fn batch_cost(
    s: &Settings,
    name: &str,
    engine: &'static str,
    model: &Model,
    input: &Tensor,
    rows: usize,
) -> anyhow::Result<BatchCost> {
    let copies = vec![input; rows];
    let batch = Tensor::stack_tensors(0, &copies)?;
    let warm_end = Instant::now() + Duration::from_secs_f64(s.warmup.min(0.3));
    while Instant::now() < warm_end {
        model.run(tvec![batch.clone()])?;
    }
    let end = Instant::now() + Duration::from_secs_f64((s.seconds / 3.0).clamp(0.2, 1.0));
    let mut times = Vec::new();
    while Instant::now() < end {
        let t0 = Instant::now();
        model.run(tvec![batch.clone()])?;
        times.push(t0.elapsed().as_nanos() as u64);
    }
    times.sort_unstable();
    Ok(BatchCost { model: name.to_string(), engine, rows, p50_us: times[times.len() / 2] as f64 / 1e3 })
}

/// `c` OS threads each running the model in a loop.
fn inprocess_cell(
    s: &Settings,
    name: &str,
    contender: &'static str,
    model: &Model,
    inputs: &TVec<Tensor>,
    c: usize,
) -> Cell {
    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(s.warmup);
    let window_end = window_start + Duration::from_secs_f64(s.seconds);
    let (results, cpu) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..c)
            .map(|_| {
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut errors = 0u64;
                    loop {
                        let t0 = Instant::now();
                        if t0 >= window_end {
                            break;
                        }
                        let ok = model.run(inputs.clone()).is_ok();
                        let t1 = Instant::now();
                        if !ok {
                            errors += 1;
                        } else if t1 >= window_start && t1 <= window_end {
                            latencies.push((t1 - t0).as_nanos() as u64);
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        std::thread::sleep(window_start.saturating_duration_since(Instant::now()));
        let cpu0 = CpuSnapshot::take(&[]);
        std::thread::sleep(window_end.saturating_duration_since(Instant::now()));
        let cpu1 = CpuSnapshot::take(&[]);
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        (results, cpu0.usage_until(&cpu1, s.seconds))
    });
    let mut latencies = Vec::new();
    let mut errors = 0;
    for (l, e) in results {
        latencies.extend(l);
        errors += e;
    }
    cell(name, contender, c, latencies, errors, s.seconds, cpu)
}

fn onnxruntime_cell(
    s: &Settings,
    name: &str,
    model_path: &Path,
    inputs: Option<&Path>,
) -> anyhow::Result<Cell> {
    let mut cmd = Command::new(s.root.join(".venv/bin/python"));
    cmd.arg("bench/onnxruntime_inprocess.py").arg(model_path);
    if let Some(inputs) = inputs {
        cmd.arg("--inputs").arg(inputs);
    }
    let output = cmd
        .args(["--seconds", &s.seconds.to_string(), "--warmup", &s.warmup.to_string()])
        .current_dir(&s.root)
        .stdin(Stdio::null())
        .output()
        .context("running bench/onnxruntime_inprocess.py")?;
    ensure!(
        output.status.success(),
        "bench/onnxruntime_inprocess.py failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("bench/onnxruntime_inprocess.py printed no JSON line")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let num = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in {line}"));
    let mean_us = num("mean_us")?;
    Ok(Cell {
        model: name.to_string(),
        contender: ORT,
        concurrency: 1,
        rps: if mean_us > 0.0 { 1e6 / mean_us } else { 0.0 },
        p50_ms: num("p50_us")? / 1000.0,
        p99_ms: num("p99_us")? / 1000.0,
        requests: num("runs")? as u64,
        errors: 0,
        cpu: CpuUse::default(),
        batching: None,
    })
}

/// `c` request loops against `server`, each on its own keep-alive connection.
async fn http_cell(
    s: &Settings,
    name: &str,
    contender: &'static str,
    server: &Server,
    port: u16,
    request: &Request,
    c: usize,
) -> anyhow::Result<Cell> {
    let vertex = request.path == "/predict";
    let request = request.at(&format!("http://127.0.0.1:{port}"));
    // A first request checks the answer's shape.
    let client = load::client(None)?;
    let bytes = request.check(&client).await.map_err(|e| anyhow::anyhow!("{contender}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    if vertex {
        let parsed: serde_json::Value = serde_json::from_slice(&bytes)?;
        let predictions = if contender == BENTOML { &parsed } else { &parsed["predictions"] };
        ensure!(
            predictions.as_array().is_some_and(|p| p.len() == 1),
            "{contender} answered without one prediction: {text}"
        );
    }

    let clients: Vec<reqwest::Client> = (0..c).map(|_| load::client(None)).collect::<Result<_, _>>()?;
    let run = load::Load::start(clients, &request, s.warmup, s.seconds);
    let runtime_metrics = contender.starts_with("platform-runtime");
    tokio::time::sleep_until(run.window_start.into()).await;
    let cpu0 = CpuSnapshot::take(&[server.pid()]);
    let m0 = scrape_batching(&client, port, runtime_metrics).await;
    tokio::time::sleep_until(run.window_end.into()).await;
    let cpu1 = CpuSnapshot::take(&[server.pid()]);
    let m1 = scrape_batching(&client, port, runtime_metrics).await;
    let batching = m0.zip(m1).and_then(|(a, b)| {
        let executions = b[1] - a[1];
        (executions > 0.0).then(|| ((b[0] - a[0]) / executions, (b[2] - a[2]) / s.seconds))
    });
    let out = run.finish().await.map_err(anyhow::Error::msg)?;
    let cpu = cpu0.usage_until(&cpu1, s.seconds);
    let mut cell = cell(name, contender, c, out.latencies, out.errors, s.seconds, cpu);
    cell.batching = batching;
    Ok(cell)
}

/// Waits for `GET health` to answer 200 and, for the Python servers, for `workers.1` workers
/// to have written `workers.0` (that they started) to the log.
async fn wait_ready(
    server: &mut Server,
    port: u16,
    health: &str,
    workers: Option<(&str, usize)>,
) -> anyhow::Result<()> {
    let log = server.log.clone();
    let started = || {
        workers.is_none_or(|(marker, n)| {
            std::fs::read_to_string(&log).map(|l| l.matches(marker).count() >= n).unwrap_or(false)
        })
    };
    let url = format!("http://127.0.0.1:{port}{health}");
    server.wait_ready(&load::client(None)?, &url, STARTUP_TIMEOUT, started).await.map_err(anyhow::Error::msg)
}

/// `[rows, executions, seconds in executions]` so far, from platform-runtime's `/metrics`.
async fn scrape_batching(client: &reqwest::Client, port: u16, enabled: bool) -> Option<[f64; 3]> {
    if !enabled {
        return None;
    }
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    let value = |name: &str| {
        text.lines().find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next()? == name).then(|| parts.next()?.parse::<f64>().ok())?
        })
    };
    Some([
        value("runtime_batch_size_sum")?,
        value("runtime_batch_size_count")?,
        value("runtime_inference_duration_seconds_sum")?,
    ])
}

fn cell(
    name: &str,
    contender: &'static str,
    concurrency: usize,
    mut latencies: Vec<u64>,
    errors: u64,
    seconds: f64,
    cpu: CpuUse,
) -> Cell {
    latencies.sort_unstable();
    let pct = |p: f64| load::percentile_ms(&latencies, p);
    Cell {
        model: name.to_string(),
        contender,
        concurrency,
        rps: latencies.len() as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        requests: latencies.len() as u64,
        errors,
        cpu,
        batching: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Report.

fn find<'a>(cells: &'a [Cell], model: &str, contender: &str, c: usize) -> Option<&'a Cell> {
    cells.iter().find(|x| x.model == model && x.contender == contender && x.concurrency == c)
}

struct Goal {
    text: String,
    measured: String,
    target: &'static str,
    result: &'static str,
}

fn goal(
    text: &str,
    target: &'static str,
    cells: &[Option<&Cell>],
    eval: impl FnOnce() -> (String, bool),
) -> Goal {
    if cells.iter().any(|c| c.is_none()) {
        return Goal { text: text.into(), measured: "not measured".into(), target, result: "n/a" };
    }
    let errors: u64 = cells.iter().flatten().map(|c| c.errors).sum();
    let (measured, ok) = eval();
    Goal {
        text: text.into(),
        measured: if errors > 0 { format!("{measured} ({errors} errors)") } else { measured },
        target,
        result: if ok && errors == 0 { "PASS" } else { "FAIL" },
    }
}

fn goals(cells: &[Cell]) -> (Vec<Goal>, Vec<Goal>) {
    let ratio_p50 = |model: &str, text: &str, target: &'static str, limit: f64| {
        let (a, b) = (find(cells, model, TRACT, 1), find(cells, model, ORT, 1));
        goal(text, target, &[a, b], || {
            let r = a.unwrap().p50_ms / b.unwrap().p50_ms;
            (format!("{r:.2}x ({:.3} vs {:.3} ms)", a.unwrap().p50_ms, b.unwrap().p50_ms), r <= limit)
        })
    };
    let overhead = |model: &str, text: &str| {
        let (a, b) = (find(cells, model, TRACT, 1), find(cells, model, RUNTIME_ON, 1));
        goal(text, "≤ 0.2 ms", &[a, b], || {
            let d = b.unwrap().p50_ms - a.unwrap().p50_ms;
            (format!("{d:.3} ms ({:.3} − {:.3} ms)", b.unwrap().p50_ms, a.unwrap().p50_ms), d <= 0.2)
        })
    };
    let vs_server = |model: &str, other: &str, text: &str, target: &'static str, factor: f64| {
        let (b, c) = (find(cells, model, RUNTIME_ON, 16), find(cells, model, other, 16));
        goal(text, target, &[b, c], || {
            let (b, c) = (b.unwrap(), c.unwrap());
            let r = b.rps / c.rps;
            (
                format!(
                    "{r:.1}x ({:.0} vs {:.0} req/s); p99 {:.2} vs {:.2} ms",
                    b.rps, c.rps, b.p99_ms, c.p99_ms
                ),
                r >= factor && b.p99_ms < c.p99_ms,
            )
        })
    };
    let vs_fastapi = |model: &str, text: &str| vs_server(model, FASTAPI, text, "≥ 5x and lower p99", 5.0);
    let vs_bentoml = |model: &str, text: &str| vs_server(model, BENTOML, text, "≥ 3x and lower p99", 3.0);
    let batching_of = |model: &str, text: &str, on: &str, off: &str| {
        let (on, off) = (find(cells, model, on, 16), find(cells, model, off, 16));
        goal(text, "≥ 2x", &[on, off], || {
            let r = on.unwrap().rps / off.unwrap().rps;
            (format!("{r:.2}x ({:.0} vs {:.0} req/s)", on.unwrap().rps, off.unwrap().rps), r >= 2.0)
        })
    };
    let batching = |model: &str, text: &str| batching_of(model, text, RUNTIME_ON, RUNTIME_OFF);
    // Real models: the faster engine in-process against onnxruntime from Python, and the HTTP
    // overhead of the runtime on that engine.
    let best = |model: &str| -> Option<(&Cell, &'static str)> {
        let t = find(cells, model, TRACT, 1);
        let o = find(cells, model, ORT_ENGINE, 1);
        match (t, o) {
            (Some(t), Some(o)) if o.p50_ms < t.p50_ms => Some((o, RUNTIME_ORT)),
            (Some(t), _) => Some((t, RUNTIME_TRACT)),
            (None, Some(o)) => Some((o, RUNTIME_ORT)),
            _ => None,
        }
    };
    let real_ratio = |model: &str, text: &str| {
        let b = best(model).map(|(c, _)| c);
        let o = find(cells, model, ORT, 1);
        goal(text, "≤ 1.2x", &[b, o], || {
            let (b, o) = (b.unwrap(), o.unwrap());
            let r = b.p50_ms / o.p50_ms;
            (format!("{r:.2}x ({}: {:.3} vs {:.3} ms)", b.contender, b.p50_ms, o.p50_ms), r <= 1.2)
        })
    };
    let real_overhead = |model: &str, text: &str, best_engine: bool| {
        let Some((b, best_http)) = best(model) else {
            return goal(text, "≤ 0.2 ms", &[None], || (String::new(), false));
        };
        let (inproc, http) = if best_engine {
            (Some(b), best_http)
        } else if best_http == RUNTIME_TRACT {
            (find(cells, model, ORT_ENGINE, 1), RUNTIME_ORT)
        } else {
            (find(cells, model, TRACT, 1), RUNTIME_TRACT)
        };
        let h = find(cells, model, http, 1);
        goal(text, "≤ 0.2 ms", &[inproc, h], || {
            let (i, h) = (inproc.unwrap(), h.unwrap());
            let d = h.p50_ms - i.p50_ms;
            (format!("{d:.3} ms ({}: {:.3} − {:.3} ms)", h.contender, h.p50_ms, i.p50_ms), d <= 0.2)
        })
    };
    let main = vec![
        ratio_p50("mlp", "MLP, in-process, 1 thread, batch 1: tract p50 / onnxruntime p50", "≤ 1.2x", 1.2),
        ratio_p50("cnn", "CNN, in-process, 1 thread, batch 1: tract p50 / onnxruntime p50", "≤ 2x", 2.0),
        overhead("mlp", "MLP, concurrency 1: HTTP + JSON overhead, p50(runtime) − p50(tract in-process)"),
        vs_fastapi("mlp", "MLP, concurrency 16: runtime throughput / FastAPI throughput, and p99"),
        vs_bentoml("mlp", "MLP, concurrency 16: platform-runtime throughput ≥ 3x BentoML with a lower p99"),
        batching("cnn", "CNN, concurrency 16: runtime throughput, batching on / off"),
        batching_of(
            "cnn",
            "CNN on the onnxruntime engine, concurrency 16: runtime throughput, batching on / off",
            RUNTIME_ORT_ON,
            RUNTIME_ORT_OFF,
        ),
        real_ratio(
            "ocr_det",
            "OCR_DET (real CNN), in-process, 1 thread, batch 1: best engine p50 / onnxruntime p50",
        ),
        real_ratio(
            "vad_sequence",
            "VAD_SEQUENCE (real LSTM), in-process, 1 thread, batch 1: best engine p50 / onnxruntime p50",
        ),
        real_overhead(
            "ocr_det",
            "OCR_DET, concurrency 1: HTTP overhead on the best engine (V2 binary)",
            true,
        ),
        real_overhead(
            "vad_sequence",
            "VAD_SEQUENCE, concurrency 1: HTTP overhead on the best engine (V2 binary)",
            true,
        ),
    ];
    let info = vec![
        overhead("cnn", "CNN, concurrency 1: HTTP + JSON overhead (information)"),
        vs_fastapi("cnn", "CNN, concurrency 16: runtime vs FastAPI (information)"),
        vs_bentoml("cnn", "CNN, concurrency 16: runtime vs BentoML (information)"),
        batching("mlp", "MLP, concurrency 16: batching on / off (information)"),
        real_overhead(
            "ocr_det",
            "OCR_DET, concurrency 1: HTTP overhead on the other engine (information)",
            false,
        ),
        real_overhead(
            "vad_sequence",
            "VAD_SEQUENCE, concurrency 1: HTTP overhead on the other engine (information)",
            false,
        ),
    ];
    (main, info)
}

fn report(s: &Settings, cells: &[Cell], costs: &[BatchCost]) -> String {
    let mut out = String::new();
    let cpu_model = load::cpu_model();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(out, "# Serving benchmark\n");
    let _ = writeln!(
        out,
        "Machine: {cores} CPUs, {cpu_model}. Batch 1 per request; {} s measured per cell after {} s of warm-up. \
         CPU columns: cores used during the measuring window by the bench process (the load generator; \
         in-process: the inference threads), by the server's process tree, and by any other process \
         on the machine (noise). For platform-runtime, from its `/metrics` over the window: rows/run is \
         the mean number of rows per model execution (dynamic batching), CPU infer the cores spent \
         inside model executions.\n",
        s.seconds, s.warmup
    );
    let _ = writeln!(
        out,
        "| model | contender | conc. | req/s | p50 ms | p99 ms | requests | errors | CPU bench | CPU server | CPU other | rows/run | CPU infer |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let opt = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.2}"));
    for c in cells {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {} |",
            c.model.to_uppercase(),
            c.contender,
            c.concurrency,
            c.rps,
            c.p50_ms,
            c.p99_ms,
            c.requests,
            c.errors,
            opt(c.cpu.bench),
            opt(c.cpu.server),
            opt(c.cpu.other),
            opt(c.batching.map(|b| b.0)),
            opt(c.batching.map(|b| b.1)),
        );
    }
    let (main, info) = goals(cells);
    let _ = writeln!(out, "\n## Goals\n");
    let _ = writeln!(out, "| goal | measured | target | result |");
    let _ = writeln!(out, "|---|---|---|---|");
    for g in main.iter().chain(&info) {
        let result = if g.text.contains("(information)") && g.result != "n/a" { "info" } else { g.result };
        let _ = writeln!(out, "| {} | {} | {} | {} |", g.text, g.measured, g.target, result);
    }
    let _ = writeln!(out);
    for g in &main {
        let _ = writeln!(out, "{}: {} — {} (target {})  ", g.result, g.text, g.measured, g.target);
    }
    if !costs.is_empty() {
        let _ = writeln!(out, "\n## In-process, one thread, rows per run (what batching can save)\n");
        let _ = writeln!(out, "| model | engine | rows | p50 µs per run | µs per row | per row vs 1 row |");
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|");
        for c in costs {
            let single = costs
                .iter()
                .find(|x| x.model == c.model && x.engine == c.engine && x.rows == 1)
                .map_or(f64::NAN, |x| x.p50_us);
            let per_row = c.p50_us / c.rows as f64;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | {:.1} | {:.2}x |",
                c.model.to_uppercase(),
                c.engine,
                c.rows,
                c.p50_us,
                per_row,
                per_row / single
            );
        }
    }
    let busiest = cells.iter().filter_map(|c| c.cpu.other).fold(0.0f64, f64::max);
    if busiest > 0.25 {
        let _ = writeln!(
            out,
            "\nWARNING: other processes used up to {busiest:.2} cores during a measuring window; \
             the figures are disturbed (run on an otherwise idle machine)."
        );
    }
    let errors: u64 = cells.iter().map(|c| c.errors).sum();
    if errors > 0 {
        let _ = writeln!(out, "\nWARNING: {errors} requests failed (see the errors column).");
    }
    out
}
