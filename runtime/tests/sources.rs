//! Models from remote locations (HTTP with a content-keyed cache, S3 on a real S3-protocol
//! server), and the real `tritonclient` against the runtime.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use common::{Runtime, assert_close, model_path, python, reference, root};
use serde_json::json;
use test_support::S3Server;
use tokio::sync::watch;

const TOLERANCE: f64 = 1e-4;

/// An HTTP file server for one model whose downloads wait until released.
struct ModelServer {
    url: String,
    downloads: Arc<AtomicUsize>,
    release: watch::Sender<bool>,
    etag: watch::Sender<&'static str>,
}

async fn start_model_server() -> ModelServer {
    let bytes = Arc::new(std::fs::read(model_path("mlp")).expect("model"));
    let downloads = Arc::new(AtomicUsize::new(0));
    let (release, released) = watch::channel(false);
    let (etag, etag_rx) = watch::channel("\"v1\"");
    let counter = downloads.clone();
    let handler = move |method: Method| {
        let (bytes, counter, mut released, etag) =
            (bytes.clone(), counter.clone(), released.clone(), *etag_rx.borrow());
        async move {
            let mut headers = HeaderMap::new();
            headers.insert(header::ETAG, HeaderValue::from_static(etag));
            if method == Method::GET {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = released.wait_for(|r| *r).await;
            }
            (StatusCode::OK, headers, bytes.as_ref().clone()).into_response()
        }
    };
    let app = axum::Router::new().route("/models/mlp/model.onnx", axum::routing::get(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/models/mlp", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    ModelServer { url, downloads, release, etag }
}

#[tokio::test]
async fn an_http_model_is_served_once_downloaded_and_cached_by_content() {
    let server = start_model_server().await;
    let cache = tempfile::tempdir().expect("cache dir");
    let cache_dir = cache.path().to_str().expect("path");
    let instances = json!({"instances": reference("mlp")["vertex"]["instances"]});
    let predictions = reference("mlp")["vertex"]["predictions"].clone();

    // The test server is plain HTTP on loopback: what the fetch policy refuses unless allowed.
    let env = [
        ("PLATFORM_CACHE_DIR", cache_dir),
        ("PLATFORM_ARTIFACT_ALLOW_HTTP", "true"),
        ("PLATFORM_ARTIFACT_ALLOW_PRIVATE_NETWORKS", "true"),
    ];
    let mut first = Runtime::spawn(&["--model", &server.url], &env);
    // While the download is held back, the process is live but not ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.downloads.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no download started; log:\n{}", first.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = first.get_json("/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(first.get_json("/v2/health/live").await.0, 200);
    assert_eq!(first.get_json("/v2/health/ready").await.0, 503);
    let (status, body) = first.post_json("/predict", &instances).await;
    assert_eq!(status, 503);
    assert!(body["error"]["message"].as_str().expect("message").contains("still loading"));

    server.release.send(true).expect("release");
    first.wait_ready().await;
    let (status, body) = first.post_json("/predict", &instances).await;
    assert_eq!(status, 200, "{body}");
    assert_close(&body["predictions"], &predictions, TOLERANCE);

    // A second replica on the same machine finds the blob: no second download.
    let second = Runtime::start_with_env(&["--model", &server.url], &env).await;
    assert_eq!(server.downloads.load(Ordering::SeqCst), 1);
    assert!(second.log().contains("found in the cache"), "{}", second.log());
    drop(second);

    // A changed object is downloaded again.
    server.etag.send("\"v2\"").expect("etag");
    let third = Runtime::start_with_env(&["--model", &server.url], &env).await;
    assert_eq!(server.downloads.load(Ordering::SeqCst), 2);
    assert_eq!(third.post_json("/predict", &instances).await.0, 200);
}

/// By default a model URL may not be plain HTTP nor reach loopback, link-local or private
/// addresses: nothing is fetched, and the log says which flag allows it.
#[tokio::test]
async fn a_model_url_the_fetch_policy_refuses_is_never_fetched() {
    let server = start_model_server().await;
    server.release.send(true).expect("release");
    let cache = tempfile::tempdir().expect("cache dir");
    let cache_dir = cache.path().to_str().expect("path");
    let https_loopback = server.url.replace("http://", "https://");
    for (url, flag) in [
        (server.url.as_str(), "--artifact-allow-http"),
        (&https_loopback, "--artifact-allow-private-networks"),
    ] {
        let rt = Runtime::spawn(&["--model", url], &[("PLATFORM_CACHE_DIR", cache_dir)]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !rt.log().contains(flag) {
            assert!(Instant::now() < deadline, "no refusal naming {flag}; log:\n{}", rt.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(server.downloads.load(Ordering::SeqCst), 0, "nothing was fetched");
}

#[tokio::test]
async fn an_s3_model_is_read_through_the_standard_aws_environment() {
    let s3 = S3Server::start().await;
    let client = s3.client();
    client.create_bucket().bucket("models").send().await.expect("bucket");
    let body = std::fs::read(model_path("cnn")).expect("model");
    client
        .put_object()
        .bucket("models")
        .key("cnn/v1/model.onnx")
        .body(body.into())
        .send()
        .await
        .expect("upload");

    let env = s3.env();
    let rt = Runtime::start_with_env(&["--model", "s3://models/cnn/v1/"], &env).await;
    let reference = reference("cnn");
    let (status, body) =
        rt.post_json("/predict", &json!({"instances": reference["vertex"]["instances"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_close(&body["predictions"], &reference["vertex"]["predictions"], TOLERANCE);

    let mut missing = Runtime::spawn(&["--model", "s3://models/nothing-here/"], &env);
    assert!(!missing.wait_exit(Duration::from_secs(60)).success());
    assert!(missing.log().contains("cannot fetch the model s3://models/nothing-here/"), "{}", missing.log());
}

#[tokio::test]
async fn tritonclient_works_against_the_runtime() {
    for model in ["mlp", "two_io"] {
        let rt =
            Runtime::start(&["--model", model_path(model).to_str().expect("path"), "--model-name", model])
                .await;
        let reference = root().join("tests/models").join(format!("{model}.json"));
        let output = Command::new(python())
            .arg(root().join("tests/clients/triton_check.py"))
            .args([rt.base.trim_start_matches("http://"), model])
            .arg(reference)
            .output()
            .expect("python runs");
        assert!(
            output.status.success(),
            "tritonclient failed on {model}:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
