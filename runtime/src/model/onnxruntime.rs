//! The onnxruntime engine, through the `ort` crate with the library loaded at run time
//! (`load-dynamic`): nothing is downloaded or linked at build time, and a runtime without the
//! library still serves with tract.
//!
//! Each inference worker gets its own session (a session runs one inference at a time), with one
//! intra-op thread: concurrency comes from the workers, as with tract. An accelerator asks for
//! the CUDA execution provider; a library without it runs on the CPU and says so.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};
use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::prelude::*;

use super::LoadError;
use super::signature::TensorSpec;

/// Where the library is and what to run on.
#[derive(Debug, Clone, Default)]
pub struct OnnxruntimeOptions {
    /// `libonnxruntime.so` itself, or a directory holding it (for example the `onnxruntime/capi`
    /// directory of the `onnxruntime` Python wheel).
    pub library: Option<PathBuf>,
    /// Sessions, one per inference worker.
    pub sessions: usize,
    /// The machine's accelerator (`AIP_ACCELERATOR_TYPE`, for example `NVIDIA_L4`): asks for the
    /// CUDA execution provider.
    pub accelerator: Option<String>,
}

pub(super) struct OrtEngine {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    inputs: Vec<String>,
    outputs: Vec<String>,
    provider: &'static str,
}

/// The library file in `path`: the path itself, or in a directory the first
/// `libonnxruntime.so*` (the Python wheel ships `libonnxruntime.so.1.N.M` without a plain link).
pub fn library_file(path: &Path) -> Result<PathBuf, String> {
    if !path.is_dir() {
        return if path.exists() {
            Ok(path.to_path_buf())
        } else {
            Err(format!("{} does not exist", path.display()))
        };
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libonnxruntime.so")
                    || n == "onnxruntime.dll"
                    || n.starts_with("libonnxruntime.") && n.ends_with(".dylib")
            })
        })
        .collect();
    found.sort();
    found.into_iter().next().ok_or_else(|| format!("no libonnxruntime.so in {}", path.display()))
}

/// The process's onnxruntime environment: the library is loaded once, from the first path given.
fn environment(library: &Path) -> Result<&'static ort::environment::Environment, LoadError> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let file = library_file(library)?;
        let builder = ort::init_from(&file).map_err(|e| format!("cannot load {}: {e}", file.display()))?;
        tracing::info!(library = %file.display(), "onnxruntime library loaded");
        builder.with_name("platform-runtime").build().map_err(|e| format!("cannot start onnxruntime: {e}"))
    });
    env.as_ref().map_err(|e| LoadError::Engine(e.clone()))
}

/// Whether this library can run on the GPU.
fn cuda_available() -> bool {
    ort::ep::CUDA::is_available().unwrap_or(false)
}

impl OrtEngine {
    /// Creates the sessions for `bytes` (a model whose ZipMaps are already stripped).
    pub(super) fn load(
        bytes: &[u8],
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
        options: &OnnxruntimeOptions,
    ) -> Result<OrtEngine, LoadError> {
        let library = options.library.as_deref().ok_or_else(|| {
            LoadError::Engine(
                "the onnxruntime engine needs its library: pass --onnxruntime-lib (PLATFORM_ONNXRUNTIME_LIB) with the path of libonnxruntime.so or of the directory holding it".into(),
            )
        })?;
        let env = environment(library)?;
        let accelerator = options.accelerator.as_deref().filter(|a| !a.is_empty());
        let mut provider = "cpu";
        if let Some(acc) = accelerator {
            if cuda_available() {
                provider = "cuda";
            } else {
                tracing::warn!(
                    accelerator = acc,
                    "the machine has an accelerator but this onnxruntime library has no CUDA execution provider (use the onnxruntime-gpu build); running on the CPU"
                );
            }
        }
        let mut sessions = Vec::new();
        for _ in 0..options.sessions.max(1) {
            let session = match provider {
                "cuda" => match new_session(env, bytes, true) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "the CUDA execution provider failed to start; running on the CPU");
                        provider = "cpu";
                        new_session(env, bytes, false)?
                    }
                },
                _ => new_session(env, bytes, false)?,
            };
            sessions.push(Mutex::new(session));
        }
        let first = sessions[0].lock().map_err(|_| LoadError::Engine("session poisoned".into()))?;
        let session_inputs: Vec<String> = first.inputs().iter().map(|o| o.name().to_string()).collect();
        let session_outputs: Vec<String> = first.outputs().iter().map(|o| o.name().to_string()).collect();
        drop(first);
        for spec in inputs {
            if !session_inputs.contains(&spec.name) {
                return Err(LoadError::Engine(format!("onnxruntime does not see input `{}`", spec.name)));
            }
        }
        for spec in outputs {
            if !session_outputs.contains(&spec.name) {
                return Err(LoadError::Engine(format!("onnxruntime does not see output `{}`", spec.name)));
            }
        }
        Ok(OrtEngine {
            sessions,
            next: AtomicUsize::new(0),
            inputs: inputs.iter().map(|s| s.name.clone()).collect(),
            outputs: outputs.iter().map(|s| s.name.clone()).collect(),
            provider,
        })
    }

    /// `cpu` or `cuda`.
    pub(super) fn provider(&self) -> &'static str {
        self.provider
    }

    /// Runs inputs in signature order on a free session.
    pub(super) fn run(&self, inputs: &[Tensor]) -> Result<TVec<Tensor>, String> {
        // The first free session: at low concurrency the same one serves every request and
        // stays in the CPU's caches (each session holds its own copy of the weights). The
        // batcher runs at most one inference per session at once, so one is free unless a
        // caller outside it runs more: then wait for one, in turn.
        let mut session = match self.sessions.iter().find_map(|s| s.try_lock().ok()) {
            Some(session) => session,
            None => {
                let k = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
                self.sessions[k].lock().map_err(|_| "session poisoned".to_string())?
            }
        };
        let mut values: Vec<(&str, ort::session::SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for (name, t) in self.inputs.iter().zip(inputs) {
            values.push((name.as_str(), input_value(t)?));
        }
        let outputs = session.run(values).map_err(|e| e.to_string())?;
        self.outputs
            .iter()
            .map(|name| {
                let value = outputs
                    .get(name.as_str())
                    .ok_or_else(|| format!("onnxruntime gave no output `{name}`"))?;
                output_tensor(name, value)
            })
            .collect()
    }
}

fn new_session(env: &ort::environment::Environment, bytes: &[u8], cuda: bool) -> Result<Session, LoadError> {
    let engine = |e: ort::Error| LoadError::Engine(e.to_string());
    let mut builder = Session::builder(env)
        .map_err(engine)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| LoadError::Engine(e.to_string()))?
        .with_intra_threads(1)
        .map_err(|e| LoadError::Engine(e.to_string()))?;
    if cuda {
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| LoadError::Engine(e.to_string()))?;
    }
    builder.commit_from_memory(bytes).map_err(|e| LoadError::Unsupported(format!("onnxruntime: {e}")))
}

/// A view of a tract tensor as an onnxruntime input (strings are copied).
fn input_value(t: &Tensor) -> Result<ort::session::SessionInputValue<'_>, String> {
    fn view<T: ort::value::PrimitiveTensorElementType + Datum + Clone>(
        t: &Tensor,
    ) -> Result<ort::session::SessionInputValue<'_>, String> {
        let data = t.try_as_plain_ram().and_then(|p| p.as_slice::<T>()).map_err(|e| e.to_string())?;
        let view = TensorRef::from_array_view((t.shape(), data)).map_err(|e| e.to_string())?;
        Ok(view.into())
    }
    match t.datum_type() {
        DatumType::Bool => view::<bool>(t),
        DatumType::U8 => view::<u8>(t),
        DatumType::U16 => view::<u16>(t),
        DatumType::U32 => view::<u32>(t),
        DatumType::U64 => view::<u64>(t),
        DatumType::I8 => view::<i8>(t),
        DatumType::I16 => view::<i16>(t),
        DatumType::I32 => view::<i32>(t),
        DatumType::I64 => view::<i64>(t),
        DatumType::F32 => view::<f32>(t),
        DatumType::F64 => view::<f64>(t),
        DatumType::String => {
            let data =
                t.try_as_plain_ram().and_then(|p| p.as_slice::<String>()).map_err(|e| e.to_string())?;
            let value =
                ort::value::Tensor::from_string_array((t.shape(), data)).map_err(|e| e.to_string())?;
            Ok(value.into())
        }
        other => Err(format!("datatype {other:?} is not supported by the onnxruntime engine")),
    }
}

/// An onnxruntime output as a tract tensor.
fn output_tensor(name: &str, value: &DynValue) -> Result<Tensor, String> {
    fn copy<T: ort::value::PrimitiveTensorElementType + Datum + Clone>(
        value: &DynValue,
    ) -> Result<Tensor, String> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
        let dims: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
        ArrayD::from_shape_vec(IxDyn(&dims), data.to_vec()).map(Tensor::from).map_err(|e| e.to_string())
    }
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(format!("output `{name}` is not a tensor"));
    };
    match ty {
        TensorElementType::Bool => copy::<bool>(value),
        TensorElementType::Uint8 => copy::<u8>(value),
        TensorElementType::Uint16 => copy::<u16>(value),
        TensorElementType::Uint32 => copy::<u32>(value),
        TensorElementType::Uint64 => copy::<u64>(value),
        TensorElementType::Int8 => copy::<i8>(value),
        TensorElementType::Int16 => copy::<i16>(value),
        TensorElementType::Int32 => copy::<i32>(value),
        TensorElementType::Int64 => copy::<i64>(value),
        TensorElementType::Float32 => copy::<f32>(value),
        TensorElementType::Float64 => copy::<f64>(value),
        TensorElementType::String => {
            let (shape, data) = value.try_extract_strings().map_err(|e| e.to_string())?;
            let dims: Vec<usize> = shape.iter().map(|d| *d as usize).collect();
            ArrayD::from_shape_vec(IxDyn(&dims), data).map(Tensor::from).map_err(|e| e.to_string())
        }
        other => Err(format!("output `{name}` has datatype {other:?}, which cannot be served")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_found_in_a_directory_as_the_python_wheel_ships_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(library_file(dir.path()).unwrap_err().contains("no libonnxruntime.so"));
        std::fs::write(dir.path().join("libonnxruntime_providers_shared.so"), b"").unwrap();
        std::fs::write(dir.path().join("libonnxruntime.so.1.32.0"), b"").unwrap();
        // `libonnxruntime.so.1.32.0` sorts before `libonnxruntime_providers_shared.so`.
        assert_eq!(library_file(dir.path()).unwrap(), dir.path().join("libonnxruntime.so.1.32.0"));
        let file = dir.path().join("libonnxruntime.so.1.32.0");
        assert_eq!(library_file(&file).unwrap(), file);
        assert!(library_file(&dir.path().join("missing.so")).unwrap_err().contains("does not exist"));
    }
}
