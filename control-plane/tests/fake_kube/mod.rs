//! A fake Kubernetes API server on a local port, for tests that run the real `platform` binary
//! with a kubeconfig: it stores what is applied (server-side apply PATCH), answers GETs and
//! lists from what it stores (with resource versions), keeps watches open, deletes, and lets
//! a test answer chosen requests itself. Every request is recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// Path without the query.
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
}

/// Answers a request before the store does: `Some((status, body))` to answer it.
pub type Script = dyn Fn(&Method, &str, Option<&Value>) -> Option<(u16, Value)> + Send + Sync;

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    received: Vec<Received>,
    resource_version: u64,
}

/// The running fake; the server stops when the test's runtime ends.
pub struct FakeCluster {
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeCluster {
    /// Starts the fake on a free local port.
    pub async fn start(
        script: impl Fn(&Method, &str, Option<&Value>) -> Option<(u16, Value)> + Send + Sync + 'static,
    ) -> FakeCluster {
        let state: Arc<Mutex<State>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let state = shared.clone();
            let script = script.clone();
            async move { answer(&state, &*script, request).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeCluster { address, state }
    }

    /// A kubeconfig whose current context is this fake, in namespace `namespace`.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n\
             current-context: fake\n",
            self.address
        );
        std::fs::write(&path, text).expect("kubeconfig");
        path
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The stored object at `path` (what the last apply left).
    pub fn object(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }
}

fn status(code: u16, message: &str) -> (u16, Value) {
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        _ => "Invalid",
    };
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}),
    )
}

async fn answer(state: &Mutex<State>, script: &Script, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let method = parts.method.clone();
    state.lock().unwrap().received.push(Received {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        body: body.clone(),
    });
    if method == Method::GET && query.contains("watch=true") {
        // A watch that stays open without events.
        let stream = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .expect("response");
    }
    let (code, reply) = match script(&method, &path, body.as_ref()) {
        Some(answer) => answer,
        None => store(&mut state.lock().unwrap(), &method, &path, body),
    };
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&reply).expect("json")))
        .expect("response")
}

/// What an API server with an empty cluster does.
fn store(state: &mut State, method: &Method, path: &str, body: Option<Value>) -> (u16, Value) {
    match *method {
        Method::PATCH if path.ends_with("/scale") => (
            200,
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": "x"}, "spec": body.map(|b| b["spec"].clone()).unwrap_or_default()}),
        ),
        Method::PATCH | Method::PUT | Method::POST => {
            let Some(mut object) = body else { return status(400, "no body") };
            let key = if *method == Method::POST {
                format!("{path}/{}", object["metadata"]["name"].as_str().unwrap_or_default())
            } else {
                path.to_string()
            };
            // Optimistic concurrency: a create of what exists, or an update from a stale read,
            // conflicts (what leader election relies on).
            let stored = state.objects.get(&key).map(|o| o["metadata"]["resourceVersion"].clone());
            let read = &object["metadata"]["resourceVersion"];
            if (*method == Method::POST && stored.is_some())
                || (*method == Method::PUT && !read.is_null() && stored.as_ref() != Some(read))
            {
                return status(409, &format!("{key} was changed or exists; read it again"));
            }
            state.resource_version += 1;
            object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
            state.objects.insert(key, object.clone());
            (200, object)
        }
        Method::DELETE => match state.objects.remove(path) {
            Some(_) => (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
            None => status(404, &format!("{path} not found")),
        },
        Method::GET => {
            if let Some(object) = state.objects.get(path) {
                return (200, object.clone());
            }
            if !looks_like_collection(path) {
                return status(404, &format!("{path} not found"));
            }
            let prefix = format!("{path}/");
            let items: Vec<Value> = state
                .objects
                .iter()
                .filter(|(k, _)| k.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')))
                .map(|(_, v)| v.clone())
                .collect();
            let version = state.resource_version.max(1).to_string();
            (
                200,
                json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items}),
            )
        }
        _ => status(405, "method not allowed"),
    }
}

/// `/api/v1/namespaces/ns/pods`, `/apis/apps/v1/namespaces/ns/deployments`: an even number of
/// segments after the version.
fn looks_like_collection(path: &str) -> bool {
    let rest = path
        .strip_prefix("/api/v1/")
        .or_else(|| path.strip_prefix("/apis/").and_then(|p| p.splitn(3, '/').nth(2)));
    rest.is_some_and(|r| r.split('/').count() % 2 == 1)
}
