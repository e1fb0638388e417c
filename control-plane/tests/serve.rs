//! `platform serve`, the real binary: HTTPS with its own CA, the first admin, API tokens.

mod common;

use common::{Platform, client};
use serde_json::{Value, json};

async fn start(data: &std::path::Path, admin_password: &str) -> Platform {
    common::start(data, &[], &[("PLATFORM_ADMIN_PASSWORD", admin_password)]).await
}

#[tokio::test]
async fn first_start_creates_an_admin_whose_password_gives_tokens_over_https() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let platform = start(&data, "correct-horse").await;
    let http = client(&data);

    let printed = std::fs::read_to_string(&platform.stdout).expect("stdout");
    let admin_token =
        std::fs::read_to_string(data.join("admin-token")).expect("admin-token").trim().to_string();
    assert!(printed.contains("password: correct-horse"), "{printed}");
    assert!(printed.contains(&admin_token), "the token is printed once");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("admin-token")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let token_url = format!("{}/v1/auth/token", platform.base);
    let wrong = http
        .post(&token_url)
        .json(&json!({"username": "admin", "password": "nope"}))
        .send()
        .await
        .expect("req");
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.expect("json");
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(body["error"]["message"], "the username or password is wrong");
    let unknown =
        http.post(&token_url).json(&json!({"username": "eve", "password": "x"})).send().await.expect("req");
    assert_eq!(unknown.status(), 401, "unknown users look like wrong passwords");
    let bad = http.post(&token_url).json(&json!({"user": "admin"})).send().await.expect("req");
    assert_eq!(bad.status(), 400);

    let good = http
        .post(&token_url)
        .json(&json!({"username": "admin", "password": "correct-horse", "description": "ci"}))
        .send()
        .await
        .expect("req");
    assert_eq!(good.status(), 200);
    let issued: Value = good.json().await.expect("json");
    let token = issued["token"].as_str().expect("token").to_string();
    let token_id = issued["tokenId"].as_str().expect("id").to_string();

    // The caller's tokens are listed without the secrets; a revoked token stops working.
    let list = |t: String| {
        let (http, url) = (http.clone(), format!("{}/v1/auth/tokens", platform.base));
        async move { http.get(url).bearer_auth(t).send().await.expect("req") }
    };
    let listed: Value = list(token.clone()).await.json().await.expect("json");
    let ids: Vec<&str> =
        listed["tokens"].as_array().expect("tokens").iter().filter_map(|t| t["tokenId"].as_str()).collect();
    assert!(ids.contains(&token_id.as_str()), "{listed}");
    assert!(!listed.to_string().contains(&token), "secrets are never listed");
    let revoked = http
        .delete(format!("{}/v1/auth/tokens/{token_id}", platform.base))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("req");
    assert_eq!(revoked.status(), 200);
    let refused = list(token).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["message"], "the token has been revoked");
    assert_eq!(list("not-a-token".into()).await.status(), 401);
    let missing = http.get(format!("{}/v1/auth/tokens", platform.base)).send().await.expect("req");
    assert_eq!(missing.status(), 401);

    // A restart keeps the admin, the key and the certificate: the admin token still works.
    drop(platform);
    let again = start(&data, "another-password").await;
    let printed = std::fs::read_to_string(&again.stdout).expect("stdout");
    assert!(!printed.contains("password:"), "no second admin: {printed}");
    assert_eq!(list_status(&http, &again.base, &admin_token).await, 200);
}

async fn list_status(http: &reqwest::Client, base: &str, token: &str) -> u16 {
    http.get(format!("{base}/v1/auth/tokens")).bearer_auth(token).send().await.expect("req").status().as_u16()
}

/// Accounts are guarded: files private, the first token as long-lived as `--token-ttl` says, a
/// new password or a disabled user ends the old tokens, and guessing passwords gets throttled.
#[tokio::test]
async fn accounts_are_guarded_against_leaks_and_guessing() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let platform = common::start(&data, &["--token-ttl", "2h"], &[]).await;
    let http = client(&data);
    let admin = platform.token.clone();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in
            ["platform.db", "platform.db-wal", "jwt.key", "admin-token", "tls/ca.key", "tls/server.key"]
        {
            let mode = std::fs::metadata(data.join(file)).expect(file).permissions().mode();
            assert_eq!(mode & 0o077, 0, "{file} is readable by others: {mode:o}");
        }
    }

    // The first admin token obeys --token-ttl.
    let tokens: Value = http
        .get(format!("{}/v1/auth/tokens", platform.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    let expires = tokens["tokens"][0]["expireTime"].as_str().expect("expireTime");
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339).expect("time");
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(left <= time::Duration::hours(2) && left > time::Duration::minutes(110), "{left}");

    let login = |user: &str, password: &str| {
        let (http, url) = (http.clone(), format!("{}/v1/auth/token", platform.base));
        let body = json!({"username": user, "password": password});
        async move { http.post(url).json(&body).send().await.expect("req") }
    };
    let patch_user = |user: &str, body: Value| {
        let (http, url) = (http.clone(), format!("{}/v1/users/{user}", platform.base));
        let admin = admin.clone();
        async move { http.patch(url).bearer_auth(admin).json(&body).send().await.expect("req").status().as_u16() }
    };
    let created = http
        .post(format!("{}/v1/users", platform.base))
        .bearer_auth(&admin)
        .json(&json!({"username": "ana", "password": "first-password", "roles": {"default": "viewer"}}))
        .send()
        .await
        .expect("req");
    assert_eq!(created.status(), 200);

    // A new password ends the tokens issued with the old one.
    let old: Value = login("ana", "first-password").await.json().await.expect("json");
    let old = old["token"].as_str().expect("token").to_string();
    assert_eq!(list_status(&http, &platform.base, &old).await, 200);
    assert_eq!(patch_user("ana", json!({"password": "second-password"})).await, 200);
    assert_eq!(list_status(&http, &platform.base, &old).await, 401, "the old password's token is revoked");
    // A disabled user can neither use a token nor log in, with the same answer as a wrong password.
    let fresh: Value = login("ana", "second-password").await.json().await.expect("json");
    let fresh = fresh["token"].as_str().expect("token").to_string();
    assert_eq!(patch_user("ana", json!({"disabled": true})).await, 200);
    assert_eq!(list_status(&http, &platform.base, &fresh).await, 401);
    let refused = login("ana", "second-password").await;
    assert_eq!(refused.status(), 401);
    assert_eq!(patch_user("ana", json!({"disabled": false})).await, 200);
    assert_eq!(login("ana", "second-password").await.status(), 200);

    // Guessing one user's password is stopped after a few tries, even with the right one.
    for _ in 0..5 {
        assert_eq!(login("ana", "guess").await.status(), 401);
    }
    let throttled = login("ana", "second-password").await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    // Guessing many usernames from one address is stopped too.
    for i in 0..20 {
        login(&format!("nobody{i}"), "guess").await;
    }
    assert_eq!(login("someone-else", "guess").await.status(), 429);
}

/// A file that is not an ONNX model is refused when it is registered for the prebuilt runtime,
/// with the parser's message, instead of crash-looping replicas at deploy time.
#[tokio::test]
async fn a_file_that_is_not_an_onnx_model_is_refused_at_upload() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let platform = common::start(&data, &[], &[]).await;
    let http = client(&data);
    let location = format!("{}/v1/projects/default/locations/local", platform.base);
    let artifact: Value = http
        .post(format!("{location}/artifacts?filename=model.onnx"))
        .bearer_auth(&platform.token)
        .body("def predict(x):\n    return x\n")
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    let uri = artifact["artifactUri"].as_str().expect("artifactUri");
    let upload = http
        .post(format!("{location}/models:upload"))
        .bearer_auth(&platform.token)
        .json(&json!({"model": {"displayName": "not a model", "artifactUri": uri}}))
        .send()
        .await
        .expect("req");
    assert_eq!(upload.status(), 400);
    let body: Value = upload.json().await.expect("json");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("the artifact is not an ONNX model the prebuilt runtime can load"),
        "{message}"
    );
}

/// Opens a TCP connection that sends nothing (or the start of something) and never finishes.
async fn stalled(port: u16, first_bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream.write_all(first_bytes).await.expect("write");
    stream
}

/// Whether the server closed the connection within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Idle connections, TLS handshakes never finished and headers sent a byte at a time hold no
/// slot for long; beyond the cap, connections are closed at once; everyone else is answered.
#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_while_others_are_served() {
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let private = common::free_port();
    let private_listen = format!("127.0.0.1:{private}");
    let args = [
        "--idle-timeout",
        "2s",
        "--header-read-timeout",
        "2s",
        "--max-connections",
        "40",
        "--private-listen",
        &private_listen,
    ];
    let platform = common::start(&data, &args, &[]).await;
    let http = client(&data);

    let mut held = Vec::new();
    for _ in 0..15 {
        held.push(stalled(platform.port, b"").await); // TLS: no ClientHello
    }
    for _ in 0..10 {
        held.push(stalled(private, b"").await); // plain HTTP: nothing
    }
    for _ in 0..5 {
        held.push(stalled(private, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await); // headers never end
    }
    let healthz = http.get(format!("{}/healthz", platform.base)).send().await.expect("healthz");
    assert_eq!(healthz.status(), 200, "the server answers while 30 connections stall");

    // Beyond the cap of 40, new connections are closed as they arrive.
    let mut extra = Vec::new();
    for _ in 0..20 {
        extra.push(stalled(private, b"").await);
    }
    let mut refused = 0;
    for stream in &mut extra {
        if closed_within(stream, Duration::from_millis(500)).await {
            refused += 1;
        }
    }
    assert!(refused >= 10, "{refused} of 20 connections beyond the cap were closed at once");

    // Within the timeouts, every stalled connection is closed, and the server still answers.
    for (i, stream) in held.iter_mut().enumerate() {
        assert!(closed_within(stream, Duration::from_secs(10)).await, "stalled connection {i} stays open");
    }
    let healthz = http.get(format!("{}/healthz", platform.base)).send().await.expect("healthz");
    assert_eq!(healthz.status(), 200);
}

/// A body over the limit reaches the client as a 413 with its message, over HTTP/1.1 and
/// HTTP/2, not as a reset connection or stream.
#[tokio::test]
async fn a_body_over_the_limit_gets_its_413_over_http1_and_http2() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let platform = common::start(&data, &["--max-request-bytes", "100000"], &[]).await;
    let ca = std::fs::read(data.join("tls/ca.pem")).expect("ca");
    let url = format!("{}/v1/projects/default/locations/local/endpoints/e:predict", platform.base);
    let body = format!("{{\"instances\": [\"{}\"]}}", "x".repeat(3 << 20));
    for http1_only in [true, false] {
        let mut builder =
            reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca"));
        if http1_only {
            builder = builder.http1_only();
        }
        let http = builder.build().expect("client");
        let response = http
            .post(&url)
            .bearer_auth(&platform.token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("http1 only {http1_only}: {e:?}"));
        assert_eq!(response.status(), 413, "http1 only {http1_only}");
        let answer: Value = response.json().await.expect("json");
        assert!(
            answer["error"]["message"].as_str().unwrap_or_default().contains("limit of 100000 bytes"),
            "{answer}"
        );
    }
}
