//! A check tract's `LinearClassifier` and `LinearRegressor` lack: that the coefficients fit the
//! number of features their input declares. Without it, a model whose coefficients do not fit
//! (onnxruntime's own `logreg_iris` example: 12 coefficients, 3 classes, an input of 2
//! features) runs on tract with numbers that differ from onnxruntime's, which reads the first
//! `classes x features` coefficients. Refused here, such a model runs on onnxruntime (`auto`).

use tract_onnx::pb::tensor_shape_proto::dimension::Value as D;
use tract_onnx::pb::{GraphProto, type_proto};

/// Refuses linear models whose coefficients do not fit the features of the graph input they read.
pub fn check(graph: &GraphProto) -> Result<(), String> {
    for node in &graph.node {
        if node.domain != "ai.onnx.ml"
            || !matches!(node.op_type.as_str(), "LinearClassifier" | "LinearRegressor")
        {
            continue;
        }
        let Some(features) = node.input.first().and_then(|i| declared_features(graph, i)) else { continue };
        let coefficients =
            node.attribute.iter().find(|a| a.name == "coefficients").map_or(0, |a| a.floats.len());
        let outputs = match node.op_type.as_str() {
            "LinearClassifier" => node
                .attribute
                .iter()
                .find(|a| a.name == "classlabels_ints" || a.name == "classlabels_strings")
                .map_or(0, |a| a.ints.len().max(a.strings.len())),
            _ => node.attribute.iter().find(|a| a.name == "targets").map_or(1, |a| a.i.max(1) as usize),
        };
        let fits = coefficients == features * outputs
            || (node.op_type == "LinearClassifier" && outputs == 2 && coefficients == features);
        if !fits {
            return Err(format!(
                "{} `{}` has {coefficients} coefficients, which do not fit {outputs} outputs of the {features} features its input `{}` declares",
                node.op_type, node.name, node.input[0]
            ));
        }
    }
    Ok(())
}

/// The fixed size of the last dimension of graph input `name`, if declared.
fn declared_features(graph: &GraphProto, name: &str) -> Option<usize> {
    let input = graph.input.iter().find(|i| i.name == name)?;
    let type_proto::Value::TensorType(t) = input.r#type.as_ref()?.value.as_ref()?;
    match t.shape.as_ref()?.dim.last()?.value.as_ref()? {
        D::DimValue(v) if *v > 0 => Some(*v as usize),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use tract_onnx::prelude::*;

    use super::*;
    use crate::onnx_ml::common::test_util::{attr_floats, attr_ints, one_node_model};

    fn graph(coefficients: usize, classes: &[i64], features: usize) -> GraphProto {
        let x = Tensor::zero::<f32>(&[3, features]).unwrap();
        let attrs = vec![
            attr_ints("classlabels_ints", classes),
            attr_floats("coefficients", &vec![0.5; coefficients]),
        ];
        one_node_model("LinearClassifier", attrs, &[&x], 2).graph.unwrap()
    }

    #[test]
    fn coefficients_must_fit_the_declared_features() {
        assert!(check(&graph(6, &[0, 1, 2], 2)).is_ok());
        assert!(check(&graph(2, &[0, 1], 2)).is_ok(), "binary: one row of coefficients");
        let err = check(&graph(12, &[0, 1, 2], 2)).unwrap_err();
        assert!(err.contains("12 coefficients, which do not fit 3 outputs of the 2 features"), "{err}");
    }
}
