//! `LabelEncoder` (ai.onnx.ml): maps each input value through a key -> value table, with a
//! default for unknown keys. Supports opset 1 (`classes_strings`: string -> index or
//! index -> string, decided by the input type), opsets 2-3 (`keys_*` / `values_*` among int64,
//! float and string, defaults `default_int64` -1, `default_float` -0.0, `default_string`
//! "_Unused") and opset 4 (`keys_tensor` / `values_tensor` / `default_tensor`). A NaN float key
//! matches NaN inputs.

use std::collections::HashMap;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::tract_core::ndarray::ArrayD;
use tract_onnx::tract_hir::internal::*;

use super::common::{describe, ints, strings};

pub fn register(reg: &mut OnnxOpRegister) {
    reg.insert("LabelEncoder", label_encoder);
}

/// A lookup key: integers as i64, floats as canonical f64 bits (-0.0 is 0.0, one NaN).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Int(i64),
    Float(u64),
    Str(String),
}

impl Key {
    fn float(f: f64) -> Key {
        let canonical = if f.is_nan() {
            f64::NAN
        } else if f == 0.0 {
            0.0
        } else {
            f
        };
        Key::Float(canonical.to_bits())
    }
}

/// The keys of a tensor, in order.
fn keys_of(t: &Tensor) -> TractResult<Vec<Key>> {
    let view = t.try_as_plain_ram()?;
    Ok(match t.datum_type() {
        DatumType::String => view.as_slice::<String>()?.iter().map(|s| Key::Str(s.clone())).collect(),
        DatumType::F32 => view.as_slice::<f32>()?.iter().map(|&f| Key::float(f.into())).collect(),
        DatumType::F64 => view.as_slice::<f64>()?.iter().map(|&f| Key::float(f)).collect(),
        DatumType::I64 | DatumType::I32 | DatumType::I16 | DatumType::TDim => {
            let ints = t.cast_to::<i64>()?;
            let ints = ints.try_as_plain_ram()?.as_slice::<i64>()?.to_vec();
            ints.into_iter().map(Key::Int).collect()
        }
        dt => bail!("LabelEncoder: unsupported key type {dt:?}"),
    })
}

const VALUE_TYPES: [DatumType; 6] =
    [DatumType::I64, DatumType::I32, DatumType::I16, DatumType::F32, DatumType::F64, DatumType::String];

#[derive(Debug, Clone)]
enum LabelEncoder {
    /// Opsets 2 and later: one table.
    Table(LabelEncoderOp),
    /// Opset 1: `classes_strings`, used in the direction the input type asks for.
    Classes { from_strings: LabelEncoderOp, from_ints: LabelEncoderOp },
}

/// Reads the keys or values given as `<prefix>_int64s`, `<prefix>_floats`, `<prefix>_strings`
/// or `<prefix>_tensor`.
fn table_column(ctx: &ParsingContext, node: &NodeProto, prefix: &str) -> TractResult<Tensor> {
    let int64s: Option<Vec<i64>> = node.get_attr_opt_vec(&format!("{prefix}_int64s"))?;
    let floats: Option<Vec<f32>> = node.get_attr_opt_vec(&format!("{prefix}_floats"))?;
    let strs: Option<Vec<String>> = node.get_attr_opt_vec(&format!("{prefix}_strings"))?;
    let tensor: Option<&TensorProto> = node.get_attr_opt(&format!("{prefix}_tensor"))?;
    let set = [int64s.is_some(), floats.is_some(), strs.is_some(), tensor.is_some()];
    ensure!(
        set.iter().filter(|s| **s).count() == 1,
        "{}: exactly one of `{prefix}_int64s`, `{prefix}_floats`, `{prefix}_strings` and `{prefix}_tensor` must be set",
        describe(node)
    );
    Ok(if let Some(v) = int64s {
        tensor1(&v)
    } else if let Some(v) = floats {
        tensor1(&v)
    } else if let Some(v) = strs {
        tensor1(&v)
    } else if let Some(t) = tensor {
        let t = ctx.load_tensor(t)?;
        ensure!(
            VALUE_TYPES.contains(&t.datum_type()),
            "{}: unsupported `{prefix}_tensor` type {:?}",
            describe(node),
            t.datum_type()
        );
        let len = t.len();
        t.into_shape(&[len])?
    } else {
        bail!("{}: no `{prefix}_*` attribute", describe(node))
    })
}

fn default_value(ctx: &ParsingContext, node: &NodeProto, dt: DatumType) -> TractResult<Tensor> {
    if let Some(t) = node.get_attr_opt::<&TensorProto>("default_tensor")? {
        let t = ctx.load_tensor(t)?;
        ensure!(t.len() == 1, "{}: `default_tensor` must hold one value, it has {}", describe(node), t.len());
        let t = t.into_shape(&[])?;
        ensure!(
            t.datum_type() == dt,
            "{}: `default_tensor` is {:?} but the values are {dt:?}",
            describe(node),
            t.datum_type()
        );
        return Ok(t);
    }
    let int = node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1);
    let float = node.get_attr_opt::<f32>("default_float")?.unwrap_or(-0.0);
    Ok(match dt {
        DatumType::String => {
            tensor0(node.get_attr_opt::<String>("default_string")?.unwrap_or_else(|| "_Unused".into()))
        }
        DatumType::F32 => tensor0(float),
        DatumType::F64 => tensor0(f64::from(float)),
        _ => tensor0(int).cast_to_dt(dt)?.into_owned(),
    })
}

fn build_op(node: &NodeProto, keys: &Tensor, values: Tensor, default: Tensor) -> TractResult<LabelEncoderOp> {
    let keys_list = keys_of(keys)?;
    ensure!(
        keys_list.len() == values.len(),
        "{}: {} keys but {} values",
        describe(node),
        keys_list.len(),
        values.len()
    );
    let mut map = HashMap::with_capacity(keys_list.len());
    for (i, k) in keys_list.into_iter().enumerate() {
        // Like onnxruntime, the first occurrence of a repeated key wins.
        map.entry(k).or_insert(i);
    }
    Ok(LabelEncoderOp {
        key_type: keys.datum_type(),
        map,
        values: values.into_arc_tensor(),
        default: default.into_arc_tensor(),
    })
}

fn label_encoder(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let classes = strings(node, "classes_strings")?;
    let op = if !classes.is_empty() {
        let n = classes.len() as i64;
        let indices: Vec<i64> = (0..n).collect();
        let default_int = node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1);
        let default_string =
            node.get_attr_opt::<String>("default_string")?.unwrap_or_else(|| "_Unused".into());
        let classes = tensor1(&classes);
        let indices = tensor1(&indices);
        LabelEncoder::Classes {
            from_strings: build_op(node, &classes, indices.clone(), tensor0(default_int))?,
            from_ints: build_op(node, &indices, classes, tensor0(default_string))?,
        }
    } else {
        ensure!(
            ints(node, "classes_int64s")?.is_empty(),
            "{}: `classes_int64s` is not a LabelEncoder attribute",
            describe(node)
        );
        let keys = table_column(ctx, node, "keys")?;
        let values = table_column(ctx, node, "values")?;
        let default = default_value(ctx, node, values.datum_type())?;
        LabelEncoder::Table(build_op(node, &keys, values, default)?)
    };
    Ok((expand(op), vec![]))
}

impl Expansion for LabelEncoder {
    fn name(&self) -> StaticName {
        "LabelEncoder".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        match self {
            LabelEncoder::Table(op) => {
                s.equals(&outputs[0].datum_type, op.values.datum_type())?;
            }
            LabelEncoder::Classes { .. } => {
                s.given(&inputs[0].datum_type, move |s, dt| {
                    let out = if dt == DatumType::String { DatumType::I64 } else { DatumType::String };
                    s.equals(&outputs[0].datum_type, out)
                })?;
            }
        }
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        let op = match self {
            LabelEncoder::Table(op) => op,
            LabelEncoder::Classes { from_strings, .. } if dt == DatumType::String => from_strings,
            LabelEncoder::Classes { from_ints, .. } => from_ints,
        };
        let compatible = match op.key_type {
            DatumType::String => dt == DatumType::String,
            DatumType::F32 | DatumType::F64 => dt == op.key_type,
            _ => [DatumType::I64, DatumType::I32, DatumType::I16, DatumType::TDim].contains(&dt),
        };
        ensure!(
            compatible,
            "LabelEncoder {prefix}: input type {dt:?} does not match the key type {:?}",
            op.key_type
        );
        model.wire_node(prefix, op.clone(), inputs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelEncoderOp {
    pub key_type: DatumType,
    /// key -> index in `values`.
    pub map: HashMap<Key, usize>,
    pub values: Arc<Tensor>,
    pub default: Arc<Tensor>,
}

fn gather<T: Datum + Clone>(
    values: &Tensor,
    default: &Tensor,
    indices: &[Option<usize>],
    shape: &[usize],
) -> TractResult<Tensor> {
    let values = values.try_as_plain_ram()?;
    let values = values.as_slice::<T>()?;
    let default = default.try_as_plain_ram()?;
    let default = default.to_scalar::<T>()?;
    let data: Vec<T> =
        indices.iter().map(|i| i.map_or_else(|| default.clone(), |i| values[i].clone())).collect();
    Ok(ArrayD::from_shape_vec(shape, data)?.into())
}

impl Op for LabelEncoderOp {
    fn name(&self) -> StaticName {
        "OnnxMlLabelEncoder".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} keys ({:?} -> {:?})", self.map.len(), self.key_type, self.values.datum_type())])
    }

    tract_onnx::tract_core::op_as_typed_op!();
}

impl EvalOp for LabelEncoderOp {
    tract_onnx::tract_core::op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = tract_onnx::tract_core::args_1!(inputs);
        let keys = keys_of(&x)?;
        let indices: Vec<Option<usize>> = keys.iter().map(|k| self.map.get(k).copied()).collect();
        let (v, d, shape) = (&*self.values, &*self.default, x.shape());
        let out = match v.datum_type() {
            DatumType::I64 => gather::<i64>(v, d, &indices, shape)?,
            DatumType::I32 => gather::<i32>(v, d, &indices, shape)?,
            DatumType::I16 => gather::<i16>(v, d, &indices, shape)?,
            DatumType::F32 => gather::<f32>(v, d, &indices, shape)?,
            DatumType::F64 => gather::<f64>(v, d, &indices, shape)?,
            DatumType::String => gather::<String>(v, d, &indices, shape)?,
            dt => bail!("LabelEncoder: unsupported value type {dt:?}"),
        };
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for LabelEncoderOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.values.datum_type().fact(inputs[0].shape.clone())))
    }

    tract_onnx::tract_core::as_op!();
}

#[cfg(test)]
mod tests {
    use super::super::common::test_util::*;
    use tract_onnx::prelude::*;

    fn strs(v: &[&str]) -> Tensor {
        tensor1(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn int_to_int_with_default() {
        let x = tensor2(&[[10i64, 30], [99, 20]]);
        let attrs = vec![attr_ints("keys_int64s", &[10, 20, 30]), attr_ints("values_int64s", &[0, 1, 2])];
        let out = run("LabelEncoder", attrs, &[&x], 1).unwrap();
        assert_eq!(out[0], tensor2(&[[0i64, 2], [-1, 1]]));
    }

    #[test]
    fn int_to_float_and_float_to_int() {
        let x = tensor1(&[2i64, 5]);
        let attrs = vec![attr_ints("keys_int64s", &[1, 2]), attr_floats("values_floats", &[0.5, 1.5])];
        let out = run("LabelEncoder", attrs, &[&x], 1).unwrap();
        // The float default is -0.0.
        assert_eq!(out[0], tensor1(&[1.5f32, -0.0]));

        let x = tensor1(&[1.5f32, f32::NAN, 0.0, 7.0]);
        let attrs = vec![
            attr_floats("keys_floats", &[1.5, f32::NAN, -0.0]),
            attr_ints("values_int64s", &[10, 20, 30]),
            attr_int("default_int64", 42),
        ];
        let out = run("LabelEncoder", attrs, &[&x], 1).unwrap();
        assert_eq!(out[0], tensor1(&[10i64, 20, 30, 42]));
    }

    #[test]
    fn strings_both_ways() {
        let x = strs(&["b", "zz", "a"]);
        let attrs = vec![attr_strings("keys_strings", &["a", "b"]), attr_ints("values_int64s", &[7, 8])];
        let out = run("LabelEncoder", attrs, &[&x], 1).unwrap();
        assert_eq!(out[0], tensor1(&[8i64, -1, 7]));

        let x = tensor1(&[8i64, 0]);
        let attrs = vec![
            attr_ints("keys_int64s", &[7, 8]),
            attr_strings("values_strings", &["a", "b"]),
            attr_string("default_string", "?"),
        ];
        let out = run("LabelEncoder", attrs, &[&x], 1).unwrap();
        assert_eq!(out[0], strs(&["b", "?"]));

        let x = strs(&["x"]);
        let attrs = vec![attr_strings("keys_strings", &["a"]), attr_strings("values_strings", &["b"])];
        let out = run("LabelEncoder", attrs, &[&x], 1).unwrap();
        assert_eq!(out[0], strs(&["_Unused"]));
    }

    #[test]
    fn opset_1_classes_strings() {
        let attrs = vec![attr_strings("classes_strings", &["a", "b", "c"]), attr_int("default_int64", -7)];
        let out = run("LabelEncoder", attrs.clone(), &[&strs(&["c", "q"])], 1).unwrap();
        assert_eq!(out[0], tensor1(&[2i64, -7]));
        let out = run("LabelEncoder", attrs, &[&tensor1(&[1i64, 9])], 1).unwrap();
        assert_eq!(out[0], strs(&["b", "_Unused"]));
    }

    #[test]
    fn double_tensor_keys() {
        let x = tensor1(&[0.25f64, 3.0]);
        let attrs = vec![
            attr_double_tensor("keys_tensor", &[0.25, 0.5]),
            attr_double_tensor("values_tensor", &[1.0, 2.0]),
        ];
        let out = run("LabelEncoder", attrs, &[&x], 1).unwrap();
        assert_eq!(out[0], tensor1(&[1.0f64, -0.0]));
    }

    #[test]
    fn bad_attributes_and_types_are_load_errors() {
        let x = tensor1(&[1i64]);
        let err = run_err(
            "LabelEncoder",
            vec![attr_ints("keys_int64s", &[1, 2]), attr_ints("values_int64s", &[1])],
            &[&x],
            1,
        );
        assert!(err.contains("2 keys but 1 values"), "{err}");
        let err = run_err("LabelEncoder", vec![attr_ints("values_int64s", &[1])], &[&x], 1);
        assert!(err.contains("exactly one of `keys_int64s`"), "{err}");
        let err = run_err(
            "LabelEncoder",
            vec![attr_strings("keys_strings", &["a"]), attr_ints("values_int64s", &[1])],
            &[&x],
            1,
        );
        assert!(err.contains("does not match the key type"), "{err}");
    }
}
