//! Headless Chromium driven over W3C WebDriver (Debian's `chromium` and `chromium-driver`,
//! installed by scripts/install-test-deps.sh): a chromedriver on a free loopback port, one
//! browser session, and the few commands the console tests need. Requests go through curl.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

fn call(method: &str, url: &str, body: Option<&Value>) -> Value {
    let mut c = Command::new("curl");
    c.args(["-sS", "-X", method, "-H", "Content-Type: application/json"]);
    if let Some(b) = body {
        c.args(["--data", &b.to_string()]);
    }
    let out = c.arg(url).output().expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

impl Browser {
    pub fn start() -> Browser {
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (scripts/install-test-deps.sh installs chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        super::wait_until("chromedriver ready", 20, || {
            (call("GET", &format!("{base}/status"), None)["value"]["ready"] == true).then_some(())
        });
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium().display().to_string(), "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.path().display())]}}}});
        let v = call("POST", &format!("{base}/session"), Some(&caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {v}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            _profile: profile,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    pub fn goto(&self, url: &str) {
        let v = call("POST", &self.url("/url"), Some(&json!({ "url": url })));
        assert!(v["value"].is_null(), "navigate to {url}: {v}");
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page; its return value.
    pub fn js(&self, script: &str, args: Value) -> Value {
        let v = call(
            "POST",
            &self.url("/execute/sync"),
            Some(&json!({"script": script, "args": args})),
        );
        if v["value"]["error"].is_string() {
            panic!("script failed: {v}\n{script}");
        }
        v["value"].clone()
    }

    /// Waits until `script` (a function body) returns something other than null/false, and
    /// returns it. The waiting happens in the page: the condition is checked at every animation
    /// frame until it holds or the WebDriver script timeout (`secs`) ends the wait.
    pub fn wait_js(&self, what: &str, secs: u64, script: &str) -> Value {
        call(
            "POST",
            &self.url("/timeouts"),
            Some(&json!({"script": secs * 1000})),
        );
        let wrapped = format!(
            "const done = arguments[arguments.length - 1]; const check = () => {{ {script} }}; \
             const tick = () => {{ let v = null; try {{ v = check(); }} catch (e) {{}} \
             if (v !== null && v !== undefined && v !== false) done(v); \
             else requestAnimationFrame(tick); }}; tick();"
        );
        let v = call(
            "POST",
            &self.url("/execute/async"),
            Some(&json!({"script": wrapped, "args": []})),
        );
        if v["value"]["error"].is_string() {
            panic!(
                "browser: {what} not within {secs} s ({}); script errors: {}; page text: {}",
                v["value"]["error"],
                self.js("return JSON.stringify(window.tgErrors || [])", json!([])),
                self.text()
            );
        }
        v["value"].clone()
    }

    pub fn text(&self) -> String {
        self.js("return document.body.innerText", json!([]))
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Sets an input's value and dispatches `input` (what typing would do).
    pub fn fill(&self, selector: &str, value: &str) {
        self.js(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
             e.dispatchEvent(new Event('input', {bubbles: true})); return true;",
            json!([selector, value]),
        );
    }

    pub fn click(&self, selector: &str) {
        let found = self.js(
            "const e = document.querySelector(arguments[0]); if (!e) return false; e.click(); return true;",
            json!([selector]),
        );
        assert_eq!(found, true, "no {selector} to click; page: {}", self.text());
    }
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("chromium"))
}

impl Drop for Browser {
    fn drop(&mut self) {
        call("DELETE", &self.url(""), None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
