"""The BentoML contender: what a user picks instead of writing the server by hand.

Serves one ONNX model (one input) with onnxruntime behind BentoML's adaptive batching (the
service API of BentoML >= 1.2: a `batchable` API; each worker process batches the requests it
receives). Two workers, one onnxruntime thread each, as `bench/fastapi_server.py` under uvicorn.

  POST /predict  {"instances": [...]}  ->  [...]   (the predictions as a bare JSON array: a
                                                     batchable API returns the batch itself)
  GET  /readyz   -> 200 once the service is ready

    .venv-bentoml/bin/pip install -r bench/requirements-bentoml.txt   # in .venv-bentoml
    MODEL_PATH=tests/models/mlp.onnx .venv-bentoml/bin/bentoml serve bench.bentoml_service:OnnxModel --port 3000
"""

import os

import bentoml
import numpy as np


@bentoml.service(workers=2)
class OnnxModel:
    def __init__(self) -> None:
        import onnxruntime as ort

        model_path = os.environ.get("MODEL_PATH")
        if not model_path:
            raise SystemExit("set MODEL_PATH to the .onnx file to serve")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one worker per core
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    # Up to 32 rows per run, as platform-runtime's default --max-batch-size. max_latency_ms is
    # the deadline after which the dispatcher answers 503 rather than queue a request longer.
    @bentoml.api(batchable=True, max_batch_size=32, max_latency_ms=1000)
    def predict(self, instances: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(instances, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]
