//! The dashboard in a real browser: Debian's headless Chromium driven by chromedriver (W3C WebDriver over plain
//! HTTP, so no extra crate), against the real server and a real webhook receiver. A person's path through it: open
//! the dashboard, add a job through the form (watching the live preview and an error beside its field), see it in
//! the list with its next run time, pause it, open its run history after it fired; a screenshot of the job list is
//! saved. Every request the browser made is read from its network log: none may leave 127.0.0.1.
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them). Set `APSCHED_SKIP_BROWSER_TEST=1` to skip on
//! a machine without them; CI never sets it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// WebDriver's key for an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How often a wait re-checks the page: often enough to be quick, rare enough not to load the page.
const POLL: Duration = Duration::from_millis(100);
/// The viewer's zone differs from the jobs' (UTC), so the page must show both.
const VIEWER_TZ: &str = "America/New_York";

struct Browser {
    http: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    /// The parameters of every Network.requestWillBeSent the browser logged so far (`request`, `documentURL`).
    requests: Vec<Value>,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = tokio::process::Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .env("TZ", VIEWER_TZ)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let driver = command.spawn().expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(response) = ready
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(POLL).await;
        }
        let profile = tempfile::tempdir().unwrap();
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
            "--window-size=1360,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"performance": "ALL"},
        }}});
        let created: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let id = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created:#}"));
        Browser { http, session: format!("{base}/session/{id}"), driver, _profile: profile, requests: Vec::new() }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, Value> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.session));
        // Only POST carries parameters; chromedriver refuses a GET or DELETE with a body.
        if method == reqwest::Method::POST {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let ok = response.status().is_success();
        let answer: Value = response.json().await.unwrap();
        if ok { Ok(answer["value"].clone()) } else { Err(answer["value"].clone()) }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, body).await.unwrap_or_else(|err| panic!("{path}: {err:#}"))
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args})).await
    }

    /// Wait until `condition` (a JavaScript expression) is true; on timeout, fail showing the page.
    async fn wait_until(&self, what: &str, condition: &str) {
        let deadline = Instant::now() + PATIENCE;
        let script = format!("try {{ return Boolean({condition}); }} catch (e) {{ return false; }}");
        while self.script(&script, json!([])).await != true {
            if Instant::now() > deadline {
                let page = self.script("return document.body.innerText", json!([])).await;
                panic!(
                    "waited {PATIENCE:?} for {what} ({condition}); the page shows:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The element `css` matches, once it is there and shown.
    async fn element(&self, css: &str) -> String {
        let condition = format!("(e => e && e.offsetParent !== null)(document.querySelector({}))", json!(css));
        self.wait_until(&format!("{css} to be shown"), &condition).await;
        let found = self.post("/element", json!({"using": "css selector", "value": css})).await;
        found[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("{css}: {found:#}")).to_string()
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Pick an option of a shown `<select>` (options themselves have no layout box, so they are never "shown").
    async fn choose(&self, select: &str, value: &str) {
        self.element(select).await;
        let css = format!("{select} option[value={value}]");
        let found = self.post("/element", json!({"using": "css selector", "value": css})).await;
        let id = found[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("{css}: {found:#}")).to_string();
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Replace an input's text by typing, as a person would (each key fires `input`).
    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({"text": text})).await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        let text = self.command(reqwest::Method::GET, &format!("/element/{id}/text"), json!(null)).await.unwrap();
        text.as_str().unwrap().to_string()
    }

    async fn screenshot(&self, path: &Path) {
        let png = self.command(reqwest::Method::GET, "/screenshot", json!(null)).await.unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    /// Drain the browser's network log into `requests`.
    async fn collect_requests(&mut self) {
        let entries = self.post("/se/log", json!({"type": "performance"})).await;
        for entry in entries.as_array().into_iter().flatten() {
            let message: Value = serde_json::from_str(entry["message"].as_str().unwrap_or("{}")).unwrap_or_default();
            if message["message"]["method"] == "Network.requestWillBeSent" {
                self.requests.push(message["message"]["params"].clone());
            }
        }
    }

    async fn close(mut self) {
        // Ending the session quits Chromium; killing chromedriver alone would leave the browser running.
        self.command(reqwest::Method::DELETE, "", json!(null)).await.expect("the browser session ends");
        let _ = self.driver.kill().await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test must not leave a browser behind: end the session (chromedriver closes Chromium), then
        // kill_on_drop ends chromedriver. Drop cannot await, so this is one plain blocking HTTP request.
        let Some(rest) = self.session.strip_prefix("http://") else { return };
        let Some((host, path)) = rest.split_once('/') else { return };
        if let Ok(mut stream) = std::net::TcpStream::connect(host) {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(PATIENCE));
            let request = format!("DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            if stream.write_all(request.as_bytes()).is_ok() {
                // chromedriver answers once the browser has quit; the first bytes of the answer are enough.
                let _ = stream.read(&mut [0; 512]);
            }
        }
    }
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots")
}

#[tokio::test]
async fn a_person_adds_pauses_and_inspects_a_job_in_the_dashboard() {
    if std::env::var_os("APSCHED_SKIP_BROWSER_TEST").is_some() {
        eprintln!("APSCHED_SKIP_BROWSER_TEST is set: the browser test did not run");
        return;
    }
    assert!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "the browser test needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver); \
         set APSCHED_SKIP_BROWSER_TEST=1 to skip it"
    );
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let mut browser = Browser::start().await;
    let hook = receiver.url("ok/browser");

    // `/` leads to the dashboard, which starts empty.
    browser.goto(&format!("{}/", server.base)).await;
    browser.wait_until("the job list", "document.querySelector('#jobs .empty')").await;
    let url = browser.script("return location.href", json!([])).await;
    assert_eq!(url, format!("{}/ui/", server.base));

    // The form: the live preview follows what is typed.
    browser.click("a.primary[href='#/new']").await;
    browser.wait_until("a first preview", "document.querySelectorAll('#preview li').length === 10").await;
    browser.type_into("#crontab", "0 9 * * 1-5").await;
    browser
        .wait_until(
            "the preview of the new crontab",
            "(t => t.length === 10 && t.every(li => li.textContent.includes('09:00:00')))([...document.querySelectorAll('#preview li .job-time')])",
        )
        .await;
    // A trigger the API refuses: its message appears beside the field at fault.
    browser.type_into("#crontab", "99 * * * *").await;
    browser
        .wait_until(
            "the crontab error beside its field",
            "document.querySelector('#crontab').closest('.field').querySelector('.error:not([hidden])')",
        )
        .await;
    let error = browser.text("#crontab ~ .error").await;
    assert!(error.contains("is not a crontab expression"), "{error}");
    assert_eq!(browser.script("return document.querySelectorAll('#preview li').length", json!([])).await, 0);

    // An interval of two seconds, so that the job fires by itself while the test watches.
    browser.choose("#trigger-kind", "interval").await;
    browser.type_into("#interval-seconds", "2").await;
    browser.wait_until("the interval's preview", "document.querySelectorAll('#preview li').length === 10").await;
    browser.type_into("#job-id", "browser-job").await;
    browser.type_into("#job-name", "Made in the browser").await;
    browser.type_into("#job-labels", "tier=gold, zone=eu").await;
    browser.type_into("#auto-pause", "3").await;
    browser.type_into("#action-url", "ftp://127.0.0.1/nope").await;
    browser.click("#save").await;
    // The API's problem for `action.url` is shown beside the URL input.
    browser
        .wait_until(
            "the URL error beside its field",
            "document.querySelector('#action-url').getAttribute('aria-invalid') === 'true'",
        )
        .await;
    let error = browser.text("#action-url ~ .error").await;
    assert!(error.contains("absolute http or https URL"), "{error}");
    assert_eq!(server.get("/v1/jobs/browser-job").await.0, axum::http::StatusCode::NOT_FOUND);
    browser.type_into("#action-url", &hook).await;
    browser.click("#save").await;
    browser
        .wait_until("the new job's page", "location.hash === '#/jobs/browser-job' && document.querySelector('#config')")
        .await;
    browser.wait_until("its next ten fire times", "document.querySelectorAll('#fire-times li').length === 10").await;
    let (_, made) = server.get("/v1/jobs/browser-job").await;
    assert_eq!(made["labels"], json!({"tier": "gold", "zone": "eu"}), "{made}");
    assert_eq!(made["auto_pause_after_failures"], 3, "{made}");

    // The list: the job with its trigger in words and its next run time in both zones.
    browser.click("nav a[data-nav=jobs]").await;
    let row = "#jobs tr[data-job-id='browser-job']";
    let trigger = browser.text(&format!("{row} .trigger")).await;
    assert_eq!(trigger, "every 2 seconds");
    let local = browser.text(&format!("{row} .next-run .local-time")).await;
    // November in New York: five hours behind UTC, named as the browser's locale data names it.
    assert!(local.starts_with("20") && ["GMT−5", "GMT-5", "EST"].iter().any(|zone| local.contains(zone)), "{local}");
    let job_zone = browser.text(&format!("{row} .next-run .job-time")).await;
    assert!(job_zone.contains("UTC"), "{job_zone}");
    assert_eq!(browser.text(&format!("{row} .job-state")).await, "active");

    // It fires; the list shows the outcome; pause it from the list.
    receiver.wait_for("ok/browser", 1).await;
    browser
        .wait_until(
            "the last outcome in the list",
            &format!("document.querySelector(\"{row} .outcome\").textContent.includes('succeeded')"),
        )
        .await;
    browser.screenshot(&screenshot_dir().join("jobs.png")).await;
    browser.click(&format!("{row} button[data-action=pause]")).await;
    browser
        .wait_until(
            "the paused state",
            &format!("document.querySelector(\"{row} .job-state\").textContent === 'paused'"),
        )
        .await;
    browser.element(&format!("{row} button[data-action=resume]")).await;
    assert_eq!(browser.text(&format!("{row} .next-run")).await, "—");
    assert_eq!(server.get("/v1/jobs/browser-job").await.1["paused"], true);
    browser.screenshot(&screenshot_dir().join("jobs-paused.png")).await;

    // The filter narrows the list.
    browser.type_into("#filter", "no such job").await;
    browser.wait_until("the filter to hide the job", &format!("!document.querySelector(\"{row}\")")).await;
    browser.type_into("#filter", "browser").await;
    browser.element(row).await;

    // The label filter asks the server for the jobs a selector selects; each row shows its labels.
    let labelled = json!({"id": "labelled-job", "paused": true, "labels": {"team": "payments"},
                          "action": {"url": hook}, "trigger": {"type": "interval", "hours": 1}});
    assert_eq!(server.post("/v1/jobs", labelled).await.0, axum::http::StatusCode::CREATED);
    browser.type_into("#filter", "").await;
    browser.type_into("#selector", "team=payments\u{E007}").await;
    let only_labelled = format!(
        "document.querySelector(\"#jobs tr[data-job-id='labelled-job']\") && !document.querySelector(\"{row}\")"
    );
    browser.wait_until("only the labelled job", &only_labelled).await;
    assert_eq!(browser.text("#jobs tr[data-job-id='labelled-job'] .label").await, "team=payments");
    // A malformed selector is explained beside the list.
    browser.type_into("#selector", "team: payments\u{E007}").await;
    browser
        .wait_until(
            "the selector's problem",
            "document.querySelector('#selector-error').textContent.includes('expected')",
        )
        .await;
    browser.screenshot(&screenshot_dir().join("jobs-selector.png")).await;
    browser.type_into("#selector", "!team\u{E007}").await;
    browser
        .wait_until(
            "the job without a team label again",
            &format!(
                "document.querySelector(\"{row}\") && !document.querySelector(\"#jobs tr[data-job-id='labelled-job']\")"
            ),
        )
        .await;
    assert_eq!(browser.script("return document.querySelector('#selector-error').textContent", json!([])).await, "");

    // Its page: the run history shows the fires delivered to the receiver; run it now once more.
    browser.click(&format!("{row} a.job-id")).await;
    browser
        .wait_until("a succeeded run in the history", "document.querySelector('#runs tr[data-status=succeeded]')")
        .await;
    let delivered = receiver.matching("ok/browser").len();
    browser.click("#main button[data-action=run]").await;
    receiver.wait_for("ok/browser", delivered + 1).await;
    let runs = server.runs("browser-job").await;
    browser
        .wait_until(
            "the run-now fire in the history",
            &format!("document.querySelectorAll('#runs tbody tr[data-status]').length >= {}", runs.len()),
        )
        .await;
    browser
        .wait_until("the run-now fire shown as manual", "document.querySelector('#runs tr[data-kind=manual]')")
        .await;
    browser.screenshot(&screenshot_dir().join("job.png")).await;

    // Edit: a webhook with a secret header cannot be changed without giving the secret again (the page only has
    // the mask); other fields can, and the secret stays.
    let (status, _) = server
        .send(
            "PATCH",
            "/v1/jobs/browser-job",
            Some(json!({"action": {"url": hook, "headers": {"Authorization": "Bearer x"}}})),
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::OK);
    browser.click("#edit").await;
    browser.wait_until("the edit form", "document.querySelector('#action-headers').value.includes('********')").await;
    browser.type_into("#action-url", &receiver.url("ok/elsewhere")).await;
    browser.click("#save").await;
    browser
        .wait_until(
            "the masked-secret error",
            "document.querySelector('#action-headers').getAttribute('aria-invalid') === 'true'",
        )
        .await;
    assert!(browser.text("#action-headers ~ .error").await.contains("masked secret"));
    browser.click("a.button[href='#/jobs/browser-job']").await;
    browser.click("#edit").await;
    browser.type_into("#job-name", "Renamed in the browser").await;
    browser.click("#save").await;
    browser
        .wait_until("the renamed job's page", "document.querySelector('#config') && document.querySelector('#config').textContent.includes('Renamed in the browser')")
        .await;
    let (_, job) = server.get("/v1/jobs/browser-job").await;
    assert_eq!(job["name"], "Renamed in the browser");

    // The History tab: every change made from the page (and the API), newest first, with who made it and what
    // it changed.
    browser.click("#tab-history").await;
    browser
        .wait_until(
            "the rename in the job's history",
            "(r => r && r.querySelector('.changed').textContent.startsWith('name'))(document.querySelector('#history tbody tr[data-action]'))",
        )
        .await;
    let actions = browser
        .script("return [...document.querySelectorAll('#history tbody tr')].map(r => r.dataset.action)", json!([]))
        .await;
    assert_eq!(actions, json!(["modify", "modify", "run", "pause", "add"]));
    assert_eq!(browser.text("#history tbody tr[data-action=add] .actor").await, "anonymous");
    assert!(browser.text("#history tbody tr[data-action=add] .changed").await.starts_with("added"));
    assert!(browser.script("return document.querySelector('#panel-runs').hidden", json!([])).await == true);
    browser.screenshot(&screenshot_dir().join("job-history.png")).await;
    // The Notifications tab: this job has no notify and none is configured, so it says how to get them.
    browser.click("#tab-notifications").await;
    assert!(browser.text("#notifications tbody").await.contains("No notifications"));
    assert!(browser.text("#config").await.contains("the configured default, if any"));
    browser.click("#tab-history").await;
    assert_eq!(job["action"]["url"], hook.as_str());
    assert_eq!(job["action"]["headers"]["Authorization"], "********");

    // The scheduler: pause and resume all firing.
    browser.click("nav a[data-nav=scheduler]").await;
    assert_eq!(browser.text("#scheduler-state").await, "running");
    browser.click("#scheduler-pause").await;
    browser
        .wait_until("the paused scheduler", "document.querySelector('#scheduler-state').textContent === 'paused'")
        .await;
    assert_eq!(browser.text("#scheduler-badge").await, "paused");
    assert_eq!(server.get("/v1/scheduler").await.1["state"], "paused");
    browser.click("#scheduler-resume").await;
    browser
        .wait_until("the running scheduler", "document.querySelector('#scheduler-state').textContent === 'running'")
        .await;

    // A token typed into the page goes with every API request from then on.
    browser.click("details.token summary").await;
    browser.type_into("#token", "s3cret-token").await;
    browser.click("#token-form button").await;
    let carries_token = |r: &Value| {
        r["request"]["url"].as_str().is_some_and(|u| u.contains("/v1/"))
            && r["request"]["headers"]["Authorization"] == "Bearer s3cret-token"
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        browser.collect_requests().await;
        if browser.requests.iter().any(carries_token) {
            break;
        }
        assert!(Instant::now() < deadline, "no API request carried the token");
        tokio::time::sleep(POLL).await;
    }

    let requests = std::mem::take(&mut browser.requests);
    browser.close().await;
    let origin = format!("{}/", server.base);
    for sent in &requests {
        let url = sent["request"]["url"].as_str().unwrap_or_default();
        let page = sent["documentURL"].as_str().unwrap_or_default();
        if page.starts_with(&origin) {
            assert!(url.starts_with(&origin) || url.starts_with("data:"), "the page loaded {url} from elsewhere");
        }
        // Nor did the browser itself reach past loopback (its own pages, chrome://…, are not network).
        if let Ok(parsed) = reqwest::Url::parse(url)
            && matches!(parsed.scheme(), "http" | "https" | "ws" | "wss")
        {
            assert_eq!(parsed.host_str(), Some("127.0.0.1"), "the browser requested {url}");
        }
    }
    let from_page = requests.iter().filter(|r| r["documentURL"].as_str().is_some_and(|u| u.starts_with(&origin)));
    assert!(from_page.count() > 10, "the network log holds too few of the page's requests: {requests:#?}");
    server.stop().await;
}

#[tokio::test]
async fn a_person_sees_a_jobs_calendars_and_checks_a_time_against_one() {
    if std::env::var_os("APSCHED_SKIP_BROWSER_TEST").is_some() {
        eprintln!("APSCHED_SKIP_BROWSER_TEST is set: the browser test did not run");
        return;
    }
    let server = Server::start(memory_config()).await;
    let calendar = json!({"timezone": "UTC", "exclude": {"dates": ["2030-12-25"], "weekdays": ["sat", "sun"]}});
    let (status, _) = server.send("PUT", "/v1/calendars/holidays", Some(calendar)).await;
    assert_eq!(status, axum::http::StatusCode::OK);
    let trigger = json!({"type": "cron", "hour": 9, "timezone": "UTC", "exclude_calendars": ["holidays"]});
    let (status, _) = server
        .post("/v1/jobs", json!({"id": "weekdays", "trigger": trigger, "action": {"url": "http://127.0.0.1:9/"}}))
        .await;
    assert_eq!(status, axum::http::StatusCode::CREATED);
    let browser = Browser::start().await;

    browser.goto(&format!("{}/ui/#/jobs/weekdays", server.base)).await;
    browser.wait_until("the job's calendars", "document.querySelector('#job-calendars')").await;
    assert_eq!(browser.text("#job-calendars").await, "holidays");
    assert!(browser.text("#config").await.contains("except holidays"));
    browser.click("#job-calendars a").await;
    browser.wait_until("the calendar's page", "document.querySelector('#calendar-title')").await;
    assert!(browser.text("#calendars").await.contains("1 date · sat, sun"));
    browser.type_into("#check-time", "2030-12-25 09:00").await;
    browser.click("#check-form button").await;
    browser.wait_until("the check's answer", "document.querySelector('#check-result').textContent !== ''").await;
    assert!(browser.text("#check-result").await.starts_with("excluded"), "{}", browser.text("#check-result").await);

    // The form keeps the trigger's calendars, and an unknown one is shown beside its field.
    browser.goto(&format!("{}/ui/#/edit/weekdays", server.base)).await;
    browser.wait_until("the edit form", "document.querySelector('#exclude-calendars')").await;
    let kept = browser.script("return document.querySelector('#exclude-calendars').value", json!([])).await;
    assert_eq!(kept, "holidays");
    browser.type_into("#exclude-calendars", "holidays, nope").await;
    browser.click("#save").await;
    browser.wait_until("the field's error", "document.querySelector('#exclude-calendars[aria-invalid=true]')").await;
    let job = server.get("/v1/jobs/weekdays").await.1;
    assert_eq!(job["trigger"]["exclude_calendars"], json!(["holidays"]), "nothing was saved");
    browser.close().await;
    server.stop().await;
}

#[tokio::test]
async fn the_dashboard_is_served_with_a_policy_that_forbids_other_origins() {
    let server = Server::start(memory_config()).await;
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["/", "/ui"] {
        let response = no_redirects.get(format!("{}{path}", server.base)).send().await.unwrap();
        assert!(response.status().is_redirection(), "{path}: {}", response.status());
        assert_eq!(response.headers()["location"], "/ui/");
    }
    for (path, content_type) in
        [("/ui/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css")]
    {
        let response = server.client.get(format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(content_type), "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'none'") && policy.contains("connect-src 'self'"), "{policy}");
    }
    let (status, _) = server.get("/ui/missing.js").await;
    assert_eq!(status, axum::http::StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn a_person_sees_a_jobs_backfills_and_cancels_a_running_one() {
    if std::env::var_os("APSCHED_SKIP_BROWSER_TEST").is_some() {
        eprintln!("APSCHED_SKIP_BROWSER_TEST is set: the browser test did not run");
        return;
    }
    use chrono::{DurationRound, TimeDelta, Utc};
    let receiver = Receiver::start().await;
    let server = Server::start(memory_config()).await;
    let job = json!({"id": "minutely", "trigger": {"type": "cron", "minute": "*"}, "action": {"url": receiver.url("ok/ui-backfill")}});
    let (status, _) = server.post("/v1/jobs", job).await;
    assert_eq!(status, axum::http::StatusCode::CREATED);
    let end = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let range =
        json!({"start": (end - TimeDelta::minutes(10)).to_rfc3339(), "end": end.to_rfc3339(), "rate_per_second": 0.01});
    let (status, backfill) = server.post("/v1/jobs/minutely/backfill", range).await;
    assert_eq!(status, axum::http::StatusCode::ACCEPTED, "{backfill}");
    let id = backfill["id"].as_str().unwrap();
    let browser = Browser::start().await;

    browser.goto(&format!("{}/ui/#/jobs/minutely", server.base)).await;
    let row = format!("#backfills tr[data-backfill='{id}']");
    browser.wait_until("the backfill's row", &format!("document.querySelector({})", json!(row))).await;
    let text = browser.text(&row).await;
    assert!(text.contains("running") && text.contains(" of 10"), "{text}");
    browser.script("window.confirm = () => true; return true", json!([])).await;
    browser.click(&format!("{row} button[data-action='cancel-backfill']")).await;
    let cancelled = format!("#backfills tr[data-backfill='{id}'][data-state='cancelled']");
    browser.wait_until("the backfill cancelled", &format!("document.querySelector({})", json!(cancelled))).await;
    assert_eq!(server.get(&format!("/v1/backfills/{id}")).await.1["state"], "cancelled");
    browser.close().await;
    server.stop().await;
}
