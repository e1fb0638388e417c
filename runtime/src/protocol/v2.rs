//! Open Inference Protocol V2 (KServe, Triton) REST: request and response bodies, including
//! the binary tensor data extension that `tritonclient` uses by default.

use std::collections::HashMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use tract_onnx::prelude::*;

use super::InvalidRequest;
use super::json::{FromJson, Part, TensorJson, flatten_leaves, tensor_from_vec, with_datum};
use crate::model::signature::datatype_name;
use crate::model::{BatchMode, Dim, Model, TensorSpec};

/// The header that splits a binary-extension body into its JSON part and its binary part.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<HashMap<String, Value>>,
    pub inputs: Vec<InferInput>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
pub struct InferInput {
    pub name: String,
    pub shape: Vec<usize>,
    pub datatype: String,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub parameters: Option<HashMap<String, Value>>,
}

#[derive(Debug, Deserialize)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<HashMap<String, Value>>,
}

fn binary_size(params: &Option<HashMap<String, Value>>) -> Option<u64> {
    params.as_ref()?.get("binary_data_size")?.as_u64()
}

fn flag(params: &Option<HashMap<String, Value>>, key: &str) -> Option<bool> {
    params.as_ref()?.get(key)?.as_bool()
}

/// A parsed inference request with its input tensors, in the model's input order.
pub struct ParsedInfer {
    pub id: Option<String>,
    pub inputs: TVec<Tensor>,
    /// Outputs to return (indices into the model's outputs) and whether each goes binary.
    pub outputs: Vec<(usize, bool)>,
}

/// Parses a body; `json_length` is the `Inference-Header-Content-Length` header, if any.
pub fn parse_request(
    model: &Model,
    body: &[u8],
    json_length: Option<usize>,
) -> Result<ParsedInfer, InvalidRequest> {
    let (json, mut binary) = match json_length {
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(InvalidRequest(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )));
        }
        None => (body, &[][..]),
    };
    let req: InferRequest = serde_json::from_slice(json)
        .map_err(|e| InvalidRequest(format!("the body is not a valid inference request: {e}")))?;
    let specs = model.inputs();
    let names = || specs.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", ");
    for (i, input) in req.inputs.iter().enumerate() {
        if !specs.iter().any(|s| s.name == input.name) {
            return Err(InvalidRequest(format!(
                "unknown input `{}`; the model's inputs are {}",
                input.name,
                names()
            )));
        }
        if req.inputs[..i].iter().any(|o| o.name == input.name) {
            return Err(InvalidRequest(format!("input `{}` is given twice", input.name)));
        }
    }
    // Binary buffers follow the JSON in the order of the request's inputs.
    let mut buffers: HashMap<&str, &[u8]> = HashMap::new();
    for input in &req.inputs {
        if let Some(size) = binary_size(&input.parameters) {
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > binary.len() {
                return Err(InvalidRequest(format!(
                    "input `{}` declares {size} bytes of binary data but only {} remain",
                    input.name,
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(size);
            buffers.insert(input.name.as_str(), mine);
            binary = rest;
        }
    }
    let mut inputs = TVec::new();
    let mut rows: Option<(usize, &str)> = None;
    for spec in specs {
        let input = req.inputs.iter().find(|i| i.name == spec.name).ok_or_else(|| {
            InvalidRequest(format!("input `{}` is missing; the model's inputs are {}", spec.name, names()))
        })?;
        check_shape(model, spec, input)?;
        if matches!(spec.shape.first(), Some(Dim::Batch)) {
            let n = input.shape[0];
            match rows {
                Some((m, other)) if m != n => {
                    return Err(InvalidRequest(format!(
                        "input `{}` has {n} rows but input `{other}` has {m}; the batch dimension must agree",
                        spec.name
                    )));
                }
                _ => rows = Some((n, &spec.name)),
            }
        }
        let tensor = match buffers.get(spec.name.as_str()) {
            Some(bytes) => tensor_from_binary(spec, input, bytes)?,
            None => tensor_from_json(spec, input)?,
        };
        inputs.push(tensor);
    }
    let all_binary = flag(&req.parameters, "binary_data_output").unwrap_or(false);
    let outputs = match &req.outputs {
        None => (0..model.outputs().len()).map(|ix| (ix, all_binary)).collect(),
        Some(requested) => requested
            .iter()
            .map(|o| {
                let ix = model.outputs().iter().position(|s| s.name == o.name).ok_or_else(|| {
                    let known: Vec<String> =
                        model.outputs().iter().map(|s| format!("`{}`", s.name)).collect();
                    InvalidRequest(format!(
                        "unknown output `{}`; the model's outputs are {}",
                        o.name,
                        known.join(", ")
                    ))
                })?;
                Ok((ix, flag(&o.parameters, "binary_data").unwrap_or(all_binary)))
            })
            .collect::<Result<_, InvalidRequest>>()?,
    };
    Ok(ParsedInfer { id: req.id, inputs, outputs })
}

fn check_shape(model: &Model, spec: &TensorSpec, input: &InferInput) -> Result<(), InvalidRequest> {
    let expected = TensorSpec::shape_text(&spec.shape);
    if input.datatype != spec.datatype() {
        return Err(InvalidRequest(format!(
            "input `{}` has datatype {} but the model expects {} with shape {expected}",
            spec.name,
            input.datatype,
            spec.datatype()
        )));
    }
    let fits = input.shape.len() == spec.shape.len()
        && spec.shape.iter().zip(&input.shape).enumerate().all(|(k, (d, n))| match d {
            Dim::Fixed(_) if k == 0 && matches!(model.batch_mode(), BatchMode::Fixed(_)) => *n > 0,
            Dim::Fixed(m) => m == n,
            _ => *n > 0,
        });
    if !fits {
        return Err(InvalidRequest(format!(
            "input `{}` has shape {:?} but the model expects {expected} ({})",
            spec.name,
            input.shape,
            spec.datatype()
        )));
    }
    Ok(())
}

fn tensor_from_json(spec: &TensorSpec, input: &InferInput) -> Result<Tensor, InvalidRequest> {
    let data = input
        .data
        .as_ref()
        .ok_or_else(|| InvalidRequest(format!("input `{}` has neither `data` nor binary data", spec.name)))?;
    with_datum!(spec.datum_type, T => json_tensor::<T>(spec, &input.shape, data),
        else Err(InvalidRequest(format!("input `{}` has a datatype JSON cannot carry", spec.name))))
}

fn json_tensor<T: FromJson>(
    spec: &TensorSpec,
    shape: &[usize],
    data: &Value,
) -> Result<Tensor, InvalidRequest> {
    let count: usize = shape.iter().product();
    let mut out: Vec<T> = Vec::with_capacity(count);
    flatten_leaves(data, &mut out, &|| format!("input `{}`", spec.name))?;
    if out.len() != count {
        return Err(InvalidRequest(format!(
            "input `{}` has {} elements but its shape {shape:?} needs {count}",
            spec.name,
            out.len()
        )));
    }
    tensor_from_vec(shape, out)
}

fn tensor_from_binary(spec: &TensorSpec, input: &InferInput, bytes: &[u8]) -> Result<Tensor, InvalidRequest> {
    let count: usize = input.shape.iter().product();
    if spec.datum_type == DatumType::String {
        let mut strings = Vec::with_capacity(count);
        let mut rest = bytes;
        while rest.len() >= 4 {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let Some(s) = rest.get(4..4 + len) else { break };
            strings.push(String::from_utf8_lossy(s).into_owned());
            rest = &rest[4 + len..];
        }
        if strings.len() != count || !rest.is_empty() {
            return Err(InvalidRequest(format!(
                "input `{}`: binary BYTES data does not hold {count} elements",
                spec.name
            )));
        }
        return tensor_from_vec(&input.shape, strings);
    }
    let size = spec.datum_type.size_of();
    if bytes.len() != count * size {
        return Err(InvalidRequest(format!(
            "input `{}` has {} bytes of binary data but shape {:?} of {} needs {}",
            spec.name,
            bytes.len(),
            input.shape,
            spec.datatype(),
            count * size
        )));
    }
    if spec.datum_type == DatumType::Bool {
        let raw: Vec<bool> = bytes.iter().map(|b| *b != 0).collect();
        return tensor_from_vec(&input.shape, raw);
    }
    // Safety: the remaining datatypes are plain little-endian numbers, valid for any bytes,
    // and the length was checked against the shape above.
    unsafe { Tensor::from_raw_dt(spec.datum_type, &input.shape, bytes) }
        .map_err(|e| InvalidRequest(format!("input `{}`: {e}", spec.name)))
}

/// The response: JSON, followed by the binary outputs when any was asked for in binary.
pub struct InferResponse {
    pub body: Vec<u8>,
    /// Length of the JSON part when the body also carries binary data.
    pub json_length: Option<usize>,
}

struct OutputJson<'a> {
    spec: &'a TensorSpec,
    tensor: &'a Tensor,
    binary_size: Option<usize>,
}

impl Serialize for OutputJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", &self.spec.name)?;
        map.serialize_entry("datatype", datatype_name(self.tensor.datum_type()))?;
        map.serialize_entry("shape", self.tensor.shape())?;
        match self.binary_size {
            Some(size) => {
                map.serialize_entry("parameters", &serde_json::json!({ "binary_data_size": size }))?
            }
            None => map.serialize_entry("data", &TensorJson { tensor: self.tensor, part: Part::Flat })?,
        }
        map.end()
    }
}

fn tensor_bytes(tensor: &Tensor) -> Result<Vec<u8>, String> {
    if tensor.datum_type() == DatumType::String {
        let strings =
            tensor.try_as_plain_ram().and_then(|p| p.as_slice::<String>()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for s in strings {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        return Ok(out);
    }
    let plain = tensor.try_as_plain_ram().map_err(|e| e.to_string())?;
    Ok(plain.as_bytes().to_vec())
}

/// Builds the response: `selected` outputs (indices, binary or not) of `outputs` (all of the
/// model's outputs, in order).
pub fn response(
    model: &Model,
    model_name: &str,
    id: Option<&str>,
    selected: &[(usize, bool)],
    outputs: &[Tensor],
) -> Result<InferResponse, String> {
    let specs = model.outputs();
    let mut binary = Vec::new();
    let mut items = Vec::with_capacity(selected.len());
    for &(ix, as_binary) in selected {
        let (spec, tensor) = (&specs[ix], &outputs[ix]);
        let binary_size = if as_binary {
            let bytes = tensor_bytes(tensor)?;
            let n = bytes.len();
            binary.extend_from_slice(&bytes);
            Some(n)
        } else {
            None
        };
        items.push(OutputJson { spec, tensor, binary_size });
    }
    let mut json = serde_json::Map::new();
    json.insert("model_name".into(), Value::from(model_name));
    if let Some(id) = id {
        json.insert("id".into(), Value::from(id));
    }
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(flatten)]
        head: serde_json::Map<String, Value>,
        outputs: Vec<OutputJson<'a>>,
    }
    let mut body = serde_json::to_vec(&Body { head: json, outputs: items }).map_err(|e| e.to_string())?;
    if binary.is_empty() {
        return Ok(InferResponse { body, json_length: None });
    }
    let json_length = body.len();
    body.extend_from_slice(&binary);
    Ok(InferResponse { body, json_length: Some(json_length) })
}

/// `GET /v2/models/{name}`.
pub fn model_metadata(model: &Model, name: &str) -> Value {
    let tensors = |specs: &[TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "datatype": s.datatype(), "shape": s.v2_shape()}))
            .collect()
    };
    serde_json::json!({
        "name": name,
        "versions": ["1"],
        "platform": "onnx_onnxv1",
        "inputs": tensors(model.inputs()),
        "outputs": tensors(model.outputs()),
    })
}
