//! One test story for the store, run on both databases: `store_suite` exercises every method of
//! `Store`, its errors and its rules, and the two tests run it on SQLite (a temporary
//! directory) and on PostgreSQL (a fresh database on the server named by
//! `PLATFORM_TEST_DATABASE_URL`; run the tests under `scripts/with-postgres`).

use std::collections::BTreeSet;
use std::sync::Arc;

mod common;

use api::{Access, Role};
use control_plane::store::{self, *};
use serde_json::json;

const P: &str = "proj";
const L: &str = "us-central1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_suite_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // The store creates the missing `data/` directory and the file.
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("data").join("platform.db").display());
    let store = store::open(&url).await.expect("open the SQLite store");
    assert_eq!(store.backend(), "sqlite");
    store_suite(store.clone()).await;
    let raw = sqlx::SqlitePool::connect(&url).await.expect("a second connection");
    corrupt_rows_are_errors(&*store, async |sql: &'static str| {
        sqlx::query(sql).execute(&raw).await.expect("corrupt a row");
    })
    .await;
    raw.close().await;
    store.close().await;

    // Reopening runs the migrations again (a no-op) and finds the data.
    let store = store::open(&url).await.expect("reopen the SQLite store");
    assert_eq!(store.count_users().await.expect("count users"), 2);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_suite_on_postgres() {
    let url = common::fresh_postgres("platform_store_test").await;
    let store = store::open(&url).await.expect("open the PostgreSQL store");
    assert_eq!(store.backend(), "postgres");
    store_suite(store.clone()).await;
    let raw = sqlx::PgPool::connect(&url).await.expect("a second connection");
    corrupt_rows_are_errors(&*store, async |sql: &'static str| {
        sqlx::query(sql).execute(&raw).await.expect("corrupt a row");
    })
    .await;
    raw.close().await;
    store.close().await;

    let store = store::open(&url).await.expect("reopen the PostgreSQL store");
    assert_eq!(store.count_users().await.expect("count users"), 2);
    store.close().await;
}

/// Several platforms on one PostgreSQL: the advisory lock lets one controller lead; when its
/// connection goes (the platform stops or dies), another takes the lock.
#[tokio::test]
async fn one_advisory_lock_holder_at_a_time_on_postgres() {
    let url = common::fresh_postgres("platform_leader_test").await;
    let key = control_plane::controller::leader::ADVISORY_LOCK_KEY;
    let first = store::AdvisoryLock::new(&url, key).expect("first");
    let second = store::AdvisoryLock::new(&url, key).expect("second");
    assert!(first.try_hold().await.expect("first claims"));
    assert!(!second.try_hold().await.expect("second claims"), "held by the first");
    assert!(first.try_hold().await.expect("first renews"), "its connection still holds it");
    first.release().await;
    assert!(second.try_hold().await.expect("second claims again"), "free once the first is gone");
    assert!(!first.try_hold().await.expect("first claims again"));
    assert!(store::AdvisoryLock::new("postgres://u@127.0.0.1:1/db", key).unwrap().try_hold().await.is_err());
}

/// Split roles on PostgreSQL: what one process signals, another hears (LISTEN/NOTIFY).
#[tokio::test]
async fn signals_reach_the_other_processes_on_postgres() {
    let url = common::fresh_postgres("platform_signal_test").await;
    let api = store::open(&url).await.expect("api");
    let gateway = store::open(&url).await.expect("gateway");
    let mut demand = api.listen(Signal::Demand).await.expect("listen").expect("PostgreSQL carries signals");
    let mut routes = gateway.listen(Signal::RoutesChanged).await.expect("listen").expect("signals");
    gateway.notify(Signal::Demand).await.expect("notify");
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), demand.recv()).await;
    assert_eq!(heard.expect("the demand is heard"), Some(()));
    assert!(routes.try_recv().is_err(), "only the signal's own listeners hear it");
    let sqlite = store::open("sqlite::memory:").await.unwrap();
    assert!(sqlite.listen(Signal::Demand).await.unwrap().is_none(), "one process owns SQLite");
}

#[tokio::test]
async fn sqlite_in_memory_works_for_throwaway_use() {
    let store = store::open("sqlite::memory:").await.expect("open an in-memory store");
    store.create_user("alice", "hash").await.expect("create a user");
    assert_eq!(store.get_user_by_name("alice").await.expect("get the user").password_hash, "hash");
    store.close().await;
}

#[tokio::test]
async fn open_rejects_unknown_schemes() {
    let err = store::open("mysql://localhost/db").await.err().expect("an error");
    assert!(err.is_invalid_argument(), "{err}");
}

/// A row that does not decode is an error naming the row and the column, never a default:
/// a corrupt spec must not become a default container, nor a corrupt split an empty one.
async fn corrupt_rows_are_errors(store: &dyn Store, corrupt: impl AsyncFn(&'static str)) {
    let endpoint = Endpoint {
        project: P.into(),
        location: L.into(),
        endpoint_id: "broken".into(),
        display_name: "Broken".into(),
        ..Default::default()
    };
    store.create_endpoint(&endpoint).await.expect("create");
    corrupt("UPDATE endpoints SET traffic_split = '{\"a\": \"all\"}' WHERE endpoint_id = 'broken'").await;
    let err = store.get_endpoint(&endpoint_key("broken")).await.expect_err("a corrupt split");
    let message = err.to_string();
    assert!(message.contains("traffic_split") && message.contains("endpoints/broken"), "{message}");
    assert!(store.list_all_endpoints().await.is_err(), "a list with a corrupt row fails too");
    corrupt("UPDATE endpoints SET traffic_split = '{}', labels = '[1]' WHERE endpoint_id = 'broken'").await;
    let err = store.get_endpoint(&endpoint_key("broken")).await.expect_err("corrupt labels");
    assert!(
        err.to_string().contains("stored labels of projects/proj/locations/us-central1/endpoints/broken"),
        "{err}"
    );
    corrupt("UPDATE endpoints SET labels = '{}', prediction_logging = '{\"enabled\": \"yes\"}' WHERE endpoint_id = 'broken'").await;
    let err = store.get_endpoint(&endpoint_key("broken")).await.expect_err("a corrupt logging setting");
    assert!(err.to_string().contains("prediction_logging"), "{err}");
    corrupt("UPDATE endpoints SET prediction_logging = '{\"enabled\": false, \"samplingRate\": 0.0}' WHERE endpoint_id = 'broken'").await;
    store.delete_endpoint(&endpoint_key("broken")).await.expect("delete");
}

/// Every method of the store, its errors and its rules.
pub async fn store_suite(store: Arc<dyn Store>) {
    users(&*store).await;
    models(&*store).await;
    concurrent_versions(store.clone()).await;
    endpoints(&*store).await;
    operations(&*store).await;
    revisions(store.clone()).await;
    artifacts(&*store).await;
    sessions(&*store).await;
    gateway_traffic(&*store).await;
    prediction_logs(&*store).await;
}

/// Sampled predictions: an endpoint's logging setting is kept; logs are read newest first, by
/// page and by deployed model; each endpoint keeps only its newest `keep`; a log of an endpoint
/// that is gone is dropped; deleting the endpoint deletes its logs.
async fn prediction_logs(store: &dyn Store) {
    let logging = PredictionLogging { enabled: true, sampling_rate: 0.5 };
    for id in ["logged", "other"] {
        let endpoint = Endpoint {
            project: P.into(),
            location: L.into(),
            endpoint_id: id.into(),
            display_name: id.into(),
            prediction_logging: logging,
            ..Default::default()
        };
        assert_eq!(store.create_endpoint(&endpoint).await.expect("create").prediction_logging, logging);
    }
    let (logged, other) = (endpoint_key("logged"), endpoint_key("other"));
    let off = Endpoint {
        prediction_logging: PredictionLogging::default(),
        ..store.get_endpoint(&other).await.unwrap()
    };
    assert_eq!(
        store.update_endpoint(&off, None).await.expect("update").prediction_logging,
        PredictionLogging::default()
    );

    let payload = |data: &str| Payload {
        data: data.into(),
        base64: false,
        size_bytes: data.len() as u64,
        truncated: false,
    };
    let log = |endpoint: &EndpointKey, dm: &str, n: u16| PredictionLog {
        id: 0,
        endpoint: endpoint.clone(),
        deployed_model_id: dm.into(),
        method: if n.is_multiple_of(2) { PredictMethod::Predict } else { PredictMethod::RawPredict },
        time: Timestamp::from_unix_micros(1_000_000 * i64::from(n)).unwrap(),
        status: 200 + n,
        latency: std::time::Duration::from_micros(1500),
        request: payload(&format!("request {n}")),
        response: Payload { data: "/wA=".into(), base64: true, size_bytes: 70_000, truncated: true },
    };
    let batch: Vec<PredictionLog> = (1..=4)
        .map(|n: u16| log(&logged, if n.is_multiple_of(2) { "2" } else { "1" }, n))
        .chain([log(&other, "9", 5)])
        .collect();
    store.insert_prediction_logs(&batch, 3).await.expect("insert");
    let all = |key: &EndpointKey| {
        let key = key.clone();
        async move {
            store
                .list_prediction_logs(&key, &PredictionLogQuery { limit: 100, ..Default::default() })
                .await
                .expect("list")
        }
    };
    let kept = all(&logged).await;
    let statuses: Vec<u16> = kept.iter().map(|l| l.status).collect();
    assert_eq!(statuses, [204, 203, 202], "newest first, the oldest beyond 3 deleted");
    assert_eq!(kept[1], PredictionLog { id: kept[1].id, ..log(&logged, "1", 3) }, "stored as given");
    assert!(kept[0].id > kept[1].id && kept[1].id > kept[2].id);
    assert_eq!(all(&other).await.len(), 1, "each endpoint has its own bound");

    // Pages by id, and one deployed model's logs.
    let page = |before, deployed_model_id: Option<&str>| PredictionLogQuery {
        deployed_model_id: deployed_model_id.map(str::to_string),
        before,
        limit: 2,
    };
    let first = store.list_prediction_logs(&logged, &page(None, None)).await.unwrap();
    assert_eq!(first.iter().map(|l| l.status).collect::<Vec<_>>(), [204, 203]);
    let second = store.list_prediction_logs(&logged, &page(Some(first[1].id), None)).await.unwrap();
    assert_eq!(second.iter().map(|l| l.status).collect::<Vec<_>>(), [202]);
    let only_2 = store.list_prediction_logs(&logged, &page(None, Some("2"))).await.unwrap();
    assert_eq!(only_2.iter().map(|l| l.status).collect::<Vec<_>>(), [204, 202]);

    // Later writes push the oldest out; a log of an endpoint that is gone is dropped.
    let later = [log(&logged, "1", 6), log(&endpoint_key("gone"), "1", 7)];
    store.insert_prediction_logs(&later, 3).await.expect("insert later");
    assert_eq!(all(&logged).await.iter().map(|l| l.status).collect::<Vec<_>>(), [206, 204, 203]);
    assert!(all(&endpoint_key("gone")).await.is_empty());

    // Deleting the endpoint deletes its logs; a new endpoint of the same id starts empty.
    store.delete_endpoint(&logged).await.expect("delete");
    store
        .create_endpoint(&Endpoint {
            project: P.into(),
            location: L.into(),
            endpoint_id: "logged".into(),
            display_name: "again".into(),
            ..Default::default()
        })
        .await
        .expect("recreate");
    assert!(all(&logged).await.is_empty(), "the deleted endpoint's logs are gone");
    for key in [&logged, &other] {
        store.delete_endpoint(key).await.expect("delete");
    }
}

/// Gateways' counters are summed per deployed model; a gateway that stopped recording drops
/// out; a gateway's new record replaces its old one.
async fn gateway_traffic(store: &dyn Store) {
    let at = |secs: i64| Timestamp::from_unix_micros(secs * 1_000_000).unwrap();
    let t = |requests, in_flight, waiting| Traffic { requests, in_flight, waiting };
    store
        .record_traffic("gw-a", &[("1".into(), t(10, 1, 0)), ("2".into(), t(5, 0, 1))], at(100))
        .await
        .unwrap();
    store.record_traffic("gw-b", &[("1".into(), t(7, 2, 0))], at(105)).await.unwrap();
    let sums = store.traffic_since(at(95)).await.unwrap();
    assert_eq!(sums.get("1"), Some(&t(17, 3, 0)));
    assert_eq!(sums.get("2"), Some(&t(5, 0, 1)));
    store.record_traffic("gw-a", &[("1".into(), t(12, 0, 0))], at(110)).await.unwrap();
    let sums = store.traffic_since(at(95)).await.unwrap();
    assert_eq!(sums.get("1"), Some(&t(19, 2, 0)));
    assert_eq!(sums.get("2"), None, "gw-a's new record has no model 2");
    let sums = store.traffic_since(at(108)).await.unwrap();
    assert_eq!(sums.get("1"), Some(&t(12, 0, 0)), "gw-b stopped recording");
    assert_eq!(store.traffic_since(at(95)).await.unwrap().get("1"), Some(&t(12, 0, 0)), "and was deleted");
}

fn model_key(id: &str) -> ModelKey {
    ModelKey::new(P, L, id)
}

fn endpoint_key(id: &str) -> EndpointKey {
    EndpointKey::new(P, L, id)
}

fn version(uri: &str, aliases: &[&str]) -> ModelVersion {
    ModelVersion {
        version_description: format!("from {uri}"),
        container_spec: Some(api::ModelContainerSpec {
            image_uri: "platform/runtime:latest".into(),
            ports: vec![api::Port { container_port: 8080 }],
            ..Default::default()
        }),
        artifact_uri: uri.to_owned(),
        artifact_sha256: Some("ab".repeat(32)),
        predict_schemata: Some(api::PredictSchemata {
            instance_schema_uri: "file:///schema.yaml".into(),
            ..Default::default()
        }),
        labels: labels(&[("team", "ml")]),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn split(pairs: &[(&str, i32)]) -> TrafficSplit {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn users(store: &dyn Store) {
    assert_eq!(store.count_users().await.expect("count"), 0);
    let alice = store.create_user("alice", "hash-a").await.expect("create alice");
    assert_eq!(alice.username, "alice");
    assert!(alice.id > 0);
    let bob = store.create_user("bob", "hash-b").await.expect("create bob");
    assert_ne!(alice.id, bob.id);
    let err = store.create_user("alice", "other").await.expect_err("duplicate username");
    assert!(err.is_already_exists(), "{err}");
    assert_eq!(store.count_users().await.expect("count"), 2);
    let all = store.list_users().await.expect("list users");
    assert_eq!(all.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);

    assert_eq!(store.get_user(alice.id).await.expect("get alice"), alice);
    assert_eq!(store.get_user_by_name("bob").await.expect("get bob"), bob);
    assert!(store.get_user(9999).await.expect_err("no such id").is_not_found());
    assert!(store.get_user_by_name("carol").await.expect_err("no such name").is_not_found());
    store.set_password_hash(alice.id, "hash-a2").await.expect("set password");
    assert_eq!(store.get_user(alice.id).await.expect("get").password_hash, "hash-a2");
    assert!(store.set_password_hash(9999, "x").await.expect_err("no such user").is_not_found());

    // Memberships: one role per user and project.
    assert_eq!(store.get_role(alice.id, P).await.expect("role"), None);
    let m = store.set_role(alice.id, P, Role::Editor).await.expect("set role");
    assert_eq!(m, Membership { user_id: alice.id, project: P.into(), role: Role::Editor });
    store.set_role(alice.id, P, Role::Admin).await.expect("change role");
    store.set_role(alice.id, "other", Role::Predictor).await.expect("second project");
    assert_eq!(store.get_role(alice.id, P).await.expect("role"), Some(Role::Admin));
    let memberships = store.list_memberships(alice.id).await.expect("list");
    assert_eq!(
        memberships.iter().map(|m| (m.project.as_str(), m.role)).collect::<Vec<_>>(),
        [("other", Role::Predictor), (P, Role::Admin)]
    );
    assert!(store.set_role(9999, P, Role::Viewer).await.expect_err("no such user").is_not_found());
    store.remove_membership(alice.id, "other").await.expect("remove");
    assert!(store.remove_membership(alice.id, "other").await.expect_err("removed").is_not_found());
    assert_eq!(store.list_memberships(alice.id).await.expect("list").len(), 1);
    assert!(store.list_memberships(bob.id).await.expect("list").is_empty());

    // API tokens.
    let now = Timestamp::now();
    let expires = Timestamp::from_unix_micros(now.unix_micros() + 3_600_000_000).expect("in range");
    let token = ApiToken {
        id: "jti-1".into(),
        user_id: alice.id,
        project: Some(P.into()),
        description: "ci".into(),
        created_at: now,
        expires_at: Some(expires),
        revoked_at: Some(now), // ignored on insert
    };
    let stored = store.insert_api_token(&token).await.expect("insert token");
    assert_eq!(stored, ApiToken { revoked_at: None, ..token.clone() });
    let err = store.insert_api_token(&token).await.expect_err("duplicate jti");
    assert!(err.is_already_exists(), "{err}");
    let orphan = ApiToken { id: "jti-x".into(), user_id: 9999, ..token.clone() };
    assert!(store.insert_api_token(&orphan).await.expect_err("no such user").is_not_found());
    let second = ApiToken {
        id: "jti-2".into(),
        project: None,
        expires_at: None,
        created_at: Timestamp::from_unix_micros(now.unix_micros() + 1).expect("in range"),
        ..token.clone()
    };
    store.insert_api_token(&second).await.expect("insert second token");
    assert_eq!(store.get_api_token("jti-2").await.expect("get"), ApiToken { revoked_at: None, ..second });
    assert!(store.get_api_token("nope").await.expect_err("missing").is_not_found());
    let listed = store.list_api_tokens(alice.id).await.expect("list tokens");
    assert_eq!(listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["jti-1", "jti-2"]);
    assert!(store.list_api_tokens(bob.id).await.expect("list").is_empty());
    let revoked = store.revoke_api_token("jti-1").await.expect("revoke");
    let revoked_at = revoked.revoked_at.expect("revoked");
    let again = store.revoke_api_token("jti-1").await.expect("revoke again");
    assert_eq!(again.revoked_at, Some(revoked_at), "the first revocation time stays");
    assert!(store.revoke_api_token("nope").await.expect_err("missing").is_not_found());

    // Timestamps render as RFC 3339 with Z and survive serde.
    let text = revoked_at.to_rfc3339();
    assert!(text.ends_with('Z'), "{text}");
    assert_eq!(Timestamp::parse_rfc3339(&text).expect("parse"), revoked_at);
    let json = serde_json::to_value(revoked_at).expect("serialize");
    assert_eq!(serde_json::from_value::<Timestamp>(json).expect("deserialize"), revoked_at);
}

async fn models(store: &dyn Store) {
    let key = model_key("iris");
    let model = Model {
        project: P.into(),
        location: L.into(),
        model_id: "iris".into(),
        display_name: "Iris".into(),
        description: "demo".into(),
        labels: labels(&[("team", "ml")]),
        etag: "ignored".into(),
        ..Default::default()
    };
    let (stored, v1) =
        store.create_model(&model, &version("file:///v1", &["staging"])).await.expect("create");
    assert_eq!(stored.display_name, "Iris");
    assert_eq!(stored.labels, labels(&[("team", "ml")]));
    assert_ne!(stored.etag, "ignored");
    assert!(!stored.etag.is_empty());
    assert_eq!(stored.create_time, stored.update_time);
    assert_eq!((v1.model_id.as_str(), v1.version_id), ("iris", 1));
    assert_eq!(v1.aliases, strings(&["default", "staging"]));
    assert_eq!(v1.container_spec.as_ref().map(|c| c.ports[0].container_port), Some(8080));
    assert_eq!(store.get_model(&key).await.expect("get"), stored);
    assert_eq!(store.get_model_version(&key, 1).await.expect("get v1"), v1);

    let err = store.create_model(&model, &version("file:///v1", &[])).await.expect_err("duplicate model");
    assert!(err.is_already_exists(), "{err}");
    let bad = Model { model_id: "bad".into(), ..model.clone() };
    let err = store.create_model(&bad, &version("file:///v1", &["1x"])).await.expect_err("bad alias");
    assert!(err.is_invalid_argument(), "{err}");
    assert!(store.get_model(&model_key("bad")).await.expect_err("not created").is_not_found());

    // A second model, listed after the first; no labels are stored as none.
    let other = Model {
        model_id: "other".into(),
        display_name: "Other".into(),
        labels: Labels::new(),
        ..model.clone()
    };
    let (other_stored, _) =
        store.create_model(&other, &version("file:///o1", &[])).await.expect("create other");
    assert!(other_stored.labels.is_empty());
    let listed = store.list_models(P, L).await.expect("list");
    assert_eq!(listed.iter().map(|m| m.model_id.as_str()).collect::<Vec<_>>(), ["iris", "other"]);
    assert!(store.list_models(P, "elsewhere").await.expect("list").is_empty());

    // update_model with and without an etag.
    let changed =
        Model { display_name: "Iris 2".into(), labels: labels(&[("team", "ops")]), ..stored.clone() };
    let updated = store.update_model(&changed, Some(&stored.etag)).await.expect("update");
    assert_eq!(updated.display_name, "Iris 2");
    assert_ne!(updated.etag, stored.etag);
    assert!(updated.update_time >= stored.update_time);
    assert_eq!(updated.create_time, stored.create_time);
    let err = store.update_model(&changed, Some(&stored.etag)).await.expect_err("stale etag");
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains("stale"), "{err}");
    let updated =
        store.update_model(&Model { description: "d2".into(), ..changed }, None).await.expect("no etag");
    assert_eq!(updated.description, "d2");
    let missing = Model { model_id: "missing".into(), ..model.clone() };
    assert!(store.update_model(&missing, None).await.expect_err("missing").is_not_found());
    assert!(store.update_model(&missing, Some("x")).await.expect_err("missing").is_not_found());

    // Versions: ids 2, 3; aliases unique per model; default moves on request.
    let v2 = store.add_model_version(&key, &version("file:///v2", &["canary"])).await.expect("add v2");
    assert_eq!((v2.version_id, v2.aliases.clone()), (2, strings(&["canary"])));
    let err = store.add_model_version(&key, &version("file:///v3", &["staging"])).await.expect_err("taken");
    assert!(err.is_already_exists(), "{err}");
    assert!(err.to_string().contains("@staging"), "{err}");
    let v3 =
        store.add_model_version(&key, &version("file:///v3", &["default", "latest"])).await.expect("add v3");
    assert_eq!(v3.version_id, 3, "the failed add allocated nothing");
    assert_eq!(v3.aliases, strings(&["default", "latest"]));
    assert_eq!(store.resolve_alias(&key, "default").await.expect("resolve"), 3);
    assert_eq!(store.get_model_version(&key, 1).await.expect("v1").aliases, strings(&["staging"]));
    let err = store
        .add_model_version(&model_key("missing"), &version("file:///x", &[]))
        .await
        .expect_err("no model");
    assert!(err.is_not_found(), "{err}");

    let versions = store.list_model_versions(&key).await.expect("list versions");
    assert_eq!(
        versions.iter().map(|v| (v.version_id, v.aliases.clone())).collect::<Vec<_>>(),
        [(1, strings(&["staging"])), (2, strings(&["canary"])), (3, strings(&["default", "latest"]))]
    );
    assert!(store.list_model_versions(&model_key("missing")).await.expect_err("no model").is_not_found());
    assert!(store.get_model_version(&key, 9).await.expect_err("no v9").is_not_found());
    assert!(store.get_model_version(&model_key("missing"), 1).await.expect_err("no model").is_not_found());

    assert_eq!(store.resolve_alias(&key, "staging").await.expect("resolve"), 1);
    let err = store.resolve_alias(&key, "nope").await.expect_err("no alias");
    assert!(err.is_not_found() && err.to_string().contains("@nope"), "{err}");
    assert!(
        store.resolve_alias(&model_key("missing"), "default").await.expect_err("no model").is_not_found()
    );

    // merge_version_aliases: add moves, remove removes, default moves but is never removed.
    let merged = store
        .merge_version_aliases(&key, 2, &strings(&["staging", "default", "golden"]), &strings(&["canary"]))
        .await
        .expect("merge");
    assert_eq!(merged.aliases, strings(&["default", "golden", "staging"]));
    assert_eq!(store.get_model_version(&key, 1).await.expect("v1").aliases, Vec::<String>::new());
    assert_eq!(store.get_model_version(&key, 3).await.expect("v3").aliases, strings(&["latest"]));
    assert_eq!(store.resolve_alias(&key, "default").await.expect("resolve"), 2);
    assert!(store.resolve_alias(&key, "canary").await.expect_err("removed").is_not_found());
    let err =
        store.merge_version_aliases(&key, 2, &[], &strings(&["default"])).await.expect_err("remove default");
    assert!(err.is_conflict() && err.to_string().contains("cannot be removed"), "{err}");
    let err =
        store.merge_version_aliases(&key, 1, &[], &strings(&["golden"])).await.expect_err("not its alias");
    assert!(err.is_conflict() && err.to_string().contains("version 2"), "{err}");
    let err =
        store.merge_version_aliases(&key, 1, &strings(&["x1"]), &strings(&["x1"])).await.expect_err("both");
    assert!(err.is_invalid_argument(), "{err}");
    let err = store.merge_version_aliases(&key, 1, &strings(&["42"]), &[]).await.expect_err("numeric alias");
    assert!(err.is_invalid_argument(), "{err}");
    let err = store.merge_version_aliases(&key, 9, &strings(&["x1"]), &[]).await.expect_err("no version");
    assert!(err.is_not_found(), "{err}");
    let err = store.merge_version_aliases(&model_key("missing"), 1, &[], &[]).await.expect_err("no model");
    assert!(err.is_not_found(), "{err}");
    // Removing an alias nobody holds is a no-op.
    let unchanged = store.merge_version_aliases(&key, 1, &[], &strings(&["ghost"])).await.expect("no-op");
    assert!(unchanged.aliases.is_empty());
    // Exactly one default, whatever happened.
    let defaults: usize = store
        .list_model_versions(&key)
        .await
        .expect("list")
        .iter()
        .filter(|v| v.aliases.iter().any(|a| a == "default"))
        .count();
    assert_eq!(defaults, 1);

    // update_model_version changes description and labels only.
    let mut edit = store.get_model_version(&key, 1).await.expect("v1");
    edit.version_description = "first".into();
    edit.labels = labels(&[("stage", "old")]);
    edit.artifact_uri = "file:///ignored".into();
    let edited = store.update_model_version(&edit).await.expect("update version");
    assert_eq!(edited.version_description, "first");
    assert_eq!(edited.labels, labels(&[("stage", "old")]));
    assert_eq!(edited.artifact_uri, "file:///v1");
    let missing_version = ModelVersion { version_id: 77, ..edit.clone() };
    assert!(store.update_model_version(&missing_version).await.expect_err("missing").is_not_found());

    // delete_model_version refuses the default holder, then works once the alias moved.
    let err = store.delete_model_version(&key, 2).await.expect_err("holds default");
    assert!(err.is_conflict() && err.to_string().contains("move the alias"), "{err}");
    store.delete_model_version(&key, 1).await.expect("delete v1");
    assert!(store.get_model_version(&key, 1).await.expect_err("deleted").is_not_found());
    assert!(store.delete_model_version(&key, 1).await.expect_err("deleted").is_not_found());
    store.merge_version_aliases(&key, 3, &strings(&["default"]), &[]).await.expect("move default");
    store.delete_model_version(&key, 2).await.expect("delete v2");
    // Its other aliases went with it.
    assert!(store.resolve_alias(&key, "golden").await.expect_err("gone").is_not_found());
    let v4 = store.add_model_version(&key, &version("file:///v4", &["golden"])).await.expect("add v4");
    assert_eq!(v4.version_id, 4);
    store.delete_model_version(&key, 4).await.expect("delete v4, the newest");
    let v5 = store.add_model_version(&key, &version("file:///v5", &["golden"])).await.expect("add v5");
    assert_eq!(v5.version_id, 5, "ids of deleted versions are not reused");

    // delete_model cascades to versions and aliases.
    store.delete_model(&model_key("other")).await.expect("delete model");
    assert!(store.get_model(&model_key("other")).await.expect_err("deleted").is_not_found());
    assert!(store.get_model_version(&model_key("other"), 1).await.expect_err("cascaded").is_not_found());
    assert!(store.delete_model(&model_key("other")).await.expect_err("deleted").is_not_found());
    let (_, again) = store.create_model(&other, &version("file:///o1", &[])).await.expect("recreate");
    assert_eq!((again.version_id, again.aliases), (1, strings(&["default"])));
}

async fn concurrent_versions(store: Arc<dyn Store>) {
    let key = model_key("busy");
    let model =
        Model { project: P.into(), location: L.into(), model_id: "busy".into(), ..Default::default() };
    store.create_model(&model, &version("file:///b1", &[])).await.expect("create busy");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move {
                store.add_model_version(&key, &version(&format!("file:///b{i}"), &[])).await.expect("add")
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for task in tasks {
        ids.insert(task.await.expect("task").version_id);
    }
    assert_eq!(ids, (2..=9).collect::<BTreeSet<i64>>(), "8 distinct ids");
    let listed = store.list_model_versions(&key).await.expect("list");
    assert_eq!(listed.len(), 9);

    // Concurrent alias moves leave exactly one default.
    let tasks: Vec<_> = (1..=9)
        .map(|v| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move {
                store.merge_version_aliases(&key, v, &strings(&["default", "hot"]), &[]).await.expect("merge")
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let listed = store.list_model_versions(&key).await.expect("list");
    let holders: Vec<_> = listed.iter().filter(|v| v.aliases.contains(&"default".to_owned())).collect();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].aliases, strings(&["default", "hot"]));
}

async fn endpoints(store: &dyn Store) {
    let key = endpoint_key("ep1");
    let endpoint = Endpoint {
        project: P.into(),
        location: L.into(),
        endpoint_id: "ep1".into(),
        display_name: "Endpoint 1".into(),
        labels: labels(&[("env", "test")]),
        ..Default::default()
    };
    let created = store.create_endpoint(&endpoint).await.expect("create endpoint");
    assert_eq!(created.access, Access::Authenticated);
    assert!(created.traffic_split.is_empty());
    assert!(!created.etag.is_empty());
    assert!(store.create_endpoint(&endpoint).await.expect_err("duplicate").is_already_exists());
    let bad = Endpoint { endpoint_id: "bad".into(), traffic_split: split(&[("x", 100)]), ..endpoint.clone() };
    assert!(store.create_endpoint(&bad).await.expect_err("split of nothing").is_invalid_argument());
    let ep2 = Endpoint { endpoint_id: "ep2".into(), access: Access::Public, ..endpoint.clone() };
    store.create_endpoint(&ep2).await.expect("create ep2");
    assert_eq!(store.get_endpoint(&key).await.expect("get"), created);
    assert!(store.get_endpoint(&endpoint_key("nope")).await.expect_err("missing").is_not_found());
    let listed = store.list_endpoints(P, L).await.expect("list");
    assert_eq!(listed.iter().map(|e| e.endpoint_id.as_str()).collect::<Vec<_>>(), ["ep1", "ep2"]);
    let everywhere = store.list_all_endpoints().await.expect("list all");
    assert!(
        everywhere.len() >= 2 && everywhere.iter().any(|e| e.endpoint_id == "ep2"),
        "every project's endpoints"
    );

    // update_endpoint with etags.
    let change = Endpoint { display_name: "Renamed".into(), access: Access::Private, ..created.clone() };
    let updated = store.update_endpoint(&change, Some(&created.etag)).await.expect("update");
    assert_eq!((updated.display_name.as_str(), updated.access), ("Renamed", Access::Private));
    assert_ne!(updated.etag, created.etag);
    let err = store.update_endpoint(&change, Some(&created.etag)).await.expect_err("stale");
    assert!(err.is_conflict(), "{err}");
    let missing = Endpoint { endpoint_id: "nope".into(), ..change.clone() };
    assert!(store.update_endpoint(&missing, None).await.expect_err("missing").is_not_found());
    let updated = store
        .update_endpoint(&Endpoint { access: Access::Authenticated, ..change.clone() }, None)
        .await
        .expect("update");
    assert_eq!(updated.access, Access::Authenticated);
    // The inference timeout: kept to the nanosecond, and cleared.
    assert_eq!(updated.inference_timeout, None);
    let timeout = Some(api::Duration(std::time::Duration::from_millis(1500)));
    let timed = store
        .update_endpoint(&Endpoint { inference_timeout: timeout, ..updated.clone() }, None)
        .await
        .expect("set the timeout");
    assert_eq!(store.get_endpoint(&key).await.expect("get").inference_timeout, timeout);
    let cleared =
        store.update_endpoint(&Endpoint { inference_timeout: None, ..timed }, None).await.expect("clear");
    assert_eq!(cleared.inference_timeout, None);

    // deploy: the model version must exist; the split names real deployed model ids.
    let iris = model_key("iris");
    let default_version = store.resolve_alias(&iris, "default").await.expect("default");
    let golden = store.resolve_alias(&iris, "golden").await.expect("golden");
    assert_ne!(default_version, golden);
    let dm = |id: &str, version_id: i64| DeployedModel {
        deployed_model_id: id.into(),
        model_id: "iris".into(),
        version_id,
        display_name: format!("iris {id}"),
        spec: DeploymentSpec {
            dedicated_resources: Some(api::DedicatedResources {
                min_replica_count: 1,
                max_replica_count: 2,
                ..Default::default()
            }),
            ..Default::default()
        },
        desired_state: DesiredState::Deployed, // ignored: deploy starts at deploying
        ..Default::default()
    };
    let before = store.get_endpoint(&key).await.expect("get");
    let (ep, d1) =
        store.deploy(&key, &dm("111", default_version), Some(&split(&[("111", 100)]))).await.expect("deploy");
    assert_eq!(d1.desired_state, DesiredState::Deploying);
    assert_eq!((d1.project.as_str(), d1.endpoint_id.as_str()), (P, "ep1"));
    assert_eq!(d1.status, api::DeployedModelStatus::default());
    assert_eq!(ep.traffic_split, split(&[("111", 100)]));
    assert_ne!(ep.etag, before.etag, "deploying changes the endpoint's etag");
    let err = store.deploy(&key, &dm("111", default_version), None).await.expect_err("duplicate");
    assert!(err.is_already_exists(), "{err}");
    let err = store.deploy(&key, &dm("222", 99), None).await.expect_err("no such version");
    assert!(err.is_not_found() && err.to_string().contains("@99"), "{err}");
    let err = store
        .deploy(&endpoint_key("nope"), &dm("222", default_version), None)
        .await
        .expect_err("no endpoint");
    assert!(err.is_not_found(), "{err}");
    let err = store
        .deploy(&key, &dm("222", golden), Some(&split(&[("111", 50), ("222", 40)])))
        .await
        .expect_err("sums to 90");
    assert!(err.is_invalid_argument(), "{err}");
    assert!(store.get_deployed_model(&key, "222").await.expect_err("rolled back").is_not_found());
    let (ep, d2) = store.deploy(&key, &dm("222", golden), None).await.expect("deploy without traffic");
    assert_eq!(ep.traffic_split, split(&[("111", 100)]), "no split given: untouched");
    assert_eq!(d2.version_id, golden);

    // Deployed versions and their models cannot be deleted.
    let err = store.delete_model_version(&iris, golden).await.expect_err("deployed");
    assert!(err.is_conflict() && err.to_string().contains("undeploy"), "{err}");
    let err = store.delete_model(&iris).await.expect_err("deployed");
    assert!(err.is_conflict(), "{err}");
    // Nor the endpoint.
    let err = store.delete_endpoint(&key).await.expect_err("has deployed models");
    assert!(err.is_conflict(), "{err}");

    assert_eq!(store.get_deployed_model(&key, "111").await.expect("get"), d1);
    let listed = store.list_deployed_models(&key).await.expect("list");
    assert_eq!(listed.iter().map(|d| d.deployed_model_id.as_str()).collect::<Vec<_>>(), ["111", "222"]);
    assert!(store.list_deployed_models(&endpoint_key("ep2")).await.expect("list").is_empty());
    assert!(store.list_deployed_models(&endpoint_key("nope")).await.expect_err("missing").is_not_found());
    let (_, d3) = store
        .deploy(&endpoint_key("ep2"), &dm("333", default_version), Some(&split(&[("333", 100)])))
        .await
        .expect("deploy on ep2");
    let all = store.list_all_deployed_models().await.expect("list all");
    assert_eq!(
        all.iter().map(|d| (d.endpoint_id.as_str(), d.deployed_model_id.as_str())).collect::<Vec<_>>(),
        [("ep1", "111"), ("ep1", "222"), ("ep2", "333")]
    );

    // State, status and spec.
    let d = store.set_deployed_model_state(&key, "111", DesiredState::Deployed).await.expect("state");
    assert_eq!(d.desired_state, DesiredState::Deployed);
    let err = store
        .set_deployed_model_state(&key, "111", DesiredState::Undeploying)
        .await
        .expect_err("use undeploy");
    assert!(err.is_invalid_argument(), "{err}");
    let err = store.set_deployed_model_state(&key, "999", DesiredState::Failed).await.expect_err("missing");
    assert!(err.is_not_found());
    let status = api::DeployedModelStatus { available_replica_count: 1, ..Default::default() };
    let d = store.set_deployed_model_status(&key, "111", &status).await.expect("status");
    assert_eq!(d.status.available_replica_count, 1);
    assert_eq!(d.desired_state, DesiredState::Deployed);
    let spec = DeploymentSpec {
        dedicated_resources: Some(api::DedicatedResources {
            min_replica_count: 2,
            max_replica_count: 4,
            ..Default::default()
        }),
        ..Default::default()
    };
    let d = store.update_deployed_model_spec(&key, "111", &spec).await.expect("spec");
    assert_eq!(d.spec, spec);
    let err = store.set_deployed_model_status(&key, "999", &status).await.expect_err("missing");
    assert!(err.is_not_found());
    assert_eq!(d.autoscaling, None, "no decision yet");
    let decision = api::AutoscalingStatus {
        current_replica_count: 1,
        desired_replica_count: 2,
        reason: "request-counts-per-minute 1200/min over 60s, target 600 per replica -> 2".into(),
        decide_time: "2026-01-02T03:04:05Z".into(),
    };
    let d = store.set_deployed_model_autoscaling(&key, "111", &decision).await.expect("autoscaling");
    assert_eq!((d.autoscaling.as_ref(), &d.spec), (Some(&decision), &spec));
    let listed = store.list_deployed_models(&key).await.expect("list");
    assert_eq!(
        listed.iter().find(|d| d.deployed_model_id == "111").and_then(|d| d.autoscaling.clone()),
        Some(decision.clone())
    );
    let err = store.set_deployed_model_autoscaling(&key, "999", &decision).await.expect_err("missing");
    assert!(err.is_not_found());
    let err = store.update_deployed_model_spec(&key, "999", &spec).await.expect_err("missing");
    assert!(err.is_not_found());

    // set_traffic_split with etags and validation.
    let ep = store.get_endpoint(&key).await.expect("get");
    let ep = store
        .set_traffic_split(&key, &split(&[("111", 30), ("222", 70)]), Some(&ep.etag))
        .await
        .expect("split");
    assert_eq!(ep.traffic_split, split(&[("111", 30), ("222", 70)]));
    let err =
        store.set_traffic_split(&key, &split(&[("111", 100)]), Some("stale")).await.expect_err("stale etag");
    assert!(err.is_conflict(), "{err}");
    for bad in
        [split(&[("111", 30)]), split(&[("111", 50), ("999", 50)]), split(&[("111", -1), ("222", 101)])]
    {
        let err = store.set_traffic_split(&key, &bad, None).await.expect_err("bad split");
        assert!(err.is_invalid_argument(), "{bad:?}: {err}");
    }
    let err = store.set_traffic_split(&endpoint_key("nope"), &split(&[]), None).await.expect_err("missing");
    assert!(err.is_not_found(), "{err}");
    assert_eq!(
        store.get_endpoint(&key).await.expect("get").traffic_split,
        split(&[("111", 30), ("222", 70)])
    );

    // undeploy: refused while the model would keep traffic; a new split moves it away.
    let err = store.undeploy(&key, "111", None).await.expect_err("still has traffic");
    assert!(err.is_conflict() && err.to_string().contains("30%"), "{err}");
    let err =
        store.undeploy(&key, "111", Some(&split(&[("111", 10), ("222", 90)]))).await.expect_err("still 10%");
    assert!(err.is_conflict(), "{err}");
    let (ep, d) =
        store.undeploy(&key, "111", Some(&split(&[("111", 0), ("222", 100)]))).await.expect("undeploy");
    assert_eq!(ep.traffic_split, split(&[("222", 100)]));
    assert_eq!(d.desired_state, DesiredState::Undeploying);
    assert!(store.undeploy(&key, "111", None).await.expect_err("again").is_conflict());
    // A controller that saw the model ready a moment ago cannot bring it back.
    let late = store
        .set_deployed_model_state(&key, "111", DesiredState::Deployed)
        .await
        .expect_err("undeploying stays");
    assert!(late.is_not_found(), "{late}");
    assert!(store.undeploy(&key, "999", None).await.expect_err("missing").is_not_found());
    let err = store
        .set_traffic_split(&key, &split(&[("111", 50), ("222", 50)]), None)
        .await
        .expect_err("undeploying");
    assert!(err.is_invalid_argument(), "{err}");
    // The controller deletes it once its replicas are gone.
    store.delete_deployed_model(&key, "111").await.expect("delete deployed model");
    assert!(store.get_deployed_model(&key, "111").await.expect_err("deleted").is_not_found());
    assert!(store.delete_deployed_model(&key, "111").await.expect_err("deleted").is_not_found());
    let err = store.delete_deployed_model(&key, "222").await.expect_err("has traffic");
    assert!(err.is_conflict(), "{err}");
    // Undeploying the last one empties the split even though it had 100%.
    let (ep, _) = store.undeploy(&key, "222", None).await.expect("undeploy last");
    assert!(ep.traffic_split.is_empty());
    store.delete_deployed_model(&key, "222").await.expect("delete");
    // A deployed model with 0% is dropped from the split when deleted.
    store.deploy(&key, &dm("444", golden), Some(&split(&[("444", 100)]))).await.expect("deploy 444");
    let (ep, _) =
        store.deploy(&key, &dm("555", golden), Some(&split(&[("444", 100), ("555", 0)]))).await.expect("555");
    assert_eq!(ep.traffic_split, split(&[("444", 100), ("555", 0)]));
    store.delete_deployed_model(&key, "555").await.expect("delete 0% model");
    assert_eq!(store.get_endpoint(&key).await.expect("get").traffic_split, split(&[("444", 100)]));
    store.undeploy(&key, "444", None).await.expect("undeploy 444");
    store.delete_deployed_model(&key, "444").await.expect("delete 444");

    // Now the endpoint can go; ep2 keeps its deployment for the revision tests.
    store.delete_endpoint(&key).await.expect("delete endpoint");
    assert!(store.get_endpoint(&key).await.expect_err("deleted").is_not_found());
    assert!(store.delete_endpoint(&key).await.expect_err("deleted").is_not_found());
    assert_eq!(d3.deployed_model_id, "333");
}

async fn operations(store: &dyn Store) {
    let op = Operation {
        project: P.into(),
        location: L.into(),
        operation_id: "op1".into(),
        target: format!("projects/{P}/locations/{L}/endpoints/ep2"),
        kind: OperationKind::DeployModel,
        metadata: OperationMetadata { verb: "deployModel".into(), ..Default::default() },
        done: false,
        error: None,
        response: None,
        cancel_requested: true, // ignored on insert
        create_time: Timestamp::now(),
        update_time: Timestamp::now(),
    };
    let stored = store.insert_operation(&op).await.expect("insert op");
    assert!(!stored.done && !stored.cancel_requested);
    assert_eq!((stored.error.clone(), stored.response.clone()), (None, None));
    assert!(store.insert_operation(&op).await.expect_err("duplicate").is_already_exists());
    let bad = Operation { operation_id: "bad".into(), response: Some(json!({})), ..op.clone() };
    assert!(store.insert_operation(&bad).await.expect_err("response before done").is_invalid_argument());
    let op2 = Operation { operation_id: "op2".into(), kind: OperationKind::UndeployModel, ..op.clone() };
    store.insert_operation(&op2).await.expect("insert op2");
    let done_op = Operation {
        operation_id: "op0".into(),
        done: true,
        response: Some(json!({"@type": "Empty"})),
        ..op.clone()
    };
    store.insert_operation(&done_op).await.expect("insert a done op");
    assert_eq!(store.get_operation(P, L, "op1").await.expect("get"), stored);
    assert!(store.get_operation(P, L, "nope").await.expect_err("missing").is_not_found());
    let listed = store.list_operations(P, L).await.expect("list");
    assert_eq!(listed.iter().map(|o| o.operation_id.as_str()).collect::<Vec<_>>(), ["op1", "op2", "op0"]);
    assert!(store.list_operations(P, "elsewhere").await.expect("list").is_empty());
    let unfinished = store.list_unfinished_operations().await.expect("unfinished");
    assert_eq!(unfinished.iter().map(|o| o.operation_id.as_str()).collect::<Vec<_>>(), ["op1", "op2"]);

    // Progress, then the result; a done operation does not change again.
    let progress = Operation {
        metadata: OperationMetadata { progress_percent: Some(50), ..stored.metadata.clone() },
        ..stored.clone()
    };
    let updated = store.update_operation(&progress).await.expect("progress");
    assert_eq!(updated.metadata.progress_percent, Some(50));
    assert!(!updated.done);
    let invalid = Operation { done: true, ..progress.clone() };
    assert!(store.update_operation(&invalid).await.expect_err("done without result").is_invalid_argument());
    let finished =
        Operation { done: true, response: Some(json!({"deployedModel": {"id": "333"}})), ..progress };
    let updated = store.update_operation(&finished).await.expect("finish");
    assert!(updated.done);
    assert_eq!(updated.response, finished.response);
    let err = store.update_operation(&finished).await.expect_err("done already");
    assert!(err.is_conflict(), "{err}");
    let missing = Operation { operation_id: "nope".into(), ..finished.clone() };
    assert!(store.update_operation(&missing).await.expect_err("missing").is_not_found());

    // Cancel: sets the flag on a pending operation, leaves a done one alone.
    let cancelled = store.request_cancel_operation(P, L, "op2").await.expect("cancel");
    assert!(cancelled.cancel_requested && !cancelled.done);
    let failed = Operation {
        done: true,
        error: Some(api::Status::of(api::Code::Cancelled, "cancelled")),
        ..cancelled.clone()
    };
    let failed = store.update_operation(&failed).await.expect("fail");
    assert!(failed.cancel_requested, "update_operation keeps the cancel flag");
    let after = store.request_cancel_operation(P, L, "op1").await.expect("cancel a done op");
    assert!(after.done && !after.cancel_requested);
    assert!(store.request_cancel_operation(P, L, "nope").await.expect_err("missing").is_not_found());
    assert!(store.list_unfinished_operations().await.expect("unfinished").is_empty());

    store.delete_operation(P, L, "op0").await.expect("delete");
    assert!(store.delete_operation(P, L, "op0").await.expect_err("deleted").is_not_found());
    assert_eq!(store.list_operations(P, L).await.expect("list").len(), 2);
}

async fn revisions(store: Arc<dyn Store>) {
    let ep2 = endpoint_key("ep2");
    assert_eq!(store.latest_revision(&ep2, "333").await.expect("latest"), None);
    assert!(store.list_revisions(&ep2, "333").await.expect("list").is_empty());
    let rev = Revision {
        project: P.into(),
        location: L.into(),
        endpoint_id: "ep2".into(),
        deployed_model_id: "333".into(),
        revision: 42, // ignored
        manifests: "apiVersion: apps/v1\nkind: Deployment\n".into(),
        source: RevisionSource::Rendered,
        ..Default::default()
    };
    let r1 = store.insert_revision(&rev).await.expect("insert");
    assert_eq!(r1.revision, 1);
    assert_eq!(r1.manifests, rev.manifests);
    let r2 = store
        .insert_revision(&Revision { source: RevisionSource::Edited, ..rev.clone() })
        .await
        .expect("insert");
    assert_eq!(r2.revision, 2);
    let orphan = Revision { deployed_model_id: "999".into(), ..rev.clone() };
    assert!(store.insert_revision(&orphan).await.expect_err("no deployed model").is_not_found());

    // Concurrent writers get distinct numbers.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let rev = Revision { source: RevisionSource::Rollback, ..rev.clone() };
            tokio::spawn(async move { store.insert_revision(&rev).await.expect("insert").revision })
        })
        .collect();
    let mut numbers = BTreeSet::new();
    for task in tasks {
        numbers.insert(task.await.expect("task"));
    }
    assert_eq!(numbers, (3..=10).collect::<BTreeSet<i64>>());

    let listed = store.list_revisions(&ep2, "333").await.expect("list");
    assert_eq!(listed.iter().map(|r| r.revision).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(store.get_revision(&ep2, "333", 2).await.expect("get"), r2);
    assert!(store.get_revision(&ep2, "333", 11).await.expect_err("missing").is_not_found());
    assert!(store.get_revision(&ep2, "999", 1).await.expect_err("no deployed model").is_not_found());
    assert!(store.list_revisions(&ep2, "999").await.expect_err("no deployed model").is_not_found());
    assert!(store.latest_revision(&ep2, "999").await.expect_err("no deployed model").is_not_found());
    assert_eq!(store.latest_revision(&ep2, "333").await.expect("latest").map(|r| r.revision), Some(10));

    // Revisions go with their deployed model.
    store.undeploy(&ep2, "333", None).await.expect("undeploy");
    store.delete_deployed_model(&ep2, "333").await.expect("delete");
    let again = DeployedModel {
        deployed_model_id: "333".into(),
        model_id: "iris".into(),
        version_id: 5,
        ..Default::default()
    };
    store.deploy(&ep2, &again, None).await.expect("redeploy");
    assert!(store.list_revisions(&ep2, "333").await.expect("list").is_empty());
    assert_eq!(store.insert_revision(&rev).await.expect("insert").revision, 1);
}

async fn artifacts(store: &dyn Store) {
    let artifact = Artifact {
        id: "a1".into(),
        sha256: "cd".repeat(32),
        size_bytes: 1234,
        uri: "file:///artifacts/a1".into(),
        ..Default::default()
    };
    let stored = store.insert_artifact(&artifact).await.expect("insert");
    assert_eq!((stored.size_bytes, stored.uri.as_str()), (1234, "file:///artifacts/a1"));
    assert!(store.insert_artifact(&artifact).await.expect_err("duplicate").is_already_exists());
    assert_eq!(store.get_artifact("a1").await.expect("get"), stored);
    assert!(store.get_artifact("a2").await.expect_err("missing").is_not_found());
    assert_eq!(store.find_artifact_by_sha256(&"cd".repeat(32)).await.expect("find"), Some(stored));
    assert_eq!(store.find_artifact_by_sha256(&"ef".repeat(32)).await.expect("find"), None);
}

/// Browser sessions: created once per id, saved over, loaded only while unexpired, swept.
async fn sessions(store: &dyn Store) {
    let at = |micros: i64| Timestamp::from_unix_micros(micros).expect("in range");
    let now = Timestamp::now().unix_micros();
    let alice = store.get_user_by_name("alice").await.expect("alice").id;
    let live =
        SessionRecord { id: "s1".into(), user_id: None, data: "{}".into(), expires_at: at(now + 60_000_000) };
    store.create_session(&live).await.expect("create");
    assert!(store.create_session(&live).await.expect_err("taken id").is_already_exists());
    assert_eq!(store.load_session("s1", at(now)).await.expect("load"), Some(live.clone()));
    let changed = SessionRecord { user_id: Some(alice), data: r#"{"user":1}"#.into(), ..live.clone() };
    store.save_session(&changed).await.expect("save over");
    assert_eq!(store.load_session("s1", at(now)).await.expect("load"), Some(changed.clone()));
    assert_eq!(store.load_session("s1", at(now + 61_000_000)).await.expect("load later"), None, "expired");
    assert_eq!(store.load_session("nope", at(now)).await.expect("load"), None);
    let old = SessionRecord { id: "s2".into(), user_id: None, data: "{}".into(), expires_at: at(now - 1) };
    store.save_session(&old).await.expect("save new");
    assert_eq!(store.delete_expired_sessions(at(now)).await.expect("sweep"), 1);
    assert_eq!(store.load_session("s1", at(now)).await.expect("load"), Some(changed.clone()));
    let other = SessionRecord { id: "s3".into(), ..changed.clone() };
    store.create_session(&other).await.expect("a second session of alice");
    assert_eq!(store.delete_user_sessions(alice).await.expect("end alice's sessions"), 2);
    assert_eq!(store.load_session("s3", at(now)).await.expect("load"), None);
    store.save_session(&changed).await.expect("save again");
    store.delete_session("s1").await.expect("delete");
    store.delete_session("s1").await.expect("deleting a missing session is fine");
    assert_eq!(store.load_session("s1", at(now)).await.expect("load"), None);
}
