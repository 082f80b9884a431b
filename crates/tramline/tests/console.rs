//! The web console in a real browser: Debian's headless Chromium driven through chromedriver
//! (WebDriver) against a running `tramline serve all` on SQLite files and the embedded log,
//! with a bearer token configured.
//!
//! It checks what an operator sees: every page loads with no console error; orders placed
//! through `POST /orders` appear without a reload, and their statuses change live as the
//! payment is approved and the delivery completed; a filter narrows the table; an order's
//! detail shows its three sources with versions and change times; an address holding a
//! `<script>` is shown as text and never runs; the health page draws the pipeline's figures;
//! every page passes axe-core's WCAG 2.1 A/AA audit;
//! a message the view's database refused is parked, inspected and retried from the page (the
//! buttons need the token); the page fits a phone's width. Screenshots of every page go to
//! `target/console/`. The time from each 201 to its row appearing in the page is printed
//! (`--no-capture`).
//!
//! Needs `chromium` and `chromedriver` (Debian packages `chromium`, `chromium-driver`;
//! `scripts/test` installs them), or their paths in `TRAMLINE_CHROMIUM` and
//! `TRAMLINE_CHROMEDRIVER`. It never skips: without them it fails saying so.

mod common;

use common::serve::{
    client, free_address, get, post_as, wait_ready, write_config, Served, TestDir,
};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "console-test-token";
/// The shipping address the view's database refuses while the test's trigger is there.
const REFUSED: &str = "refused by the view";
/// An address a careless page would run as code.
const SCRIPT: &str = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_view_live_in_a_real_browser() {
    let started = Instant::now();
    let dir = TestDir::new("console");
    let listen: Vec<String> = (0..5).map(|_| free_address()).collect();
    let file = |name: &str| format!("sqlite://{}/{name}.db", dir.path().display());
    let config = write_config(
        dir.path(),
        &format!(
            "kind = \"log\"\nlog_url = \"{}\"\npartitions = 4",
            file("log")
        ),
        &listen,
        [
            file("order"),
            file("payment"),
            file("delivery"),
            file("view"),
        ],
        "idle_poll_ms = 20",
        &format!("[http]\nbearer_token = \"{TOKEN}\"\n"),
    );
    let mut all = Served::start("all", "all", &config, &[], dir.path());
    let http = client();
    let urls: Vec<String> = listen.iter().map(|a| format!("http://{a}")).collect();
    let [order, payment, delivery, view, _relay] =
        <[String; 5]>::try_from(urls).expect("five listeners");
    wait_ready(&http, &view, &mut all).await;
    refuse_address(&file("view"), true).await;

    // A few orders before the page opens.
    let mut placed = Vec::new();
    for i in 0..4 {
        placed.push(place(&http, &order, &format!("before-{i}"), "1 Tram Street").await);
    }
    for id in &placed {
        wait_for_field(&http, &view, id, "orderStatus").await;
    }

    let browser = Browser::start(dir.path()).await;
    let page = &browser.client;
    page.goto(&format!("{view}/"))
        .await
        .expect("the console opens");
    browser.wait_page("rows").await;
    browser
        .wait_for(&format!("tr[data-key=\"{}\"]", placed[3]))
        .await;
    // Set once: a reload would lose it.
    page.execute(
        "window.__kept = 'no reload';
         window.__seen = {};
         new MutationObserver(() => {
             for (const tr of document.querySelectorAll('#rows tr[data-key]')) {
                 if (!(tr.dataset.key in window.__seen)) window.__seen[tr.dataset.key] = Date.now();
             }
         }).observe(document.body, { childList: true, subtree: true });",
        vec![],
    )
    .await
    .expect("the observer is installed");
    browser.assert_no_console_errors("the orders page").await;
    browser.assert_accessible("the orders page").await;
    let transferred = page
        .execute(
            "return [...performance.getEntriesByType('navigation'),
                     ...performance.getEntriesByType('resource')]
                 .filter(e => { const p = new URL(e.name).pathname;
                                return p === '/' || (p.startsWith('/console/') && p !== '/console/live'); })
                 .reduce((sum, e) => sum + e.transferSize, 0);",
            vec![],
        )
        .await
        .expect("the page answers");
    println!("the page's transfer size (page, assets, configuration): {transferred} bytes");

    // Orders placed now appear without a reload: 201 → row in the page, 20 times.
    let mut latencies = Vec::new();
    let mut live = Vec::new();
    for i in 0..20 {
        let address = if i == 0 { SCRIPT } else { "2 Tram Street" };
        let id = place(&http, &order, &format!("live-{i}"), address).await;
        let created = now_ms();
        let deadline = Instant::now() + Duration::from_secs(10);
        let seen = loop {
            let seen = page
                .execute(
                    "return window.__seen[arguments[0]] || null;",
                    vec![json!(id)],
                )
                .await
                .expect("the page answers");
            if let Some(at) = seen.as_i64() {
                break at;
            }
            assert!(
                Instant::now() < deadline,
                "order {id} did not appear in the page within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        latencies.push((seen - created).max(0));
        live.push(id);
    }
    latencies.sort_unstable();
    println!(
        "201 → row in the browser, 20 orders: p50 {} ms, max {} ms",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );

    // Its statuses change live as the payment is approved and the delivery completed.
    let id = live[1].clone();
    let payment_id = wait_for_field(&http, &view, &id, "paymentId").await;
    command(&http, &format!("{payment}/payments/{payment_id}/approve")).await;
    browser
        .wait_text(&cell(&id, "paymentStatus"), "APPROVED")
        .await;
    browser
        .wait_text(&cell(&id, "orderStatus"), "APPROVED")
        .await;
    let delivery_id = wait_for_field(&http, &view, &id, "deliveryId").await;
    for step in ["start", "complete"] {
        command(
            &http,
            &format!("{delivery}/deliveries/{delivery_id}/{step}"),
        )
        .await;
    }
    browser
        .wait_text(&cell(&id, "deliveryStatus"), "COMPLETED")
        .await;
    browser
        .wait_text(&cell(&id, "orderStatus"), "COMPLETED")
        .await;
    let kept = page.execute("return window.__kept;", vec![]).await;
    assert_eq!(
        kept.expect("the page answers"),
        json!("no reload"),
        "the page was reloaded"
    );
    browser.screenshot("orders").await;

    // A filter narrows the table to the one completed order.
    let rows = browser.count("#rows tbody tr[data-key]").await;
    assert!(rows >= 24, "{rows} rows shown");
    page.find(Locator::Css("#filter-orderStatus"))
        .await
        .expect("the order status filter")
        .select_by_value("COMPLETED")
        .await
        .expect("COMPLETED is an option");
    browser
        .wait_until("the table shows the completed order alone", || async {
            browser.count("#rows tbody tr[data-key]").await == 1
                && browser.exists(&format!("tr[data-key=\"{id}\"]")).await
        })
        .await;
    let url = page.current_url().await.expect("a URL");
    assert!(
        url.fragment()
            .unwrap_or_default()
            .contains("orderStatus=COMPLETED"),
        "the filter is in the address: {url}"
    );
    browser.screenshot("orders-filtered").await;

    // The detail page, reached with the keyboard: three sources, versions, change times.
    let link = page
        .find(Locator::Css(&format!("tr[data-key=\"{id}\"] a")))
        .await
        .expect("the order's link");
    link.send_keys(&char::from(fantoccini::key::Key::Enter).to_string())
        .await
        .expect("Enter follows the link");
    browser
        .wait_for(&format!("#detail[data-key=\"{id}\"]"))
        .await;
    browser.wait_page("row").await;
    for (field, expected) in [
        ("orderStatus", "COMPLETED"),
        ("paymentStatus", "APPROVED"),
        ("deliveryStatus", "COMPLETED"),
        ("paymentId", payment_id.as_str()),
        ("deliveryId", delivery_id.as_str()),
    ] {
        assert_eq!(browser.text(&dd(field)).await, expected, "{field}");
    }
    for group in ["order", "payment", "delivery"] {
        let version = browser.text(&dd(&format!("{group}Version"))).await;
        assert!(
            version.parse::<u64>().is_ok_and(|v| v >= 1),
            "{group} version shown as {version:?}"
        );
        let changed = format!("{} time", dd(&format!("{group}ChangedAt")));
        assert!(browser.exists(&changed).await, "{group}'s change time");
    }
    browser.screenshot("order").await;
    browser.assert_accessible("the detail page").await;

    // Untrusted text is shown as text and never runs.
    page.goto(&format!("{view}/#/row/{}", live[0]))
        .await
        .expect("the detail page opens");
    browser
        .wait_for(&format!("#detail[data-key=\"{}\"]", live[0]))
        .await;
    browser.wait_text(&dd("shippingAddress"), SCRIPT).await;
    let xss = page
        .execute("return typeof window.__xss;", vec![])
        .await
        .expect("the page answers");
    assert_eq!(xss, json!("undefined"), "the address ran as code");
    browser.assert_no_console_errors("the detail page").await;

    // Pipeline health, drawn from /metrics while orders flow.
    browser.click("nav a[href=\"#/health\"]").await;
    browser.wait_page("health").await;
    for i in 0..10 {
        place(&http, &order, &format!("health-{i}"), "3 Tram Street").await;
    }
    browser
        .wait_until("three outboxes with their backlog", || async {
            browser.count("#health-outboxes tbody tr").await == 3
        })
        .await;
    browser
        .wait_until("the view's lag per partition", || async {
            browser.count("#health-lag tbody tr").await >= 4
        })
        .await;
    for i in 10..20 {
        place(&http, &order, &format!("health-{i}"), "3 Tram Street").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser
        .wait_until("a commit → view latency drawn", || async {
            browser.text("#latency-summary").await.contains("p99")
                && browser.count("#latency-chart polyline").await >= 2
        })
        .await;
    browser.screenshot("health").await;
    browser.assert_no_console_errors("the health page").await;
    browser.assert_accessible("the health page").await;

    // A message the view's database refuses is parked; retried from the page after the fix.
    let refused = place(&http, &order, "refused", REFUSED).await;
    let parked_id = wait_parked(&http, &view, &refused).await;
    browser.click("nav a[href=\"#/parked\"]").await;
    browser.wait_page("parked").await;
    browser
        .wait_for(&format!("#parked tr[data-id=\"{parked_id}\"]"))
        .await;
    browser.screenshot("parked").await;
    browser.assert_accessible("the parked messages").await;
    browser
        .click(&format!("#parked tr[data-id=\"{parked_id}\"] a"))
        .await;
    browser
        .wait_for(&format!("#parked-detail[data-id=\"{parked_id}\"]"))
        .await;
    assert!(
        browser
            .text("#parked-detail [data-field=\"payload\"]")
            .await
            .contains(REFUSED),
        "the payload is shown"
    );
    let retry = page.find(Locator::Css("#retry")).await.expect("Retry");
    assert!(
        !retry.is_enabled().await.expect("its state"),
        "Retry works without the bearer token"
    );
    page.find(Locator::Css("#token"))
        .await
        .expect("the token field")
        .send_keys(TOKEN)
        .await
        .expect("typed");
    browser.click("#token-form button[type=\"submit\"]").await;
    browser
        .wait_until("Retry enabled with the token", || async {
            page.find(Locator::Css("#retry"))
                .await
                .expect("Retry")
                .is_enabled()
                .await
                .unwrap_or(false)
        })
        .await;
    browser.screenshot("parked-message").await;
    browser.assert_accessible("a parked message").await;
    refuse_address(&file("view"), false).await;
    browser.click("#retry").await;
    browser
        .wait_text_containing("#action-result", "Applied")
        .await;
    let row = wait_for_field(&http, &view, &refused, "shippingAddress").await;
    assert_eq!(row, REFUSED);
    let (status, list) = get(&http, &format!("{view}/admin/parked")).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]), "nothing stays parked");
    browser.assert_no_console_errors("the parked pages").await;

    // A phone's width: the page does not scroll sideways.
    page.set_window_size(390, 844).await.expect("resized");
    page.goto(&format!("{view}/")).await.expect("reopened");
    browser.wait_page("rows").await;
    let overflow = page
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .expect("the page answers");
    assert!(
        overflow.as_i64().is_some_and(|o| o <= 0),
        "the page scrolls sideways by {overflow} px at 390 px"
    );
    browser.screenshot("orders-phone").await;
    browser
        .assert_accessible("the page at a phone's width")
        .await;
    browser
        .assert_no_console_errors("the phone-width page")
        .await;

    browser.close().await;
    all.signal("TERM");
    let status = all.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "serve stopped: {status}");
    println!("browser test: {:.1} s", started.elapsed().as_secs_f64());
}

/// Chromium under chromedriver, one WebDriver session.
struct Browser {
    client: Client,
    driver: Child,
    shots: PathBuf,
}

impl Browser {
    async fn start(dir: &Path) -> Browser {
        let chromium = std::env::var("TRAMLINE_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
        let chromedriver = std::env::var("TRAMLINE_CHROMEDRIVER").unwrap_or("chromedriver".into());
        let port = free_address()
            .rsplit(':')
            .next()
            .expect("a port")
            .to_owned();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{chromedriver} does not start ({e}): install Debian's chromium and \
                     chromium-driver (scripts/test does) or set TRAMLINE_CHROMEDRIVER"
                )
            });
        let profile = dir.join("chromium-profile");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => {
                    panic!("no WebDriver session with {chromium} through {chromedriver}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console");
        std::fs::create_dir_all(&shots).expect("the screenshot directory");
        Browser {
            client,
            driver,
            shots,
        }
    }

    /// Saves a screenshot of the page as `target/console/<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("saved");
    }

    /// Fails on every WCAG 2.1 A/AA rule the page breaks, by axe-core's audit run in it
    /// (labels, contrast, roles, names, …).
    async fn assert_accessible(&self, what: &str) {
        let loaded = self
            .client
            .execute("return typeof window.axe === 'object';", vec![])
            .await
            .expect("the page answers");
        if loaded != json!(true) {
            let path = std::env::var("TRAMLINE_AXE").unwrap_or_else(|_| {
                format!(
                    "{}/../../target/axe/node_modules/axe-core/axe.min.js",
                    env!("CARGO_MANIFEST_DIR")
                )
            });
            let axe = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("axe-core is not at {path} ({e}): scripts/test installs it, or set TRAMLINE_AXE")
            });
            self.client
                .execute(&format!("{axe}\nreturn true;"), vec![])
                .await
                .expect("axe-core loads into the page");
        }
        let audit = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: { type: 'tag',
                                               values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
                    .then(r => done({ passed: r.passes.length,
                        violations: r.violations.map(v => ({ rule: v.id, impact: v.impact, help: v.help,
                            where: v.nodes.slice(0, 5).map(n => n.target.join(' ')) })) }))
                    .catch(e => done({ passed: 0, violations: [String(e)] }));",
                vec![],
            )
            .await
            .expect("the audit runs");
        assert_eq!(audit["violations"], json!([]), "accessibility of {what}");
        // The rules it checked and found kept (labels, contrast, names, …): it did audit.
        let passed = audit["passed"].as_u64().unwrap_or(0);
        assert!(
            passed >= 10,
            "axe-core checked only {passed} rules on {what}"
        );
    }

    /// Fails if the browser logged an error (a script error, a CSP violation, a failed load)
    /// since the last look.
    async fn assert_no_console_errors(&self, what: &str) {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver returns the browser's log");
        let errors: Vec<&Value> = entries
            .as_array()
            .expect("a list of log entries")
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .collect();
        assert!(errors.is_empty(), "console errors on {what}: {errors:#?}");
    }

    /// Waits (10 s at most) until `ready` holds.
    async fn wait_until<F, Fut>(&self, what: &str, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready().await {
            if Instant::now() > deadline {
                self.screenshot("failed").await;
                panic!("not within 10 s: {what} (target/console/failed.png)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Clicks the first element matching `css`.
    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} to click: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("{css} cannot be clicked: {e}"));
    }

    async fn wait_for(&self, css: &str) {
        self.wait_until(&format!("{css} is shown"), || self.exists(css))
            .await;
    }

    /// Waits until the route's page has rendered its data.
    async fn wait_page(&self, page: &str) {
        self.wait_for(&format!("body[data-page=\"{page}\"][data-loaded=\"true\"]"))
            .await;
    }

    async fn wait_text(&self, css: &str, expected: &str) {
        self.wait_until(&format!("{css} reads {expected:?}"), || async {
            self.text(css).await == expected
        })
        .await;
    }

    async fn wait_text_containing(&self, css: &str, part: &str) {
        self.wait_until(&format!("{css} says {part:?}"), || async {
            self.text(css).await.contains(part)
        })
        .await;
    }

    async fn exists(&self, css: &str) -> bool {
        self.count(css).await > 0
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|found| found.len())
            .unwrap_or(0)
    }

    /// The text of the first element matching `css` ("" when there is none).
    async fn text(&self, css: &str) -> String {
        let found = self
            .client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : '';",
                vec![json!(css)],
            )
            .await
            .expect("the page answers");
        found.as_str().unwrap_or_default().to_owned()
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// chromedriver's log of the browser's console (the Selenium endpoint it keeps).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

fn cell(key: &str, field: &str) -> String {
    format!("tr[data-key=\"{key}\"] td[data-field=\"{field}\"]")
}

fn dd(field: &str) -> String {
    format!("#detail dd[data-field=\"{field}\"]")
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_millis()).expect("in range")
}

/// `POST url` with the bearer token; panics unless it answers 200 or 201.
async fn command(http: &reqwest::Client, url: &str) -> Value {
    command_with(http, url, None).await
}

async fn command_with(http: &reqwest::Client, url: &str, body: Option<&Value>) -> Value {
    let (status, body) = post_as(http, url, body, Some(TOKEN)).await;
    assert!(matches!(status, 200 | 201), "POST {url}: {status} {body}");
    body
}

/// Places an order for `customer` shipping to `address`; its id.
async fn place(http: &reqwest::Client, order: &str, customer: &str, address: &str) -> String {
    let body = json!({
        "customerId": customer,
        "productId": "tram-ticket",
        "quantity": 1,
        "amountCents": 250,
        "shippingAddress": address,
    });
    let order = command_with(http, &format!("{order}/orders"), Some(&body)).await;
    order["orderId"].as_str().expect("an order id").to_owned()
}

/// Waits until the view's row of `id` has `field`; its value as text.
async fn wait_for_field(http: &reqwest::Client, view: &str, id: &str, field: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, row) = get(http, &format!("{view}/order-status/{id}")).await;
        if status == 200 {
            if let Some(value) = row[field].as_str() {
                return value.to_owned();
            }
        }
        assert!(Instant::now() < deadline, "{id} has no {field}: {row}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the view parked a message of `key`; its number.
async fn wait_parked(http: &reqwest::Client, view: &str, key: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = get(http, &format!("{view}/admin/parked?key={key}")).await;
        let first = page["items"]
            .as_array()
            .and_then(|items| items.iter().find(|m| m["held"] == json!(false)));
        if let Some(id) = first.and_then(|m| m["id"].as_i64()) {
            return id;
        }
        assert!(Instant::now() < deadline, "nothing of {key} parked: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Makes the view's SQLite database refuse (or accept again) rows shipping to [`REFUSED`].
async fn refuse_address(url: &str, refuse: bool) {
    use sqlx::Connection;
    let mut db = sqlx::SqliteConnection::connect(url)
        .await
        .expect("the view's database opens");
    let statements = match refuse {
        true => vec![
            format!(
                "CREATE TRIGGER test_refuse_insert BEFORE INSERT ON order_status_view \
                 WHEN NEW.shipping_address = '{REFUSED}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            ),
            format!(
                "CREATE TRIGGER test_refuse_update BEFORE UPDATE ON order_status_view \
                 WHEN NEW.shipping_address = '{REFUSED}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            ),
        ],
        false => vec![
            "DROP TRIGGER test_refuse_insert".to_owned(),
            "DROP TRIGGER test_refuse_update".to_owned(),
        ],
    };
    for statement in statements {
        sqlx::query(&statement)
            .execute(&mut db)
            .await
            .expect("the trigger changes");
    }
}
