"""Calls a running platform-runtime with the real `tritonclient[http]` client.

Usage: triton_check.py URL MODEL_NAME REFERENCE_JSON [CA_PEM TOKEN_FILE]

Checks server and model health, model metadata, and inference with both JSON and binary
tensor data against the onnxruntime reference outputs. Exits non-zero on any mismatch.

With CA_PEM and TOKEN_FILE the URL is the platform's gateway (`HOST:PORT/v1/{endpoint}`):
HTTPS trusting CA_PEM, every call with `Authorization: Bearer <token>`, and a call without
the token must be refused.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


def main() -> int:
    url, model_name, reference_path = sys.argv[1:4]
    with open(reference_path) as f:
        reference = json.load(f)
    headers = None
    if len(sys.argv) > 5:
        ca, token_file = sys.argv[4:6]
        with open(token_file) as f:
            headers = {"Authorization": "Bearer " + f.read().strip()}
        client = httpclient.InferenceServerClient(url=url, ssl=True, ssl_options={"ca_certs": ca})
        try:
            client.get_model_metadata(model_name)
            print("a call without a token was answered", file=sys.stderr)
            return 1
        except InferenceServerException as e:
            assert e.status() == "401", e
    else:
        client = httpclient.InferenceServerClient(url=url)
    assert client.is_server_live(headers=headers), "server is not live"
    assert client.is_server_ready(headers=headers), "server is not ready"
    assert client.is_model_ready(model_name, headers=headers), "model is not ready"
    metadata = client.get_model_metadata(model_name, headers=headers)
    assert metadata["name"] == model_name, metadata
    assert {i["name"] for i in metadata["inputs"]} == set(reference["inputs"]), metadata

    for binary in (False, True):
        inputs = []
        for name, tensor in reference["inputs"].items():
            array = np.array(tensor["data"], dtype=DTYPES[tensor["datatype"]]).reshape(tensor["shape"])
            infer_input = httpclient.InferInput(name, list(array.shape), tensor["datatype"])
            infer_input.set_data_from_numpy(array, binary_data=binary)
            inputs.append(infer_input)
        outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in reference["outputs"]]
        result = client.infer(model_name, inputs, outputs=outputs, request_id="triton-1", headers=headers)
        assert result.get_response()["id"] == "triton-1", result.get_response()
        for name, tensor in reference["outputs"].items():
            got = result.as_numpy(name)
            want = np.array(tensor["data"], dtype=DTYPES[tensor["datatype"]]).reshape(tensor["shape"])
            if got is None or got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-4):
                print(f"output {name} (binary={binary}) differs: got {got}, want {want}", file=sys.stderr)
                return 1
    print("tritonclient: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
