//! The registry's web page in a real browser: a registry with the shop's
//! contracts serves its router on a loopback port, and Debian's headless
//! Chromium, driven through chromedriver (W3C WebDriver), searches the
//! catalogue, opens a service, reads a request schema and sees the
//! dependency graph drawn. Screenshots are kept under
//! `target/test-artifacts/web/` for a person to look at.
//!
//! The browser is not optional: without it the test fails and says how to
//! install it (`scripts/install-browser`). The WebDriver client below is the
//! few W3C commands the test needs over `reqwest`, which the tests already
//! use, rather than a WebDriver crate and its dependency tree.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::registry_api::{GetRequest, HeartbeatRequest, RegisterRequest};
use contracts::{ContractId, ServiceName};
use futures::FutureExt as _;
use registry::http::{HttpConfig, HttpState, Via};
use registry::server::Registry;
use registry::store::MemoryStore;
use serde_json::{Value, json};
use tests::registry::{SHOP_OWNER_TOKEN, serve_http_on_loopback, shop_document, test_options};
use tokio_util::sync::CancellationToken;

/// Where Debian's `chromium` and `chromium-driver` packages put the browser
/// and its driver; `SOA_CHROMIUM` and `SOA_CHROMEDRIVER` point elsewhere.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long any one wait in the browser may take.
const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn the_web_page_works_in_a_headless_browser() {
    let (chromium, chromedriver) = browser();
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).unwrap();

    // The registry: the shop's contracts, one healthy instance of inventory
    // and one whose contract drifted from every registered version.
    let registry = Arc::new(
        Registry::open(Arc::new(MemoryStore::new()), test_options())
            .await
            .unwrap(),
    );
    for document in tests::registry::shop_contracts().unwrap() {
        let request = RegisterRequest {
            document: document.to_value(),
            owner_token: Some(SHOP_OWNER_TOKEN.to_owned()),
        };
        registry.register(request, Via::Http).await.unwrap();
    }
    let digest = registry
        .catalog()
        .get(&GetRequest {
            service: ServiceName::parse("inventory").unwrap(),
            version: None,
            major: None,
        })
        .unwrap()
        .digest;
    for (instance, digest) in [("inventory-7f3a", digest.as_str()), ("inventory-c41d", "sha256:4f2a9c")] {
        let beat = HeartbeatRequest {
            instance_id: instance.to_owned(),
            contract: ContractId::parse("inventory@1.1.0").unwrap(),
            digest: digest.to_owned(),
            ttl_ms: 600_000,
        };
        registry.catalog().heartbeat(&beat, Instant::now(), false).unwrap();
    }
    let shutdown = CancellationToken::new();
    let state = HttpState::new(Arc::clone(&registry), HttpConfig::default());
    let (base, server) = serve_http_on_loopback(state, shutdown.clone()).await.unwrap();

    let started = Instant::now();
    let driver = ChromeDriver::start(&chromedriver, &artifacts.join("chromedriver.log")).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = driver.session(&chromium, profile.path()).await;
    // A failed assertion must not leave Chromium running: the walk-through's
    // panic is caught, the session closed (which ends the browser), and the
    // panic resumed.
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        AssertUnwindSafe(walk_through(&registry, &browser, &base, &artifacts)).catch_unwind(),
    )
    .await;
    browser.quit().await;
    drop(driver);
    shutdown.cancel();
    server.await.unwrap().unwrap();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("the browser walk-through took more than 120 s"),
    }
    eprintln!(
        "the browser walk-through took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );
}

/// What a person would do: search, open a service, read a schema, look at
/// the graph.
async fn walk_through(registry: &Registry, browser: &Session, base: &str, artifacts: &Path) {
    // The catalogue lists the five shop services.
    browser.goto(&format!("{base}/")).await;
    browser.wait_for("table#services tbody tr").await;
    assert_eq!(browser.find_all("table#services tbody tr").await.len(), 5);
    assert_eq!(browser.title().await, "Services · soabus registry");
    browser.screenshot(&artifacts.join("catalogue.png")).await;

    // Typing filters the rows at once (a tag matches too) ...
    let search = browser.find("input#q").await;
    browser.send_keys(&search, "money").await;
    let visible = browser
        .execute(
            "return Array.from(document.querySelectorAll('#services tbody tr'))
                .filter(row => !row.hidden).map(row => row.querySelector('th').textContent);",
        )
        .await;
    assert_eq!(visible, json!(["payments"]));
    // ... and Enter asks the server, which searches message descriptions too.
    browser.clear(&search).await;
    browser.send_keys(&search, "stock\u{E007}").await;
    browser.wait_until_url(|url| url.ends_with("/?q=stock")).await;
    let link = browser
        .wait_for(r#"table#services a[href="/services/inventory"]"#)
        .await;
    browser.click(&link).await;

    // The inventory page: the reserve operation's request schema, followed
    // through its `$ref`s, and the drift banner.
    browser.wait_until_url(|url| url.ends_with("/services/inventory")).await;
    let heading = browser.find("h1").await;
    assert!(browser.text(&heading).await.starts_with("inventory"));
    let banner = browser.find(r#".banner.warn[role="alert"]"#).await;
    let banner_text = browser.text(&banner).await;
    assert!(banner_text.contains("Drift: 1 of 2 instances"), "{banner_text}");
    browser.screenshot(&artifacts.join("service.png")).await;
    let request = browser.find("#op-reserve .messages section:first-child").await;
    let request_text = browser.text(&request).await;
    for expected in [
        "REQUEST",
        "order_id",
        "REQUIRED",
        "ReserveStock",
        "OrderId",
        "items 1–100",
    ] {
        assert!(
            request_text.contains(expected),
            "{expected:?} missing in {request_text:?}"
        );
    }
    let reserve = browser.find("#op-reserve").await;
    browser
        .element_screenshot(&reserve, &artifacts.join("reserve.png"))
        .await;

    // The graph: drawn by the page's script as SVG, one node per service.
    browser.goto(&format!("{base}/graph")).await;
    browser.wait_for("#graph-canvas svg g.node").await;
    let mut services = Vec::new();
    for node in browser.find_all("#graph-canvas svg g.node").await {
        services.push(browser.attribute(&node, "data-service").await);
    }
    services.sort();
    // fulfilment is the workflow orders starts and hears from: a node of its
    // own, drawn from orders' references although it is not registered here.
    assert_eq!(
        services,
        [
            "fulfilment",
            "inventory",
            "notifications",
            "orders",
            "payments",
            "shipping"
        ]
    );
    let edges = browser.find_all("#graph-canvas svg g.edge").await.len();
    assert!(edges >= 5, "{edges} edges drawn");
    assert_eq!(
        browser.find_all("#graph-canvas svg g.edge.consumes").await.len()
            + browser.find_all("#graph-canvas svg g.edge.calls").await.len()
            + browser.find_all("#graph-canvas svg g.edge.unresolved").await.len(),
        edges
    );
    browser.screenshot(&artifacts.join("graph.png")).await;

    // A compatible new version: the service page links it to a diff with
    // the version before, judged by the compatibility checker.
    let mut update = shop_document("inventory").unwrap();
    update["version"] = json!("1.2.0");
    update["$defs"]["ReserveStock"]["properties"]["note"] = json!({"type": "string", "description": "Optional."});
    let request = RegisterRequest {
        document: update,
        owner_token: Some(SHOP_OWNER_TOKEN.to_owned()),
    };
    registry.register(request, Via::Http).await.unwrap();
    browser.goto(&format!("{base}/services/inventory")).await;
    let diff_link = browser
        .wait_for(r#"#versions a[href="/services/inventory/diff?from=1.1.0&to=1.2.0"]"#)
        .await;
    browser.click(&diff_link).await;
    browser
        .wait_until_url(|url| url.contains("/services/inventory/diff"))
        .await;
    let changes = browser.find("table.changes tbody").await;
    let changes_text = browser.text(&changes).await;
    assert!(changes_text.contains("property-added"), "{changes_text}");
    assert_eq!(browser.find_all("table.changes td.breaking.no").await.len(), 1);
    browser.screenshot(&artifacts.join("diff.png")).await;

    // Nothing went wrong in the page's script or against its
    // Content-Security-Policy along the way.
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "the browser reported errors: {errors:#?}");
}

/// The browser and its driver, or a failure that says how to install them.
fn browser() -> (PathBuf, PathBuf) {
    let chromium = std::env::var_os("SOA_CHROMIUM").map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
    let chromedriver = std::env::var_os("SOA_CHROMEDRIVER").map_or_else(|| PathBuf::from(CHROMEDRIVER), PathBuf::from);
    let missing: Vec<String> = [&chromium, &chromedriver]
        .into_iter()
        .filter(|path| !path.is_file())
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "the web page's browser test needs Chromium and chromedriver, and {} is not installed.\n\
         Install them with `scripts/install-browser` (as root; on Debian it runs \
         `apt-get install -y --no-install-recommends chromium chromium-driver`), \
         or point SOA_CHROMIUM and SOA_CHROMEDRIVER at a Chromium and its matching chromedriver.",
        missing.join(" and ")
    );
    (chromium, chromedriver)
}

/// `target/test-artifacts/web`, beside the target directory's `tmp`.
fn artifacts_dir() -> PathBuf {
    let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    target_tmp
        .parent()
        .unwrap_or(target_tmp)
        .join("test-artifacts")
        .join("web")
}

// ---------------------------------------------------------------------------
// A minimal W3C WebDriver client.

/// The key W3C WebDriver names element references by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process on a free loopback port, killed on drop.
struct ChromeDriver {
    _process: tokio::process::Child,
    url: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl ChromeDriver {
    async fn start(binary: &Path, log: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut process = tokio::process::Command::new(binary)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("{} could not be started: {err}", binary.display()));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(reply) = http.get(format!("{url}/status")).send().await
                && let Ok(status) = reply.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            if let Ok(Some(exit)) = process.try_wait() {
                panic!("chromedriver exited at start ({exit}); see {}", log.display());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on port {port} within {WAIT:?}; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            _process: process,
            url,
            http,
            log: log.to_owned(),
        }
    }

    /// A new headless Chromium with a fresh profile. The flags keep a
    /// browser on a closed network from waiting on connections it would
    /// make in the background (updates, sync, first-run pages).
    async fn session(&self, chromium: &Path, profile: &Path) -> Session {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"pageLoad": 30_000, "script": 10_000, "implicit": 0},
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--window-size=1280,900",
                    "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let reply = self
            .http
            .post(format!("{}/session", self.url))
            .json(&capabilities)
            .send()
            .await
            .unwrap_or_else(|err| panic!("chromedriver did not answer: {err}; see {}", self.log.display()));
        let body: Value = reply.json().await.unwrap();
        let id = body["value"]["sessionId"].as_str().unwrap_or_else(|| {
            panic!(
                "Chromium did not start: {:#}; see {}",
                body["value"],
                self.log.display()
            )
        });
        Session {
            url: format!("{}/session/{id}", self.url),
            http: self.http.clone(),
        }
    }
}

/// One browser session.
struct Session {
    url: String,
    http: reqwest::Client,
}

impl Session {
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.url));
        if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
            request = request.json(&body.unwrap_or_else(|| json!({})));
        }
        let reply = request.send().await.map_err(|err| format!("{method} {path}: {err}"))?;
        let status = reply.status();
        let body: Value = reply
            .json()
            .await
            .map_err(|err| format!("{method} {path}: {status}, not JSON: {err}"))?;
        if status.is_success() {
            Ok(body["value"].clone())
        } else {
            Err(format!(
                "{method} {path}: {status} {}: {}",
                body["value"]["error"], body["value"]["message"]
            ))
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await.unwrap()
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn title(&self) -> String {
        self.get("/title").await.as_str().unwrap().to_owned()
    }

    async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_owned()
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|element| element[ELEMENT_KEY].as_str().unwrap().to_owned())
            .collect()
    }

    async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {css:?}"))
    }

    /// The first element matching `css`, once there is one.
    async fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(element) = self.find_all(css).await.into_iter().next() {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "no element matched {css:?} within {WAIT:?} on {}",
                self.current_url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_until_url(&self, condition: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.current_url().await;
            if condition(&url) {
                return;
            }
            assert!(Instant::now() < deadline, "still on {url} after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn text(&self, element: &str) -> String {
        self.get(&format!("/element/{element}/text"))
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn attribute(&self, element: &str, name: &str) -> String {
        self.get(&format!("/element/{element}/attribute/{name}"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn click(&self, element: &str) {
        self.post(&format!("/element/{element}/click"), json!({})).await;
    }

    async fn clear(&self, element: &str) {
        self.post(&format!("/element/{element}/clear"), json!({})).await;
    }

    async fn send_keys(&self, element: &str, text: &str) {
        self.post(&format!("/element/{element}/value"), json!({"text": text}))
            .await;
    }

    async fn execute(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []})).await
    }

    async fn screenshot(&self, file: &Path) {
        let encoded = self.get("/screenshot").await;
        save_png(&encoded, file);
    }

    async fn element_screenshot(&self, element: &str, file: &Path) {
        let encoded = self.get(&format!("/element/{element}/screenshot")).await;
        save_png(&encoded, file);
    }

    /// The browser console's errors so far (chromedriver's log endpoint).
    async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .command(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"})))
            .await
            .unwrap_or_else(|err| panic!("the browser log could not be read: {err}"));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn quit(&self) {
        // Best effort: the driver is killed next in any case.
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
    }
}

fn save_png(encoded: &Value, file: &Path) {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_str().unwrap())
        .unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "{} is not a PNG", file.display());
    std::fs::write(file, bytes).unwrap();
}
