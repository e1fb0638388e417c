//! Faults under load, judged by behaviour (which requests fail, which processes run, what the
//! database holds), never by timing: `kill -9` of a replica and of the platform, a rollout with
//! a traffic shift, a scale from zero under a burst, and an overload flood.
//!
//! Each case starts the real `platform serve` on a temporary data directory, deploys the test
//! MLP on the local backend (the prebuilt runtime as replica processes) and drives `:predict`
//! over HTTPS with a few concurrent clients looping until told to stop.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{LOC, Platform, model_path, reference, start};
use serde_json::{Value, json};

/// One answered (or failed) prediction of the load: when it was sent and its status; 0 when no
/// HTTP answer came back at all.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    sent: Instant,
    status: u16,
    retry_after: bool,
}

/// `concurrency` clients, each sending `:predict` to `endpoint` in a loop until stopped (or,
/// with a `budget`, until that many requests were sent by all of them together).
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    fn start(p: &Platform, endpoint: &str, concurrency: usize) -> Load {
        Load::start_with(p, endpoint, concurrency, None)
    }

    fn start_with(p: &Platform, endpoint: &str, concurrency: usize, budget: Option<usize>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let left = Arc::new(std::sync::atomic::AtomicUsize::new(budget.unwrap_or(usize::MAX)));
        let url = p.url(&format!("{LOC}/endpoints/{endpoint}:predict"));
        let body = json!({"instances": reference("mlp")["vertex"]["instances"]}).to_string();
        let clients = (0..concurrency)
            .map(|_| {
                let (http, token, url, body) = (p.http.clone(), p.token.clone(), url.clone(), body.clone());
                let (stop, left) = (stop.clone(), left.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    while !stop.load(Ordering::Relaxed)
                        && left
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                            .is_ok()
                    {
                        let sent = Instant::now();
                        let answer = http
                            .post(&url)
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        let (status, retry_after) = match answer {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let retry_after = r.headers().contains_key("retry-after");
                                // A 200 must carry predictions; anything else counts as failed.
                                let status = match r.bytes().await {
                                    Ok(b) if status == 200 => {
                                        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                                        if v["predictions"].is_array() { 200 } else { 0 }
                                    }
                                    Ok(_) => status,
                                    Err(_) => 0,
                                };
                                (status, retry_after)
                            }
                            Err(_) => (0, false),
                        };
                        outcomes.push(Outcome { sent, status, retry_after });
                        if status != 200 {
                            // Failed callers back off a little, as clients do; it keeps a dead
                            // platform from being hammered by a busy loop.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    outcomes
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Waits until the clients have sent their budget of requests; what they saw.
    async fn stops_when_done(self) -> Tally {
        let mut all = Vec::new();
        for c in self.clients {
            all.extend(c.await.expect("load client"));
        }
        Tally(all)
    }

    /// Stops the clients and collects what they saw.
    async fn stops(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for c in self.clients {
            all.extend(c.await.expect("load client"));
        }
        Tally(all)
    }
}

/// What the load saw.
#[derive(Debug)]
struct Tally(Vec<Outcome>);

impl Tally {
    fn ok(&self) -> usize {
        self.0.iter().filter(|o| o.status == 200).count()
    }

    fn failed(&self) -> Vec<&Outcome> {
        self.0.iter().filter(|o| o.status != 200).collect()
    }

    /// Counts per status, for messages.
    fn statuses(&self) -> std::collections::BTreeMap<u16, usize> {
        let mut m = std::collections::BTreeMap::new();
        for o in &self.0 {
            *m.entry(o.status).or_default() += 1;
        }
        m
    }
}

/// Uploads the MLP as model `id`; returns its resource name.
async fn upload_mlp(p: &Platform, id: &str) -> String {
    let artifact = p.upload_artifact(&model_path("mlp")).await;
    let uri = artifact["artifactUri"].as_str().expect("uri").to_string();
    let body = json!({"modelId": id, "model": {"displayName": id, "artifactUri": uri}});
    let op = p.expect(200, "POST", &format!("{LOC}/models:upload"), Some(body)).await;
    assert_eq!(op["done"], true, "{op}");
    op["response"]["model"].as_str().expect("model").to_string()
}

async fn create_endpoint(p: &Platform, id: &str) {
    let path = format!("{LOC}/endpoints?endpointId={id}");
    p.expect(200, "POST", &path, Some(json!({"displayName": id}))).await;
}

/// Deploys `model` on `endpoint` with `resources` (merged over an e2-small machine) and waits
/// for the deploy; returns the deployed model's id.
async fn deploy(p: &Platform, endpoint: &str, model: &str, resources: Value, split: Value) -> String {
    deploy_with(p, endpoint, model, resources, json!({}), split).await
}

/// [`deploy`] with more fields of the deployed model (`containerConcurrency`, ...).
async fn deploy_with(
    p: &Platform,
    endpoint: &str,
    model: &str,
    resources: Value,
    fields: Value,
    split: Value,
) -> String {
    let mut dedicated = json!({"machineSpec": {"machineType": "e2-small"}});
    for (k, v) in resources.as_object().expect("object") {
        dedicated[k] = v.clone();
    }
    let mut deployed = json!({"model": model, "displayName": model, "dedicatedResources": dedicated});
    for (k, v) in fields.as_object().expect("object") {
        deployed[k] = v.clone();
    }
    let body = json!({"deployedModel": deployed, "trafficSplit": split});
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints/{endpoint}:deployModel"), Some(body)).await;
    let done = p.wait(&op).await;
    assert!(done["error"].is_null(), "deploy failed: {done}");
    done["response"]["deployedModel"]["id"].as_str().expect("id").to_string()
}

async fn predict(p: &Platform, endpoint: &str) -> (u16, Value) {
    let instances = reference("mlp")["vertex"]["instances"].clone();
    p.call("POST", &format!("{LOC}/endpoints/{endpoint}:predict"), Some(json!({"instances": instances})))
        .await
}

/// Waits (generously: the machine is shared) until `check` holds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kill_9(pid: u32) {
    // SAFETY: kill(2) with a pid this test found for a process it started.
    let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
}

/// `kill -9` of one of two replicas under load: the gateway routes around it at once; only
/// requests in flight on the killed replica may fail; the controller starts a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_at_most_its_requests_in_flight() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let p = start(&data, &["--cpu-overcommit", "4"], &[]).await;
    let model = upload_mlp(&p, "mlp").await;
    create_endpoint(&p, "mlp").await;
    let id = deploy(&p, "mlp", &model, json!({"minReplicaCount": 2, "maxReplicaCount": 2}), json!({})).await;
    assert_eq!(common::available_replicas(&p, "mlp", &id).await, 2);
    let before = common::replica_pids(&data);
    assert_eq!(before.len(), 2, "{before:?}");

    const CONCURRENCY: usize = 8;
    let load = Load::start(&p, "mlp", CONCURRENCY);
    until("the load is served", || async { predict(&p, "mlp").await.0 == 200 }).await;
    let victim = before[0];
    let killed_at = Instant::now();
    kill_9(victim);
    // Serving goes on: a good number of answers after the kill, then a replacement replica.
    for _ in 0..50 {
        let (status, body) = predict(&p, "mlp").await;
        assert_eq!(status, 200, "a request after the kill: {body}");
    }
    until("the controller replaces the killed replica", || async {
        let now = common::replica_pids(&data);
        now.len() == 2 && !now.contains(&victim) && now.iter().all(|pid| common::alive(*pid))
    })
    .await;
    until("both replicas are available", || async { common::available_replicas(&p, "mlp", &id).await == 2 })
        .await;
    for _ in 0..20 {
        assert_eq!(predict(&p, "mlp").await.0, 200, "served after the replacement");
    }
    let tally = load.stops().await;
    eprintln!("replica kill: {:?}", tally.statuses());
    let failed = tally.failed();
    assert!(tally.ok() > 0, "{:?}", tally.statuses());
    assert!(
        failed.len() <= CONCURRENCY,
        "at most the requests in flight on the killed replica fail: {:?}",
        tally.statuses()
    );
    assert!(
        failed.iter().all(|o| o.sent < killed_at),
        "a request sent after the kill failed: {:?}",
        tally.statuses()
    );
}

/// A second model rolled out next to the first, all traffic moved to it, the first undeployed:
/// all under load, and not one request fails (replicas leave the routing table before they are
/// stopped, and are stopped only once their requests are answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_and_a_traffic_shift_under_load_fail_no_request() {
    let dir = tempfile::tempdir().expect("dir");
    let p = start(&dir.path().join("data"), &["--cpu-overcommit", "4"], &[]).await;
    let old = upload_mlp(&p, "old").await;
    let new = upload_mlp(&p, "new").await;
    create_endpoint(&p, "mlp").await;
    let one = json!({"minReplicaCount": 1, "maxReplicaCount": 1});
    let first = deploy(&p, "mlp", &old, one.clone(), json!({})).await;

    let load = Load::start(&p, "mlp", 6);
    until("the load is served", || async { predict(&p, "mlp").await.0 == 200 }).await;
    // The new model comes up beside the old one without traffic, then takes all of it.
    let second = deploy(&p, "mlp", &new, one, json!({"0": 0, first.as_str(): 100})).await;
    let split = json!({"trafficSplit": {second.as_str(): 100, first.as_str(): 0}});
    p.expect(200, "PATCH", &format!("{LOC}/endpoints/mlp?updateMask=trafficSplit"), Some(split)).await;
    until("the new model answers", || async {
        predict(&p, "mlp").await.1["deployedModelId"] == second.as_str()
    })
    .await;
    let undeploy = json!({"deployedModelId": first});
    let op = p.expect(200, "POST", &format!("{LOC}/endpoints/mlp:undeployModel"), Some(undeploy)).await;
    let done = p.wait(&op).await;
    assert!(done["error"].is_null(), "{done}");
    for _ in 0..20 {
        let (status, body) = predict(&p, "mlp").await;
        assert_eq!((status, body["deployedModelId"].as_str()), (200, Some(second.as_str())), "{body}");
    }
    let tally = load.stops().await;
    assert!(tally.ok() > 0, "{:?}", tally.statuses());
    assert!(tally.failed().is_empty(), "no request fails during a rollout: {:?}", tally.statuses());
}

/// Every process on this machine whose command line or environment names `data`: the
/// platform of that data directory and its replicas.
fn processes_of(data: &std::path::Path) -> Vec<u32> {
    let needle = data.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || !common::alive(pid) {
            continue;
        }
        let names_it = ["cmdline", "environ"].iter().any(|f| {
            std::fs::read(entry.path().join(f))
                .is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle.as_str()))
        });
        if names_it {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// `kill -9` of the platform under load, then a start on the same data directory: the old
/// replicas are gone (none orphaned), every endpoint serves again with the deployed models it
/// had, and the database lost nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_platform_comes_back_with_every_endpoint_and_leaves_no_orphans() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let p = start(&data, &["--cpu-overcommit", "4"], &[]).await;
    let mut deployed = Vec::new();
    for name in ["alpha", "beta"] {
        let model = upload_mlp(&p, name).await;
        create_endpoint(&p, name).await;
        let id =
            deploy(&p, name, &model, json!({"minReplicaCount": 1, "maxReplicaCount": 1}), json!({})).await;
        deployed.push((name, id));
    }
    let before = common::replica_pids(&data);
    assert_eq!(before.len(), 2, "{before:?}");
    let loads: Vec<Load> = deployed.iter().map(|(name, _)| Load::start(&p, name, 3)).collect();
    for (name, _) in &deployed {
        until("the load is served", || async { predict(&p, name).await.0 == 200 }).await;
    }

    let port = p.port;
    let mut p = p;
    kill_9(p.child.id());
    let _ = p.child.wait();
    until("the killed platform's replicas are gone", || async {
        before.iter().all(|pid| !common::alive(*pid))
    })
    .await;
    drop(p);
    let p = common::start_on(&data, port, &["--cpu-overcommit", "4"], &[]).await;
    for (name, id) in &deployed {
        until("the endpoint serves again", || async {
            let (status, body) = predict(&p, name).await;
            status == 200 && body["deployedModelId"] == id.as_str()
        })
        .await;
    }
    for load in loads {
        let tally = load.stops().await;
        assert!(tally.ok() > 0, "{:?}", tally.statuses());
    }

    // Nothing orphaned: exactly the new platform and one new replica per deployed model run.
    let after = common::replica_pids(&data);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().all(|pid| common::alive(*pid) && !before.contains(pid)), "{before:?} -> {after:?}");
    let mut expected = after.clone();
    expected.push(p.child.id());
    expected.sort_unstable();
    // Looked at until it holds: a process the platform forks for a moment (a probe of the
    // machine) carries its command line until it execs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running = processes_of(&data);
        if running == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only the platform and its replicas {expected:?} run: {running:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nothing lost: models, endpoints, deployed models and traffic as before the kill.
    let models = p.expect(200, "GET", &format!("{LOC}/models"), None).await;
    let mut names: Vec<&str> = models["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["displayName"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["alpha", "beta"], "{models}");
    for (name, id) in &deployed {
        let e = p.expect(200, "GET", &format!("{LOC}/endpoints/{name}"), None).await;
        let ids: Vec<&str> =
            e["deployedModels"].as_array().expect("list").iter().filter_map(|d| d["id"].as_str()).collect();
        assert_eq!(ids, [id.as_str()], "{e}");
        assert_eq!(e["trafficSplit"][id.as_str()], 100, "{e}");
    }
}

/// A deployed model scaled to zero takes a burst of 50 concurrent requests: they are held
/// while a replica starts, and every one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_model_scaled_to_zero_is_answered_in_full() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let p = start(&data, &["--cpu-overcommit", "4", "--scale-down-delay", "2s"], &[]).await;
    let model = upload_mlp(&p, "mlp").await;
    create_endpoint(&p, "mlp").await;
    let id = deploy(&p, "mlp", &model, json!({"minReplicaCount": 0, "maxReplicaCount": 1}), json!({})).await;
    until("the idle model scales to zero", || async {
        common::available_replicas(&p, "mlp", &id).await == 0
            && common::replica_pids(&data).iter().all(|pid| !common::alive(*pid))
    })
    .await;

    const BURST: usize = 50;
    let tally = Load::start_with(&p, "mlp", BURST, Some(BURST)).stops_when_done().await;
    assert_eq!(tally.0.len(), BURST);
    assert_eq!(tally.ok(), BURST, "every held request is answered: {:?}", tally.statuses());
}

/// The platform's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Far more callers than one replica with `containerConcurrency` 1 and a queue of 4 can take:
/// the surplus gets 429 with `Retry-After`, everything else is answered 200, and the platform's
/// memory stays bounded through a flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overload_is_answered_429_with_retry_after_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("dir");
    let flags = ["--cpu-overcommit", "4", "--max-queued-requests", "4"];
    let p = start(&dir.path().join("data"), &flags, &[]).await;
    let model = upload_mlp(&p, "mlp").await;
    create_endpoint(&p, "mlp").await;
    let one = json!({"minReplicaCount": 1, "maxReplicaCount": 1});
    deploy_with(&p, "mlp", &model, one, json!({"containerConcurrency": 1}), json!({})).await;

    const CLIENTS: usize = 200;
    // A first, smaller flood opens the clients' connections and warms the platform's pools.
    let warm = Load::start_with(&p, "mlp", CLIENTS, Some(1000)).stops_when_done().await;
    let pid = p.child.id();
    let before = rss_bytes(pid);
    let flood = Load::start_with(&p, "mlp", CLIENTS, Some(5000)).stops_when_done().await;
    let after = rss_bytes(pid);

    eprintln!(
        "overload: warm-up {:?}, flood {:?}, platform RSS {} -> {} KiB",
        warm.statuses(),
        flood.statuses(),
        before >> 10,
        after >> 10
    );
    for tally in [&warm, &flood] {
        let statuses = tally.statuses();
        assert!(statuses.keys().all(|s| [200, 429].contains(s)), "only 200 and 429: {statuses:?}");
        assert!(statuses.get(&429).is_some_and(|n| *n > 0), "the surplus is refused: {statuses:?}");
        assert!(tally.ok() > 0, "{statuses:?}");
        assert!(
            tally.0.iter().filter(|o| o.status == 429).all(|o| o.retry_after),
            "every 429 says when to come back"
        );
    }
    const BOUND: u64 = 50 << 20;
    assert!(
        after < before + BOUND,
        "the platform's memory grew from {} MiB to {} MiB in a flood of 5000 requests",
        before >> 20,
        after >> 20
    );
}
