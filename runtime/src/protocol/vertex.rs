//! Vertex AI predict: `{"instances": [...], "parameters": {...}}` in,
//! `{"predictions": [...]}` out, one prediction per instance.
//!
//! For a one-input model an instance is one row of that input (nested arrays); for several
//! inputs it is an object keyed by input name. With one output a prediction is that output's
//! row; with several, an object keyed by output name. A `ZipMap` output row is `{label: p}`.
//!
//! Binary data follows Vertex's convention: wherever a value of an input may stand, `{"b64":
//! "<base64>"}` carries raw bytes. For a string input they are the element (they must be UTF-8,
//! as ONNX strings are); for any other input the object is refused, since Vertex gives it no
//! meaning for numbers.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use tract_onnx::prelude::*;

use super::InvalidRequest;
use super::json::{FromJson, Part, TensorJson, ZipMapJson, leaf_kind, short, tensor_from_vec, with_datum};
use crate::model::{BatchMode, Dim, Model, TensorSpec};

/// The body of a predict request. Unknown fields are ignored, as Vertex does.
#[derive(Debug, Deserialize)]
pub struct PredictRequest {
    pub instances: Vec<Value>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// Parses and checks a predict body against the model and the instance limit.
pub fn parse_request(body: &[u8], max_instances: usize) -> Result<PredictRequest, InvalidRequest> {
    let req: PredictRequest = serde_json::from_slice(body).map_err(|e| {
        InvalidRequest(format!(
            "the body is not a valid predict request: {e}; expected {{\"instances\": [...]}}"
        ))
    })?;
    if req.instances.is_empty() {
        return Err(InvalidRequest("`instances` is empty; send at least one instance".into()));
    }
    if req.instances.len() > max_instances {
        return Err(InvalidRequest(format!(
            "{} instances sent; at most {max_instances} are accepted in one request",
            req.instances.len()
        )));
    }
    Ok(req)
}

/// The model executions that answer a request, and how their outputs split into predictions.
pub struct RunInputs {
    pub inputs: TVec<Tensor>,
    /// `Some(n)`: the outputs hold one row per instance. `None`: the whole outputs are the
    /// prediction of a single instance.
    pub rows: Option<usize>,
}

/// The executions for `instances`: one holding every instance as a row when the model has a
/// batch dimension that its outputs keep, else one per instance.
pub fn inputs(model: &Model, instances: &[Value]) -> Result<Vec<RunInputs>, InvalidRequest> {
    let specs = model.inputs();
    let decoded = decode_binary(specs, instances)?;
    let instances = decoded.as_deref().unwrap_or(instances);
    let mode = model.batch_mode();
    // values[input][instance]
    let mut values: Vec<Vec<&Value>> = vec![Vec::with_capacity(instances.len()); specs.len()];
    for (i, instance) in instances.iter().enumerate() {
        for (ix, v) in split_instance(specs, i, instance)?.into_iter().enumerate() {
            values[ix].push(v);
        }
    }
    let stacked = mode != BatchMode::None;
    if let BatchMode::Dynamic { padded: true } | BatchMode::Fixed(_) = mode
        && model.has_free_dims()
    {
        return grouped_by_shape(specs, mode, &values, instances.len());
    }
    if let BatchMode::Dynamic { padded: true } | BatchMode::Fixed(_) = mode {
        let inputs = specs
            .iter()
            .zip(&values)
            .map(|(spec, vs)| column(spec, spec.row_shape(mode), vs, 0, true))
            .collect::<Result<_, _>>()?;
        return Ok(vec![RunInputs { inputs, rows: Some(instances.len()) }]);
    }
    (0..instances.len())
        .map(|i| {
            let inputs = specs
                .iter()
                .zip(&values)
                .map(|(spec, vs)| column(spec, spec.row_shape(mode), &vs[i..=i], i, stacked))
                .collect::<Result<_, _>>()?;
            Ok(RunInputs { inputs, rows: None })
        })
        .collect()
}

/// The instances with every `{"b64": ...}` replaced by the text its bytes hold; `None` when
/// there is none (nothing is copied).
fn decode_binary(specs: &[TensorSpec], instances: &[Value]) -> Result<Option<Vec<Value>>, InvalidRequest> {
    if !instances.iter().any(has_binary) {
        return Ok(None);
    }
    let mut out = instances.to_vec();
    for (i, instance) in out.iter_mut().enumerate() {
        match (specs, instance) {
            ([only], Value::Object(map)) if map.len() == 1 && map.contains_key(&only.name) => {
                if let Some(v) = map.get_mut(&only.name) {
                    decode_values(only, i, v)?;
                }
            }
            ([only], v) => decode_values(only, i, v)?,
            (_, Value::Object(map)) => {
                for spec in specs {
                    if let Some(v) = map.get_mut(&spec.name) {
                        decode_values(spec, i, v)?;
                    }
                }
            }
            // Not an instance of this model: `split_instance` says why.
            _ => {}
        }
    }
    Ok(Some(out))
}

/// The base64 text of `{"b64": "..."}`.
fn binary(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(map) if map.len() == 1 => map.get("b64"),
        _ => None,
    }
}

fn has_binary(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().any(has_binary),
        Value::Object(map) => binary(v).is_some() || map.values().any(has_binary),
        _ => false,
    }
}

/// Decodes the `{"b64": ...}` values of input `spec` within instance `i`, in place.
fn decode_values(spec: &TensorSpec, i: usize, v: &mut Value) -> Result<(), InvalidRequest> {
    if let Value::Array(items) = v {
        return items.iter_mut().try_for_each(|item| decode_values(spec, i, item));
    }
    let Some(text) = binary(v) else { return Ok(()) };
    let input = &spec.name;
    if spec.datum_type != DatumType::String {
        return Err(InvalidRequest(format!(
            "instance {i}: input `{input}` is {}, but {{\"b64\": ...}} carries bytes, which only a string (BYTES) input takes; send its numbers as JSON",
            spec.datatype()
        )));
    }
    let bytes = text
        .as_str()
        .ok_or_else(|| format!("is {}, not a string", short(text)))
        .and_then(|t| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(t).map_err(|e| format!("is not base64: {e}"))
        })
        .map_err(|why| InvalidRequest(format!("instance {i}: the `b64` value of input `{input}` {why}")))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        InvalidRequest(format!(
            "instance {i}: the bytes of input `{input}`'s `b64` value are not UTF-8 text, which is all an ONNX string tensor holds"
        ))
    })?;
    *v = Value::String(text);
    Ok(())
}

/// For a model with dimensions that each request fixes (an image's size, a sequence's
/// length): instances are read one by one, and consecutive instances of the same shape are
/// stacked into one run.
fn grouped_by_shape(
    specs: &[TensorSpec],
    mode: BatchMode,
    values: &[Vec<&Value>],
    count: usize,
) -> Result<Vec<RunInputs>, InvalidRequest> {
    let mut runs: Vec<RunInputs> = Vec::new();
    let mut group: Vec<TVec<Tensor>> = Vec::new();
    let flush = |group: &mut Vec<TVec<Tensor>>, runs: &mut Vec<RunInputs>| -> Result<(), InvalidRequest> {
        let Some(first) = group.first() else { return Ok(()) };
        let inputs = (0..first.len())
            .map(|k| {
                let parts: Vec<&Tensor> = group.iter().map(|g| &g[k]).collect();
                Tensor::stack_tensors(0, &parts).map_err(|e| InvalidRequest(format!("{e:#}")))
            })
            .collect::<Result<_, _>>()?;
        runs.push(RunInputs { inputs, rows: Some(group.len()) });
        group.clear();
        Ok(())
    };
    for i in 0..count {
        let instance: TVec<Tensor> = specs
            .iter()
            .zip(values)
            .map(|(spec, vs)| column(spec, spec.row_shape(mode), &vs[i..=i], i, true))
            .collect::<Result<_, _>>()?;
        let same =
            group.first().is_some_and(|g| g.iter().zip(&instance).all(|(a, b)| a.shape() == b.shape()));
        if !same {
            flush(&mut group, &mut runs)?;
        }
        group.push(instance);
    }
    flush(&mut group, &mut runs)?;
    Ok(runs)
}

/// The value of each input (in signature order) within instance `i`.
fn split_instance<'a>(
    specs: &[TensorSpec],
    i: usize,
    instance: &'a Value,
) -> Result<Vec<&'a Value>, InvalidRequest> {
    let names = || specs.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", ");
    match (specs, instance) {
        ([only], Value::Object(map)) if map.len() == 1 && map.contains_key(&only.name) => {
            Ok(vec![&map[&only.name]])
        }
        ([_], Value::Object(_)) => Err(InvalidRequest(format!(
            "instance {i} is an object, but this model has one input ({}): send its row as the instance, or an object with that one key",
            names()
        ))),
        ([_], v) => Ok(vec![v]),
        (_, Value::Object(map)) => {
            if let Some(unknown) = map.keys().find(|k| !specs.iter().any(|s| &s.name == *k)) {
                return Err(InvalidRequest(format!(
                    "instance {i} has unknown input `{unknown}`; the model's inputs are {}",
                    names()
                )));
            }
            specs
                .iter()
                .map(|s| {
                    map.get(&s.name).ok_or_else(|| {
                        InvalidRequest(format!(
                            "instance {i} lacks input `{}`; the model's inputs are {}",
                            s.name,
                            names()
                        ))
                    })
                })
                .collect()
        }
        (_, other) => Err(InvalidRequest(format!(
            "instance {i} must be an object keyed by input name ({}), got {}",
            names(),
            short(other)
        ))),
    }
}

/// One input tensor from its per-instance values. With `stacked`, instances are rows of a
/// leading dimension; else there is exactly one value, the whole tensor.
fn column(
    spec: &TensorSpec,
    row_shape: &[Dim],
    values: &[&Value],
    first_index: usize,
    stacked: bool,
) -> Result<Tensor, InvalidRequest> {
    with_datum!(spec.datum_type, T => column_of::<T>(spec, row_shape, values, first_index, stacked),
        else Err(InvalidRequest(format!("input `{}` has a datatype JSON cannot carry", spec.name))))
}

fn column_of<T: FromJson>(
    spec: &TensorSpec,
    row_shape: &[Dim],
    values: &[&Value],
    first_index: usize,
    stacked: bool,
) -> Result<Tensor, InvalidRequest> {
    let mut dims: Vec<Option<usize>> = row_shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => Some(*n),
            _ => None,
        })
        .collect();
    let row_len: usize = dims.iter().map(|d| d.unwrap_or(1)).product();
    let mut data: Vec<T> = Vec::with_capacity(row_len * values.len());
    for (k, v) in values.iter().enumerate() {
        let ctx = Context { spec, row_shape, instance: first_index + k };
        walk(v, &mut dims, 0, &mut data, &ctx)?;
    }
    let mut shape: Vec<usize> = dims.iter().map(|d| d.unwrap_or(0)).collect();
    if stacked {
        shape.insert(0, values.len());
    }
    tensor_from_vec(&shape, data)
}

struct Context<'a> {
    spec: &'a TensorSpec,
    row_shape: &'a [Dim],
    instance: usize,
}

impl Context<'_> {
    fn error(&self, got: String) -> InvalidRequest {
        InvalidRequest(format!(
            "instance {}, input `{}`: expected shape {} of {} ({}), got {got}",
            self.instance,
            self.spec.name,
            TensorSpec::shape_text(self.row_shape),
            leaf_kind(self.spec.datum_type),
            self.spec.datatype(),
        ))
    }
}

fn walk<T: FromJson>(
    v: &Value,
    dims: &mut [Option<usize>],
    depth: usize,
    out: &mut Vec<T>,
    ctx: &Context<'_>,
) -> Result<(), InvalidRequest> {
    if depth == dims.len() {
        return match T::from_json(v) {
            Some(x) => {
                out.push(x);
                Ok(())
            }
            None if v.is_array() => {
                Err(ctx.error(format!("an array nested {} levels deep or more", depth + 1)))
            }
            None => Err(ctx.error(short(v))),
        };
    }
    let Value::Array(items) = v else {
        return Err(ctx.error(format!(
            "{} where an array of depth {} was expected",
            short(v),
            dims.len() - depth
        )));
    };
    match dims[depth] {
        Some(n) if n != items.len() => {
            return Err(ctx.error(format!("{} elements at depth {}", items.len(), depth + 1)));
        }
        None => dims[depth] = Some(items.len()),
        _ => {}
    }
    for item in items {
        walk(item, dims, depth + 1, out, ctx)?;
    }
    Ok(())
}

/// The predictions of one run: `rows` predictions when the model is batched, else one.
pub struct RunOutputs {
    pub outputs: TVec<Tensor>,
    pub rows: Option<usize>,
}

/// Serialises `{"predictions": [...]}` for the outputs of every run, in instance order.
pub struct Predictions<'a> {
    pub model: &'a Model,
    pub runs: &'a [RunOutputs],
}

impl Serialize for Predictions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("predictions", &PredictionList(self))?;
        map.end()
    }
}

struct PredictionList<'a>(&'a Predictions<'a>);

impl Serialize for PredictionList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let total = self.0.runs.iter().map(|r| r.rows.unwrap_or(1)).sum();
        let mut seq = s.serialize_seq(Some(total))?;
        for run in self.0.runs {
            match run.rows {
                Some(rows) => {
                    for row in 0..rows {
                        seq.serialize_element(&Prediction {
                            model: self.0.model,
                            outputs: &run.outputs,
                            part: Part::Row(row),
                        })?;
                    }
                }
                None => seq.serialize_element(&Prediction {
                    model: self.0.model,
                    outputs: &run.outputs,
                    part: Part::Whole,
                })?,
            }
        }
        seq.end()
    }
}

struct Prediction<'a> {
    model: &'a Model,
    outputs: &'a [Tensor],
    part: Part,
}

struct OutputValue<'a> {
    model: &'a Model,
    name: &'a str,
    tensor: &'a Tensor,
    part: Part,
}

impl Serialize for OutputValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.model.zipmap(self.name) {
            Some(zipmap) => ZipMapJson { tensor: self.tensor, part: self.part, zipmap }.serialize(s),
            None => TensorJson { tensor: self.tensor, part: self.part }.serialize(s),
        }
    }
}

impl Serialize for Prediction<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let specs = self.model.outputs();
        if let ([spec], [tensor]) = (specs, self.outputs) {
            return OutputValue { model: self.model, name: &spec.name, tensor, part: self.part }.serialize(s);
        }
        let mut map = s.serialize_map(Some(specs.len()))?;
        for (spec, tensor) in specs.iter().zip(self.outputs) {
            map.serialize_entry(
                &spec.name,
                &OutputValue { model: self.model, name: &spec.name, tensor, part: self.part },
            )?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(name: &str, datum_type: DatumType) -> TensorSpec {
        TensorSpec { name: name.into(), datum_type, shape: vec![Dim::Fixed(1)] }
    }

    #[test]
    fn b64_values_of_string_inputs_become_their_text() {
        let text = [spec("text", DatumType::String)];
        // "hello" and "wörld" in base64, as a whole instance and nested in a row.
        let instances = [json!({"b64": "aGVsbG8="}), json!([{"b64": "d8O2cmxk"}, "plain"])];
        let decoded = decode_binary(&text, &instances).unwrap().unwrap();
        assert_eq!(decoded, [json!("hello"), json!(["wörld", "plain"])]);
        let named = [json!({"text": {"b64": "aGVsbG8="}})];
        assert_eq!(decode_binary(&text, &named).unwrap().unwrap(), [json!({"text": "hello"})]);
        let two = [spec("text", DatumType::String), spec("x", DatumType::F32)];
        let instances = [json!({"text": [{"b64": "aGVsbG8="}], "x": [1.0]})];
        assert_eq!(
            decode_binary(&two, &instances).unwrap().unwrap(),
            [json!({"text": ["hello"], "x": [1.0]})]
        );
        assert!(
            decode_binary(&two, &[json!({"text": ["a"], "x": [1.0]})]).unwrap().is_none(),
            "nothing copied"
        );
    }

    #[test]
    fn b64_values_are_refused_where_they_mean_nothing_or_are_broken() {
        let message =
            |specs: &[TensorSpec], instance: Value| decode_binary(specs, &[instance]).unwrap_err().0;
        let numbers = [spec("x", DatumType::F32)];
        let m = message(&numbers, json!([{"b64": "AAAA"}]));
        assert!(m.contains("input `x` is FP32") && m.contains("only a string (BYTES) input"), "{m}");
        let text = [spec("text", DatumType::String)];
        let m = message(&text, json!({"b64": "not base64!"}));
        assert!(m.contains("is not base64"), "{m}");
        let m = message(&text, json!({"b64": 7}));
        assert!(m.contains("not a string"), "{m}");
        let m = message(&text, json!({"b64": "/w=="}));
        assert!(m.contains("not UTF-8"), "{m}");
    }
}
