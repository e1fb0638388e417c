#!/usr/bin/env python3
"""onnxruntime in-process, single-threaded inference latency: the floor our runtime is compared to.

    python bench/onnxruntime_inprocess.py MODEL.onnx [--batch 1] [--inputs REF.json] [--seconds 2] [--warmup 0.5]

Prints one JSON line: {"model", "batch", "p50_us", "mean_us", "runs", ...}. The input is random
data of the model's input shape, with symbolic or unknown dims set to the batch size (first dim)
or 1 (others). Every input of the model is fed (float -> float32 normal, integer -> small ints).
With --inputs, the inputs are those of a reference file instead (its "inputs": name -> datatype,
shape, data), as the other contenders of the benchmark get them.
"""

import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort

NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def make_inputs(session, batch, rng):
    feeds = {}
    for inp in session.get_inputs():
        shape = [
            d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1)
            for i, d in enumerate(inp.shape)
        ]
        dtype = NUMPY_TYPES[inp.type]
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[inp.name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            feeds[inp.name] = rng.integers(0, 10, size=shape).astype(dtype)
    return feeds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--inputs", help="a reference JSON file whose inputs to feed")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up time (seconds)")
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    if args.inputs:
        with open(args.inputs) as f:
            reference = json.load(f)
        kinds = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
        feeds = {
            name: np.array(t["data"], dtype=kinds[t["datatype"]]).reshape(t["shape"])
            for name, t in reference["inputs"].items()
        }
    else:
        feeds = make_inputs(session, args.batch, np.random.default_rng(0))

    deadline = time.perf_counter() + args.warmup
    session.run(None, feeds)
    while time.perf_counter() < deadline:
        session.run(None, feeds)

    times = []
    end = time.perf_counter() + args.seconds
    while True:
        t0 = time.perf_counter_ns()
        session.run(None, feeds)
        times.append(time.perf_counter_ns() - t0)
        if time.perf_counter() >= end:
            break
    us = np.array(times, dtype=np.float64) / 1000.0
    print(json.dumps({
        "model": os.path.splitext(os.path.basename(args.model))[0],
        "batch": args.batch,
        "p50_us": round(float(np.percentile(us, 50)), 2),
        "p99_us": round(float(np.percentile(us, 99)), 2),
        "mean_us": round(float(us.mean()), 2),
        "runs": len(times),
        "onnxruntime": ort.__version__,
    }))


if __name__ == "__main__":
    main()
