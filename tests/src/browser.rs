//! A headless Chromium driven over WebDriver, for the console's browser tests: [`Browser::start`]
//! runs a private `chromedriver` on a free port with a fresh profile, opens one session in it, and
//! kills both (the whole process group) when dropped — also when the test panics. The helpers poll
//! the page with a deadline (no fixed sleeps) and read it through small scripts, which see live
//! fragments swapped in by the page's own code without holding stale element references.
//!
//! Chromium and its driver are found on `PATH` (`chromium`, then `chromium-browser` and
//! `google-chrome`; `chromedriver`), or at `CHROME` and `CHROMEDRIVER` when set. When they are
//! missing the test fails and says to run `bash scripts/services.sh`, which installs Debian's
//! `chromium` and `chromium-driver` — as CI's test command does.
//!
//! With `LONGHAUL_SCREENSHOTS=<dir>` set, [`Browser::screenshot`] saves PNGs there (a relative
//! directory is taken from the workspace root); without it, it does nothing.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use longhaul_testkit::procs::free_port;
use serde_json::{Value, json};

/// How long the helpers wait for the page by default.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often the helpers look at the page again while they wait.
const POLL: Duration = Duration::from_millis(50);

/// The arguments every browser gets (besides its own profile directory).
const CHROME_ARGS: [&str; 10] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// What to run to get the browser and its driver.
const INSTALL_HINT: &str = "run `bash scripts/services.sh` (it installs Debian's chromium and \
                            chromium-driver; CI's test command runs it)";

/// `name`'s path on `PATH`, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The program named by env `var`, else the first of `names` on `PATH`; panics with the install
/// hint when there is none.
fn program(var: &str, names: &[&str]) -> PathBuf {
    if let Some(set) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let set = PathBuf::from(set);
        let found = if set.components().count() > 1 { set.is_file().then_some(set.clone()) } else { None };
        return found
            .or_else(|| set.to_str().and_then(on_path))
            .unwrap_or_else(|| panic!("{var}={} is not an executable file: {INSTALL_HINT}", set.display()));
    }
    names
        .iter()
        .find_map(|n| on_path(n))
        .unwrap_or_else(|| panic!("{} is not on PATH (nor is {var} set): {INSTALL_HINT}", names.join(" or ")))
}

/// The directory screenshots go to (`LONGHAUL_SCREENSHOTS`, relative to the workspace root), if
/// screenshots are asked for.
pub fn screenshot_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("LONGHAUL_SCREENSHOTS").filter(|v| !v.is_empty())?);
    if dir.is_absolute() {
        return Some(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."));
    Some(root.join(dir))
}

/// Polls `check` every [`POLL`] until it gives `Ok`; at `timeout`, `Err` with the last state.
async fn poll<T, S>(timeout: Duration, mut check: impl AsyncFnMut() -> Result<T, S>) -> Result<T, S> {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// A headless Chromium with one WebDriver session, its private `chromedriver` and profile; all
/// gone when dropped.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    /// The base URL [`Browser::goto`] paths are relative to (e.g. `http://127.0.0.1:8080`).
    pub base: String,
    driver: Child,
    /// The profile directory and the driver's log.
    dir: PathBuf,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("base", &self.base).field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts `chromedriver` on a free port with a fresh profile directory, waits until it answers,
    /// and opens a session of a headless Chromium (1280×900) whose relative URLs go to `base`.
    pub async fn start(base: &str) -> Self {
        let chrome = program("CHROME", &["chromium", "chromium-browser", "google-chrome"]);
        let chromedriver = program("CHROMEDRIVER", &["chromedriver"]);
        let dir = std::env::temp_dir().join(format!("longhaul-browser-{}", longhaul_testkit::random_hex()));
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).expect("browser profile directory");
        let log = dir.join("chromedriver.log");
        // The port is free when picked; should another process take it first, the driver exits
        // and another port is tried.
        let (mut guard, url) = 'ports: {
            let mut last = String::new();
            for _ in 0..3 {
                let port = free_port().expect("a free port for chromedriver");
                let driver = Command::new(&chromedriver)
                    .arg(format!("--port={port}"))
                    .arg(format!("--log-path={}", log.display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    // Its own process group, which the browsers it starts join: dropping kills
                    // them all.
                    .process_group(0)
                    .spawn()
                    .unwrap_or_else(|e| {
                        panic!("cannot start {}: {e}; {INSTALL_HINT}", chromedriver.display())
                    });
                // From here on, a panic drops `guard`, which kills the driver.
                let mut guard = DriverGuard { child: Some(driver), dir: dir.clone() };
                let url = format!("http://127.0.0.1:{port}");
                match driver_ready(&mut guard, &url).await {
                    Ok(()) => break 'ports (guard, url),
                    Err((true, why)) => last = why,
                    Err((false, why)) => panic!(
                        "chromedriver did not answer on {url} within 20s ({why}); its log:\n{}",
                        tail(&std::fs::read_to_string(&log).unwrap_or_default(), 40)
                    ),
                }
            }
            panic!(
                "chromedriver exited on start three times (last: {last}); its log:\n{}",
                tail(&std::fs::read_to_string(&log).unwrap_or_default(), 40)
            );
        };
        let mut args: Vec<String> = CHROME_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chrome.display().to_string(), "args": args}),
        );
        let client =
            ClientBuilder::rustls().expect("rustls").capabilities(caps).connect(&url).await.unwrap_or_else(
                |e| {
                    panic!(
                        "cannot open a session of {} through {}: {e}; its log:\n{}",
                        chrome.display(),
                        chromedriver.display(),
                        tail(&std::fs::read_to_string(&log).unwrap_or_default(), 40)
                    )
                },
            );
        let driver = guard.child.take().expect("the driver is still held");
        Self { client, base: base.trim_end_matches('/').to_owned(), driver, dir }
    }

    /// `path` as a URL: relative to [`Browser::base`] unless it is one already.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Opens `path` (relative to the base URL) and waits for it to load.
    pub async fn goto(&self, path: &str) {
        let url = self.url(path);
        self.client.goto(&url).await.unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The current URL's path and query (e.g. `/console/jobs?status=failed`).
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page; what it returns.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.try_js(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// As [`Browser::js`], with the error instead of a panic.
    pub async fn try_js(&self, script: &str, args: Vec<Value>) -> Result<Value, CmdError> {
        self.client.execute(script, args).await
    }

    /// The rendered text (`innerText`, trimmed) of the first element matching `css`, or `None`.
    pub async fn text_of(&self, css: &str) -> Option<String> {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : null;";
        self.try_js(script, vec![json!(css)]).await.ok().and_then(|v| v.as_str().map(str::to_owned))
    }

    /// The rendered text of the first element matching `css`; panics when there is none.
    pub async fn text(&self, css: &str) -> String {
        match self.text_of(css).await {
            Some(t) => t,
            None => self.fail(&format!("no element matches {css:?}"), "").await,
        }
    }

    /// The rendered texts of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let script =
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim());";
        let v = self.js(script, vec![json!(css)]).await;
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Attribute `attr` of every element matching `css`, in document order (missing ones left out).
    pub async fn attrs(&self, css: &str, attr: &str) -> Vec<String> {
        let script = "return Array.from(document.querySelectorAll(arguments[0]))\
                      .map(e => e.getAttribute(arguments[1])).filter(a => a !== null);";
        let v = self.js(script, vec![json!(css), json!(attr)]).await;
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        let v = self.js("return document.querySelectorAll(arguments[0]).length;", vec![json!(css)]).await;
        v.as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0)
    }

    /// Whether an element matches `css`.
    pub async fn exists(&self, css: &str) -> bool {
        self.count(css).await > 0
    }

    /// Polls `check` until it gives `Ok` (within [`WAIT`]); panics naming `what`, the last state,
    /// the URL and the page's text.
    pub async fn wait<T, S: std::fmt::Debug>(
        &self,
        what: &str,
        check: impl AsyncFnMut() -> Result<T, S>,
    ) -> T {
        self.wait_for_up_to(WAIT, what, check).await
    }

    /// As [`Browser::wait`], waiting up to `timeout`.
    pub async fn wait_for_up_to<T, S: std::fmt::Debug>(
        &self,
        timeout: Duration,
        what: &str,
        check: impl AsyncFnMut() -> Result<T, S>,
    ) -> T {
        match poll(timeout, check).await {
            Ok(v) => v,
            Err(last) => {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"), &format!("{last:?}"))
                    .await
            }
        }
    }

    /// Waits until an element matches `css` and is displayed; that element.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait(&format!("{css:?} displayed"), async || {
            let e = self.client.find(Locator::Css(css)).await.map_err(|e| e.to_string())?;
            match e.is_displayed().await {
                Ok(true) => Ok(e),
                Ok(false) => Err("present but not displayed".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Waits until no element matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        self.wait(&format!("no {css:?}"), async || {
            let n = self.count(css).await;
            if n == 0 { Ok(()) } else { Err(n) }
        })
        .await;
    }

    /// Waits until the first element matching `css` has text `expected`.
    pub async fn wait_text(&self, css: &str, expected: &str) -> String {
        self.wait_text_by(css, &format!("= {expected:?}"), |t| t == expected).await
    }

    /// Waits until the first element matching `css` has a text that `accept` accepts (described as
    /// `what`); that text.
    pub async fn wait_text_by(&self, css: &str, what: &str, accept: impl Fn(&str) -> bool) -> String {
        self.wait(&format!("the text of {css:?} {what}"), async || match self.text_of(css).await {
            Some(t) if accept(&t) => Ok(t),
            other => Err(other),
        })
        .await
    }

    /// Waits until the page's text (the body's) contains `needle`.
    pub async fn wait_page_text(&self, needle: &str) {
        self.wait_text_by("body", &format!("containing {needle:?}"), |t| t.contains(needle)).await;
    }

    /// Waits until the current path (with its query) satisfies `accept` (described as `what`).
    pub async fn wait_path(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        self.wait(&format!("the URL {what}"), async || {
            let path = self.path().await;
            if accept(&path) { Ok(path) } else { Err(path) }
        })
        .await
    }

    /// Clicks the element matching `css` as a user would (it must be displayed and enabled),
    /// waiting for it first.
    pub async fn click(&self, css: &str) {
        self.wait(&format!("a click on {css:?}"), async || {
            let e = self.client.find(Locator::Css(css)).await.map_err(|e| e.to_string())?;
            e.click().await.map_err(|e| e.to_string())
        })
        .await;
    }

    /// Sets a mark on the current document that a new page load removes.
    pub async fn mark(&self, mark: &str) {
        self.js("window.__longhaulMark = arguments[0];", vec![json!(mark)]).await;
    }

    /// The mark set by [`Browser::mark`] on the current document (`None`: a page loaded since).
    pub async fn marked(&self) -> Option<String> {
        self.try_js("return window.__longhaulMark ?? null;", vec![])
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// Clicks `css` and waits until that caused a new page to load completely (a form post and
    /// its redirect, a link).
    pub async fn click_and_load(&self, css: &str) {
        let mark = format!("before-click-{}", longhaul_testkit::random_hex());
        self.mark(&mark).await;
        self.click(css).await;
        self.wait_loaded(&mark, &format!("a new page after clicking {css:?}")).await;
    }

    /// Waits until the document marked `mark` is gone and the new one has loaded.
    async fn wait_loaded(&self, mark: &str, what: &str) {
        self.wait(what, async || {
            let state =
                self.try_js("return [window.__longhaulMark ?? null, document.readyState];", vec![]).await;
            match state {
                Ok(v) if v[0] != mark && v[1] == "complete" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }

    /// Presses and releases `key` on the keyboard (in the focused element, as a person typing).
    pub async fn press(&self, key: Key) {
        let value = char::from(key);
        let actions = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value })
            .then(KeyAction::Up { value });
        self.client.perform_actions(actions).await.unwrap_or_else(|e| panic!("cannot press {key:?}: {e}"));
    }

    /// Presses `key` and waits until that caused a new page to load completely (Enter on a
    /// focused submit button or link).
    pub async fn press_and_load(&self, key: Key) {
        let mark = format!("before-key-{}", longhaul_testkit::random_hex());
        self.mark(&mark).await;
        self.press(key).await;
        self.wait_loaded(&mark, &format!("a new page after pressing {key:?}")).await;
    }

    /// Whether the focused element matches `css`.
    pub async fn focused(&self, css: &str) -> bool {
        let script = "const e = document.activeElement; return !!e && e.matches(arguments[0]);";
        self.try_js(script, vec![json!(css)]).await.is_ok_and(|v| v == true)
    }

    /// Presses Tab from the start of the page until the element matching `css` has the focus, at
    /// most `max` times; how many presses it took. Panics, naming where the focus went, when it
    /// never gets there.
    pub async fn tab_to(&self, css: &str, max: usize) -> usize {
        self.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);", vec![])
            .await;
        let mut path = Vec::new();
        for n in 1..=max {
            self.press(Key::Tab).await;
            if self.focused(css).await {
                return n;
            }
            let script = "const e = document.activeElement; return e ? e.tagName.toLowerCase() + \
                          (e.id ? '#' + e.id : '') + ' ' + (e.innerText || e.value || '').trim().slice(0, 30) : null;";
            path.push(self.js(script, vec![]).await);
        }
        self.fail(&format!("{css:?} never got the focus in {max} presses of Tab"), &format!("{path:?}")).await
    }

    /// Whether the focused element shows that it has the focus: an outline or a box shadow.
    pub async fn focus_visible(&self) -> Value {
        self.js(
            "const s = getComputedStyle(document.activeElement);
             return {outline: s.outlineStyle + ' ' + s.outlineWidth + ' ' + s.outlineColor, shadow: s.boxShadow,
                     visible: (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none'};",
            vec![],
        )
        .await
    }

    /// Fills form `form` (a CSS selector): each `(name, value)` sets the control named `name` — a
    /// select by its option's value, a text-like input by typing. Does not submit.
    pub async fn fill(&self, form: &str, fields: &[(&str, &str)]) {
        for (name, value) in fields {
            let css = format!("{form} [name=\"{name}\"]");
            let control = self.wait_for(&css).await;
            let tag = control.tag_name().await.expect("tag name");
            if tag.eq_ignore_ascii_case("select") {
                control
                    .select_by_value(value)
                    .await
                    .unwrap_or_else(|e| panic!("{css}: no option with value {value:?}: {e}"));
            } else {
                control.clear().await.unwrap_or_else(|e| panic!("{css}: cannot clear: {e}"));
                if !value.is_empty() {
                    control.send_keys(value).await.unwrap_or_else(|e| panic!("{css}: cannot type: {e}"));
                }
            }
        }
    }

    /// Logs in to the console with `key` through its form; the page it lands on loads.
    pub async fn log_in(&self, key: &str) {
        self.goto("/console/login").await;
        self.fill("form#login-form", &[("key", key)]).await;
        self.click_and_load("button#login-submit").await;
    }

    /// Sets the browser window's size (outer size, as a person would resize it).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.expect("set the window size");
    }

    /// Saves a PNG of the viewport as `name` in the screenshot directory, when
    /// `LONGHAUL_SCREENSHOTS` asks for screenshots; nothing otherwise.
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = screenshot_dir() else { return };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // Fonts and the live fragments settle before the picture is taken.
        self.wait("the page loaded and its fonts ready", async || {
            let v = self
                .try_js(
                    "return document.readyState === 'complete' && document.fonts.status === 'loaded';",
                    vec![],
                )
                .await;
            if matches!(v, Ok(Value::Bool(true))) { Ok(()) } else { Err(format!("{v:?}")) }
        })
        .await;
        let png = self.client.screenshot().await.expect("screenshot");
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Panics with `problem`, the last state seen, the URL and the start of the page's text.
    async fn fail(&self, problem: &str, last: &str) -> ! {
        let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_else(|e| e.to_string());
        let body = self.text_of("body").await.unwrap_or_default();
        let body: String = body.chars().take(3000).collect();
        panic!("{problem}\nlast state: {last}\nURL: {url}\npage text:\n{body}");
    }
}

/// Waits until the driver in `guard` answers `GET {url}/status` as ready (within 20 s); else
/// whether it exited, and the last state seen.
async fn driver_ready(guard: &mut DriverGuard, url: &str) -> Result<(), (bool, String)> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(child) = guard.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err((true, format!("chromedriver exited with {status}")));
        }
        let last = match http.get(format!("{url}/status")).send().await {
            Ok(r) => match r.json::<Value>().await {
                Ok(body) if body["value"]["ready"] == true => return Ok(()),
                Ok(body) => format!("not ready: {body}"),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err((false, last));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Kills a process group (SIGKILL to `-pid`) and reaps its leader.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Holds the driver while the session is being opened: a panic there kills it.
struct DriverGuard {
    child: Option<Child>,
    dir: PathBuf,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
            if std::thread::panicking() {
                let _ = std::fs::remove_dir_all(self.dir.join("profile"));
                eprintln!("chromedriver's log kept in {}", self.dir.join("chromedriver.log").display());
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
        if std::thread::panicking() {
            // A failed test: keep the driver's log, not the profile.
            let _ = std::fs::remove_dir_all(self.dir.join("profile"));
            eprintln!("chromedriver's log kept in {}", self.dir.join("chromedriver.log").display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
