//! The whole path against the real binary: upload the test MLP, create an endpoint, deploy it
//! on the local backend, predict over HTTPS, split traffic between versions, undeploy, delete.
//! Run on SQLite with artifacts on disk, and on PostgreSQL with artifacts in S3 (moto).

mod common;

use std::time::Duration;

use common::{LOC, Platform, model_path, reference, start};
use serde_json::{Value, json};

/// Uploads the MLP as a new model (or a version of `parent`); returns the model name and version.
async fn upload_mlp(p: &Platform, parent: Option<&str>, aliases: &[&str]) -> (String, String) {
    let artifact = p.upload_artifact(&model_path("mlp")).await;
    let uri = artifact["artifactUri"].as_str().expect("uri").to_string();
    let mut body = json!({"model": {"displayName": "mlp", "artifactUri": uri, "labels": {"team": "ml"},
        "versionAliases": aliases}});
    match parent {
        Some(parent) => body["parentModel"] = json!(parent),
        None => body["modelId"] = json!("mlp"),
    }
    let op = p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(body)).await;
    assert_eq!(op["done"], true, "{op}");
    let response = &op["response"];
    (
        response["model"].as_str().expect("model").to_string(),
        response["modelVersionId"].as_str().expect("v").to_string(),
    )
}

async fn deploy(p: &Platform, endpoint: &str, model: &str, split: Value) -> Value {
    let body = json!({
        "deployedModel": {"model": model, "displayName": "mlp",
            "dedicatedResources": {"machineSpec": {"machineType": "e2-small"}, "minReplicaCount": 1, "maxReplicaCount": 2}},
        "trafficSplit": split,
    });
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints/{endpoint}:deployModel"), Some(body)).await;
    assert_eq!(op["done"], false, "a deploy waits for replicas: {op}");
    let done = p.wait(&op).await;
    assert!(done["error"].is_null(), "deploy failed: {done}");
    done["response"]["deployedModel"].clone()
}

async fn predict(p: &Platform, endpoint: &str) -> (u16, Value) {
    let instances = reference("mlp")["vertex"]["instances"].clone();
    p.call("POST", &format!("{LOC}/endpoints/{endpoint}:predict"), Some(json!({"instances": instances})))
        .await
}

fn assert_close(got: &Value, want: &Value) {
    let (g, w) = (got.as_array().expect("array"), want.as_array().expect("array"));
    assert_eq!(g.len(), w.len(), "{got} vs {want}");
    for (a, b) in g.iter().zip(w) {
        match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => assert!((x - y).abs() < 1e-4, "{x} vs {y}"),
            _ => assert_close(a, b),
        }
    }
}

/// The story both configurations run.
async fn story(p: &Platform) {
    // Register the model; read it back by id, version and alias; list and filter.
    let (model, version) = upload_mlp(p, None, &["stable"]).await;
    assert_eq!(model, "projects/default/locations/local/models/mlp");
    assert_eq!(version, "1");
    let got = p.expect(200, "GET", &format!("{LOC}/models/mlp@stable"), None).await;
    assert_eq!(got["versionAliases"], json!(["default", "stable"]));
    assert_eq!(got["labels"]["team"], "ml");
    let listed = p.expect(200, "GET", &format!("{LOC}/models?filter=labels.team%3D%22ml%22"), None).await;
    assert_eq!(listed["models"].as_array().map(Vec::len), Some(1), "{listed}");
    let none = p.expect(200, "GET", &format!("{LOC}/models?filter=display_name%3D%22other%22"), None).await;
    assert!(none["models"].as_array().is_none_or(Vec::is_empty), "{none}");
    p.expect(404, "GET", &format!("{LOC}/models/nope"), None).await;
    p.expect(
        409,
        "POST",
        &format!("{LOC}/models:upload"),
        Some(json!({"modelId": "mlp",
        "model": {"displayName": "again", "artifactUri": "s3://b/m.onnx"}})),
    )
    .await;

    // An endpoint, the first deploy (it takes all traffic), and predictions that match onnxruntime.
    let op = p
        .expect(200, "POST", &format!("{LOC}/endpoints?endpointId=mlp"), Some(json!({"displayName": "mlp"})))
        .await;
    assert_eq!(op["done"], true);
    assert_eq!(op["response"]["name"], "projects/default/locations/local/endpoints/mlp");
    let first = deploy(p, "mlp", "mlp", json!({})).await;
    let first_id = first["id"].as_str().expect("id").to_string();
    assert_eq!(first["modelVersionId"], "1");
    assert_eq!(first["status"]["availableReplicaCount"], 1, "{first}");
    let (status, body) = predict(p, "mlp").await;
    assert_eq!(status, 200, "{body}");
    assert_close(&body["predictions"], &reference("mlp")["vertex"]["predictions"]);
    assert_eq!(body["deployedModelId"], first_id.as_str());
    assert_eq!(body["model"], model.as_str());
    assert_eq!(body["modelVersionId"], "1");
    assert_eq!(body["modelDisplayName"], "mlp");

    // Predictions and ready replicas show on /metrics, unauthenticated, for Prometheus.
    let metrics = p.http.get(p.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let counted = format!(
        "platform_predict_requests_total{{code=\"200\",deployed_model=\"{first_id}\",endpoint=\"mlp\"}} 1"
    );
    assert!(metrics.contains(&counted), "{metrics}");
    let ready = format!("platform_ready_replicas{{deployed_model=\"{first_id}\",endpoint=\"mlp\"}} 1");
    assert!(metrics.contains(&ready), "{metrics}");

    // :rawPredict forwards unchanged and says who answered in headers.
    let raw = p
        .http
        .post(p.url(&format!("{LOC}/endpoints/mlp:rawPredict")))
        .bearer_auth(&p.token)
        .header("content-type", "application/json")
        .body(json!({"instances": reference("mlp")["vertex"]["instances"]}).to_string())
        .send()
        .await
        .expect("raw");
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.headers()["x-vertex-ai-endpoint-id"], "mlp");
    assert_eq!(raw.headers()["x-vertex-ai-deployed-model-id"], first_id.as_str());
    let raw: Value = raw.json().await.expect("json");
    assert!(raw.get("deployedModelId").is_none(), "raw answers are not rewritten: {raw}");

    // Bad predictions get clear errors.
    let (status, body) =
        p.call("POST", &format!("{LOC}/endpoints/mlp:predict"), Some(json!({"inputs": []}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("instances"), "{body}");
    let (status, _) = p
        .call_as("", "POST", &format!("{LOC}/endpoints/mlp:predict"), Some(json!({"instances": [[1]]})))
        .await;
    assert_eq!(status, 401);
    let (status, _) =
        p.call("POST", &format!("{LOC}/endpoints/nope:predict"), Some(json!({"instances": [[1]]}))).await;
    assert_eq!(status, 404);
    let big = json!({"instances": vec![vec![0.5f32; 64]; 10_000]});
    let (status, body) = p.call("POST", &format!("{LOC}/endpoints/mlp:predict"), Some(big)).await;
    assert_eq!(status, 413, "{body}");

    // More replicas through :mutateDeployedModel; both serve.
    let mutate = json!({"deployedModel": {"id": first_id, "dedicatedResources": {"minReplicaCount": 2, "maxReplicaCount": 2}},
        "updateMask": "dedicatedResources.minReplicaCount,dedicatedResources.maxReplicaCount"});
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints/mlp:mutateDeployedModel"), Some(mutate)).await;
    let done = p.wait(&op).await;
    assert!(done["error"].is_null(), "{done}");
    assert_eq!(done["response"]["deployedModel"]["status"]["availableReplicaCount"], 2, "{done}");
    let bad = json!({"deployedModel": {"id": first_id, "dedicatedResources": {"minReplicaCount": 3, "maxReplicaCount": 2}},
        "updateMask": "dedicatedResources.minReplicaCount"});
    let body = p.expect(400, "POST", &format!("{LOC}/endpoints/mlp:mutateDeployedModel"), Some(bad)).await;
    assert!(
        body["error"]["message"].as_str().unwrap_or_default().contains("below minReplicaCount"),
        "{body}"
    );
    // containerConcurrency through the same verb: checked, applied; an output-only
    // autoscalingStatus sent along is ignored.
    let url = format!("{LOC}/endpoints/mlp:mutateDeployedModel");
    let bad = json!({"deployedModel": {"id": first_id, "containerConcurrency": 1001}, "updateMask": "containerConcurrency"});
    let body = p.expect(400, "POST", &url, Some(bad)).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("containerConcurrency is 1001; it must be 1 to 1000"), "{body}");
    let four = json!({"deployedModel": {"id": first_id, "containerConcurrency": 4,
        "autoscalingStatus": {"desiredReplicaCount": 99, "reason": "mine"}}, "updateMask": "container_concurrency"});
    let done = p.wait(&p.expect(200, "POST", &url, Some(four)).await).await;
    assert_eq!(done["response"]["deployedModel"]["containerConcurrency"], 4, "{done}");
    let endpoint = p.expect(200, "GET", &format!("{LOC}/endpoints/mlp"), None).await;
    let shown = &endpoint["deployedModels"][0];
    assert_eq!(shown["containerConcurrency"], 4, "{endpoint}");
    assert_ne!(shown["autoscalingStatus"]["reason"], "mine", "{endpoint}");
    let ops = p.expect(200, "GET", &format!("{LOC}/operations?filter=done%3Dtrue&pageSize=2"), None).await;
    assert_eq!(ops["operations"].as_array().map(Vec::len), Some(2), "{ops}");
    assert!(!ops["nextPageToken"].as_str().unwrap_or_default().is_empty(), "{ops}");

    // A second version with 50% of the traffic: both answer.
    let (_, v2) = upload_mlp(p, Some("mlp"), &[]).await;
    assert_eq!(v2, "2");
    let second = deploy(p, "mlp", "mlp@2", json!({"0": 50, first_id.as_str(): 50})).await;
    let second_id = second["id"].as_str().expect("id").to_string();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (status, body) = predict(p, "mlp").await;
        assert_eq!(status, 200, "{body}");
        seen.insert(body["modelVersionId"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["1", "2"], "a 50/50 split reaches both versions");

    // Moving all traffic with the endpoint's etag; a stale etag is refused.
    let endpoint = p.expect(200, "GET", &format!("{LOC}/endpoints/mlp"), None).await;
    assert_eq!(endpoint["deployedModels"].as_array().map(Vec::len), Some(2));
    let etag = endpoint["etag"].clone();
    let patch = format!("{LOC}/endpoints/mlp?updateMask=trafficSplit");
    let split = json!({"trafficSplit": {second_id.as_str(): 100, first_id.as_str(): 0}, "etag": etag});
    let updated = p.expect(200, "PATCH", &patch, Some(split.clone())).await;
    assert_eq!(updated["trafficSplit"][&second_id], 100);
    p.expect(409, "PATCH", &patch, Some(split)).await;
    let bad_split = json!({"trafficSplit": {second_id.as_str(): 60}});
    let body = p.expect(400, "PATCH", &patch, Some(bad_split)).await;
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("sum to 60"), "{body}");
    for _ in 0..10 {
        assert_eq!(predict(p, "mlp").await.1["modelVersionId"], "2");
    }

    // Undeploy is refused while a model has traffic; deleting a deployed model is refused.
    let undeploy = format!("{LOC}/endpoints/mlp:undeployModel");
    let body = p.expect(400, "POST", &undeploy, Some(json!({"deployedModelId": second_id}))).await;
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("still receives 100%"), "{body}");
    p.expect(409, "DELETE", &format!("{LOC}/models/mlp"), None).await;
    p.expect(409, "DELETE", &format!("{LOC}/endpoints/mlp"), None).await;
    let op = p.expect(200, "POST", &undeploy, Some(json!({"deployedModelId": first_id}))).await;
    let done = p.wait(&op).await;
    assert!(done["error"].is_null(), "{done}");
    let endpoint = p.expect(200, "GET", &format!("{LOC}/endpoints/mlp"), None).await;
    assert_eq!(endpoint["deployedModels"].as_array().map(Vec::len), Some(1), "{endpoint}");
    assert_eq!(predict(p, "mlp").await.0, 200);

    // Tear down: undeploy the last model (the split empties), delete endpoint and model.
    let op = p.expect(200, "POST", &undeploy, Some(json!({"deployedModelId": second_id}))).await;
    p.wait(&op).await;
    let (status, body) = predict(p, "mlp").await;
    assert_eq!(status, 503, "{body}");
    p.expect(200, "DELETE", &format!("{LOC}/endpoints/mlp"), None).await;
    let op = p.expect(200, "DELETE", &format!("{LOC}/models/mlp@2:deleteVersion"), None).await;
    assert_eq!(op["done"], true);
    p.expect(200, "DELETE", &format!("{LOC}/models/mlp"), None).await;
    p.expect(404, "GET", &format!("{LOC}/models/mlp"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_path_on_sqlite_and_local_disk() {
    let dir = tempfile::tempdir().expect("dir");
    let p = start(&dir.path().join("data"), &["--cpu-overcommit", "4"], &[]).await;
    story(&p).await;
    // The API describes itself.
    let yaml = p.http.get(p.url("/openapi.yaml")).send().await.expect("openapi").text().await.expect("text");
    assert_eq!(yaml, control_plane::rest::openapi::to_yaml());
    let page = p.http.get(p.url("/docs")).send().await.expect("docs").text().await.expect("text");
    assert!(page.contains("swagger-ui"), "Swagger UI at /docs");
    let json = p.http.get(p.url("/openapi.json")).send().await.expect("openapi").text().await.expect("text");
    assert!(json.contains("models:upload"), "the document lists the routes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_path_on_postgres_and_s3() {
    let s3 = common::S3Server::start().await;
    let env = s3.env();
    let s3_client = s3.client();
    s3_client.create_bucket().bucket("artifacts").send().await.expect("bucket");

    let database = common::fresh_postgres("platform_flow").await;
    let dir = tempfile::tempdir().expect("dir");
    let args =
        ["--cpu-overcommit", "4", "--database-url", &database, "--artifact-store", "s3://artifacts/models"];
    let p = start(&dir.path().join("data"), &args, &env).await;

    // Uploads land in the bucket, keyed under the prefix; the same bytes are kept once.
    let a = p.upload_artifact(&model_path("mlp")).await;
    let uri = a["artifactUri"].as_str().expect("uri");
    assert!(uri.starts_with("s3://artifacts/models/"), "{uri}");
    let b = p.upload_artifact(&model_path("mlp")).await;
    assert_eq!(b["artifactUri"], a["artifactUri"]);
    assert_eq!(b["deduplicated"], true);
    let objects = s3_client.list_objects_v2().bucket("artifacts").send().await.expect("list");
    assert_eq!(objects.contents().len(), 1, "{objects:?}");

    story(&p).await;
}

/// A user's own HTTP server, run as a host process (an admin's choice, on a platform that allows
/// it), serves predictions through the same `:predict`; a server that cannot start fails its
/// deploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_host_process_serves_predictions() {
    let dir = tempfile::tempdir().expect("dir");
    let flags = ["--cpu-overcommit", "4", "--allow-host-processes", "--max-queued-requests", "0"];
    let p = start(&dir.path().join("data"), &flags, &[]).await;
    let python = common::system_python();
    let (_shared, app) = common::shared_custom_server();
    let upload = |id: &str, extra: &[&str]| {
        let mut command = vec![python.display().to_string(), app.display().to_string()];
        command.extend(extra.iter().map(|s| s.to_string()));
        json!({"modelId": id, "model": {"displayName": id, "containerSpec": {
            "imageUri": "example.com/custom-server:1", "command": command, "hostProcess": true,
            "predictRoute": "/score", "healthRoute": "/ping", "deploymentTimeout": "120s"}}})
    };
    p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(upload("custom", &[]))).await;
    // The endpoint's inference timeout: 1s..3600s, else refused with why; echoed.
    for bad in ["0.5s", "3601s", "soon"] {
        let body = json!({"displayName": "c", "clientConnectionConfig": {"inferenceTimeout": bad}});
        let (status, answer) =
            p.call("POST", &format!("{LOC}/endpoints?endpointId=custom"), Some(body)).await;
        assert_eq!(
            (status, answer["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{bad}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("1s and 3600s") || message.contains("not a duration"), "{bad}: {answer}");
    }
    let body = json!({"displayName": "c", "clientConnectionConfig": {"inferenceTimeout": "1s"}});
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints?endpointId=custom"), Some(body)).await;
    assert_eq!(op["response"]["clientConnectionConfig"]["inferenceTimeout"], "1s", "{op}");
    let mask = "updateMask=clientConnectionConfig.inferenceTimeout";
    let too_long = json!({"clientConnectionConfig": {"inferenceTimeout": "2h"}});
    let (status, answer) = p.call("PATCH", &format!("{LOC}/endpoints/custom?{mask}"), Some(too_long)).await;
    assert_eq!(status, 400, "{answer}");
    let body = json!({"deployedModel": {"model": "custom", "containerConcurrency": 1,
        "dedicatedResources": {"machineSpec": {"machineType": "e2-micro"}, "minReplicaCount": 1}}});
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints/custom:deployModel"), Some(body.clone())).await;
    let done = p.wait(&op).await;
    assert!(done["error"].is_null(), "{done}");
    let (status, answer) = p
        .call(
            "POST",
            &format!("{LOC}/endpoints/custom:predict"),
            Some(json!({"instances": [[1, 2], [3, 4]]})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["predictions"], json!([{"sum": 3, "by": "custom"}, {"sum": 7, "by": "custom"}]));
    assert_eq!(answer["modelDisplayName"], "custom");
    // containerConcurrency 1 and no queue: while the replica works on a slow request (cut at the
    // 1 s predict timeout: 504), another caller is told to come back (429 with Retry-After).
    let predict = |instances: Value| {
        p.http
            .post(p.url(&format!("{LOC}/endpoints/custom:predict")))
            .bearer_auth(&p.token)
            .json(&json!({"instances": instances}))
            .send()
    };
    let slow = predict(json!(["slow"]));
    let others = async {
        // The slow request takes the replica's one slot first (it holds it for a second); sent
        // together, a quick request could take it first and the slow one be refused instead.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut seen = Vec::new();
        for _ in 0..50 {
            let r = predict(json!([[1]])).await.expect("predict");
            let status = r.status().as_u16();
            seen.push((status, r.headers().get("retry-after").cloned()));
            if status == 429 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    };
    let (slow, seen) = tokio::join!(slow, others);
    let slow = slow.expect("slow predict");
    assert_eq!(slow.status(), 504);
    let answer: Value = slow.json().await.expect("json");
    assert_eq!(answer["error"]["status"], "DEADLINE_EXCEEDED");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("within 1s"), "{answer}");
    // A custom container is not known to speak the Open Inference Protocol V2: refused, with why.
    let (status, answer) = p.call("GET", &format!("{LOC}/endpoints/custom/v2/models/custom"), None).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("custom container"), "{answer}");
    // Back to the platform's default (60s) when the endpoint's timeout is cleared.
    let cleared = p.expect(200, "PATCH", &format!("{LOC}/endpoints/custom?{mask}"), Some(json!({}))).await;
    assert!(cleared["clientConnectionConfig"].is_null(), "{cleared}");
    let last = seen.last().expect("a request");
    assert_eq!(last.0, 429, "{seen:?}");
    assert_eq!(last.1.as_ref().and_then(|v| v.to_str().ok()), Some("1"), "{seen:?}");
    let endpoint = p.expect(200, "GET", &format!("{LOC}/endpoints/custom"), None).await;
    assert_eq!(endpoint["deployedModels"][0]["containerConcurrency"], 1, "{endpoint}");

    // A server that exits at once: the deploy fails after its replica crashed
    // --deploy-max-restarts times (long before its timeout), says why, and leaves the endpoint
    // as it was.
    p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(upload("broken", &["--fail"]))).await;
    let mut bad = body.clone();
    bad["deployedModel"]["model"] = json!("broken");
    bad["trafficSplit"] = json!({"0": 100});
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints/custom:deployModel"), Some(bad)).await;
    let done = p.wait(&op).await;
    let message = done["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(done["error"]["status"], "FAILED_PRECONDITION", "{done}");
    assert!(message.contains("crashed 3 times before it became ready"), "{message}");
    assert!(
        message.contains("cannot load the model (on purpose)"),
        "the replica's output is in the error: {message}"
    );
    // A deploy that would wait for its (long) timeout can be cancelled.
    let mut slow = body.clone();
    slow["deployedModel"]["model"] = json!("broken");
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints/custom:deployModel"), Some(slow)).await;
    let name = op["name"].as_str().expect("name").to_string();
    p.expect(200, "POST", &format!("/v1/{name}:cancel"), None).await;
    let done = p.wait(&op).await;
    assert_eq!(done["error"]["status"], "CANCELLED", "{done}");

    tokio::time::sleep(Duration::from_millis(600)).await;
    let endpoint = p.expect(200, "GET", &format!("{LOC}/endpoints/custom"), None).await;
    assert_eq!(endpoint["deployedModels"].as_array().map(Vec::len), Some(1), "{endpoint}");
    assert_eq!(endpoint["trafficSplit"].as_object().map(|o| o.len()), Some(1), "{endpoint}");
    assert_eq!(
        p.call("POST", &format!("{LOC}/endpoints/custom:predict"), Some(json!({"instances": [[1]]}))).await.0,
        200
    );
}

/// `kill -9` of the platform: its replicas go with it, and the next start brings every
/// deployed model back from the database; a project-bound token stays in its project.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployed_models_come_back_after_kill_9() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let p = start(&data, &["--cpu-overcommit", "4"], &[]).await;
    upload_mlp(&p, None, &[]).await;
    p.expect(200, "POST", &format!("{LOC}/endpoints?endpointId=mlp"), Some(json!({"displayName": "mlp"})))
        .await;
    let deployed = deploy(&p, "mlp", "mlp", json!({})).await;
    assert_eq!(predict(&p, "mlp").await.0, 200);
    let before = common::replica_pids(&data);
    assert_eq!(before.len(), 1, "one replica: {before:?}");

    let port = p.port;
    let mut p = p;
    unsafe { libc::kill(p.child.id() as i32, libc::SIGKILL) };
    let _ = p.child.wait();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while before.iter().any(|pid| common::alive(*pid)) {
        assert!(std::time::Instant::now() < deadline, "replicas outlive a killed platform");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(p);

    let p = common::start_on(&data, port, &["--cpu-overcommit", "4"], &[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = predict(&p, "mlp").await;
        if status == 200 {
            assert_eq!(body["deployedModelId"], deployed["id"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the model did not come back: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = common::replica_pids(&data);
    assert_eq!(after.len(), 1, "exactly one replica again: {after:?}");
    assert!(after.iter().all(|pid| !before.contains(pid)));

    // A token limited to project `default` cannot act on another project.
    let (status, issued) = p
        .call_as(
            "",
            "POST",
            "/v1/auth/token",
            Some(json!({"username": "admin", "password": "correct-horse", "project": "default"})),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    let scoped = issued["token"].as_str().expect("token");
    assert_eq!(p.call_as(scoped, "GET", &format!("{LOC}/models"), None).await.0, 200);
    let (status, body) = p.call_as(scoped, "GET", "/v1/projects/other/locations/local/models", None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
}

/// Roles per project decide what each caller may do; public endpoints need no token; private
/// ones are served only on the private listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_access_modes_decide_who_may_call() {
    let dir = tempfile::tempdir().expect("dir");
    let private_port = common::free_port();
    let private = format!("127.0.0.1:{private_port}");
    let p =
        start(&dir.path().join("data"), &["--cpu-overcommit", "4", "--private-listen", &private], &[]).await;
    upload_mlp(&p, None, &[]).await;
    p.expect(200, "POST", &format!("{LOC}/endpoints?endpointId=mlp"), Some(json!({"displayName": "mlp"})))
        .await;
    deploy(&p, "mlp", "mlp", json!({})).await;

    let mut tokens = std::collections::BTreeMap::new();
    for role in ["viewer", "predictor", "editor"] {
        let user = json!({"username": role, "password": "long-enough", "roles": {"default": role}});
        let created = p.expect(200, "POST", "/v1/users", Some(user)).await;
        assert_eq!(created["roles"]["default"], role);
        let (status, issued) = p
            .call_as("", "POST", "/v1/auth/token", Some(json!({"username": role, "password": "long-enough"})))
            .await;
        assert_eq!(status, 200, "{issued}");
        tokens.insert(role, issued["token"].as_str().expect("token").to_string());
    }
    let instances = json!({"instances": reference("mlp")["vertex"]["instances"]});
    let predict_path = format!("{LOC}/endpoints/mlp:predict");
    let upload = json!({"model": {"displayName": "x", "artifactUri": "s3://b/m.onnx"}});
    let host_process = json!({"model": {"displayName": "x", "containerSpec": {
        "imageUri": "srv:1", "command": ["sh", "-c", "cat /etc/shadow"], "hostProcess": true}}});
    let cases: [(&str, &str, &str, Option<Value>, u16); 11] = [
        ("viewer", "GET", "/models", None, 200),
        ("viewer", "POST", "/models:upload", Some(upload.clone()), 403),
        ("viewer", "POST", "/endpoints/mlp:predict", Some(instances.clone()), 200),
        ("predictor", "POST", "/endpoints/mlp:predict", Some(instances.clone()), 200),
        ("predictor", "GET", "/models", None, 403),
        ("predictor", "GET", "/endpoints/mlp", None, 403),
        ("editor", "POST", "/models:upload", Some(upload.clone()), 200),
        ("editor", "POST", "/v1/users", Some(json!({"username": "x", "password": "long-enough"})), 403),
        ("viewer", "GET", "/v1/users/viewer", None, 200),
        (
            "editor",
            "POST",
            "/models:upload",
            Some(json!({"model": {"displayName": "x", "artifactUri": "file:///etc/passwd"}})),
            403,
        ),
        // Running a command on the platform's machine is an admin's choice.
        ("editor", "POST", "/models:upload", Some(host_process), 403),
    ];
    for (role, method, path, body, want) in cases {
        let path = if path.starts_with("/v1/") { path.to_string() } else { format!("{LOC}{path}") };
        let (status, answer) = p.call_as(&tokens[role], method, &path, body).await;
        assert_eq!(status, want, "{role} {method} {path}: {answer}");
        if status == 403 {
            assert_eq!(answer["error"]["status"], "PERMISSION_DENIED");
        }
    }
    // Taking the role away takes effect at once.
    p.expect(200, "PATCH", "/v1/users/viewer", Some(json!({"roles": {"default": ""}}))).await;
    assert_eq!(p.call_as(&tokens["viewer"], "GET", &format!("{LOC}/models"), None).await.0, 403);

    // Public: no token needed. Private: not on the public listener, only on the private one.
    let access = format!("{LOC}/endpoints/mlp?updateMask=access");
    p.expect(200, "PATCH", &access, Some(json!({"access": "PUBLIC"}))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while p.call_as("", "POST", &predict_path, Some(instances.clone())).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "public endpoints answer without a token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.expect(200, "PATCH", &access, Some(json!({"access": "PRIVATE"}))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = p.call("POST", &predict_path, Some(instances.clone())).await;
        if status == 404 {
            assert!(body["error"]["message"].as_str().unwrap_or_default().contains("private"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "private endpoints leave the public listener");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let inside = reqwest::Client::new()
        .post(format!("http://{private}{predict_path}"))
        .bearer_auth(&tokens["predictor"])
        .json(&instances)
        .send()
        .await
        .expect("private listener");
    assert_eq!(inside.status(), 200);
}

async fn wait_replicas(p: &Platform, endpoint: &str, id: &str, want: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = common::available_replicas(p, endpoint, id).await;
        if n == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{n} replicas, expected {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Request-rate autoscaling adds replicas under load; a model with `minReplicaCount` 0 goes to
/// zero when idle, and the next request waits for a new replica instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_follows_requests_and_scales_to_zero() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let p = start(&data, &["--cpu-overcommit", "4", "--scale-down-delay", "3s"], &[]).await;
    upload_mlp(&p, None, &[]).await;
    p.expect(200, "POST", &format!("{LOC}/endpoints?endpointId=mlp"), Some(json!({"displayName": "mlp"})))
        .await;
    let body = json!({"deployedModel": {"model": "mlp", "dedicatedResources": {
        "machineSpec": {"machineType": "e2-small"}, "minReplicaCount": 0, "maxReplicaCount": 2,
        "autoscalingMetricSpecs": [{"metricName": "aiplatform.googleapis.com/prediction/online/request_count", "target": 60}]}}});
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints/mlp:deployModel"), Some(body)).await;
    let done = p.wait(&op).await;
    assert!(done["error"].is_null(), "{done}");
    let id = done["response"]["deployedModel"]["id"].as_str().expect("id").to_string();
    assert_eq!(common::available_replicas(&p, "mlp", &id).await, 1, "a deploy starts one replica");

    // 60 requests a minute per replica: a burst asks for the maximum.
    for _ in 0..30 {
        assert_eq!(predict(&p, "mlp").await.0, 200);
    }
    wait_replicas(&p, "mlp", &id, 2).await;

    // Idle past the scale-down delay: zero replicas, no process left.
    wait_replicas(&p, "mlp", &id, 0).await;
    assert!(common::replica_pids(&data).iter().all(|pid| !common::alive(*pid)), "no replica runs");

    // The next request is held until a replica is ready, then answered.
    let (status, body) = predict(&p, "mlp").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deployedModelId"], id.as_str());
}

/// CPU autoscaling on the local backend: replicas that keep their machine type's CPU busy get
/// company up to the maximum, and stay while busy, with or without requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_autoscaling_adds_replicas_to_busy_servers() {
    let dir = tempfile::tempdir().expect("dir");
    let flags = ["--cpu-overcommit", "4", "--scale-down-delay", "3s", "--allow-host-processes"];
    let p = start(&dir.path().join("data"), &flags, &[]).await;
    let (_shared, app) = common::shared_custom_server();
    let command = [common::system_python().display().to_string(), app.display().to_string(), "--burn".into()];
    let model = json!({"modelId": "burner", "model": {"displayName": "burner", "containerSpec": {
        "imageUri": "example.com/burner:1", "command": command, "hostProcess": true}}});
    p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(model)).await;
    p.expect(200, "POST", &format!("{LOC}/endpoints?endpointId=burn"), Some(json!({"displayName": "b"})))
        .await;
    // One busy thread is ~400% of an e2-micro's 250m: well above the 50% target.
    let body = json!({"deployedModel": {"model": "burner", "dedicatedResources": {
        "machineSpec": {"machineType": "e2-micro"}, "minReplicaCount": 1, "maxReplicaCount": 2,
        "autoscalingMetricSpecs": [{"metricName": "aiplatform.googleapis.com/prediction/online/cpu/utilization", "target": 50}]}}});
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints/burn:deployModel"), Some(body)).await;
    let done = p.wait(&op).await;
    assert!(done["error"].is_null(), "{done}");
    let id = done["response"]["deployedModel"]["id"].as_str().expect("id").to_string();
    wait_replicas(&p, "burn", &id, 2).await;
    // Past the scale-down delay without a single request, busy replicas stay.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(common::available_replicas(&p, "burn", &id).await, 2);
}

/// The manifests behind a deployed model: read them, edit them (validated, diffed, applied as
/// a new revision that the local backend runs), refuse unsafe edits, roll back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_shown_edited_and_rolled_back() {
    let dir = tempfile::tempdir().expect("dir");
    let p = start(&dir.path().join("data"), &["--cpu-overcommit", "4"], &[]).await;
    upload_mlp(&p, None, &[]).await;
    p.expect(200, "POST", &format!("{LOC}/endpoints?endpointId=mlp"), Some(json!({"displayName": "mlp"})))
        .await;
    let id = deploy(&p, "mlp", "mlp", json!({})).await["id"].as_str().expect("id").to_string();
    let path = format!("{LOC}/endpoints/mlp/deployedModels/{id}/manifests");

    let yaml = p.http.get(p.url(&path)).bearer_auth(&p.token).send().await.expect("get");
    assert_eq!(yaml.status(), 200);
    assert_eq!(yaml.headers()["x-platform-revision"], "1");
    let yaml = yaml.text().await.expect("yaml");
    assert!(yaml.contains("kind: Deployment") && yaml.contains("kind: Service"), "{yaml}");
    let docs: Value = p
        .http
        .get(p.url(&path))
        .bearer_auth(&p.token)
        .header("accept", "application/json")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(docs[0]["kind"], "Deployment", "{docs}");
    let whole = p
        .http
        .get(p.url(&format!("{LOC}/endpoints/mlp/manifests")))
        .bearer_auth(&p.token)
        .send()
        .await
        .expect("get");
    assert!(whole.text().await.expect("text").contains("kind: Ingress"));

    let put = |body: String, dry: bool| {
        let url = p.url(&format!("{path}{}", if dry { "?dryRun=true" } else { "" }));
        let req = p.http.put(url).bearer_auth(&p.token).header("content-type", "application/yaml").body(body);
        async move {
            let resp = req.send().await.expect("put");
            (resp.status().as_u16(), resp.json::<Value>().await.expect("json"))
        }
    };
    // An extra environment variable: a dry run shows the diff, the real edit becomes revision 2.
    let edited = yaml.replacen(
        "      - env:\n",
        "      - env:\n        - name: EDITED\n          value: yes-please\n",
        1,
    );
    assert!(edited != yaml, "the rendered container has an env list");
    let (status, dry) = put(edited.clone(), true).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dryRun"], true);
    assert!(dry["diff"].as_str().unwrap_or_default().contains("+        - name: EDITED"), "{dry}");
    let (status, applied) = put(edited.clone(), false).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["revision"]["revision"], "2");
    assert_eq!(applied["revision"]["source"], "edited");

    // The replica is replaced by one with the edited environment, and serves.
    let data = dir.path().join("data");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let environ: Vec<String> = common::replica_pids(&data)
            .into_iter()
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/environ")).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        if environ.iter().any(|e| e.contains("EDITED=yes-please")) && predict(&p, "mlp").await.0 == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the edit did not reach the replica");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Unsafe edits are refused with every problem and its path.
    let unsafe_edit = edited.replacen(
        "        securityContext:\n",
        "        securityContext:\n          privileged: true\n",
        1,
    );
    let (status, refused) = put(unsafe_edit, false).await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("securityContext/privileged"), "{message}");
    assert_eq!(refused["error"]["details"][0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
    let (status, _) = put("not: [yaml".into(), false).await;
    assert_eq!(status, 400);

    // Revisions, and a rollback to the rendered one.
    let revisions =
        p.expect(200, "GET", &format!("{LOC}/endpoints/mlp/deployedModels/{id}/revisions"), None).await;
    let sources: Vec<&str> = revisions["revisions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["source"].as_str())
        .collect();
    assert_eq!(sources, ["rendered", "edited"]);
    let back = p
        .expect(200, "POST", &format!("{LOC}/endpoints/mlp/deployedModels/{id}/revisions/1:rollback"), None)
        .await;
    assert_eq!(back["revision"], "3");
    assert_eq!(back["source"], "rollback");
    let now =
        p.http.get(p.url(&path)).bearer_auth(&p.token).send().await.expect("get").text().await.expect("text");
    assert_eq!(now, yaml, "the rollback restores revision 1");
}

/// Request-response logging: with `samplingRate` 1 every prediction is kept, bodies and all,
/// and read back newest first a page at a time (at most `--prediction-log-retention` of them);
/// with 0 none is; rates outside 0..1 and BigQuery tables are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_predictions_are_kept_and_read_back() {
    let dir = tempfile::tempdir().expect("dir");
    let args = ["--cpu-overcommit", "4", "--prediction-log-retention", "3"];
    let p = start(&dir.path().join("data"), &args, &[]).await;
    upload_mlp(&p, None, &[]).await;
    let refused = [
        (json!({"enabled": true, "samplingRate": 1.5}), "samplingRate is 1.5"),
        (json!({"enabled": true, "samplingRate": -1}), "from 0 to 1"),
        (
            json!({"enabled": true, "samplingRate": 1, "bigqueryDestination": {"outputUri": "bq://p.d.t"}}),
            "BigQuery",
        ),
    ];
    for (config, says) in refused {
        let body = json!({"displayName": "bad", "predictRequestResponseLoggingConfig": config});
        let (status, err) = p.call("POST", &format!("{LOC}/endpoints?endpointId=bad"), Some(body)).await;
        assert_eq!(status, 400, "{err}");
        assert!(err["error"]["message"].as_str().unwrap_or_default().contains(says), "{err}");
    }
    let body = json!({"displayName": "logged", "predictRequestResponseLoggingConfig": {"enabled": true, "samplingRate": 1.0}});
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints?endpointId=logged"), Some(body)).await;
    assert_eq!(
        op["response"]["predictRequestResponseLoggingConfig"],
        json!({"enabled": true, "samplingRate": 1.0})
    );
    let deployed = deploy(&p, "logged", "mlp", json!({"0": 100})).await;
    let id = deployed["id"].as_str().expect("id").to_string();
    for _ in 0..3 {
        let (status, answer) = predict(&p, "logged").await;
        assert_eq!(status, 200, "{answer}");
    }
    let raw = json!({"instances": reference("mlp")["vertex"]["instances"]});
    let (status, answer) = p.call("POST", &format!("{LOC}/endpoints/logged:rawPredict"), Some(raw)).await;
    assert_eq!(status, 200, "{answer}");
    let logs_path = format!("{LOC}/endpoints/logged/predictionLogs");
    // Written off the request path: they show up shortly after.
    let mut logs = Value::Null;
    for _ in 0..100 {
        logs = p.expect(200, "GET", &logs_path, None).await;
        if logs["predictionLogs"].as_array().is_some_and(|l| l.len() == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entries = logs["predictionLogs"].as_array().expect("logs");
    assert_eq!(entries.len(), 3, "four kept, the oldest deleted past the retention of 3: {logs}");
    let methods: Vec<&str> = entries.iter().filter_map(|e| e["method"].as_str()).collect();
    assert_eq!(methods, ["rawPredict", "predict", "predict"], "newest first");
    for e in entries {
        assert_eq!(
            (e["deployedModelId"].as_str(), e["status"].as_i64()),
            (Some(id.as_str()), Some(200)),
            "{e}"
        );
        assert!(e["request"]["text"].as_str().expect("request").contains("instances"), "{e}");
        assert!(e["response"]["text"].as_str().expect("response").contains("predictions"), "{e}");
        assert!(e["latency"].as_str().expect("latency").ends_with('s'), "{e}");
    }
    let times: Vec<&str> = entries.iter().filter_map(|e| e["time"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");

    let first = p.expect(200, "GET", &format!("{logs_path}?pageSize=2"), None).await;
    assert_eq!(first["predictionLogs"].as_array().map(Vec::len), Some(2));
    let token = first["nextPageToken"].as_str().expect("a next page");
    let second = p.expect(200, "GET", &format!("{logs_path}?pageSize=2&pageToken={token}"), None).await;
    assert_eq!(second["predictionLogs"][0], entries[2]);
    assert!(second["nextPageToken"].is_null(), "{second}");
    p.expect(400, "GET", &format!("{logs_path}?pageToken=nope"), None).await;
    let other = p.expect(200, "GET", &format!("{logs_path}?deployedModelId=1"), None).await;
    assert_eq!(other["predictionLogs"], json!([]));

    // samplingRate 0 keeps nothing.
    let off = json!({"predictRequestResponseLoggingConfig": {"enabled": true, "samplingRate": 0}});
    let path = format!("{LOC}/endpoints/logged?updateMask=predictRequestResponseLoggingConfig");
    p.expect(200, "PATCH", &path, Some(off)).await;
    for _ in 0..3 {
        assert_eq!(predict(&p, "logged").await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = p.expect(200, "GET", &logs_path, None).await;
    assert_eq!(after["predictionLogs"], logs["predictionLogs"], "nothing new is kept at rate 0");
    let shown = p.expect(200, "GET", &format!("{LOC}/endpoints/logged"), None).await;
    assert_eq!(shown["predictRequestResponseLoggingConfig"], json!({"enabled": true, "samplingRate": 0.0}));
}

/// `tritonclient[http]`, unmodified, against the gateway: the Open Inference Protocol V2 under
/// the endpoint's URL, over HTTPS with the platform's CA and a token (a call without it is
/// refused), JSON and binary tensor data, for the endpoint's traffic split (the model named by
/// the endpoint's id) and for one deployed model (named by its id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_reaches_a_runtime_model_through_the_gateway() {
    let dir = tempfile::tempdir().expect("dir");
    let p = start(&dir.path().join("data"), &["--cpu-overcommit", "4"], &[]).await;
    let (model, _) = upload_mlp(&p, None, &[]).await;
    p.expect(200, "POST", &format!("{LOC}/endpoints?endpointId=oip"), Some(json!({"displayName": "oip"})))
        .await;
    let deployed = deploy(&p, "oip", &model, json!({"0": 100})).await;
    let id = deployed["id"].as_str().expect("deployed model id");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &p.token).expect("token file");
    for name in ["oip", id] {
        let output = std::process::Command::new(common::python())
            .arg(common::root().join("tests/clients/triton_check.py"))
            .arg(format!("localhost:{}{LOC}/endpoints/oip", p.port))
            .arg(name)
            .arg(common::root().join("tests/models/mlp.json"))
            .arg(p.data.join("tls/ca.pem"))
            .arg(&token_file)
            .output()
            .expect("python runs");
        assert!(
            output.status.success(),
            "tritonclient through the gateway, model `{name}`:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (status, answer) = p.call("GET", &format!("{LOC}/endpoints/oip/v2/models/nope"), None).await;
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("`oip`"), "{answer}");
}
