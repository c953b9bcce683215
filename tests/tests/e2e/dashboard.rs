//! The operators' dashboard in a real browser: headless Chromium driven through chromedriver
//! (WebDriver) against a running ledger with payments in it. Skipped, saying so, only when no
//! browser is installed; `make test` installs one (scripts/test-tools.sh).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use api::auth::{create_key, Role};
use api::config::ServeRole;
use e2e::browser::{browser, chromedriver, installed, script};
use e2e::{payment_body, spawn_app_configured, TestApp};
use fantoccini::{Client, Locator};
use serde_json::Value;

/// The first complete render of a page reload, key already given: what an operator waits at most.
const FIRST_RENDER_MS_MAX: f64 = 1_000.0;

/// Waits until the page has rendered with data (or shows its error state).
async fn rendered(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = script(client, "return document.body.dataset.state").await;
        if state == "ready" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page never rendered: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(client: &Client, locator: Locator<'_>) {
    let element = client.find(locator).await.expect("element");
    element.click().await.expect("click");
}

async fn sign_in(client: &Client, key: &str) {
    let field = client.find(Locator::Id("key")).await.expect("key field");
    field.send_keys(key).await.expect("type");
    click(client, Locator::Css("#sign-in button[type=submit]")).await;
}

async fn badge(client: &Client) -> String {
    client
        .find(Locator::Id("badge"))
        .await
        .expect("badge")
        .text()
        .await
        .expect("text")
}

async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let path = dir.join(format!("{name}.png"));
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
    path
}

async fn paid(app: &TestApp, reference: &str, token: &str, status: &str) {
    let created = app
        .create_payment(
            reference,
            &payment_body("20.00", "USD", reference, token, "automatic"),
        )
        .await;
    app.wait_for_status(created["id"].as_str().expect("id"), status)
        .await;
}

/// Until the analytics projection (which lingers before committing) shows `approved` today.
async fn analytics_show(app: &TestApp, key: &str, approved: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let summary: Value = app
            .get("/v1/analytics/summary?days=1", key)
            .await
            .json()
            .await
            .expect("json");
        if summary["days"][0]["approved_count"] == approved {
            return;
        }
        assert!(Instant::now() < deadline, "{summary}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn operators_see_health_and_analytics_and_a_stopped_provider_degrades_the_badge() {
    let (Some(chromium), Some(driver)) = (installed("chromium"), installed("chromedriver")) else {
        eprintln!(
            "SKIPPED: no chromium/chromedriver on PATH; `make test` installs them \
             (scripts/test-tools.sh: Debian's chromium and chromium-driver)"
        );
        return;
    };
    let app = spawn_app_configured(ServeRole::All, |s| {
        s.routing.providers = vec!["sandbox".into(), "wompi".into()];
    })
    .await;
    let operator = create_key(&app.pool, Role::Operator, None)
        .await
        .expect("operator key");
    for n in 0..3 {
        paid(&app, &format!("d-{n}"), "tok_sandbox_approved", "APPROVED").await;
    }
    paid(&app, "d-declined", "tok_sandbox_declined", "DECLINED").await;
    analytics_show(&app, &operator, 3).await;

    let (_driver, driver_port) = chromedriver(&driver).await;
    let client = browser(&chromium, driver_port).await;
    client
        .goto(&format!("{}/dashboard", app.address))
        .await
        .expect("the page");
    assert_eq!(
        script(&client, "return document.body.dataset.state").await,
        "signed-out",
        "nothing is shown before signing in"
    );

    // A key that may not see it is refused on the page.
    sign_in(&client, &app.checkout_key).await;
    let refused = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#sign-in-error:not([hidden])"))
        .await
        .expect("a refusal");
    assert!(refused.text().await.expect("text").contains("operator"));

    sign_in(&client, &operator).await;
    rendered(&client).await;
    let form = client.find(Locator::Id("sign-in")).await.expect("form");
    assert!(
        !form.is_displayed().await.expect("displayed"),
        "signed in: the form is gone"
    );

    // A reload with the key kept in the tab: from navigation to the page drawn with data.
    client.refresh().await.expect("reload");
    rendered(&client).await;
    let first_render_ms: f64 = script(&client, "return Number(document.body.dataset.firstReadyMs)")
        .await
        .as_f64()
        .expect("a time");
    assert!(
        first_render_ms < FIRST_RENDER_MS_MAX,
        "rendered in {first_render_ms} ms"
    );

    assert_eq!(badge(&client).await, "HEALTHY");
    let today = chrono::Utc::now().date_naive().to_string();
    let bar = client
        .find(Locator::Css(&format!(
            "[data-chart=daily] g[data-day='{today}']"
        )))
        .await
        .expect("today's bar");
    assert_eq!(
        bar.attr("data-value").await.expect("attr").as_deref(),
        Some("3")
    );
    let label = bar
        .find(Locator::Css("text.value"))
        .await
        .expect("label")
        .text()
        .await
        .expect("text");
    assert_eq!(label, "3", "the day's approved count is written on its bar");
    for provider in ["sandbox", "wompi"] {
        let card = client
            .find(Locator::Css(&format!("[data-card='{provider}']")))
            .await
            .expect("a card per provider");
        assert_eq!(
            card.attr("data-status-of").await.expect("attr").as_deref(),
            Some("healthy")
        );
    }
    screenshot(&client, "healthy").await;

    app.stop_emulator("wompi").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        click(&client, Locator::Id("refresh")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        rendered(&client).await;
        if badge(&client).await == "DEGRADED" {
            break;
        }
        assert!(Instant::now() < deadline, "still {}", badge(&client).await);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let wompi = client
        .find(Locator::Css("[data-card='wompi']"))
        .await
        .expect("wompi's card");
    assert_eq!(
        wompi.attr("data-status-of").await.expect("attr").as_deref(),
        Some("unhealthy")
    );
    let updated = client
        .find(Locator::Id("updated"))
        .await
        .expect("updated")
        .text()
        .await
        .expect("text");
    assert!(updated.starts_with("Updated "), "{updated}");
    screenshot(&client, "degraded").await;
    client.close().await.expect("close the browser");
}
