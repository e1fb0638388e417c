//! The web console in a real browser (headless Chromium through chromedriver, driven with
//! fantoccini) against the real `platform serve`: the whole story a new user follows, with
//! axe-core checking every page for serious or critical accessibility violations. On failure
//! the test saves a screenshot and the page source under `target/console-failures/`.
//! `PLATFORM_BLESS_SCREENSHOTS=1` refreshes the screenshots of `docs/console.md`.
//!
//! Also: sessions on PostgreSQL survive a restart of the platform.
//!
//! Needs Debian's `chromium` and `chromium-driver` and the npm packages of `tests/browser`
//! (`scripts/test` installs all three).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Platform, model_path, reference, start};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use serde_json::{Value, json};

const BASE: &str = "/console/projects/default/locations/local";

/// chromedriver with a headless Chromium session, stopped when dropped.
struct Browser {
    driver: Child,
    client: Client,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn chromedriver() -> PathBuf {
    for candidate in ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("chromedriver is missing: run scripts/test, which installs Debian's chromium and chromium-driver")
}

/// A Chrome DevTools command through chromedriver (to emulate a phone's screen: a desktop
/// window cannot be made that narrow).
#[derive(Debug)]
struct Cdp(&'static str, Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"cmd": self.0, "params": self.1}).to_string()))
    }
}

/// A headless Chromium session.
async fn browser() -> Browser {
    let port = common::free_port();
    let driver = Command::new(chromedriver())
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().expect("profile directory");
    let args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        // The platform's certificate is signed by its own CA, which this profile does not know.
        "--ignore-certificate-errors".into(),
        "--window-size=1280,900".into(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({"args": args}));
    caps.insert("acceptInsecureCerts".into(), json!(true));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a Chromium session through chromedriver: {e}"),
        }
    };
    Browser { driver, client, _profile: profile }
}

fn axe_source() -> String {
    let path = common::root().join("tests/browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("{} is missing: run scripts/test (or `npm ci --prefix tests/browser`)", path.display())
    })
}

/// A browser on the platform, with the helpers the story uses.
struct Visit<'a> {
    c: &'a Client,
    p: &'a Platform,
    axe: String,
}

impl Visit<'_> {
    /// Opens a page; again when Chromium broke the load off because the machine's network
    /// changed (containers of other tests come and go).
    async fn goto(&self, path: &str) {
        for _ in 0..3 {
            self.c.goto(&self.p.url(path)).await.expect("navigate");
            if !self.network_changed().await {
                return;
            }
        }
        panic!("Chromium could not load {path}: the network kept changing");
    }

    async fn network_changed(&self) -> bool {
        match self.c.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default().contains("A network change was detected"),
            Err(_) => false,
        }
    }

    async fn path(&self) -> String {
        let url = self.c.current_url().await.expect("url");
        format!("{}{}", url.path(), url.query().map(|q| format!("?{q}")).unwrap_or_default())
    }

    async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        self.c
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on {}: {e}", self.path_now()))
    }

    fn path_now(&self) -> String {
        "the page".into()
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.wait(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Sets a field's value at once (long texts).
    async fn set(&self, id: &str, text: &str) {
        self.c
            .execute(
                "document.getElementById(arguments[0]).value = arguments[1];",
                vec![json!(id), json!(text)],
            )
            .await
            .expect("set the value");
    }

    async fn select(&self, id: &str, value: &str) {
        self.c
            .execute(
                "const s = document.getElementById(arguments[0]); s.value = arguments[1]; \
                 if (s.value !== arguments[1]) throw new Error('no option ' + arguments[1]); \
                 s.dispatchEvent(new Event('change', {bubbles: true}));",
                vec![json!(id), json!(value)],
            )
            .await
            .expect("select");
    }

    async fn click(&self, css: &str) {
        self.wait(css).await.click().await.unwrap_or_else(|e| panic!("click `{css}`: {e}"));
    }

    async fn text(&self, css: &str) -> String {
        self.wait(css).await.text().await.expect("text")
    }

    async fn value(&self, css: &str) -> String {
        self.wait(css).await.prop("value").await.expect("value").unwrap_or_default()
    }

    async fn source(&self) -> String {
        self.c.source().await.expect("page source")
    }

    /// Waits until the page's text contains `needle` (live updates, redirects).
    async fn wait_text(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            // While a page loads there may be no body yet.
            let body = match self.c.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if body.contains(needle) {
                return;
            }
            assert!(Instant::now() < deadline, "`{needle}` did not appear on {}:\n{body}", self.path().await);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// axe-core on the page: no serious or critical violation.
    async fn accessible(&self, page: &str) {
        self.c.execute(&format!("{}\nreturn true;", self.axe), vec![]).await.expect("inject axe-core");
        let found = self
            .c
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations\
                   .filter(v => v.impact === 'serious' || v.impact === 'critical')\
                   .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))));",
                vec![],
            )
            .await
            .expect("run axe-core");
        let violations: Vec<String> = serde_json::from_value(found).unwrap_or_default();
        assert!(violations.is_empty(), "accessibility violations on {page}:\n{}", violations.join("\n"));
    }

    /// A screenshot for docs/console.md, when asked to refresh them.
    async fn shot(&self, name: &str) {
        if std::env::var_os("PLATFORM_BLESS_SCREENSHOTS").is_none() {
            return;
        }
        let png = self.c.screenshot().await.expect("screenshot");
        let dir = common::root().join("docs/images/console");
        std::fs::create_dir_all(&dir).expect("docs/images/console");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
    }
}

fn assert_close(got: &Value, want: &Value) {
    match (got, want) {
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{got} vs {want}");
            g.iter().zip(w).for_each(|(a, b)| assert_close(a, b));
        }
        _ => {
            let (x, y) = (got.as_f64().expect("number"), want.as_f64().expect("number"));
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
}

/// Runs `story` in the browser; on a failure saves a screenshot and the page source first.
async fn with_evidence<F: std::future::Future<Output = ()>>(c: &Client, name: &str, story: F) {
    if let Err(panic) = std::panic::AssertUnwindSafe(story).catch_unwind().await {
        let dir = common::root().join("target/console-failures");
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(png) = c.screenshot().await {
            let _ = std::fs::write(dir.join(format!("{name}.png")), png);
        }
        if let Ok(html) = c.source().await {
            let _ = std::fs::write(dir.join(format!("{name}.html")), html);
        }
        eprintln!("saved a screenshot and the page source in {}", dir.display());
        std::panic::resume_unwind(panic);
    }
}

async fn sign_in(v: &Visit<'_>, username: &str, password: &str) {
    let form = v.path().await;
    for _ in 0..3 {
        v.fill("#username", username).await;
        v.fill("#password", password).await;
        v.click("form button[type=submit]").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !v.network_changed().await {
            return;
        }
        v.goto(&form).await;
    }
}

/// Imports the MLP through the page (a new model, or a new version of `mlp`).
async fn import_mlp(v: &Visit<'_>, new_version: bool) {
    v.goto(&format!("{BASE}/models/new")).await;
    if new_version {
        v.select("parent_model", "projects/default/locations/local/models/mlp").await;
    } else {
        v.fill("#display_name", "mlp").await;
        v.fill("#model_id", "mlp").await;
        v.fill("#labels", "team=ml").await;
    }
    let file = v.wait("#file").await;
    file.send_keys(model_path("mlp").to_str().expect("path")).await.expect("choose the file");
    v.click("#import button[type=submit]").await;
    v.wait_text(
        if new_version { "Imported version 2 of model mlp" } else { "Imported version 1 of model mlp" },
        Duration::from_secs(60),
    )
    .await;
}

/// The deployed models on the endpoint page that are deployed and ready.
async fn wait_deployed(v: &Visit<'_>, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ready =
            v.c.find_all(Locator::Css("table.deployed .state[data-state=Deployed]"))
                .await
                .expect("find")
                .len();
        if ready >= count {
            return;
        }
        if let Ok(error) = v.c.find(Locator::Css("#live .error")).await {
            panic!("the deploy failed: {}", error.text().await.unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "{count} deployed models were not ready in time");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_deploys_and_calls_a_model_in_the_browser() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let p = start(&dir.path().join("data"), &[], &[]).await;
    let b = browser().await;
    let v = Visit { c: &b.client, p: &p, axe: axe_source() };
    with_evidence(&b.client, "story", story(&v)).await;
    b.client.clone().close().await.expect("close the browser");
}

async fn story(v: &Visit<'_>) {
    let reference = reference("mlp");
    let endpoint_page = format!("{BASE}/endpoints/mlp");

    // Signed out, the console leads to the sign-in page; a wrong password is refused.
    v.goto("/").await;
    v.wait("#username").await;
    assert!(v.path().await.starts_with("/console/login"), "{}", v.path().await);
    v.accessible("sign-in").await;
    v.shot("sign-in").await;
    sign_in(v, "admin", "wrong-password").await;
    v.wait_text("the username or password is wrong", Duration::from_secs(10)).await;
    sign_in(v, "admin", "correct-horse").await;
    v.wait_text("Model Registry", Duration::from_secs(10)).await;
    assert_eq!(v.path().await, format!("{BASE}/models"));
    v.accessible("empty model registry").await;

    // Import the test MLP by uploading the file.
    v.goto(&format!("{BASE}/models/new")).await;
    v.accessible("import").await;
    v.shot("import").await;
    import_mlp(v, false).await;
    assert_eq!(v.path().await, format!("{BASE}/models/mlp"));
    v.accessible("model").await;
    v.goto(&format!("{BASE}/models?label=team%3Dml")).await;
    assert!(v.source().await.contains(&format!("{BASE}/models/mlp")), "the label filter finds the model");
    v.accessible("model registry").await;
    v.shot("models").await;

    // Create an endpoint with the model deployed on it; watch it become ready.
    v.goto(&format!("{BASE}/endpoints/new?model=mlp")).await;
    v.accessible("create endpoint").await;
    v.fill("#display_name", "MLP endpoint").await;
    v.fill("#endpoint_id", "mlp").await;
    v.select("machine_type", "e2-small").await;
    v.fill("#container_concurrency", "4").await;
    let machines = v.text("#machine_type").await;
    assert!(machines.contains("e2-small: 500m vCPU, 2.0 GiB") && machines.contains("USD/h"), "{machines}");
    v.shot("create-endpoint").await;
    v.click("form.card button.primary").await;
    v.wait_text("The endpoint was created and the model is being deployed.", Duration::from_secs(20)).await;
    assert_eq!(v.path().await, endpoint_page);
    wait_deployed(v, 1).await;
    assert_eq!(v.text(".replicas-ready").await, "1/1");
    v.wait_text("Ready", Duration::from_secs(10)).await;
    let autoscaling = v.text("p.autoscaling").await;
    assert!(autoscaling.contains("Up to 4 concurrent requests per replica"), "{autoscaling}");
    assert!(
        v.source().await.contains("platform-cli endpoints predict mlp"),
        "the sample request names the endpoint"
    );

    // Try it: the page's prediction matches the reference outputs.
    let instances = json!({"instances": reference["vertex"]["instances"]}).to_string();
    v.set("instances", &instances).await;
    v.click("form[action$='/predict'] button").await;
    let body = v.text("#prediction-body").await;
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_close(&answer["predictions"], &reference["vertex"]["predictions"]);
    assert!(v.text(".latency").await.ends_with(" ms"));
    v.accessible("endpoint").await;
    v.c.execute("document.getElementById('try-heading').scrollIntoView();", vec![]).await.expect("scroll");
    v.shot("endpoint").await;
    let deployed_id = answer["deployedModelId"].as_str().expect("deployedModelId").to_string();

    // The Manifest tab: change the replica count, dry run, apply (revision 2), roll back.
    let manifests = format!("{endpoint_page}/deployedModels/{deployed_id}/manifests");
    v.goto(&manifests).await;
    v.accessible("manifests").await;
    assert_eq!(v.text("#current-revision").await, "1");
    let yaml = v.value("#manifests").await;
    assert!(yaml.contains("replicas: 1"), "{yaml}");
    let edited = yaml.replacen("replicas: 1", "replicas: 2", 1);
    v.set("manifests", &edited).await;
    v.click("button[value=dry_run]").await;
    v.wait_text("Dry run: the edit is valid", Duration::from_secs(20)).await;
    assert!(v.text("#diff").await.contains("+  replicas: 2"), "the dry run shows the change");
    assert_eq!(v.text("#current-revision").await, "1", "a dry run changes nothing");
    v.accessible("manifests dry run").await;
    v.shot("manifests").await;
    v.set("manifests", &edited).await;
    v.click("button[value=apply]").await;
    v.wait_text("Applied as revision 2.", Duration::from_secs(20)).await;
    assert_eq!(v.text("#current-revision").await, "2");
    v.click("button[aria-label='Roll back to revision 1']").await;
    v.wait_text("Rolled back to revision 1 as revision 3.", Duration::from_secs(20)).await;
    assert_eq!(v.text("#current-revision").await, "3");
    v.goto(&format!("{manifests}?from=2&to=3")).await;
    assert!(v.text("#diff").await.contains("-  replicas: 2"), "the diff between two revisions");
    let invalid = yaml.replacen("containers:", "hostNetwork: true\n      containers:", 1);
    v.set("manifests", &invalid).await;
    v.click("button[value=dry_run]").await;
    v.wait_text("The manifests are not accepted", Duration::from_secs(20)).await;
    assert!(v.text(".problem").await.contains("hostNetwork"), "the problem sits under its field");

    // Split traffic between two versions.
    import_mlp(v, true).await;
    v.goto(&format!("{endpoint_page}/deploy?model=mlp&version=2")).await;
    v.accessible("deploy a model").await;
    v.select("machine_type", "e2-small").await;
    v.fill("#traffic", "50").await;
    v.click("form.card button.primary").await;
    v.wait_text("The model is being deployed.", Duration::from_secs(20)).await;
    wait_deployed(v, 2).await;
    let inputs = v.c.find_all(Locator::Css("input.percent")).await.expect("traffic inputs");
    assert_eq!(inputs.len(), 2);
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in &inputs {
            ids.push(i.attr("id").await.expect("id").unwrap_or_default());
        }
        ids
    };
    v.fill(&format!("#{}", ids[0]), "30").await;
    v.fill(&format!("#{}", ids[1]), "70").await;
    v.click("form[action$='/traffic'] button[type=submit]").await;
    v.wait_text("The traffic split was saved.", Duration::from_secs(20)).await;
    let (status, endpoint) = p_get(v.p, "/v1/projects/default/locations/local/endpoints/mlp").await;
    assert_eq!(status, 200);
    let split = &endpoint["trafficSplit"];
    let percents: Vec<i64> =
        ids.iter().map(|id| split[id.trim_start_matches("traffic_")].as_i64().unwrap_or(-1)).collect();
    assert_eq!(percents, [30, 70], "{endpoint}");

    // Settings: a token is shown once, works, and stops working when revoked.
    v.goto("/console/settings").await;
    v.fill("#description", "browser test").await;
    v.click("form[action='/console/settings/tokens'] button").await;
    let token = v.value("#new-token").await;
    assert!(token.len() > 40, "{token}");
    v.accessible("settings").await;
    v.shot("settings").await;
    let (status, _) = v.p.call_as(&token, "GET", "/v1/auth/tokens", None).await;
    assert_eq!(status, 200, "the new token works");
    v.goto("/console/settings").await;
    assert!(!v.source().await.contains(&token), "the token is shown once");
    let row =
        v.c.find(Locator::XPath("//tr[td[contains(., 'browser test')]]//button"))
            .await
            .expect("revoke button");
    row.click().await.expect("revoke");
    v.wait_text("The token was revoked.", Duration::from_secs(10)).await;
    let (status, _) = v.p.call_as(&token, "GET", "/v1/auth/tokens", None).await;
    assert_eq!(status, 401, "a revoked token is refused");

    // Admins manage users: a viewer of the default project.
    v.goto("/console/settings").await;
    v.fill("#new_username", "vera").await;
    v.fill("#new_password", "viewer-password").await;
    v.select("new_role", "viewer").await;
    v.click("form[action='/console/settings/users'] button").await;
    v.wait_text("User vera was created.", Duration::from_secs(10)).await;
    assert!(v.source().await.contains("default: viewer"), "the new user is listed with the role");

    // CSRF: the same session's cookie without the token, or from another site, is refused.
    let cookie = v.c.get_named_cookie("platform_session").await.expect("the session cookie");
    assert!(cookie.http_only().unwrap_or(false) && cookie.secure().unwrap_or(false), "HttpOnly and Secure");
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)", "SameSite=Strict");
    let csrf = v.value("input[name=csrf_token]").await;
    let post = |form: Vec<(&'static str, String)>, origin: Option<&'static str>| {
        let mut req =
            v.p.http
                .post(v.p.url("/console/settings/tokens"))
                .header("cookie", format!("platform_session={}", cookie.value()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_body(&form));
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        async move { req.send().await.expect("post").status().as_u16() }
    };
    assert_eq!(post(vec![("description", "no token".into())], None).await, 403);
    assert_eq!(post(vec![("description", "x".into()), ("csrf_token", "forged".into())], None).await, 403);
    assert_eq!(
        post(vec![("description", "x".into()), ("csrf_token", csrf.clone())], Some("https://evil.example"))
            .await,
        403
    );
    assert_eq!(post(vec![("description", "same site".into()), ("csrf_token", csrf)], None).await, 200);

    // On a phone's screen nothing is wider than the screen.
    let phone = browser().await;
    phone
        .client
        .issue_cmd(Cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
        ))
        .await
        .expect("emulate a phone's screen");
    let on_phone = Visit { c: &phone.client, p: v.p, axe: v.axe.clone() };
    on_phone.goto(&endpoint_page).await;
    sign_in(&on_phone, "vera", "viewer-password").await;
    on_phone.wait_text("Deployed models", Duration::from_secs(10)).await;
    let overflow = phone
        .client
        .execute(
            "return [document.documentElement.clientWidth, document.documentElement.scrollWidth - document.documentElement.clientWidth, \
             [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391 \
               && !(e.parentElement && e.parentElement.closest('.table-wrap, pre'))).map(e => e.tagName + '.' + e.className + ':' + Math.round(e.getBoundingClientRect().right))];",
            vec![],
        )
        .await
        .expect("width");
    on_phone.shot("endpoint-phone").await;
    assert_eq!(overflow[0], 390, "the phone screen: {overflow}");
    assert!(overflow[1].as_i64().unwrap_or(1) <= 0, "the page scrolls sideways on a phone: {overflow}");
    on_phone.accessible("endpoint on a phone").await;

    // A viewer sees no button that would be refused, and the server refuses it anyway.
    let page = on_phone.source().await;
    assert!(!page.contains("Deploy a model") && !page.contains("input class=\"percent\""), "a viewer's page");
    let refused = phone
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             const body = new URLSearchParams({csrf_token: document.querySelector('input[name=csrf_token]').value});\
             body.append(arguments[0], '100');\
             fetch(location.pathname + '/traffic', {method: 'POST', body}).then(r => r.text()).then(done);",
            vec![json!(format!("traffic_{deployed_id}"))],
        )
        .await
        .expect("post as a viewer");
    assert!(refused.as_str().unwrap_or_default().contains("lacks the editor role"), "{refused}");
    phone.client.clone().close().await.expect("close the phone's browser");

    // Sign out; a page then leads to the sign-in page, and back to that page after it.
    v.goto(&endpoint_page).await;
    v.click("form[action='/console/logout'] button").await;
    v.wait_text("You are signed out.", Duration::from_secs(10)).await;
    v.goto(&endpoint_page).await;
    v.wait("#username").await;
    let at = v.path().await;
    assert!(at.starts_with("/console/login?next=%2Fconsole%2Fprojects%2Fdefault"), "{at}");
    sign_in(v, "admin", "correct-horse").await;
    v.wait_text("Deployed models", Duration::from_secs(10)).await;
    assert_eq!(v.path().await, endpoint_page);
}

async fn p_get(p: &Platform, path: &str) -> (u16, Value) {
    p.call("GET", path, None).await
}

/// A client that keeps the session cookie by hand and does not follow redirects.
struct CookieClient {
    http: reqwest::Client,
    cookie: String,
}

impl CookieClient {
    fn new(p: &Platform) -> CookieClient {
        let ca = std::fs::read(p.data.join("tls/ca.pem")).expect("CA");
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("PEM"))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        CookieClient { http, cookie: String::new() }
    }

    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap_or_default();
            if let Some(pair) = text.split(';').next().filter(|p| p.starts_with("platform_session=")) {
                self.cookie = pair.to_string();
            }
        }
    }

    async fn get(&mut self, p: &Platform, path: &str) -> (u16, String, String) {
        let response = self.http.get(p.url(path)).header("cookie", &self.cookie).send().await.expect("get");
        self.keep(&response);
        let status = response.status().as_u16();
        let location =
            response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_string();
        (status, location, response.text().await.unwrap_or_default())
    }

    async fn post(&mut self, p: &Platform, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let response = self
            .http
            .post(p.url(path))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .expect("post");
        self.keep(&response);
        let location =
            response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_string();
        (response.status().as_u16(), location)
    }
}

/// An `application/x-www-form-urlencoded` body.
fn form_body<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut body = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        body.append_pair(k.as_ref(), v.as_ref());
    }
    body.finish()
}

/// The value of the first hidden `csrf_token` field of a page.
fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).map(|i| i + marker.len()).expect("a csrf_token field");
    html[start..].split('"').next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_live_in_postgres_and_survive_a_restart() {
    let url = common::fresh_postgres("platform_console_test").await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let env = [("PLATFORM_DATABASE_URL", url.as_str())];
    let p = start(&data, &[], &env).await;
    let mut client = CookieClient::new(&p);
    let (status, _, html) = client.get(&p, "/console/login").await;
    assert_eq!(status, 200);
    let csrf = csrf_of(&html);
    let before = client.cookie.clone();
    let (status, location) = client
        .post(
            &p,
            "/console/login",
            &[
                ("csrf_token", &csrf),
                ("username", "admin"),
                ("password", "correct-horse"),
                ("next", "/console/settings"),
            ],
        )
        .await;
    assert_eq!((status, location.as_str()), (303, "/console/settings"));
    assert_ne!(client.cookie, before, "signing in starts a session with a new id");
    let (status, _, html) = client.get(&p, "/console/settings").await;
    assert_eq!(status, 200);
    assert!(html.contains("API tokens"));
    let port = p.port;
    drop(p);

    let p = common::start_on(&data, port, &[], &env).await;
    let (status, _, html) = client.get(&p, "/console/settings").await;
    assert_eq!(status, 200, "the session outlived the restart");
    assert!(html.contains(">admin<"), "still signed in as admin");
    let csrf = csrf_of(&html);
    let (status, location) = client.post(&p, "/console/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!((status, location.as_str()), (303, "/console/login?signed_out=true"));
    let (status, location, _) = client.get(&p, "/console/settings").await;
    assert_eq!((status, location.as_str()), (303, "/console/login?next=%2Fconsole%2Fsettings"));
}
