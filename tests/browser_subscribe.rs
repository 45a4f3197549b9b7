//! A real browser (Debian's headless Chromium, driven over WebDriver) against the real server:
//! open a limited council's page, subscribe, follow the confirmation link from the captured
//! e-mail, confirm, then unsubscribe. A screenshot of each page is saved under
//! target/browser-screenshots/ at a phone's width.
//!
//! Skipped, with a notice, when /usr/bin/chromedriver is not installed (CI installs it).

mod web_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fantoccini::{ClientBuilder, Locator};
use web_support::{TestApp, spawn_apps};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const COUNCIL: &str = "wolverhampton";

/// A chromedriver process on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver and returns once it reports that it is listening.
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.any(|line| {
            line.map(|l| l.contains("started successfully"))
                .unwrap_or(false)
        });
        assert!(ready, "chromedriver did not start");
        // Keep reading its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Driver {
            child,
            port,
            _profile: tempfile::tempdir().unwrap(),
        }
    }

    fn capabilities(&self) -> serde_json::Map<String, serde_json::Value> {
        let profile = format!("--user-data-dir={}", self._profile.path().display());
        let options = serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", profile,
            ],
        });
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert("goog:chromeOptions".into(), options);
        caps
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn snap(client: &fantoccini::Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

/// Waits for the page whose main heading is `text` (the page after a form was sent).
async fn heading_becomes(client: &fantoccini::Client, text: &str) {
    let xpath = format!("//h1[normalize-space()='{text}']");
    client
        .wait()
        .at_most(std::time::Duration::from_secs(20))
        .for_element(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|err| panic!("no page headed {text:?}: {err}"));
}

#[tokio::test]
async fn a_visitor_subscribes_confirms_and_unsubscribes_in_a_real_browser() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        eprintln!("skipped: {CHROMEDRIVER} or {CHROMIUM} is not installed");
        return;
    }
    let app: TestApp = spawn_apps(|_| {}).await.into_iter().next().unwrap();
    let driver = Driver::start();
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(driver.capabilities())
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("open a WebDriver session");
    client.set_window_size(412, 1400).await.unwrap();

    client
        .goto(&app.url(&format!("/councils/{COUNCIL}")))
        .await
        .unwrap();
    let heading = client
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "City of Wolverhampton Council");
    let notice = client.find(Locator::Id("notice-heading")).await.unwrap();
    assert_eq!(
        notice.text().await.unwrap(),
        "Detailed weekly summaries are not provided yet"
    );
    snap(&client, "01-council-limited").await;

    // The label names the field, as a screen reader announces it.
    let label = client
        .find(Locator::Css("label[for=subscribe-email]"))
        .await
        .unwrap();
    assert_eq!(label.text().await.unwrap(), "Your e-mail address");
    client
        .find(Locator::Id("subscribe-email"))
        .await
        .unwrap()
        .send_keys("browser@example.org")
        .await
        .unwrap();
    client
        .find(Locator::Css(
            "#subscribe-heading ~ form button[type=submit]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    heading_becomes(&client, "Check your e-mail").await;
    snap(&client, "02-check-your-email").await;

    let mails = app.mails(1).await;
    let confirm = app.link_in(&mails[0], "/confirm/");
    client.goto(&app.url(&confirm)).await.unwrap();
    snap(&client, "03-confirm").await;
    assert_eq!(
        app.states_of("browser@example.org").await,
        [format!("{COUNCIL}:pending")]
    );
    client
        .find(Locator::Css("main form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    heading_becomes(&client, "You are subscribed").await;
    snap(&client, "04-confirmed").await;
    assert_eq!(
        app.states_of("browser@example.org").await,
        [format!("{COUNCIL}:confirmed")]
    );

    client
        .find(Locator::LinkText("Change which councils you follow"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    heading_becomes(&client, "Your subscriptions").await;
    snap(&client, "05-preferences").await;
    client
        .find(Locator::Css("#leave-heading ~ form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    heading_becomes(&client, "You are unsubscribed").await;
    snap(&client, "06-unsubscribed").await;
    assert_eq!(
        app.states_of("browser@example.org").await,
        [format!("{COUNCIL}:unsubscribed")]
    );

    client.close().await.unwrap();
    drop(driver);
    app.stop().await;
}
