//! The admin API as an administrator's browser and the command line use
//! it: an administrator made with `natter admin create-admin`, a session
//! cookie and its CSRF token.

use super::store_env_for;
use serde_json::{json, Value};
use std::net::SocketAddr;

pub const ADMIN_PASSWORD: &str = "admin password 1";

/// Makes an administrator with the command line, in the store the server
/// on `dir` will use.
pub async fn create_admin(dir: &std::path::Path, name: &str, role: &str, extra: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"));
    cmd.args(["admin", "create-admin", "--name", name, "--role", role])
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env("NATTER_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("NATTER_PASSWORD__ARGON2_MEMORY_KIB", "64")
        .env("NATTER_PASSWORD__ARGON2_ITERATIONS", "1")
        .stdin(std::process::Stdio::null());
    cmd.envs(store_env_for(dir).await);
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "create-admin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `natter admin ARGS` as administrator `root` against the server at
/// `addr`: whether it succeeded, its stdout and its stderr.
pub async fn admin_cli(addr: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .arg("admin")
        .args(args)
        .args(["--server", &format!("http://{addr}"), "--admin", "root"])
        .env("NATTER_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An administrator's browser, as far as the API sees it: the cookie and
/// the CSRF token.
pub struct AdminClient {
    pub addr: SocketAddr,
    pub cookie: String,
    pub csrf: String,
}

/// (status, JSON body, the response's headers).
pub async fn admin_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Vec<(String, String)>) {
    let (method, url) = (method.to_owned(), format!("http://{addr}{path}"));
    let (cookie, csrf) = (cookie.map(str::to_owned), csrf.map(str::to_owned));
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        let resp = match body {
            Some(b) => agent.run(
                req.header("content-type", "application/json")
                    .body(b.to_string())
                    .unwrap(),
            ),
            None => agent.run(req.body(()).unwrap()),
        }
        .unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = resp.into_body().read_to_string().unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, value, headers)
    })
    .await
    .unwrap()
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl AdminClient {
    pub async fn login(addr: SocketAddr, name: &str) -> AdminClient {
        let (st, v, h) = admin_call(
            addr,
            "POST",
            "/admin/api/login",
            None,
            None,
            Some(json!({"name": name, "password": ADMIN_PASSWORD})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let set = header(&h, "set-cookie").expect("a session cookie");
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
            assert!(set.contains(attr), "{set} lacks {attr}");
        }
        AdminClient {
            addr,
            cookie: set.split(';').next().unwrap().to_owned(),
            csrf: v["csrf"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (st, v, h) = admin_call(self.addr, "GET", path, Some(&self.cookie), None, None).await;
        assert_eq!(header(&h, "cache-control"), Some("no-store"));
        assert_eq!(header(&h, "x-frame-options"), Some("DENY"));
        (st, v)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (st, v, _) = admin_call(
            self.addr,
            "POST",
            path,
            Some(&self.cookie),
            Some(&self.csrf),
            Some(body),
        )
        .await;
        (st, v)
    }
}

/// The events of a Server-Sent Events stream the administrator opens:
/// (event name, data) as they arrive, read on a thread of their own until
/// the receiver is dropped.
pub fn admin_events(
    addr: SocketAddr,
    path: &str,
    cookie: &str,
) -> tokio::sync::mpsc::Receiver<(String, Value)> {
    use std::io::BufRead;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let (url, cookie) = (format!("http://{addr}{path}"), cookie.to_owned());
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let Ok(resp) = agent.get(&url).header("cookie", &cookie).call() else {
            return;
        };
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        let reader = std::io::BufReader::new(resp.into_body().into_reader());
        let mut event = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:") {
                let v = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                if tx.blocking_send((event.clone(), v)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

impl AdminClient {
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let (st, v, _) = admin_call(
            self.addr,
            "PUT",
            path,
            Some(&self.cookie),
            Some(&self.csrf),
            Some(body),
        )
        .await;
        (st, v)
    }
}

/// A GET with the given headers: (status, body as text, headers).
pub async fn admin_call_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<(String, String)>) {
    let url = format!("http://{addr}{path}");
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.get(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let resp = req.call().unwrap();
        let status = resp.status().as_u16();
        let got = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        (status, text, got)
    })
    .await
    .unwrap()
}

/// A GET as the administrator whose cookie this is: (status, headers, text).
pub async fn admin_get_text(
    addr: SocketAddr,
    path: &str,
    cookie: &str,
) -> (u16, Vec<(String, String)>, String) {
    let (st, text, h) = admin_call_with(addr, path, &[("cookie", cookie)]).await;
    (st, h, text)
}
