#!/usr/bin/env python3
"""Real models that ship inside PyPI wheels, for the runtime's tests and benchmark.

Downloads the pinned wheels with `pip download --no-deps` into a cache directory, extracts the
ONNX files (checking their sha256), and writes for each model a reference file in the format of
the generated test models: inputs, onnxruntime's outputs, and the Vertex instances and
predictions. Nothing here is committed; the cache survives between runs.

Usage: real_models.py [--dir DIR]   (default: $PLATFORM_REAL_MODELS_DIR or .cache/real-models)

The directory then holds `<name>.onnx`, `<name>.json` and `manifest.json`, which also names the
onnxruntime library of this Python environment (`onnxruntime/capi`) for the onnxruntime engine.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]

WHEELS = {
    "rapidocr-onnxruntime": "1.4.4",
    "silero-vad": "6.2.3",
    "magika": "1.0.3",
}

# name: (wheel, member, sha256, family, engines, tolerance)
MODELS = {
    "ocr_det": (
        "rapidocr-onnxruntime",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "CNN with dynamic height and width: PP-OCRv4 text detector (DBNet), x [N, 3, H, W]",
        ["tract", "onnxruntime"],
        1e-3,
    ),
    "ocr_cls": (
        "rapidocr-onnxruntime",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "CNN classifier: PP-OCR text direction (MobileNetV3), x [N, 3, ?, ?]",
        ["tract", "onnxruntime"],
        1e-4,
    ),
    "vad_sequence": (
        "silero-vad",
        "silero_vad/data/silero_vad_16k_sequence.onnx",
        "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
        "LSTM over a sequence of any length: Silero VAD (16 kHz, sequence export)",
        ["tract", "onnxruntime"],
        1e-4,
    ),
    "vad": (
        "silero-vad",
        "silero_vad/data/silero_vad.onnx",
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
        "LSTM with an If on the sample rate: Silero VAD v5/v6 (the package's default model); tract cannot run it",
        ["onnxruntime"],
        1e-4,
    ),
    "magika": (
        "magika",
        "magika/models/standard_v3_3/model.onnx",
        "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
        "file-type classifier from bytes (INT32 input, jax2tf export): Magika standard_v3_3",
        ["tract", "onnxruntime"],
        1e-4,
    ),
    "iris": (
        "onnxruntime",
        "onnxruntime/datasets/logreg_iris.onnx",
        "8224784c98d73412d9fd99abcd57a38568bd590980d0fbe5916464531c52e8fc",
        "classifier with an ONNX-ML head: LinearClassifier + Normalizer + ZipMap (onnxruntime's logreg_iris); "
        "its 12 coefficients do not fit the 2 features its input declares (onnxruntime reads the first 6 as "
        "3x2); the tract engine refuses it, so it runs on onnxruntime",
        ["onnxruntime"],
        1e-5,
    ),
}


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def quantized(rng, shape, low, high):
    """Uniform values rounded to multiples of 1/64: exact in float32 and in JSON."""
    return (np.round(rng.uniform(low, high, size=shape) * 64) / 64).astype(np.float32)


def fetch(out):
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    capi = Path(ort.__file__).parent / "capi"
    for name, (wheel, member, digest, *_rest) in MODELS.items():
        target = out / f"{name}.onnx"
        if target.exists() and sha256(target) == digest:
            continue
        if wheel == "onnxruntime":
            source = Path(ort.__file__).parent.parent / member
            data = source.read_bytes()
        else:
            version = WHEELS[wheel]
            pattern = wheel.replace("-", "_") + f"-{version}-"
            found = [w for w in wheels.glob("*.whl") if w.name.startswith(pattern)]
            if not found:
                subprocess.run(
                    [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                     "--no-deps", "--only-binary=:all:", "-d", str(wheels), f"{wheel}=={version}"],
                    check=True,
                )
                found = [w for w in wheels.glob("*.whl") if w.name.startswith(pattern)]
            with zipfile.ZipFile(found[0]) as z:
                data = z.read(member)
        if hashlib.sha256(data).hexdigest() != digest:
            sys.exit(f"{member} from {wheel} does not have the pinned sha256 {digest}")
        target.write_bytes(data)
    return capi


def json_data(a):
    return a.reshape(-1).tolist()


def datatype(a):
    return {"float32": "FP32", "int64": "INT64", "int32": "INT32"}[a.dtype.name]


def tensor(a):
    return {"datatype": datatype(a), "shape": list(a.shape), "data": json_data(a)}


def reference(path, inputs, instances, runs):
    """inputs: the V2 request's tensors. instances: Vertex instances. runs: for each instance
    group, (feeds, rows): rows=None means one prediction from the whole outputs."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, inputs)))
    predictions = []
    for feeds, rows in runs:
        got = dict(zip(names, session.run(None, feeds)))
        for r in range(rows or 1):
            def pick(v):
                if isinstance(v, list):  # ZipMap: a list of {label: p}
                    return {str(k): float(p) for k, p in v[r].items()}
                return (v[r] if rows else v).tolist()
            values = {n: pick(got[n]) for n in names}
            predictions.append(values[names[0]] if len(names) == 1 else values)
    out = {}
    for n in names:
        v = outputs[n]
        if isinstance(v, list):
            labels = sorted(v[0].keys())
            v = np.array([[row[k] for k in labels] for row in v], dtype=np.float32)
        out[n] = tensor(np.asarray(v))
    return {
        "inputs": {k: tensor(v) for k, v in inputs.items()},
        "outputs": out,
        "vertex": {"instances": instances, "predictions": predictions},
    }


def references(out):
    rng = np.random.default_rng(14)
    refs = {}

    # OCR detector: two images of different sizes (multiples of 32, as the detector needs).
    a, b = quantized(rng, (1, 3, 64, 96), -1, 1), quantized(rng, (1, 3, 32, 64), -1, 1)
    refs["ocr_det"] = reference(
        out / "ocr_det.onnx", {"x": a}, [a[0].tolist(), b[0].tolist()], [({"x": a}, 1), ({"x": b}, 1)]
    )

    # OCR direction classifier: text-line crops of 48x192, as RapidOCR feeds it.
    x = quantized(rng, (2, 3, 48, 192), -1, 1)
    refs["ocr_cls"] = reference(out / "ocr_cls.onnx", {"x": x}, [r.tolist() for r in x], [({"x": x}, 2)])

    # Silero VAD over a sequence of 3 windows of 576 samples, zero LSTM state.
    seq = {
        "input": quantized(rng, (3, 576), -0.5, 0.5),
        "h": np.zeros((1, 1, 128), np.float32),
        "c": np.zeros((1, 1, 128), np.float32),
    }
    refs["vad_sequence"] = reference(
        out / "vad_sequence.onnx", seq, [{k: v.tolist() for k, v in seq.items()}], [(seq, None)]
    )

    # Silero VAD, one 512-sample window at 16 kHz.
    vad = {
        "input": quantized(rng, (1, 512), -0.5, 0.5),
        "state": np.zeros((2, 1, 128), np.float32),
        "sr": np.array(16000, np.int64),
    }
    refs["vad"] = reference(out / "vad.onnx", vad, [{k: v.tolist() for k, v in vad.items()}], [(vad, None)])

    # Magika: byte values 0..255, 256 for padding, as the library encodes a file's head and tail.
    x = rng.integers(0, 257, size=(2, 2048)).astype(np.int32)
    refs["magika"] = reference(out / "magika.onnx", {"bytes": x}, [r.tolist() for r in x], [({"bytes": x}, 2)])

    # Iris: the model's batch is fixed to 3 rows.
    x = quantized(rng, (3, 2), 0, 8)
    refs["iris"] = reference(out / "iris.onnx", {"float_input": x}, [r.tolist() for r in x], [({"float_input": x}, 3)])
    return refs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("PLATFORM_REAL_MODELS_DIR") or str(ROOT / ".cache" / "real-models")
    parser.add_argument("--dir", default=default)
    out = Path(parser.parse_args().dir).resolve()
    capi = fetch(out)
    manifest = {
        "onnxruntime_lib": str(capi),
        "onnxruntime_version": ort.__version__,
        "models": [],
    }
    for name, ref in references(out).items():
        (out / f"{name}.json").write_text(json.dumps(ref))
        _, _, _, family, engines, tolerance = MODELS[name]
        manifest["models"].append({"name": name, "family": family, "engines": engines, "tolerance": tolerance})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"real models in {out}: {', '.join(MODELS)}")


if __name__ == "__main__":
    main()
