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
