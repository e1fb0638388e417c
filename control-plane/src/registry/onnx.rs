//! What the prebuilt runtime will be given is an ONNX model: checked at upload, so that a file
//! that is not one is refused with the parser's message instead of crash-looping replicas.

use tract_onnx::prelude::Framework;

/// Why a file is not an ONNX model the runtime can serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the artifact is not an ONNX model the prebuilt runtime can load: {0}")]
pub struct NotOnnx(pub String);

/// Parses `bytes` as an ONNX `ModelProto` with a graph that has inputs and outputs.
pub fn check(bytes: &[u8]) -> Result<(), NotOnnx> {
    let mut reader = bytes;
    let proto =
        tract_onnx::onnx().proto_model_for_read(&mut reader).map_err(|e| NotOnnx(format!("{e:#}")))?;
    let graph = proto.graph.ok_or_else(|| NotOnnx("the model has no graph".into()))?;
    if graph.node.is_empty() || graph.output.is_empty() {
        return Err(NotOnnx("the model's graph has no nodes or no outputs".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_models_pass_and_other_files_say_why_not() {
        let mlp = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/models/mlp.onnx")).unwrap();
        assert_eq!(check(&mlp), Ok(()));
        let text = check(b"def predict(x): return x\n").unwrap_err().to_string();
        assert!(text.starts_with("the artifact is not an ONNX model"), "{text}");
        assert!(check(&[]).is_err(), "an empty file is no model");
    }
}
