"""The FastAPI baseline: what a user would write instead of our runtime.

Serves one ONNX model (one input) with onnxruntime, with the same JSON contract as ours:
  POST /predict  {"instances": [...]}  ->  {"predictions": [...]}
  GET  /health   -> 200

    MODEL_PATH=tests/models/mlp.onnx uvicorn bench.fastapi_server:app --workers 2 --port 8081
    python bench/fastapi_server.py tests/models/mlp.onnx [port]
"""

import os
import sys

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

MODEL_PATH = os.environ.get("MODEL_PATH") or (sys.argv[1] if len(sys.argv) > 1 else None)
if not MODEL_PATH:
    raise SystemExit("set MODEL_PATH to the .onnx file to serve")

options = ort.SessionOptions()
options.intra_op_num_threads = 1  # one worker per core
session = ort.InferenceSession(MODEL_PATH, options, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name

app = FastAPI()


class PredictRequest(BaseModel):
    instances: list


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/predict")
def predict(request: PredictRequest):
    x = np.asarray(request.instances, dtype=np.float32)
    outputs = session.run(None, {input_name: x})
    return {"predictions": outputs[0].tolist()}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]) if len(sys.argv) > 2 else 8081)
