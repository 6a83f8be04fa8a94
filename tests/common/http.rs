//! JSON over HTTP as a client sends it, for the tests of the REST API.

use super::PASSWORD;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// One HTTP request with a real client: (status, JSON body or Null, the
/// Retry-After header).
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let (method, url, token) = (
        method.to_owned(),
        format!("http://{addr}{path}"),
        token.map(str::to_owned),
    );
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = match body {
            Some(b) => agent
                .run(
                    req.header("content-type", "application/json")
                        .body(b.to_string())
                        .unwrap(),
                )
                .unwrap(),
            None => agent.run(req.body(()).unwrap()).unwrap(),
        };
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = resp.into_body().read_to_string().unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value, retry)
    })
    .await
    .unwrap()
}

/// Registers `name` and logs in on device "web": its id and token.
pub async fn register_and_login(addr: SocketAddr, name: &str) -> (u64, String) {
    let (st, r, _) = call(
        addr,
        "POST",
        "/v1/register",
        None,
        Some(json!({"username": name, "password": PASSWORD})),
    )
    .await;
    assert_eq!(st, 201, "{r}");
    let (st, l, _) = call(
        addr,
        "POST",
        "/v1/login",
        None,
        Some(json!({"username": name, "password": PASSWORD, "device_id": "web"})),
    )
    .await;
    assert_eq!(st, 200, "{l}");
    (
        l["user_id"].as_u64().unwrap(),
        l["token"].as_str().unwrap().to_owned(),
    )
}
