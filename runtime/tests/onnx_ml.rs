//! The scikit-learn models of `tests/models/sklearn` (exported with skl2onnx, references from
//! onnxruntime, see `tests/models/make_sklearn_models.py`) load in tract with the ONNX-ML
//! operators of `runtime::onnx_ml`, type with a symbolic batch dimension, declutter, optimize
//! (symbolic and concretized to the batch size) and answer like onnxruntime.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use runtime::onnx_ml::{self, ZipMap};
use serde_json::Value;
use tract_onnx::prelude::*;

const TOLERANCE: f64 = 1e-4;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/models/sklearn")
}

fn reference_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(models_dir())
        .expect("tests/models/sklearn exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn shape_of(entry: &Value) -> TractResult<Vec<usize>> {
    entry["shape"]
        .as_array()
        .context("no shape")?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).context("bad dimension"))
        .collect()
}

fn tensor_from_json(entry: &Value) -> TractResult<Tensor> {
    let shape = shape_of(entry)?;
    let data = entry["data"].as_array().context("no data")?;
    let floats =
        || data.iter().map(|v| v.as_f64().context("not a number")).collect::<TractResult<Vec<f64>>>();
    let ints =
        || data.iter().map(|v| v.as_i64().context("not an integer")).collect::<TractResult<Vec<i64>>>();
    let tensor = match entry["datatype"].as_str().context("no datatype")? {
        "FP32" => tensor1(&floats()?.into_iter().map(|v| v as f32).collect::<Vec<_>>()),
        "FP64" => tensor1(&floats()?),
        "INT64" => tensor1(&ints()?),
        "INT32" => tensor1(&ints()?.into_iter().map(|v| v as i32).collect::<Vec<_>>()),
        "BOOL" => {
            tensor1(&data.iter().map(|v| v.as_bool().context("not a bool")).collect::<TractResult<Vec<_>>>()?)
        }
        "BYTES" => tensor1(
            &data
                .iter()
                .map(|v| v.as_str().map(String::from).context("not a string"))
                .collect::<TractResult<Vec<_>>>()?,
        ),
        other => bail!("unsupported datatype {other}"),
    };
    tensor.into_shape(&shape)
}

fn close(got: f64, expected: f64) -> bool {
    (got - expected).abs() <= TOLERANCE * expected.abs().max(1.0)
}

/// Compares a tract output with a reference entry.
fn compare(name: &str, got: &Tensor, expected: &Value) -> TractResult<()> {
    let shape = shape_of(expected)?;
    ensure!(got.shape() == shape.as_slice(), "{name}: shape {:?}, expected {shape:?}", got.shape());
    let data = expected["data"].as_array().context("no data")?;
    match expected["datatype"].as_str().context("no datatype")? {
        "FP32" | "FP64" => {
            let got = got.cast_to::<f64>()?;
            let got = got.try_as_plain_ram()?;
            for (i, (g, e)) in got.as_slice::<f64>()?.iter().zip(data).enumerate() {
                let e = e.as_f64().context("not a number")?;
                ensure!(close(*g, e), "{name}[{i}]: {g}, expected {e}");
            }
        }
        "INT64" | "INT32" => {
            let got = got.cast_to::<i64>()?;
            let got = got.try_as_plain_ram()?;
            for (i, (g, e)) in got.as_slice::<i64>()?.iter().zip(data).enumerate() {
                ensure!(Some(*g) == e.as_i64(), "{name}[{i}]: {g}, expected {e}");
            }
        }
        "BYTES" => {
            let got = got.try_as_plain_ram()?;
            for (i, (g, e)) in got.as_slice::<String>()?.iter().zip(data).enumerate() {
                ensure!(Some(g.as_str()) == e.as_str(), "{name}[{i}]: {g:?}, expected {e}");
            }
        }
        other => bail!("{name}: unsupported datatype {other}"),
    }
    Ok(())
}

/// The ZipMap labels agree with the Vertex predictions: every row of the probabilities is a
/// `{label: probability}` object with the labels in column order.
fn check_zipmap(
    zipmap: &ZipMap,
    probabilities: &Tensor,
    reference: &Value,
    n_outputs: usize,
) -> TractResult<()> {
    let labels = zipmap.labels.to_strings();
    ensure!(
        probabilities.shape().get(1) == Some(&labels.len()),
        "{}: {} labels for probabilities of shape {:?}",
        zipmap.output,
        labels.len(),
        probabilities.shape()
    );
    let probabilities = probabilities.cast_to::<f64>()?;
    let probabilities = probabilities.try_as_plain_ram()?;
    let probabilities = probabilities.as_slice::<f64>()?;
    let predictions = reference["vertex"]["predictions"].as_array().context("no predictions")?;
    for (i, prediction) in predictions.iter().enumerate() {
        let map = if n_outputs == 1 { prediction } else { &prediction[&zipmap.output] };
        let map = map.as_object().context("a ZipMap prediction is not an object")?;
        ensure!(map.len() == labels.len(), "{}: row {i} has {} labels", zipmap.output, map.len());
        for (j, label) in labels.iter().enumerate() {
            let expected = map.get(label).and_then(Value::as_f64);
            let expected = expected.with_context(|| format!("row {i} has no label {label:?}"))?;
            let got = probabilities[i * labels.len() + j];
            ensure!(close(got, expected), "{}[{i}][{label}]: {got}, expected {expected}", zipmap.output);
        }
    }
    Ok(())
}

fn check_model(json: &Path) -> TractResult<()> {
    let reference: Value = serde_json::from_str(&fs::read_to_string(json)?)?;
    let mut onnx = tract_onnx::onnx();
    onnx_ml::register(&mut onnx.op_register);
    let mut proto = onnx.proto_model_for_path(json.with_extension("onnx"))?;
    let zipmaps = onnx_ml::strip_zipmap(&mut proto)?;
    let mut model = onnx.model_for_proto_model(&proto)?;

    let graph = proto.graph.as_ref().context("no graph")?;
    let input_names: Vec<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| graph.initializer.iter().all(|t| t.name != *n))
        .collect();
    let output_names: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let expected_outputs = reference["outputs"].as_object().context("no outputs")?;
    ensure!(
        expected_outputs.len() == output_names.len()
            && output_names.iter().all(|n| expected_outputs.contains_key(*n)),
        "outputs {output_names:?} vs reference {:?}",
        expected_outputs.keys().collect::<Vec<_>>()
    );

    // Every input gets a symbolic batch dimension, like the server gives them.
    let n_sym = model.sym("N");
    let mut inputs = tvec![];
    for (ix, name) in input_names.iter().enumerate() {
        let tensor =
            tensor_from_json(&reference["inputs"][*name]).with_context(|| format!("input {name}"))?;
        let mut shape: TVec<TDim> = tensor.shape().iter().map(|d| d.to_dim()).collect();
        shape[0] = n_sym.to_dim();
        model.set_input_fact(ix, InferenceFact::dt_shape(tensor.datum_type(), shape))?;
        inputs.push(tensor);
    }
    let batch = inputs[0].shape()[0];

    let typed = model.into_typed()?.into_decluttered()?;
    for (ix, outlet) in typed.output_outlets()?.iter().enumerate() {
        let fact = typed.outlet_fact(*outlet)?;
        ensure!(
            fact.shape.iter().next().is_some_and(|d| d.symbols().contains(&n_sym)),
            "output {} is not batched by N: {fact:?}",
            output_names[ix]
        );
    }
    let concretized = typed
        .set_symbols(&SymbolValues::default().with(&n_sym, batch as i64).to_dim_map())?
        .into_optimized()?;
    let symbolic = typed.into_optimized()?;

    for (what, model) in [("concretized", concretized), ("symbolic", symbolic)] {
        let values: TVec<TValue> = inputs.iter().map(|t| t.clone().into_tvalue()).collect();
        let outputs = model.into_runnable()?.run(values).with_context(|| format!("running {what}"))?;
        ensure!(outputs.len() == output_names.len(), "{what}: {} outputs", outputs.len());
        for (name, got) in output_names.iter().zip(&outputs) {
            compare(name, got, &expected_outputs[*name]).with_context(|| what.to_string())?;
        }
        for zipmap in &zipmaps {
            let ix = output_names.iter().position(|n| *n == zipmap.output).context("ZipMap output")?;
            check_zipmap(zipmap, &outputs[ix], &reference, output_names.len())?;
        }
    }
    Ok(())
}

#[test]
fn sklearn_models_match_onnxruntime() {
    let files = reference_files();
    assert!(files.len() >= 10, "expected the sklearn test models, found {files:?}");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|json| {
            check_model(json)
                .err()
                .map(|e| format!("{}: {e:?}", json.file_stem().unwrap_or_default().to_string_lossy()))
        })
        .collect();
    assert!(failures.is_empty(), "{} model(s) failed:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn classifiers_keep_their_zipmap_labels() {
    let mut onnx = tract_onnx::onnx();
    onnx_ml::register(&mut onnx.op_register);
    let labels = |name: &str| {
        let mut proto = onnx.proto_model_for_path(models_dir().join(format!("{name}.onnx"))).unwrap();
        let zipmaps = onnx_ml::strip_zipmap(&mut proto).unwrap();
        assert_eq!(zipmaps.len(), 1, "{name}");
        assert_eq!(zipmaps[0].output, "output_probability");
        zipmaps[0].labels.clone()
    };
    assert_eq!(labels("scaler_logreg"), onnx_ml::ZipMapLabels::Int64(vec![0, 1, 2]));
    assert_eq!(labels("scaler_mlp"), onnx_ml::ZipMapLabels::Int64(vec![0, 1, 2]));
    assert_eq!(
        labels("rf_classifier"),
        onnx_ml::ZipMapLabels::Strings(vec!["setosa".into(), "versicolor".into(), "virginica".into()])
    );
    assert_eq!(labels("gb_classifier_binary"), onnx_ml::ZipMapLabels::Int64(vec![0, 1]));
}
