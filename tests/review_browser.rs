//! The review page and the feedback widget in a real browser: headless Chromium driven through
//! chromedriver (WebDriver, with the `fantoccini` client), against the real `loopc serve` on
//! SQLite. One server and one chromedriver serve every check of this binary, so the checks run
//! in turn inside one test, and every failure is reported together.
//!
//! Chromium and chromedriver come from Debian's `chromium` and `chromium-driver` packages
//! (`.ci/browser.sh` installs them), or from `LOOPC_CHROMIUM` and `LOOPC_CHROMEDRIVER`. When
//! they are missing the test FAILS, saying so; `LOOPC_SKIP_BROWSER_TESTS=1` opts out
//! explicitly (for machines that cannot have a browser), and the test then says it skipped.
//!
//! The checks also save screenshots of the queue, a run and the dashboard to
//! `docs/screenshots/` (the README shows them).

mod serve_checks;

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use serve_checks::{request, Fixture, Response, Server, KEY};

/// The reviewer the checks sign in as, and their key.
const REVIEWER: &str = "ana";
const REVIEWER_KEY: &str = "ana-review-key-0123456789";

/// WebDriver's code for the Enter key.
const ENTER: &str = "\u{E007}";

/// Finds the program: `env`'s path, one of `extra` (Debian's real binaries, not its wrapper
/// scripts), or one of `names` on the PATH.
fn find(env: &str, names: &[&str], extra: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).map(PathBuf::from).filter(|p| p.is_file()) {
        return Some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    extra.iter().map(PathBuf::from).chain(names.iter().flat_map(|n| dirs.iter().map(move |d| d.join(n)))).find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(chromedriver: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(chromedriver).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not listen on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with a fresh profile.
async fn browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,900",
    ];
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.push(format!("--user-data-dir={}", profile.display()));
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), json!({"binary": chromium.display().to_string(), "args": all}));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.unwrap_or_else(|e| panic!("cannot start Chromium through chromedriver: {e}"))
}

/// What the checks share.
struct World {
    server: Server,
    client: Client,
    /// Runs made for the checks, with their outputs and feedback tokens.
    runs: Vec<Value>,
    /// The product page's origin (allowed with --allow-origin) and its listener.
    shop: String,
    screenshots: PathBuf,
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    fn run_id(&self, i: usize) -> &str {
        self.runs[i]["run_id"].as_str().unwrap()
    }

    /// The run as the API shows it.
    fn api_run(&self, id: &str) -> Value {
        let r = request(&self.server.addr, "GET", &format!("/v1/runs/{id}"), Some(KEY), None, b"");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until the page's path starts with `prefix`.
    async fn wait_for_path(&self, prefix: &str) -> String {
        let started = Instant::now();
        loop {
            let path = self.path().await;
            if path.starts_with(prefix) && self.js("return document.readyState").await == "complete" {
                return path;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the browser never reached {prefix} (at {path})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(&self.screenshots).unwrap();
        loopc::fs::atomic_write(&self.screenshots.join(name), &png).unwrap();
    }

    /// Sends keys to whatever has the focus (the page itself when nothing does).
    async fn keys(&self, keys: &str) {
        self.client.active_element().await.unwrap().send_keys(keys).await.unwrap();
    }
}

type Check = for<'a> fn(&'a World) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), (|w| Box::pin($name(w))) as Check)),*]
    };
}

#[test]
fn the_review_page_and_the_widget_work_in_a_real_browser() {
    if std::env::var("LOOPC_SKIP_BROWSER_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: LOOPC_SKIP_BROWSER_TESTS=1; the review page was not tested in a browser");
        return;
    }
    let chromium = find("LOOPC_CHROMIUM", &["chromium", "chromium-browser", "google-chrome"], &["/usr/lib/chromium/chromium"]);
    let chromedriver = find("LOOPC_CHROMEDRIVER", &["chromedriver"], &["/usr/lib/chromium/chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        panic!(
            "Chromium and chromedriver are needed for the review page's browser tests and were not found.\n\
             Install them with `.ci/browser.sh` (Debian: apt-get install chromium chromium-driver), or point \
             LOOPC_CHROMIUM and LOOPC_CHROMEDRIVER at them; LOOPC_SKIP_BROWSER_TESTS=1 skips these tests on purpose."
        );
    };

    let fixture = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let reviewers = dir.path().join("reviewers");
    std::fs::write(&reviewers, format!("# who reviews\n{REVIEWER} {REVIEWER_KEY}\nbo bo-review-key-0123456789\n")).unwrap();
    let shop_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let shop = format!("http://{}", shop_listener.local_addr().unwrap());
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    record_versions(&url);
    let reviewers_arg = reviewers.display().to_string();
    let server = Server::start(fixture.command(&url, &["--reviewers-file", &reviewers_arg, "--allow-origin", &shop]), &url);
    assert!(server.log().contains("review page on http://"), "{}", server.log());
    let runs: Vec<Value> = [
        "I was charged twice for my order",
        "The app crashes when I open the settings",
        "Please close my account",
        "Refund my last invoice please",
        "The login page shows an error",
        "My parcel never arrived",
        "Can I change the card I pay with?",
        "The export button does nothing",
    ]
    .iter()
    .map(|t| server.run(t))
    .collect();
    // A thumbs-down puts the third run at the head of the queue; the rest fill the dashboard.
    for (run, key, score) in [(2, "thumbs", 0), (5, "thumbs", 1), (6, "thumbs", 1), (7, "rating", 4)] {
        let sent = server.post("/v1/feedback", &json!({"run_id": runs[run]["run_id"], "key": key, "score": score}));
        assert_eq!(sent.status, 201, "{}", sent.body);
    }
    serve_product_page(shop_listener, server.addr.clone(), runs[4].clone());

    let driver = Driver::start(&chromedriver);
    let profile = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let failures = rt.block_on(async {
        let client = browser(&driver, &chromium, profile.path()).await;
        let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        let world = World { server, client, runs, shop, screenshots };
        let mut failures = Vec::new();
        let all: Vec<(&str, Check)> = checks![
            a_request_without_a_session_sees_no_data,
            a_reviewer_signs_in_and_corrects_a_label_with_the_keyboard_alone,
            a_form_post_without_the_csrf_token_is_refused,
            flagged_runs_come_first_and_reviewed_runs_leave_the_queue,
            the_pages_fit_a_360_px_screen_with_the_label_buttons_visible,
            the_dashboard_draws_versions_volume_agreement_and_confusion_as_svg,
            the_widget_on_an_allowed_origin_sends_thumbs_with_the_run_token,
        ];
        for (name, check) in all {
            let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(check(&world))).await;
            if let Err(panic) = outcome {
                let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                failures.push(format!("{name}: {message}"));
            }
        }
        let _ = world.client.close().await;
        (failures, world.server.log())
    });
    let (failures, log) = failures;
    assert!(failures.is_empty(), "{} browser check(s) failed:\n{}\n\nserver log:\n{log}", failures.len(), failures.join("\n"));
}

/// Three versions of the program as learning records them (scores, decisions), for the
/// dashboard's version chart.
fn record_versions(url: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = loopc::store::Store::open(url).await.unwrap();
        let day = 86_400_000;
        let now = loopc::store::Timestamp::now().millis();
        let versions = [("a1f3c9e2", None, "promoted", 0.58, 0.64, 3), ("b7d2e410", Some("a1f3c9e2"), "rejected", 0.64, 0.61, 2), ("c90e5b37", Some("a1f3c9e2"), "promoted", 0.64, 0.71, 1)];
        for (hash, parent, decision, was, got, days_ago) in versions {
            let v = loopc::store::ArtifactVersion {
                hash: format!("{hash}{}", "0".repeat(56)),
                parent: parent.map(|p| format!("{p}{}", "0".repeat(56))),
                program: "triage".into(),
                created: loopc::store::Timestamp::from_millis(now - days_ago * day),
                body: None,
                meta: json!({"decision": decision, "reason": format!("holdout {was:.2} → {got:.2}"), "holdout_current": was, "holdout_candidate": got, "feedback_count": 40}),
            };
            store.record_artifact(&v).await.unwrap();
        }
        store.close().await;
    });
}

/// A product page on another origin that includes the widget under a run's answer.
fn serve_product_page(listener: TcpListener, server: String, run: Value) {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>shop</title></head><body><p id=\"answer\">Routed to {}</p>\
         <div id=\"feedback\" data-loopc-run=\"{}\" data-loopc-token=\"{}\"></div>\
         <script src=\"http://{server}/v1/widget.js\"></script></body></html>",
        run["outputs"]["team"].as_str().unwrap_or(""),
        run["run_id"].as_str().unwrap(),
        run["feedback_token"].as_str().unwrap()
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}", page.len());
            let _ = stream.write_all(answer.as_bytes());
        }
    });
}

/// Sends `method path` with only the given cookie header and body (no API key).
fn with_cookie(w: &World, method: &str, path: &str, cookie: Option<&str>, origin: Option<&str>, form: &str) -> Response {
    let mut stream = TcpStream::connect(&w.server.addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n", w.server.addr, form.len());
    if let Some(c) = cookie {
        head.push_str(&format!("cookie: {c}\r\n"));
    }
    if let Some(o) = origin {
        head.push_str(&format!("origin: {o}\r\n"));
    }
    if !form.is_empty() {
        head.push_str("content-type: application/x-www-form-urlencoded\r\n");
    }
    stream.write_all(format!("{head}\r\n{form}").as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Response { status, head: head.to_string(), body: body.to_string(), json: serde_json::from_str(body).unwrap_or(Value::Null) }
}

/// Signs the browser in (if it is not) by the keyboard: the key, then Enter.
async fn sign_in(w: &World, next: &str) {
    w.client.goto(&w.url(next)).await.unwrap();
    if w.path().await.starts_with("/review/login") {
        w.keys(REVIEWER_KEY).await; // the key field has the focus
        w.keys(ENTER).await;
    }
    w.wait_for_path(next.split('?').next().unwrap()).await;
}

async fn a_request_without_a_session_sees_no_data(w: &World) {
    let run = w.run_id(0).to_string();
    let ticket = "charged twice";
    for path in ["/review".to_string(), format!("/review/run/{run}"), "/review/dashboard".into(), "/review/next".into()] {
        let r = with_cookie(w, "GET", &path, None, None, "");
        assert_eq!(r.status, 303, "GET {path} without a session: {}", r.head);
        assert!(r.header("location").is_some_and(|l| l.starts_with("/review/login?next=")), "{}", r.head);
        assert!(!r.body.contains(&run) && !r.body.contains(ticket), "{}", r.body);
        let forged = with_cookie(w, "GET", &path, Some("loopc_review=lrs1.ana.99999999999999.00ff"), None, "");
        assert_eq!(forged.status, 303, "a forged session: {}", forged.head);
    }
    for (bearer, what) in [(Some("not-a-reviewer-key-0000"), "a wrong key"), (None, "no key")] {
        let r = request(&w.server.addr, "POST", &format!("/review/run/{run}"), bearer, Some("application/x-www-form-urlencoded"), b"corrects=1");
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert!(!r.body.contains(&run) && !r.body.contains(ticket));
    }
    // A script may use a reviewer's key instead of a session.
    let scripted = request(&w.server.addr, "GET", "/review", Some(REVIEWER_KEY), None, b"");
    assert_eq!(scripted.status, 200, "{}", scripted.body);
    assert!(scripted.body.contains(&run), "the queue lists the runs for a reviewer's key");
    // The browser, with no cookie yet, lands on the sign-in form, which shows nothing stored.
    w.client.goto(&w.url(&format!("/review/run/{run}"))).await.unwrap();
    let path = w.wait_for_path("/review/login").await;
    assert!(path.contains("next="), "{path}");
    let source = w.client.source().await.unwrap();
    assert!(!source.contains(ticket), "{source}");
    assert_eq!(source.matches(run.as_str()).count(), 1, "the run id only in the form's `next` field: {source}");
    assert!(source.contains(&format!("name=\"next\" value=\"/review/run/{run}\"")), "{source}");
}

async fn a_reviewer_signs_in_and_corrects_a_label_with_the_keyboard_alone(w: &World) {
    let run = w.run_id(1).to_string();
    sign_in(w, &format!("/review/run/{run}")).await;
    w.screenshot("review-run.png").await;
    let cookies = w.client.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "loopc_review").expect("a session cookie");
    assert_eq!(session.http_only(), Some(true), "the session cookie is HttpOnly");
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)", "the session cookie is SameSite=Strict");
    assert_eq!(w.js("return document.cookie").await, "", "scripts cannot read the session");
    // The model's label is preselected; choose another by its number and save with Enter.
    let labels = ["billing", "tech", "other"];
    let answered = w.runs[1]["outputs"]["team"].as_str().unwrap().to_string();
    let (index, chosen) = labels.iter().enumerate().find(|(_, l)| **l != answered).unwrap();
    let checked = w.js("return document.querySelector('input[name=\"out.team\"]:checked').value").await;
    assert_eq!(checked, answered.as_str());
    w.keys(&(index + 1).to_string()).await;
    let checked = w.js("return document.querySelector('input[name=\"out.team\"]:checked').value").await;
    assert_eq!(checked, *chosen, "key {} chose `{chosen}`", index + 1);
    w.keys(ENTER).await;
    let started = Instant::now();
    while w.path().await.starts_with(&format!("/review/run/{run}")) {
        assert!(started.elapsed() < Duration::from_secs(20), "Enter did not save and move on:\n{}", w.client.source().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = w.api_run(&run);
    let feedback = stored["feedback"].as_array().unwrap();
    let correction = feedback.iter().find(|f| f["key"] == "correction").unwrap_or_else(|| panic!("no correction stored: {stored}"));
    assert_eq!(correction["correction"], json!({"team": chosen}), "{correction}");
    assert_eq!(correction["source"], "annotation");
    assert_eq!(correction["user_id"], REVIEWER);
    // The next run's page follows, and skipping it (the `s` key) moves on again.
    let next = w.wait_for_path("/review").await;
    if next.starts_with("/review/run/") {
        w.keys("s").await;
        let started = Instant::now();
        while w.path().await == next {
            assert!(started.elapsed() < Duration::from_secs(20), "`s` did not skip");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn a_form_post_without_the_csrf_token_is_refused(w: &World) {
    let run = w.run_id(3).to_string();
    sign_in(w, "/review").await;
    let cookies = w.client.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "loopc_review").expect("signed in");
    let cookie = format!("loopc_review={}", session.value());
    let path = format!("/review/run/{run}");
    let page = with_cookie(w, "GET", &path, Some(&cookie), None, "");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.body.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("the form carries a CSRF token").to_string();
    let form = |csrf: Option<&str>| {
        let mut f = String::from("nonce=abcdef0123456789&corrects=1&out.team=other");
        if let Some(c) = csrf {
            f.push_str(&format!("&csrf={c}"));
        }
        f
    };
    let without = with_cookie(w, "POST", &path, Some(&cookie), None, &form(None));
    assert_eq!(without.status, 403, "{}", without.body);
    assert!(without.body.contains("CSRF"), "{}", without.body);
    let wrong = with_cookie(w, "POST", &path, Some(&cookie), None, &form(Some("0123456789abcdef0123456789abcdef")));
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let cross_site = with_cookie(w, "POST", &path, Some(&cookie), Some("https://evil.example"), &form(Some(&csrf)));
    assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    assert!(w.api_run(&run)["feedback"].as_array().unwrap().is_empty(), "nothing was stored");
    // The same form with its token is stored.
    let with = with_cookie(w, "POST", &path, Some(&cookie), None, &form(Some(&csrf)));
    assert_eq!(with.status, 303, "{}", with.body);
    let stored = w.api_run(&run);
    assert_eq!(stored["feedback"][0]["correction"], json!({"team": "other"}), "{stored}");
    // In the browser too: a form built by a script without the token is refused.
    w.client.goto(&w.url(&format!("/review/run/{}", w.run_id(0)))).await.unwrap();
    w.wait_for_path("/review/run/").await;
    w.js("document.querySelector('#review-form input[name=csrf]').remove(); document.getElementById('review-form').submit(); return null").await;
    let started = Instant::now();
    loop {
        let source = w.client.source().await.unwrap();
        if source.contains("no valid CSRF token") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the browser's post without a token was not refused:\n{source}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(w.api_run(w.run_id(0))["feedback"].as_array().unwrap().is_empty());
}

async fn flagged_runs_come_first_and_reviewed_runs_leave_the_queue(w: &World) {
    sign_in(w, "/review").await;
    let first = w.js("return document.querySelector('ol.queue li a').getAttribute('href')").await;
    assert!(first.as_str().unwrap().contains(w.run_id(2)), "the thumbs-down run leads: {first}");
    let tier = w.js("return document.querySelector('ol.queue li .tier').textContent").await;
    assert_eq!(tier, "flagged");
    let listed = w.js("return Array.from(document.querySelectorAll('ol.queue li a')).map(a => a.getAttribute('href')).join(' ')").await;
    assert!(!listed.as_str().unwrap().contains(w.run_id(1)), "a reviewed run left the queue: {listed}");
    w.screenshot("review-queue.png").await;
}

async fn the_pages_fit_a_360_px_screen_with_the_label_buttons_visible(w: &World) {
    sign_in(w, "/review").await;
    w.client.set_window_size(360, 780).await.unwrap();
    let pages = ["/review".to_string(), format!("/review/run/{}", w.run_id(0)), "/review/dashboard".to_string()];
    for path in &pages {
        w.client.goto(&w.url(path)).await.unwrap();
        w.wait_for_path(path).await;
        let width = w.js("return [document.documentElement.clientWidth, document.documentElement.scrollWidth, window.innerWidth]").await;
        let (client, scroll) = (width[0].as_f64().unwrap(), width[1].as_f64().unwrap());
        assert!(client <= 380.0, "the viewport is phone-sized on {path}: {width}");
        assert!(scroll <= client, "{path} overflows sideways at 360 px: {width}");
    }
    // The run page: every label button is on screen, and choosing one by keyboard still works.
    w.client.goto(&w.url(&pages[1])).await.unwrap();
    w.wait_for_path(&pages[1]).await;
    let rects = w
        .js("return Array.from(document.querySelectorAll('fieldset[data-hotkeys] label')).map(l => { const r = l.getBoundingClientRect(); \
             return [r.left, r.right, r.width, r.height, getComputedStyle(l).visibility]; })")
        .await;
    let rects = rects.as_array().cloned().unwrap_or_default();
    assert_eq!(rects.len(), 3, "{rects:?}");
    for r in &rects {
        let (left, right, width, height) = (r[0].as_f64().unwrap(), r[1].as_f64().unwrap(), r[2].as_f64().unwrap(), r[3].as_f64().unwrap());
        assert!(left >= 0.0 && right <= 360.0 && width > 20.0 && height >= 40.0, "a label button is off screen or too small to tap: {r}");
        assert_eq!(r[4], "visible");
    }
    w.keys("3").await;
    assert_eq!(w.js("return document.querySelector('input[name=\"out.team\"]:checked').value").await, "other");
    w.screenshot("review-run-360.png").await;
    w.client.set_window_size(1280, 900).await.unwrap();
}

async fn the_dashboard_draws_versions_volume_agreement_and_confusion_as_svg(w: &World) {
    sign_in(w, "/review/dashboard").await;
    let charts = w.js("return document.querySelectorAll('svg.chart').length").await;
    assert!(charts.as_u64().unwrap() >= 3, "feedback, agreement and confusion charts: {charts}");
    let text = w.js("return document.querySelector('main').innerText").await;
    let text = text.as_str().unwrap();
    assert!(text.contains("Feedback per day") && text.contains("Agreement over time") && text.contains("Label confusion"), "{text}");
    assert!(text.contains("Versions") && text.contains("c90e5b370000"), "{text}");
    let marks = w.js("return [document.querySelectorAll('svg circle.promoted').length, document.querySelectorAll('svg circle.rejected').length]").await;
    assert_eq!(marks, json!([2, 1]), "a dot per version, by decision");
    // Two corrections were stored above, so the confusion map counts them.
    assert!(text.contains("2 corrections"), "{text}");
    // Who corrected them, with their trust.
    assert!(text.contains("Trust per user") && text.contains("trust 0."), "{text}");
    // WebDriver shoots the viewport only: a tall window takes the whole dashboard.
    w.client.set_window_size(1280, 2000).await.unwrap();
    w.screenshot("review-dashboard.png").await;
    w.client.set_window_size(1280, 900).await.unwrap();
}

async fn the_widget_on_an_allowed_origin_sends_thumbs_with_the_run_token(w: &World) {
    let run = w.run_id(4).to_string();
    w.client.goto(&format!("{}/", w.shop)).await.unwrap();
    let started = Instant::now();
    let thumbs_down = loop {
        if let Ok(b) = w.client.find(Locator::Css("#feedback button[aria-label='Bad answer']")).await {
            break b;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the widget did not appear:\n{}", w.client.source().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    thumbs_down.click().await.unwrap();
    let started = Instant::now();
    loop {
        let status = w.js("return document.querySelector('#feedback [aria-live]').textContent").await;
        if status == "Thanks!" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the widget's post did not succeed: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = w.api_run(&run);
    let thumbs = stored["feedback"].as_array().unwrap().iter().find(|f| f["key"] == "thumbs").cloned().unwrap_or_else(|| panic!("{stored}"));
    assert_eq!((thumbs["score"].as_f64(), thumbs["source"].as_str()), (Some(0.0), Some("user")), "{thumbs}");
    // Only the allowed origin is answered: another origin's preflight is refused.
    let other = {
        let mut s = TcpStream::connect(&w.server.addr).unwrap();
        let req = format!(
            "OPTIONS /v1/feedback HTTP/1.1\r\nhost: {}\r\norigin: https://evil.example\r\naccess-control-request-method: POST\r\nconnection: close\r\n\r\n",
            w.server.addr
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        raw
    };
    assert!(other.starts_with("HTTP/1.1 403"), "{other}");
    assert!(!other.to_ascii_lowercase().contains("access-control-allow-origin"), "{other}");
    let runs = request(&w.server.addr, "GET", "/v1/runs", Some(KEY), None, b"");
    assert!(runs.header("access-control-allow-origin").is_none(), "no CORS on reading runs");
}
