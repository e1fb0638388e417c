//! Removal of the `ZipMap` nodes that feed graph outputs (see [`super::strip_zipmap`]).
//!
//! The graph output keeps its name. When the probabilities tensor is produced by a node of the
//! graph, that node's output is renamed to the graph output's name (and every use of the old
//! name follows); otherwise (a graph input, an initializer, another graph output) an
//! `Identity` node takes the ZipMap's place. The output is then declared as a float tensor
//! `[N, classes]` with an unknown N.

use std::collections::HashSet;

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::{
    GraphProto, ModelProto, NodeProto, TensorShapeProto, TypeProto, attribute_proto, type_proto,
};

use super::{ZipMap, ZipMapLabels};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZipMapError {
    #[error("the model has no graph")]
    NoGraph,
    #[error("ZipMap node {node:?}: {reason}")]
    Invalid { node: String, reason: String },
}

fn invalid(node: &NodeProto, reason: impl Into<String>) -> ZipMapError {
    ZipMapError::Invalid { node: node.name.clone(), reason: reason.into() }
}

fn labels(node: &NodeProto) -> Result<ZipMapLabels, ZipMapError> {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let ints = attr("classlabels_int64s");
    let strings = attr("classlabels_strings");
    let is = |a: &tract_onnx::pb::AttributeProto, t: attribute_proto::AttributeType| a.r#type == t as i32;
    match (ints, strings) {
        (Some(a), None) if is(a, attribute_proto::AttributeType::Ints) && !a.ints.is_empty() => {
            Ok(ZipMapLabels::Int64(a.ints.clone()))
        }
        (None, Some(a)) if is(a, attribute_proto::AttributeType::Strings) && !a.strings.is_empty() => {
            let labels = a
                .strings
                .iter()
                .map(|s| String::from_utf8(s.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid(node, "a class label is not valid UTF-8"))?;
            Ok(ZipMapLabels::Strings(labels))
        }
        _ => Err(invalid(
            node,
            "exactly one of classlabels_int64s (ints) and classlabels_strings (strings) must be set and non-empty",
        )),
    }
}

/// Replaces `from` by `to` in the inputs of every node, nested graphs included.
fn rename_uses(graph: &mut GraphProto, from: &str, to: &str) {
    for node in &mut graph.node {
        for input in &mut node.input {
            if input == from {
                *input = to.to_string();
            }
        }
        for attr in &mut node.attribute {
            if let Some(g) = attr.g.as_mut() {
                rename_uses(g, from, to);
            }
            for g in &mut attr.graphs {
                rename_uses(g, from, to);
            }
        }
    }
}

/// `[rows, classes]` floats, with rows as the first graph input's leading dimension (a ZipMap
/// gives one map per input row), unknown when that input declares none.
fn float_matrix_type(rows: Option<Dimension>, classes: usize) -> TypeProto {
    TypeProto {
        denotation: String::new(),
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: DataType::Float as i32,
            shape: Some(TensorShapeProto {
                dim: vec![
                    rows.unwrap_or(Dimension { denotation: String::new(), value: None }),
                    Dimension {
                        denotation: String::new(),
                        value: Some(dimension::Value::DimValue(classes as i64)),
                    },
                ],
            }),
        })),
    }
}

pub fn strip(model: &mut ModelProto) -> Result<Vec<ZipMap>, ZipMapError> {
    let graph = model.graph.as_mut().ok_or(ZipMapError::NoGraph)?;
    let graph_outputs: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let rows = graph.input.first().and_then(|i| match i.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => t.shape.as_ref()?.dim.first().cloned(),
    });
    let mut removed = vec![];
    let mut i = 0;
    while i < graph.node.len() {
        let node = &graph.node[i];
        if node.op_type != "ZipMap" || node.output.len() != 1 || !graph_outputs.contains(&node.output[0]) {
            i += 1;
            continue;
        }
        let labels = labels(node)?;
        let probabilities = match node.input.as_slice() {
            [p] if !p.is_empty() => p.clone(),
            _ => return Err(invalid(node, "expected exactly one input")),
        };
        let output = node.output[0].clone();
        let zipmap = graph.node.remove(i);

        let produced_here = graph.node.iter().any(|n| n.output.contains(&probabilities));
        let is_graph_io = graph_outputs.contains(&probabilities)
            || graph.input.iter().any(|v| v.name == probabilities)
            || graph.initializer.iter().any(|t| t.name == probabilities);
        if produced_here && !is_graph_io {
            for n in &mut graph.node {
                for o in &mut n.output {
                    if *o == probabilities {
                        *o = output.clone();
                    }
                }
            }
            rename_uses(graph, &probabilities, &output);
            graph.value_info.retain(|v| v.name != output);
            for v in &mut graph.value_info {
                if v.name == probabilities {
                    v.name = output.clone();
                }
            }
        } else {
            let identity = NodeProto {
                name: if zipmap.name.is_empty() {
                    format!("{output}.zipmap_identity")
                } else {
                    zipmap.name.clone()
                },
                op_type: "Identity".into(),
                domain: String::new(),
                input: vec![probabilities],
                output: vec![output.clone()],
                ..Default::default()
            };
            graph.node.insert(i, identity);
            i += 1;
        }
        for o in &mut graph.output {
            if o.name == output {
                o.r#type = Some(float_matrix_type(rows.clone(), labels.len()));
            }
        }
        removed.push(ZipMap { output, labels });
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use super::*;
    use tract_onnx::pb::ValueInfoProto;
    use tract_onnx::prelude::*;

    fn zipmap(input: &str, output: &str, attrs: Vec<tract_onnx::pb::AttributeProto>) -> NodeProto {
        NodeProto {
            name: "zm".into(),
            op_type: "ZipMap".into(),
            domain: "ai.onnx.ml".into(),
            input: vec![input.into()],
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        }
    }

    /// x -> Softmax -> probs -> ZipMap -> output_probability; probs also -> ArgMax -> label.
    fn classifier(attrs: Vec<tract_onnx::pb::AttributeProto>) -> ModelProto {
        let x = tensor2(&[[1.0f32, 2.0, 3.0]]);
        let mut proto = one_node_model("Scaler", vec![], &[&x], 1);
        let graph = proto.graph.as_mut().unwrap();
        graph.node = vec![
            NodeProto {
                name: "softmax".into(),
                op_type: "Softmax".into(),
                input: vec!["x0".into()],
                output: vec!["probs".into()],
                ..Default::default()
            },
            NodeProto {
                name: "argmax".into(),
                op_type: "ArgMax".into(),
                input: vec!["probs".into()],
                output: vec!["label".into()],
                attribute: vec![attr_int("axis", 1), attr_int("keepdims", 0)],
                ..Default::default()
            },
            zipmap("probs", "output_probability", attrs),
        ];
        graph.output = ["label", "output_probability"]
            .iter()
            .map(|n| ValueInfoProto { name: n.to_string(), ..Default::default() })
            .collect();
        graph.value_info = vec![ValueInfoProto { name: "probs".into(), ..Default::default() }];
        proto
    }

    #[test]
    fn renames_the_producer_and_keeps_the_output_name() {
        let mut proto = classifier(vec![attr_ints("classlabels_int64s", &[10, 20, 30])]);
        let removed = strip(&mut proto).unwrap();
        assert_eq!(
            removed,
            vec![ZipMap {
                output: "output_probability".into(),
                labels: ZipMapLabels::Int64(vec![10, 20, 30])
            }]
        );
        let graph = proto.graph.as_ref().unwrap();
        assert_eq!(graph.node.len(), 2);
        assert_eq!(graph.node[0].output, vec!["output_probability".to_string()]);
        assert_eq!(graph.node[1].input, vec!["output_probability".to_string()]);
        assert_eq!(graph.value_info[0].name, "output_probability");
        // One row per row of the first input (declared with 1 row here).
        let rows = Dimension { denotation: String::new(), value: Some(dimension::Value::DimValue(1)) };
        assert_eq!(graph.output[1].r#type, Some(float_matrix_type(Some(rows), 3)));

        let model = load(&proto).unwrap().into_typed().unwrap();
        let plan = model.into_runnable().unwrap();
        let out = plan.run(tvec!(tensor2(&[[1.0f32, 2.0, 3.0]]).into_tvalue())).unwrap();
        assert_eq!(out[0].shape(), &[1]);
        assert_eq!(out[1].shape(), &[1, 3]);
    }

    #[test]
    fn graph_input_probabilities_get_an_identity() {
        let mut proto = classifier(vec![attr_strings("classlabels_strings", &["a", "b", "c"])]);
        let graph = proto.graph.as_mut().unwrap();
        graph.node[2].input = vec!["x0".into()];
        let removed = strip(&mut proto).unwrap();
        assert_eq!(removed[0].labels, ZipMapLabels::Strings(vec!["a".into(), "b".into(), "c".into()]));
        let graph = proto.graph.as_ref().unwrap();
        assert_eq!(graph.node[2].op_type, "Identity");
        assert_eq!(graph.node[2].input, vec!["x0".to_string()]);
        let model = load(&proto).unwrap().into_typed().unwrap();
        let out = model
            .into_runnable()
            .unwrap()
            .run(tvec!(tensor2(&[[0.25f32, 0.5, 0.25]]).into_tvalue()))
            .unwrap();
        assert_eq!(*out[1], tensor2(&[[0.25f32, 0.5, 0.25]]));
    }

    #[test]
    fn invalid_labels_are_errors() {
        let mut proto = classifier(vec![]);
        let err = strip(&mut proto).unwrap_err();
        assert!(err.to_string().contains("classlabels"), "{err}");
        let mut proto = classifier(vec![
            attr_ints("classlabels_int64s", &[1]),
            attr_strings("classlabels_strings", &["a"]),
        ]);
        assert!(strip(&mut proto).is_err());
        assert_eq!(strip(&mut ModelProto::default()), Err(ZipMapError::NoGraph));
    }

    #[test]
    fn zipmap_not_feeding_an_output_is_kept_and_fails_at_load() {
        let mut proto = classifier(vec![attr_ints("classlabels_int64s", &[0, 1, 2])]);
        let graph = proto.graph.as_mut().unwrap();
        graph.output.pop();
        assert!(strip(&mut proto).unwrap().is_empty());
        let err = format!("{:?}", load(&proto).unwrap_err());
        assert!(err.contains("strip_zipmap"), "{err}");
    }
}
