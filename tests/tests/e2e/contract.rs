//! The API's contract, checked from outside: `/openapi.json` is the document the code
//! generates, Swagger UI renders it in a real browser from the server's own files, and
//! schemathesis (installed by `make test` under `.dev/venv`) drives a live ledger with real
//! keys through every operation and the declared links: no 5xx, and every answer's status,
//! content type, headers and body as the contract says.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use api::config::ServeRole;
use e2e::browser::{browser, chromedriver, installed, script};
use e2e::spawn_app_configured;
use fantoccini::Locator;
use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn schemathesis() -> PathBuf {
    let path = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".dev/venv/bin/schemathesis"));
    assert!(
        path.is_file(),
        "{} is missing: scripts/test-tools.sh installs schemathesis (make test runs it)",
        path.display()
    );
    path
}

#[tokio::test]
async fn the_served_contract_is_the_generated_one_and_swagger_ui_renders_it() {
    let app = spawn_app_configured(ServeRole::All, |_| {}).await;
    let served = app
        .http
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .expect("the contract");
    assert_eq!(served.status(), 200);
    let served: Value = served.json().await.expect("json");
    let generated = serde_json::to_value(api::openapi::document()).expect("serializes");
    assert_eq!(served, generated);
    assert_eq!(served["openapi"], "3.1.0");

    // The UI is reachable without a key and redirects to its own directory.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let docs = no_redirects
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), 308);
    assert_eq!(docs.headers()["location"], "/docs/");

    let (Some(chromium), Some(driver)) = (installed("chromium"), installed("chromedriver")) else {
        panic!("no chromium/chromedriver on PATH: scripts/test-tools.sh installs them");
    };
    let (_driver, driver_port) = chromedriver(&driver).await;
    let client = browser(&chromium, driver_port).await;
    client
        .goto(&format!("{}/docs/", app.address))
        .await
        .expect("the page");
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(".opblock-summary-path"))
        .await
        .expect("Swagger UI renders the operations");
    let paths = script(
        &client,
        "return [...document.querySelectorAll('.opblock-summary-path')]
                .map(e => e.getAttribute('data-path'))",
    )
    .await;
    let shown: BTreeSet<String> = paths
        .as_array()
        .expect("paths")
        .iter()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    let documented: BTreeSet<String> = served["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    assert_eq!(shown, documented, "every documented path is on the page");
    // Everything the page loaded came from the server itself: nothing from a CDN.
    let origins = script(
        &client,
        "return [...new Set(performance.getEntriesByType('resource')
                .map(r => new URL(r.name).origin))]",
    )
    .await;
    assert_eq!(
        origins,
        serde_json::json!([app.address]),
        "the page loads only from its own server"
    );
    client.close().await.expect("close");
}

/// Transitions schemathesis applied, with the status each answered, from its NDJSON report.
fn followed_links(report: &str) -> BTreeSet<(String, u16)> {
    let mut followed = BTreeSet::new();
    for line in report.lines() {
        let event: Value = serde_json::from_str(line).expect("an NDJSON event");
        let Some(recorder) = event.pointer("/ScenarioFinished/recorder") else {
            continue;
        };
        for (id, case) in recorder["cases"].as_object().into_iter().flatten() {
            let Some(transition) = case["transition"]["id"].as_str() else {
                continue;
            };
            let status = recorder["interactions"][id]["response"]["status_code"].as_u64();
            if let Some(status) = status {
                followed.insert((transition.to_owned(), status as u16));
            }
        }
    }
    followed
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_contract() {
    let schemathesis = schemathesis();
    let app = spawn_app_configured(ServeRole::All, |s| {
        // Every provider, each against its emulator: every operation has something to say.
        s.routing.providers = connectors::registry::known().map(str::to_owned).collect();
        // The sandbox authorizes by webhook: at once, so a followed link finds it done.
        s.sandbox.webhook_delay_ms = 0;
    })
    .await;
    let scratch = std::env::temp_dir().join(format!("payledger-contract-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&scratch).expect("a scratch directory");
    let report = scratch.join("report.ndjson");
    let contract = workspace().join("tests/contract");
    let run = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(contract.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/openapi.json", app.address))
        .args([
            "--workers",
            "2",
            "--report",
            "ndjson",
            "--report-ndjson-path",
        ])
        .arg(&report)
        .args(["--no-color"])
        .env("PAYLEDGER_URL", &app.address)
        .env("CHECKOUT_KEY", &app.checkout_key)
        .env("ADMIN_KEY", &app.admin_key)
        .env("PYTHONPATH", &contract)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .current_dir(&scratch)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("schemathesis finishes within ten minutes")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Stateful"), "{stdout}");

    let followed = followed_links(&std::fs::read_to_string(&report).expect("the report"));
    let _removed = std::fs::remove_dir_all(&scratch);
    let answered = |transition: &str, status: u16| {
        assert!(
            followed.contains(&(transition.to_owned(), status)),
            "schemathesis never followed {transition} to a {status}: {followed:?}"
        );
    };
    answered(
        "POST /v1/payments -> [201] GetPayment -> GET /v1/payments/{id}",
        200,
    );
    // Captured and refunded by following the links, from whichever step offered them.
    let reached = |operation: &str, status: u16| {
        assert!(
            followed
                .iter()
                .any(|(transition, answered)| transition.ends_with(operation)
                    && *answered == status),
            "schemathesis never followed a link to {operation} that answered {status}: {followed:?}"
        );
    };
    reached("-> POST /v1/payments/{id}/capture", 201);
    reached("-> POST /v1/payments/{id}/refunds", 201);
    answered(
        "POST /v1/payments/{id}/refunds -> [201] GetPayment -> GET /v1/payments/{id}",
        200,
    );
}
