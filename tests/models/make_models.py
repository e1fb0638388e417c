#!/usr/bin/env python3
"""Generate the core ONNX test models and their onnxruntime reference outputs.

Writes, into the directory of this script, for each model NAME:
  NAME.onnx  -- a small real ONNX model (opset 17, IR version 8), built with onnx.helper
  NAME.json  -- reference inputs, onnxruntime outputs and the expected Vertex predict exchange

Deterministic (fixed seeds), idempotent (a file is only rewritten when its content changes).

    python tests/models/make_models.py           # (re)generate
    python tests/models/make_models.py --check   # exit 1 if a committed file is missing or stale

A reference file counts as up to date when its inputs are identical and its outputs agree with a
fresh onnxruntime run to within a float32 tolerance (rtol 1e-5, atol 1e-6), so that a different
CPU (other SIMD kernels in onnxruntime) does not make the committed files look stale. The .onnx
files must match byte for byte.
"""

import argparse
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17
IR_VERSION = 8  # accepted by onnxruntime 1.32 and tract 0.23
RTOL, ATOL = 1e-5, 1e-6

# Open Inference Protocol datatype names.
OIP_DATATYPES = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32",
    np.dtype(np.uint64): "UINT64",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
}


# --------------------------------------------------------------------------- helpers


def init(name, array):
    return numpy_helper.from_array(np.ascontiguousarray(array), name=name)


def he(rng, fan_in, fan_out, gain=1.0):
    return (rng.standard_normal((fan_in, fan_out)) * gain * np.sqrt(2.0 / fan_in)).astype(np.float32)


def dyadic(rng, shape, scale=1.0, denom=64):
    """Random normal values rounded to multiples of 1/denom: exact in float32, short in JSON."""
    return (np.round(rng.standard_normal(shape) * scale * denom) / denom).astype(np.float32)


def finish(graph):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="make_models.py",
        producer_version="1",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------- models


def mlp():
    """MLP classifier 64-256-256-10, Gemm + Relu, final Softmax; batch dim named "batch"."""
    rng = np.random.default_rng(1001)
    w1, b1 = he(rng, 64, 256), (rng.standard_normal(256) * 0.01).astype(np.float32)
    w2, b2 = he(rng, 256, 256), (rng.standard_normal(256) * 0.01).astype(np.float32)
    # A smaller last layer keeps the softmax away from one-hot outputs.
    w3, b3 = he(rng, 256, 10, gain=0.5), (rng.standard_normal(10) * 0.01).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["h1"], name="fc1"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "w2", "b2"], ["h2"], name="fc2"),
        helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
        helper.make_node("Gemm", ["r2", "w3", "b3"], ["logits"], name="fc3"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2), init("w3", w3), init("b3", b3)],
    )
    inputs = {"input": dyadic(rng, (3, 64))}
    return finish(graph), inputs


def linear():
    """Linear regressor 8 -> 1; the batch dim is unknown (no dim_value, no dim_param) like sklearn exports."""
    rng = np.random.default_rng(1002)
    w = (rng.standard_normal((8, 1)) * 0.5).astype(np.float32)
    b = np.array([0.25], dtype=np.float32)
    nodes = [
        helper.make_node("MatMul", ["features", "coef"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "intercept"], ["prediction"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, 1])],
        [init("coef", w), init("intercept", b)],
    )
    dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert not dim.HasField("dim_value") and not dim.HasField("dim_param")
    inputs = {"features": dyadic(rng, (3, 8))}
    return finish(graph), inputs


def cnn():
    """Conv(8,3x3,pad1)+Relu+MaxPool2 -> Conv(16,3x3)+Relu+MaxPool2 -> Flatten -> Gemm(576->10) -> Softmax."""
    rng = np.random.default_rng(1003)
    k1 = (rng.standard_normal((8, 1, 3, 3)) * np.sqrt(2.0 / 9)).astype(np.float32)
    c1 = (rng.standard_normal(8) * 0.01).astype(np.float32)
    k2 = (rng.standard_normal((16, 8, 3, 3)) * np.sqrt(2.0 / 72)).astype(np.float32)
    c2 = (rng.standard_normal(16) * 0.01).astype(np.float32)
    w = he(rng, 16 * 6 * 6, 10, gain=1.0)
    b = (rng.standard_normal(10) * 0.01).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "k1", "c1"], ["x1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),            # [N, 8, 28, 28]
        helper.make_node("Relu", ["x1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1",
                         kernel_shape=[2, 2], strides=[2, 2]),               # [N, 8, 14, 14]
        helper.make_node("Conv", ["p1", "k2", "c2"], ["x2"], name="conv2",
                         kernel_shape=[3, 3]),                               # [N, 16, 12, 12]
        helper.make_node("Relu", ["x2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2",
                         kernel_shape=[2, 2], strides=[2, 2]),               # [N, 16, 6, 6]
        helper.make_node("Flatten", ["p2"], ["flat"], name="flatten", axis=1),  # [N, 576]
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        [init("k1", k1), init("c1", c1), init("k2", k2), init("c2", c2), init("w", w), init("b", b)],
    )
    # "Pixel intensities" in [0, 1], multiples of 1/64.
    image = (rng.integers(0, 65, size=(3, 1, 28, 28)) / 64.0).astype(np.float32)
    return finish(graph), {"image": image}


def two_io():
    """Two inputs (a FP32 [N,4], b INT64 [N,3]) and two outputs (sum_features FP32 [N,4], score FP32 [N]).

    sum_features = a * 2 + MatMul(Cast<float>(b), W)      W: [3, 4]
    score        = ReduceSum(Concat(a, Cast<float>(b), axis=1), axis=1, keepdims=0)
    """
    rng = np.random.default_rng(1004)
    w = (np.round(rng.standard_normal((3, 4)) * 8) / 8).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["b"], ["bf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["a", "two"], ["a2"], name="double"),
        helper.make_node("MatMul", ["bf", "w"], ["bw"], name="matmul"),
        helper.make_node("Add", ["a2", "bw"], ["sum_features"], name="add"),
        helper.make_node("Concat", ["a", "bf"], ["ab"], name="concat", axis=1),
        helper.make_node("ReduceSum", ["ab", "axes"], ["score"], name="reducesum", keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "two_io",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("sum_features", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
        ],
        [
            init("two", np.array(2.0, dtype=np.float32)),
            init("w", w),
            init("axes", np.array([1], dtype=np.int64)),
        ],
    )
    inputs = {
        "a": dyadic(rng, (3, 4), denom=16),
        "b": rng.integers(-5, 6, size=(3, 3)).astype(np.int64),
    }
    return finish(graph), inputs


def fixed_batch():
    """Batch fixed to 1: x FP32 [1, 16] -> Tanh(MatMul(x, W) + c) -> y FP32 [1, 4]."""
    rng = np.random.default_rng(1005)
    w = (rng.standard_normal((16, 4)) * 0.25).astype(np.float32)
    c = (rng.standard_normal(4) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "c"], ["pre"], name="add"),
        helper.make_node("Tanh", ["pre"], ["y"], name="tanh"),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [init("w", w), init("c", c)],
    )
    return finish(graph), {"x": dyadic(rng, (1, 16), scale=0.5)}


MODELS = {
    "mlp": mlp,
    "linear": linear,
    "cnn": cnn,
    "two_io": two_io,
    "fixed_batch": fixed_batch,
}


# --------------------------------------------------------------------------- references


def to_json_values(array):
    """Nested lists of Python scalars (a scalar for a 0-d array).

    float32 -> float64 is exact, so every float is written as float(np.float32(x)): the exact
    float32 value, which parses back to the same float32.
    """
    if array.dtype == np.float32:
        return array.astype(np.float64).tolist()
    return array.tolist()  # ints and bools become Python ints / bools


def tensor_entry(array):
    return {
        "datatype": OIP_DATATYPES[array.dtype],
        "shape": list(array.shape),
        "data": to_json_values(array.reshape(-1)),
    }


def run_onnxruntime(model_bytes, inputs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs)))


def reference(model, inputs):
    outputs = run_onnxruntime(model.SerializeToString(), inputs)
    n = next(iter(inputs.values())).shape[0]

    def row(array, i):
        return to_json_values(array[i])  # a scalar for a 1-D tensor

    if len(inputs) == 1:
        (only,) = inputs.values()
        instances = [row(only, i) for i in range(n)]
    else:
        instances = [{k: row(v, i) for k, v in inputs.items()} for i in range(n)]
    if len(outputs) == 1:
        (only,) = outputs.values()
        predictions = [row(only, i) for i in range(n)]
    else:
        predictions = [{k: row(v, i) for k, v in outputs.items()} for i in range(n)]
    return {
        "inputs": {k: tensor_entry(v) for k, v in inputs.items()},
        "outputs": {k: tensor_entry(v) for k, v in outputs.items()},
        "vertex": {"instances": instances, "predictions": predictions},
    }


def dump(obj, indent=0):
    """JSON with objects indented and arrays kept on one line."""
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        pad = "  " * (indent + 1)
        items = [f"{pad}{json.dumps(k)}: {dump(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(obj, list) and any(isinstance(v, dict) for v in obj):
        pad = "  " * (indent + 1)
        return "[\n" + ",\n".join(pad + dump(v, indent + 1) for v in obj) + "\n" + "  " * indent + "]"
    return json.dumps(obj, separators=(", ", ": "), allow_nan=False)


def equivalent(old, new):
    """Same inputs and instances exactly; outputs and predictions within float32 tolerance."""

    def close(a, b):
        if isinstance(a, dict) or isinstance(b, dict):
            return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() \
                and all(close(a[k], b[k]) for k in a)
        if isinstance(a, list) or isinstance(b, list):
            return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) \
                and all(close(x, y) for x, y in zip(a, b))
        if isinstance(a, str) or isinstance(b, str):
            return a == b
        if type(a) is bool or type(b) is bool:
            return a == b
        return bool(np.isclose(a, b, rtol=RTOL, atol=ATOL))

    try:
        if old.keys() != new.keys() or old["inputs"] != new["inputs"]:
            return False
        if old["vertex"]["instances"] != new["vertex"]["instances"]:
            return False
        for k in ("outputs",):
            if old[k].keys() != new[k].keys():
                return False
            for name in new[k]:
                o, n = old[k][name], new[k][name]
                if o["datatype"] != n["datatype"] or o["shape"] != n["shape"]:
                    return False
        return close(old["outputs"], new["outputs"]) and close(
            old["vertex"]["predictions"], new["vertex"]["predictions"]
        ) and old["vertex"].keys() == new["vertex"].keys()
    except (KeyError, TypeError, AttributeError):
        return False


# --------------------------------------------------------------------------- main


def parse_args(doc):
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if any file is missing or stale")
    return parser.parse_args()


def same_function(current, inputs, ref, make_reference):
    """Whether the committed model's answers on `inputs` match the new reference."""
    try:
        return equivalent(make_reference(onnx.load_from_string(current), inputs), ref)
    except Exception:  # a model that does not load or run is stale
        return False


def write_all(models, make_reference, out_dir, script, check, max_bytes=None):
    """Writes each model and its reference into out_dir when missing or stale (with `check`,
    only reports them). Returns the exit code."""
    label = os.path.relpath(out_dir, os.path.dirname(os.path.dirname(HERE)))
    stale = []
    for name, build in models.items():
        model, inputs = build()
        model_bytes = model.SerializeToString()
        if max_bytes is not None:
            assert len(model_bytes) < max_bytes, (name, len(model_bytes))
        ref = make_reference(model, inputs)
        ref_text = dump(ref) + "\n"

        onnx_path = os.path.join(out_dir, name + ".onnx")
        json_path = os.path.join(out_dir, name + ".json")

        current = None
        if os.path.exists(onnx_path):
            with open(onnx_path, "rb") as f:
                current = f.read()
        if current is not None and current != model_bytes and same_function(current, inputs, ref, make_reference):
            # Retrained weights that differ in their last bits (BLAS threads, another machine):
            # the committed model answers the same, so it stays.
            model_bytes = current
        if current != model_bytes:
            stale.append(onnx_path)
            if not check:
                with open(onnx_path, "wb") as f:
                    f.write(model_bytes)

        up_to_date = False
        if os.path.exists(json_path):
            with open(json_path, encoding="utf-8") as f:
                text = f.read()
            try:
                up_to_date = text == ref_text or equivalent(json.loads(text), ref)
            except ValueError:
                up_to_date = False
        if not up_to_date:
            stale.append(json_path)
            if not check:
                with open(json_path, "w", encoding="utf-8", newline="\n") as f:
                    f.write(ref_text)

    rel = [os.path.relpath(p) for p in stale]
    if check:
        if stale:
            print(f"stale or missing (run {script}):", *rel, sep="\n  ", file=sys.stderr)
            return 1
        print(f"{label}: {len(models)} models up to date")
        return 0
    print("wrote:", *rel, sep="\n  ") if stale else print(f"{label}: nothing to do")
    return 0


def main():
    args = parse_args(__doc__)
    return write_all(MODELS, reference, HERE, "tests/models/make_models.py", args.check)


if __name__ == "__main__":
    sys.exit(main())
