#!/usr/bin/env python3
"""Generate scikit-learn test models (exported with skl2onnx) and their onnxruntime references.

Each model is a small scikit-learn estimator or pipeline trained on a tiny, seeded data set and
converted with skl2onnx using float32 inputs (``FloatTensorType([None, n])``) the way users export
them, so that the graphs contain the ONNX-ML operators (domain ``ai.onnx.ml``) skl2onnx really
emits: Scaler, Normalizer, Imputer, OneHotEncoder, LabelEncoder, LinearClassifier, LinearRegressor,
TreeEnsembleRegressor, TreeEnsembleClassifier, ArrayFeatureExtractor and ZipMap. Two LabelEncoder
graphs come from sklearn's LabelEncoder, one (float keys to string values, with a default) is built
with onnx.helper. For every model NAME this writes into ``tests/models/sklearn/``: ``NAME.onnx``
and ``NAME.json`` (reference inputs, onnxruntime outputs and the expected Vertex predict exchange,
in the format of ``tests/models/make_models.py``). A ZipMap output is recorded in "outputs" as the
FP32 [N, classes] probability tensor under the original output name, and in the Vertex
predictions as one {label: probability} object per instance (labels as strings). Missing values
in the imputer model are the sentinel -1 rather than NaN, because JSON has no NaN. Deterministic
(fixed seeds) and idempotent; run it with the project venv:

    .venv/bin/python tests/models/make_sklearn_models.py           # (re)generate
    .venv/bin/python tests/models/make_sklearn_models.py --check   # exit 1 if anything is stale
"""

import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder, Normalizer, OneHotEncoder, StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_models import OIP_DATATYPES, parse_args, to_json_values, write_all  # noqa: E402

OUT = os.path.join(HERE, "sklearn")
MAX_BYTES = 1 << 20

warnings.filterwarnings("ignore")  # convergence and skl2onnx version warnings: irrelevant here


# --------------------------------------------------------------------------- data


def iris():
    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def pick(x, rows):
    """A few reference rows, rounded to 1/16 so that JSON stays short and float32-exact."""
    return (np.round(x[rows] * 16) / 16).astype(np.float32)


IRIS_ROWS = [0, 17, 52, 77, 101, 120, 133, 149]


def floats(name, n):
    return [(name, FloatTensorType([None, n]))]


def convert(estimator, initial_types, **kwargs):
    onx = to_onnx(estimator, initial_types=initial_types, **kwargs)
    # skl2onnx lists the opsets in hash order (and sometimes twice): sort them so that the
    # bytes do not depend on PYTHONHASHSEED.
    versions = {}
    for opset in onx.opset_import:
        versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    del onx.opset_import[:]
    onx.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(versions.items()))
    onnx.checker.check_model(onx)
    return onx


# --------------------------------------------------------------------------- models


def scaler_logreg():
    """StandardScaler + multinomial LogisticRegression on iris: Scaler, LinearClassifier, Normalizer, ZipMap."""
    x, y = iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    return convert(model, floats("input", 4)), {"input": pick(x, IRIS_ROWS)}


def scaler_logreg_binary():
    """StandardScaler + binary LogisticRegression: LinearClassifier (LOGISTIC, 2 scores), ZipMap."""
    x, y = iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y == 1)
    return convert(model, floats("input", 4)), {"input": pick(x, IRIS_ROWS)}


def scaler_mlp():
    """StandardScaler + MLPClassifier(8): Scaler, MatMul/Relu/Softmax, ArgMax + ArrayFeatureExtractor, ZipMap."""
    x, y = iris()
    model = make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=400, random_state=0)
    ).fit(x, y)
    return convert(model, floats("input", 4)), {"input": pick(x, IRIS_ROWS)}


def regression_data(n_targets=1):
    x, y = make_regression(n_samples=80, n_features=5, n_targets=n_targets, noise=0.5, random_state=7)
    return x.astype(np.float32), y


def rf_regressor():
    """RandomForestRegressor(5 trees, depth 3): TreeEnsembleRegressor, aggregate AVERAGE."""
    x, y = regression_data()
    model = RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0).fit(x, y)
    return convert(model, floats("input", 5)), {"input": pick(x, [0, 5, 11, 23, 42, 61, 79])}


def rf_regressor_2targets():
    """Two-target RandomForestRegressor: TreeEnsembleRegressor with n_targets=2."""
    x, y = regression_data(n_targets=2)
    model = RandomForestRegressor(n_estimators=4, max_depth=3, random_state=1).fit(x, y)
    return convert(model, floats("input", 5)), {"input": pick(x, [1, 8, 19, 33, 50, 77])}


def gb_regressor():
    """GradientBoostingRegressor(6 trees, depth 2): TreeEnsembleRegressor, SUM with base_values."""
    x, y = regression_data()
    model = GradientBoostingRegressor(n_estimators=6, max_depth=2, random_state=0).fit(x, y)
    return convert(model, floats("input", 5)), {"input": pick(x, [2, 9, 17, 30, 44, 58, 71])}


def rf_classifier():
    """RandomForestClassifier on iris with string class names: TreeEnsembleClassifier, string labels, ZipMap."""
    x, y = iris()
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, names)
    return convert(model, floats("input", 4)), {"input": pick(x, IRIS_ROWS)}


def rf_classifier_binary():
    """Binary RandomForestClassifier: one class id, all-positive weights (ORT binary layout [1-p, p])."""
    x, y = iris()
    model = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, (y == 1).astype(np.int64))
    return convert(model, floats("input", 4)), {"input": pick(x, IRIS_ROWS)}


def gb_classifier_binary():
    """Binary GradientBoostingClassifier: one base value, mixed-sign weights, LOGISTIC."""
    x, y = iris()
    model = GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0).fit(x, (y == 2).astype(np.int64))
    return convert(model, floats("input", 4)), {"input": pick(x, IRIS_ROWS)}


def gb_classifier_multiclass():
    """3-class GradientBoostingClassifier on imbalanced data: base_values != 0, SOFTMAX."""
    x, y = make_classification(
        n_samples=120, n_features=5, n_informative=3, n_redundant=0, n_classes=3,
        weights=[0.6, 0.3, 0.1], random_state=3,
    )
    x = x.astype(np.float32)
    model = GradientBoostingClassifier(n_estimators=4, max_depth=2, random_state=0).fit(x, y)
    return convert(model, floats("input", 5)), {"input": pick(x, [0, 7, 15, 29, 48, 66, 90, 119])}


def onehot_linreg():
    """ColumnTransformer(StandardScaler on 2 numeric columns, OneHotEncoder(handle_unknown="ignore")
    on 2 categorical columns stored as floats) + LinearRegression: ArrayFeatureExtractor, Scaler,
    Gather, Cast, OneHotEncoder (zeros=1), LinearRegressor. The last reference row has unknown
    categories (encoded as all zeros)."""
    rng = np.random.default_rng(11)
    n = 60
    num = rng.normal(size=(n, 2))
    cat = np.stack([rng.choice([1, 2, 5], size=n), rng.choice([0, 3], size=n)], axis=1)
    x = np.hstack([num, cat]).astype(np.float32)
    y = num @ [1.5, -2.0] + (cat[:, 0] == 2) * 3.0 - (cat[:, 1] == 3) * 1.0 + rng.normal(size=n) * 0.1
    ct = ColumnTransformer(
        [("num", StandardScaler(), [0, 1]), ("cat", OneHotEncoder(handle_unknown="ignore"), [2, 3])]
    )
    model = make_pipeline(ct, LinearRegression()).fit(x, y)
    inputs = pick(x, [0, 3, 9, 14, 27, 40])
    inputs = np.vstack([inputs, [[0.5, -0.25, 7.0, 1.0]]]).astype(np.float32)
    return convert(model, floats("input", 4)), {"input": inputs}


def normalizer_logreg():
    """Normalizer(l2) + LogisticRegression on iris: Normalizer L2 and L1, LinearClassifier, ZipMap."""
    x, y = iris()
    model = make_pipeline(Normalizer(norm="l2"), LogisticRegression(max_iter=500)).fit(x, y)
    return convert(model, floats("input", 4)), {"input": pick(x, IRIS_ROWS)}


def normalizer_max_ridge():
    """Normalizer(max) + Ridge on data with negative values: onnxruntime divides by the plain
    row maximum (not max |x|) and leaves a row unchanged when that maximum is 0."""
    x, y = regression_data()
    model = make_pipeline(Normalizer(norm="max"), Ridge(alpha=0.5)).fit(x, y)
    inputs = pick(x, [3, 12, 25, 47, 66])
    # A row whose maximum is 0 (left unchanged) and one whose maximum is negative.
    extra = [[-1.0, -0.5, 0.0, -2.0, -0.25], [-1.0, -0.5, -0.125, -2.0, -0.25]]
    inputs = np.vstack([inputs, extra]).astype(np.float32)
    return convert(model, floats("input", 5)), {"input": inputs}


def imputer_linreg():
    """SimpleImputer(missing_values=-1, mean) + LinearRegression: Imputer, LinearRegressor."""
    x, _ = iris()
    x = x.copy()
    rng = np.random.default_rng(5)
    mask = rng.random(x.shape) < 0.1
    x[mask] = -1.0
    y = x[:, 0] * 0.5 + np.where(mask[:, 1], 0.0, x[:, 1])
    model = make_pipeline(SimpleImputer(missing_values=-1.0, strategy="mean"), LinearRegression()).fit(x, y)
    inputs = pick(x, [0, 17, 52, 77, 101])
    inputs = np.vstack([inputs, [[-1.0, 3.0, -1.0, 0.5], [6.0, -1.0, 5.0, -1.0]]]).astype(np.float32)
    return convert(model, floats("input", 4)), {"input": inputs}


def label_encoder_int():
    """sklearn LabelEncoder on int64 labels: LabelEncoder (keys_int64s -> values_int64s), default -1."""
    model = LabelEncoder().fit(np.array([10, 20, 30, 40, 20]))
    onx = convert(model, [("label", Int64TensorType([None]))])
    return onx, {"label": np.array([20, 10, 40, 30, 99, -5], dtype=np.int64)}


def label_encoder_str():
    """sklearn LabelEncoder on string labels: LabelEncoder (keys_strings -> values_int64s), default -1."""
    model = LabelEncoder().fit(np.array(["cat", "dog", "bird", "dog"]))
    onx = convert(model, [("label", StringTensorType([None]))])
    return onx, {"label": np.array(["dog", "bird", "fish", "cat", ""], dtype=object)}


def label_encoder_float_to_str():
    """Hand-built LabelEncoder (opset ai.onnx.ml 2): keys_floats -> values_strings, default_string."""
    node = helper.make_node(
        "LabelEncoder", ["code"], ["name"], domain="ai.onnx.ml", name="label_encoder",
        keys_floats=[0.5, 1.0, 2.5, -3.0], values_strings=["half", "one", "two and a half", "minus three"],
        default_string="unknown",
    )
    graph = helper.make_graph(
        [node],
        "label_encoder_float_to_str",
        [helper.make_tensor_value_info("code", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("name", TensorProto.STRING, [None, 2])],
    )
    onx = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)],
        ir_version=8,
        producer_name="make_sklearn_models.py",
    )
    onnx.checker.check_model(onx, full_check=True)
    code = np.array([[0.5, 1.0], [2.5, -3.0], [7.0, 0.5], [-3.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    return onx, {"code": code}


MODELS = {
    "scaler_logreg": scaler_logreg,
    "scaler_logreg_binary": scaler_logreg_binary,
    "scaler_mlp": scaler_mlp,
    "rf_regressor": rf_regressor,
    "rf_regressor_2targets": rf_regressor_2targets,
    "gb_regressor": gb_regressor,
    "rf_classifier": rf_classifier,
    "rf_classifier_binary": rf_classifier_binary,
    "gb_classifier_binary": gb_classifier_binary,
    "gb_classifier_multiclass": gb_classifier_multiclass,
    "onehot_linreg": onehot_linreg,
    "normalizer_logreg": normalizer_logreg,
    "normalizer_max_ridge": normalizer_max_ridge,
    "imputer_linreg": imputer_linreg,
    "label_encoder_int": label_encoder_int,
    "label_encoder_str": label_encoder_str,
    "label_encoder_float_to_str": label_encoder_float_to_str,
}


# --------------------------------------------------------------------------- references


def datatype(array):
    if array.dtype == object or array.dtype.kind in "US":
        return "BYTES"
    return OIP_DATATYPES[array.dtype]


def json_values(array):
    if array.dtype == object or array.dtype.kind in "US":
        return [str(v) for v in array.reshape(-1)] if array.ndim else str(array)
    return to_json_values(array)


def tensor_entry(array):
    flat = array.reshape(-1)
    return {"datatype": datatype(array), "shape": list(array.shape), "data": json_values(flat)}


def row(array, i):
    """Row i of a tensor as JSON: a scalar for a 1-D tensor, nested lists otherwise."""
    value = array[i]
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind in "US":
            return np.vectorize(str, otypes=[object])(value).tolist()
        return to_json_values(value)
    if isinstance(value, (str, bytes)):
        return str(value)
    return to_json_values(np.asarray(value))


def zipmap_labels(model):
    """{graph output name: labels} for ZipMap nodes feeding graph outputs."""
    outputs = {o.name for o in model.graph.output}
    found = {}
    for node in model.graph.node:
        if node.op_type == "ZipMap" and node.output[0] in outputs:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if "classlabels_int64s" in attrs:
                found[node.output[0]] = [int(v) for v in attrs["classlabels_int64s"]]
            else:
                found[node.output[0]] = [v.decode() for v in attrs["classlabels_strings"]]
    return found


def reference(model, inputs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # skl2onnx declares [N, 1] for multi-target regressors: no warning
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    results = dict(zip(names, sess.run(names, inputs)))
    zipmaps = zipmap_labels(model)
    n = next(iter(inputs.values())).shape[0]

    outputs, per_row = {}, {}
    for name, value in results.items():
        if name in zipmaps:
            labels = zipmaps[name]
            probs = np.array([[d[label] for label in labels] for d in value], dtype=np.float32)
            outputs[name] = probs
            per_row[name] = [
                {str(label): float(p) for label, p in zip(labels, probs[i].astype(np.float64))}
                for i in range(n)
            ]
        else:
            value = np.asarray(value)
            assert value.shape[0] == n, (name, value.shape)
            outputs[name] = value
            per_row[name] = [row(value, i) for i in range(n)]

    if len(inputs) == 1:
        (only,) = inputs.values()
        instances = [row(only, i) for i in range(n)]
    else:
        instances = [{k: row(v, i) for k, v in inputs.items()} for i in range(n)]
    if len(per_row) == 1:
        (only,) = per_row.values()
        predictions = only
    else:
        predictions = [{k: v[i] for k, v in per_row.items()} for i in range(n)]
    return {
        "inputs": {k: tensor_entry(v) for k, v in inputs.items()},
        "outputs": {k: tensor_entry(v) for k, v in outputs.items()},
        "vertex": {"instances": instances, "predictions": predictions},
    }


# --------------------------------------------------------------------------- main


def main():
    args = parse_args(__doc__)
    os.makedirs(OUT, exist_ok=True)
    return write_all(MODELS, reference, OUT, "tests/models/make_sklearn_models.py", args.check, MAX_BYTES)


if __name__ == "__main__":
    sys.exit(main())
