//! `soa up` and `soa order timeline` on a real nats-server: the whole shop
//! runs in-process until Ctrl-C, the example orders it prints are placed in
//! both modes, and each order's timeline is rebuilt, from the workflow
//! instance's history (orchestrated) and from a scan of the event streams
//! (choreographed).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registry::cli::{self, CancellationToken, Exit};
use serde_json::Value;
use tests::harness::NatsServer;

use crate::cli::{Run, assert_exit, soa, soa_at};

/// How long `soa up` may take to start, and an order to end.
const WAIT: Duration = Duration::from_secs(60);

/// Output that the test reads while the command still writes it.
#[derive(Clone, Default)]
struct SharedOutput(Arc<Mutex<Vec<u8>>>);

impl SharedOutput {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for SharedOutput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The rest of the line of `text` that starts with `prefix`.
#[track_caller]
fn line_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{text}"))
}

/// Polls `shop.orders.v1.get` until the order has ended; its final state.
async fn wait_until_ended(url: &str, order_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    let request = serde_json::json!({ "order_id": order_id }).to_string();
    loop {
        let run = soa_at(url, &["request", "shop.orders.v1.get", &request]).await;
        assert_exit(&run, Exit::Success);
        let order: Value = serde_json::from_str(&run.stdout).unwrap();
        if order["status"] != "placed" {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {order_id} did not end: {order}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that `wanted` appear in `names` in this order (others may be between).
#[track_caller]
fn assert_in_order(names: &[String], wanted: &[&str]) {
    let mut rest = names.iter();
    for name in wanted {
        assert!(
            rest.any(|seen| seen == name),
            "{name:?} missing, or out of order, in {names:?} (wanted {wanted:?})"
        );
    }
}

/// The timeline's JSON entries, checked to be in time order.
#[track_caller]
fn entries(run: &Run) -> Vec<Value> {
    assert_exit(run, Exit::Success);
    let timeline: Value = serde_json::from_str(&run.stdout).unwrap();
    let entries = timeline["entries"].as_array().unwrap().clone();
    assert!(!entries.is_empty(), "{timeline}");
    let offsets: Vec<f64> = entries
        .iter()
        .map(|entry| entry["offset_ms"].as_f64().unwrap())
        .collect();
    let times: Vec<u64> = entries.iter().map(|entry| entry["at_ms"].as_u64().unwrap()).collect();
    assert_eq!(offsets[0], 0.0, "{timeline}");
    assert!(offsets.windows(2).all(|pair| pair[0] <= pair[1]), "{offsets:?}");
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
    entries
}

#[tokio::test]
async fn up_runs_the_shop_until_ctrl_c_and_timelines_rebuild_both_flows() {
    tests::init_tracing();
    let server = NatsServer::start().await.unwrap();
    let url = server.url();
    let data_dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let (stdout, stderr) = (SharedOutput::default(), SharedOutput::default());
    let argv: Vec<std::ffi::OsString> = [
        "soa",
        "--nats-url",
        &url,
        "up",
        "--http",
        "127.0.0.1:0",
        "--decline-rate",
        "0",
        "--shipping-failure-rate",
        "0",
        "--data-dir",
    ]
    .iter()
    .map(Into::into)
    .chain([data_dir.path().as_os_str().to_owned()])
    .collect();
    let up = {
        let (mut out, mut err, shutdown) = (stdout.clone(), stderr.clone(), shutdown.clone());
        async move { cli::run(argv, &mut out, &mut err, shutdown).await }
    };
    let checks = async {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !stdout.text().contains("soa up: ready") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "soa up never got ready:\n{}\n{}",
                stdout.text(),
                stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let printed = stdout.text();
        assert_eq!(line_after(&printed, "NATS       "), url);
        assert_eq!(line_after(&printed, "   export NATS_URL="), url);
        for command in ["soa services", "soa describe orders", "soa workflow list"] {
            assert!(
                printed.contains(&format!("\n   {command}\n")),
                "{command:?} not suggested:\n{printed}"
            );
        }
        // The web page at the printed (bound) address answers.
        let registry = line_after(&printed, "Registry   http://");
        let address = registry.split('/').next().unwrap();
        assert!(!address.ends_with(":0"), "the bound port is printed: {registry}");
        let page = reqwest::get(format!("http://{address}/")).await.unwrap();
        assert_eq!(page.status(), reqwest::StatusCode::OK);

        // The suggested orders, one per mode, placed as printed.
        let places: Vec<&str> = printed
            .lines()
            .filter_map(|line| line.strip_prefix("   soa request shop.orders.v1.place '"))
            .map(|rest| rest.trim_end_matches('\''))
            .collect();
        assert_eq!(places.len(), 2, "{printed}");
        let mut ids = Vec::new();
        for place in &places {
            let order: Value = serde_json::from_str(place).unwrap();
            let run = soa_at(&url, &["request", "shop.orders.v1.place", place]).await;
            assert_exit(&run, Exit::Success);
            ids.push((order["order_id"].as_str().unwrap().to_owned(), order["mode"].clone()));
        }
        assert_eq!(ids[0].1, "orchestrated");
        assert_eq!(ids[1].1, "choreographed");
        let (orchestrated, choreographed) = (ids[0].0.clone(), ids[1].0.clone());
        assert!(
            printed.contains(&format!("   soa order timeline {orchestrated}\n")),
            "{printed}"
        );
        assert!(
            printed.contains(&format!("   soa order timeline {choreographed}\n")),
            "{printed}"
        );
        for id in [&orchestrated, &choreographed] {
            let order = wait_until_ended(&url, id).await;
            assert_eq!(order["status"], "completed", "{order}");
        }

        // Orchestrated: the instance's history, one query.
        let run = soa_at(&url, &["order", "timeline", &orchestrated]).await;
        assert_exit(&run, Exit::Success);
        assert!(
            run.stdout.starts_with(&format!(
                "Order {orchestrated}: orchestrated, completed.\nWorkflow instance "
            )),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("Rebuilt from 1 query to the orchestrator"),
            "{}",
            run.stdout
        );
        let run = soa_at(&url, &["order", "timeline", &orchestrated, "--json"]).await;
        let history = entries(&run);
        let timeline: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(timeline["mode"], "orchestrated");
        assert_eq!(timeline["source"]["kind"], "workflow-history");
        assert_eq!(timeline["source"]["queries"], 1);
        let started: Vec<String> = history
            .iter()
            .filter(|entry| entry["kind"] == "step-started")
            .map(|entry| entry["step"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(started, ["reserve", "charge", "ship", "notify"]);
        let kinds: Vec<String> = history
            .iter()
            .map(|entry| entry["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_in_order(&kinds, &["step-started", "step-succeeded", "completed"]);

        // Choreographed: a scan of the five streams.
        let run = soa_at(&url, &["order", "timeline", &choreographed]).await;
        assert_exit(&run, Exit::Success);
        assert!(
            run.stdout
                .starts_with(&format!("Order {choreographed}: choreographed, completed.\n")),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("Rebuilt by scanning 5 streams ("), "{}", run.stdout);
        assert!(run.stdout.contains("shop.inventory.v1.reserved"), "{}", run.stdout);
        let run = soa_at(&url, &["order", "timeline", &choreographed, "--json"]).await;
        let events = entries(&run);
        let timeline: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(timeline["source"]["kind"], "event-scan");
        assert_eq!(timeline["source"]["streams_read"], 5);
        assert_eq!(timeline["source"]["matched"], events.len());
        assert!(
            timeline["source"]["messages_read"].as_u64().unwrap() >= events.len() as u64,
            "{timeline}"
        );
        let names: Vec<String> = events
            .iter()
            .map(|entry| {
                format!(
                    "{}.{}",
                    entry["producer"].as_str().unwrap(),
                    entry["event"].as_str().unwrap()
                )
            })
            .collect();
        assert_in_order(
            &names,
            &[
                "orders.placed",
                "inventory.reserved",
                "payments.charged",
                "shipping.scheduled",
                "orders.completed",
                "notifications.sent",
            ],
        );
        for entry in &events {
            assert_eq!(
                entry["subject"],
                format!(
                    "shop.{}.v1.{}",
                    entry["producer"].as_str().unwrap(),
                    entry["event"].as_str().unwrap()
                )
            );
        }

        // Unknown: exit 1; malformed: exit 2.
        let run = soa_at(&url, &["order", "timeline", "no-such-order"]).await;
        assert_exit(&run, Exit::Failure);
        assert!(
            run.stderr.contains("no order no-such-order has been placed"),
            "{}",
            run.stderr
        );
        let run = soa_at(&url, &["order", "timeline", "not an id!"]).await;
        assert_exit(&run, Exit::Usage);

        shutdown.cancel();
    };
    let (exit, ()) = tokio::join!(up, checks);
    let (printed, errors) = (stdout.text(), stderr.text());
    assert_eq!(exit, Exit::Success, "stdout:\n{printed}\nstderr:\n{errors}");
    assert!(printed.ends_with("soa up: stopping.\nsoa up: stopped.\n"), "{printed}");

    // Stopped: nothing answers for the shop any more.
    let run = soa_at(&url, &["order", "timeline", "no-such-order"]).await;
    assert_exit(&run, Exit::Usage);
    assert!(
        run.stderr.contains("does not answer on shop.orders.v1.get"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn up_exits_2_when_the_http_address_is_taken_or_the_nats_options_are_wrong() {
    let server = NatsServer::start().await.unwrap();
    let url = server.url();
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().to_str().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let run = soa(&["--nats-url", &url, "up", "--http", &address, "--data-dir", dir]).await;
    assert_exit(&run, Exit::Usage);
    assert!(
        run.stderr.contains(&format!("could not listen for HTTP on {address}")),
        "{}",
        run.stderr
    );

    let run = soa(&[
        "--nats-url",
        &url,
        "--user",
        "alice",
        "up",
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        dir,
    ])
    .await;
    assert_exit(&run, Exit::Usage);
    let run = soa(&["up", "--decline-rate", "2"]).await;
    assert_exit(&run, Exit::Usage);
}
