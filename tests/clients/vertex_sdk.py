"""The whole lifecycle with Google's Vertex AI SDK for Python (google-cloud-aiplatform), unmodified,
against a running platform: the GAPIC clients over REST, then the high-level API.

Usage: vertex_sdk.py HOST:PORT TOKEN_FILE ARTIFACT_URI REFERENCE_JSON
The platform's CA comes from REQUESTS_CA_BUNDLE. ARTIFACT_URI is the test MLP, uploaded to the
platform's artifact store; REFERENCE_JSON holds its instances and onnxruntime's predictions.
Every step checks what it got and fails with a message; the last line printed is a JSON
summary that the Rust test checks too.
"""

import json
import sys

from google.api_core.client_options import ClientOptions
from google.cloud import aiplatform
from google.cloud import aiplatform_v1 as v1
from google.oauth2.credentials import Credentials
from google.protobuf import field_mask_pb2, json_format, struct_pb2

HOST, TOKEN_FILE, ARTIFACT_URI, REFERENCE = sys.argv[1:5]
# The high-level API accepts only Vertex's region names as locations.
PROJECT, LOCATION = "default", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
RUNTIME_IMAGE = "platform-runtime:0.1.0"

credentials = Credentials(token=open(TOKEN_FILE).read().strip())
options = ClientOptions(api_endpoint=HOST)
models = v1.ModelServiceClient(transport="rest", credentials=credentials, client_options=options)
endpoints = v1.EndpointServiceClient(transport="rest", credentials=credentials, client_options=options)
predictions = v1.PredictionServiceClient(transport="rest", credentials=credentials, client_options=options)
reference = json.load(open(REFERENCE))["vertex"]
summary = {}


def step(text):
    print(f"== {text}", flush=True)


def close(got, want, what):
    """Predictions equal onnxruntime's (to float32 precision)."""
    got = json.loads(json.dumps(got))
    assert len(got) == len(want), f"{what}: {len(got)} predictions, want {len(want)}"
    for g, w in zip(got, want):
        assert len(g) == len(w), f"{what}: {g} vs {w}"
        for a, b in zip(g, w):
            assert abs(a - b) < 1e-4, f"{what}: {a} vs {b}"


def resources():
    return v1.DedicatedResources(
        machine_spec=v1.MachineSpec(machine_type="e2-small"), min_replica_count=1, max_replica_count=1
    )


# ---- The GAPIC clients ----

step("ModelServiceClient.upload_model: the MLP, then a second version")
uploaded = models.upload_model(
    request=v1.UploadModelRequest(
        parent=PARENT,
        model_id="mlp",
        model=v1.Model(
            display_name="mlp",
            artifact_uri=ARTIFACT_URI,
            container_spec=v1.ModelContainerSpec(image_uri=RUNTIME_IMAGE),
            labels={"team": "ml"},
        ),
    )
).result(timeout=60)
assert uploaded.model == f"{PARENT}/models/mlp", uploaded
assert uploaded.model_version_id == "1", uploaded
second = models.upload_model(
    request=v1.UploadModelRequest(
        parent=PARENT,
        parent_model=uploaded.model,
        model=v1.Model(
            display_name="mlp",
            artifact_uri=ARTIFACT_URI,
            container_spec=v1.ModelContainerSpec(image_uri=RUNTIME_IMAGE),
            version_aliases=["candidate"],
        ),
    )
).result(timeout=60)
assert second.model_version_id == "2", second

step("get_model, list_models, list_model_versions")
model = models.get_model(name=uploaded.model)
assert model.display_name == "mlp" and model.version_id == "1", model
assert "default" in model.version_aliases, model
assert models.get_model(name=f"{uploaded.model}@candidate").version_id == "2"
listed = [m.name for m in models.list_models(parent=PARENT)]
assert listed == [uploaded.model], listed
versions = sorted(m.version_id for m in models.list_model_versions(name=uploaded.model))
assert versions == ["1", "2"], versions

step("EndpointServiceClient.create_endpoint, get_endpoint, list_endpoints")
endpoint = endpoints.create_endpoint(
    parent=PARENT, endpoint=v1.Endpoint(display_name="mlp"), endpoint_id="mlp"
).result(timeout=60)
assert endpoint.name == f"{PARENT}/endpoints/mlp", endpoint
assert endpoints.get_endpoint(name=endpoint.name).display_name == "mlp"
assert [e.name for e in endpoints.list_endpoints(parent=PARENT)] == [endpoint.name]

step("deploy_model: version 1 takes all traffic; the operation is polled at /ui/...")
operation = endpoints.deploy_model(
    endpoint=endpoint.name,
    deployed_model=v1.DeployedModel(model=uploaded.model, display_name="mlp-v1", dedicated_resources=resources()),
    traffic_split={"0": 100},
)
first = operation.result(timeout=180).deployed_model
assert first.model_version_id == "1", first
assert isinstance(operation.metadata, v1.DeployModelOperationMetadata), operation.metadata
got = endpoints.get_operation(request={"name": operation.operation.name})
assert got.done, got

step("PredictionServiceClient.predict equals onnxruntime")
instances = [json_format.ParseDict(i, struct_pb2.Value()) for i in reference["instances"]]
answer = predictions.predict(endpoint=endpoint.name, instances=instances)
assert answer.deployed_model_id == first.id, answer.deployed_model_id
assert answer.model_version_id == "1", answer.model_version_id
close([list(p) for p in answer.predictions], reference["predictions"], "GAPIC predict")
summary["gapic_predictions"] = json_format.MessageToDict(answer._pb)["predictions"]

step("deploy_model: version 2 with half the traffic; both versions answer")
second_deployed = endpoints.deploy_model(
    endpoint=endpoint.name,
    deployed_model=v1.DeployedModel(
        model=f"{uploaded.model}@2", display_name="mlp-v2", dedicated_resources=resources()
    ),
    traffic_split={"0": 50, first.id: 50},
).result(timeout=180).deployed_model
seen = set()
for _ in range(40):
    seen.add(predictions.predict(endpoint=endpoint.name, instances=instances).model_version_id)
assert seen == {"1", "2"}, f"a 50/50 split reaches both versions, got {seen}"
summary["gapic_versions_seen"] = sorted(seen)

step("update_endpoint: all traffic to version 2")
updated = endpoints.update_endpoint(
    endpoint=v1.Endpoint(name=endpoint.name, traffic_split={second_deployed.id: 100}),
    update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]),
)
assert dict(updated.traffic_split) == {second_deployed.id: 100}, updated.traffic_split

step("undeploy_model both, delete_endpoint")
endpoints.undeploy_model(endpoint=endpoint.name, deployed_model_id=first.id).result(timeout=120)
endpoints.undeploy_model(endpoint=endpoint.name, deployed_model_id=second_deployed.id).result(timeout=120)
assert not endpoints.get_endpoint(name=endpoint.name).deployed_models
endpoints.delete_endpoint(name=endpoint.name).result(timeout=60)

# ---- The high-level API ----

step("aiplatform.init over REST")
aiplatform.init(project=PROJECT, location=LOCATION, api_endpoint=HOST, api_transport="rest", credentials=credentials)

step("aiplatform.Model.upload: a custom container, then a version that becomes the default")
# Model.upload passes only gs:// artifact URIs through (it copies anything else to Cloud
# Storage first), so it registers models that need no artifact: a custom container. It is
# registered only; deploying it would need its image.
server = aiplatform.Model.upload(
    display_name="server",
    model_id="server",
    serving_container_image_uri="registry.example/server:1",
    serving_container_predict_route="/predict",
    serving_container_health_route="/health",
    serving_container_ports=[8080],
    labels={"team": "ml"},
)
assert server.version_id == "1", server.version_id
server_v2 = aiplatform.Model.upload(
    display_name="server",
    parent_model=server.resource_name,
    serving_container_image_uri="registry.example/server:2",
)
assert server_v2.version_id == "2", server_v2.version_id
assert aiplatform.Model("server").version_id == "2", "the SDK's upload makes the new version the default"

step("model.deploy, endpoint.predict: the MLP (registered above with its artifact)")
mlp = aiplatform.Model("mlp")
hl_endpoint = aiplatform.Endpoint.create(display_name="mlp-sdk")
mlp.deploy(endpoint=hl_endpoint, machine_type="e2-small", min_replica_count=1, max_replica_count=1)
answer = hl_endpoint.predict(instances=reference["instances"])
close(answer.predictions, reference["predictions"], "high-level predict")
assert answer.model_version_id == "1", answer.model_version_id
summary["sdk_predictions"] = answer.predictions

step("endpoint.deploy: version 2 with half the traffic; both versions answer")
hl_endpoint.deploy(
    aiplatform.Model("mlp", version="2"),
    traffic_percentage=50,
    machine_type="e2-small",
    min_replica_count=1,
    max_replica_count=1,
)
assert sorted(hl_endpoint.traffic_split.values()) == [50, 50], hl_endpoint.traffic_split
seen = {hl_endpoint.predict(instances=reference["instances"]).model_version_id for _ in range(40)}
assert seen == {"1", "2"}, f"a 50/50 split reaches both versions, got {seen}"
summary["sdk_versions_seen"] = sorted(seen)

step("endpoint.undeploy_all, endpoint.delete, model.delete (both levels)")
hl_endpoint.undeploy_all()
assert not hl_endpoint.list_models()
hl_endpoint.delete()
server.delete()
models.delete_model(name=uploaded.model).result(timeout=60)
assert not list(models.list_models(parent=PARENT)), "every model is deleted"
assert not list(endpoints.list_endpoints(parent=PARENT)), "every endpoint is deleted"

print(json.dumps(summary))
