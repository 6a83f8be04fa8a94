//! The OpenAPI document against the server it describes: every operation
//! is called many times with generated inputs (well-formed by the schema,
//! and mangled), as a user with a real session; no answer may be a 5xx,
//! and every status must be one the document lists for that operation.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    fn int(&mut self) -> i64 {
        match self.below(6) {
            0 => 0,
            1 => 1,
            2 => self.below(5) as i64 + 1,
            3 => -(self.below(1000) as i64),
            4 => i64::MAX,
            _ => self.below(1 << 40) as i64,
        }
    }

    fn text(&mut self) -> String {
        match self.below(7) {
            0 => String::new(),
            1 => "alice".into(),
            2 => "x".repeat(self.below(300) as usize),
            3 => "é\u{0}\u{7f}😀 ".into(),
            4 => "OPEN".into(),
            5 => "TEXT".into(),
            _ => format!("v{}", self.below(1000)),
        }
    }

    fn any(&mut self, depth: u32) -> Value {
        match self.below(if depth > 2 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => json!(self.chance(50)),
            2 => json!(self.int()),
            3 => json!(self.text()),
            4 => Value::Array((0..self.below(3)).map(|_| self.any(depth + 1)).collect()),
            _ => {
                let mut m = Map::new();
                for _ in 0..self.below(3) {
                    let k = self.text();
                    m.insert(k, self.any(depth + 1));
                }
                Value::Object(m)
            }
        }
    }
}

/// Resolves `$ref`s into the document's schemas.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => s,
    }
}

/// A value for schema `s`: usually of its shape, sometimes not.
fn value(doc: &Value, s: &Value, g: &mut Gen, depth: u32) -> Value {
    let s = resolve(doc, s);
    if g.chance(8) || depth > 4 {
        return g.any(depth);
    }
    if let Some(choices) = s.get("oneOf").or(s.get("anyOf")).and_then(Value::as_array) {
        let pick = &choices[g.below(choices.len() as u64) as usize];
        return value(doc, pick, g, depth + 1);
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        return e[g.below(e.len() as u64) as usize].clone();
    }
    let ty = match &s["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts[g.below(ts.len() as u64) as usize]
            .as_str()
            .unwrap_or("null")
            .to_owned(),
        _ => "object".into(),
    };
    match ty.as_str() {
        "integer" | "number" => json!(g.int()),
        "boolean" => json!(g.chance(50)),
        "string" => json!(g.text()),
        "null" => Value::Null,
        "array" => Value::Array(
            (0..g.below(4))
                .map(|_| value(doc, &s["items"], g, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            let required: Vec<&str> = s["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(props) = s["properties"].as_object() {
                for (k, ps) in props {
                    if required.contains(&k.as_str()) && !g.chance(5) || g.chance(50) {
                        m.insert(k.clone(), value(doc, ps, g, depth + 1));
                    }
                }
            }
            Value::Object(m)
        }
    }
}

/// A path parameter: usually a small id, sometimes anything.
fn segment(g: &mut Gen) -> String {
    match g.below(6) {
        0 => "0".into(),
        1 => "18446744073709551615".into(),
        2 => "abc".into(),
        3 => "00000000000000000000000000000000".into(),
        _ => (g.below(4) + 1).to_string(),
    }
}

fn query(doc: &Value, op: &Value, g: &mut Gen) -> String {
    let mut q = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        if p["in"] != "query" || g.chance(40) {
            continue;
        }
        let v = match value(doc, &p["schema"], g, 0) {
            Value::String(s) => s,
            v => v.to_string(),
        };
        let v: String = v
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        q.push(format!("{}={v}", p["name"].as_str().unwrap()));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

async fn call(
    addr: SocketAddr,
    method: String,
    path: String,
    token: String,
    body: Option<String>,
) -> u16 {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .allow_non_standard_methods(true)
            .build()
            .into();
        let mut req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(format!("http://{addr}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .header("tus-resumable", "1.0.0");
        let resp = match body {
            Some(b) => agent.run(
                req.header("content-type", "application/json")
                    .body(b)
                    .unwrap(),
            ),
            None => {
                req = req.header("upload-length", "10");
                agent.run(req.body(()).unwrap())
            }
        };
        resp.map(|r| r.status().as_u16()).unwrap_or(0)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn generated_requests_get_no_5xx_and_only_documented_statuses() {
    let server = TestServer::start().await;
    let a = server.http;
    // Someone to act as, with a friend, a group and a message to act on.
    let (alice, login) = server.user("alice").await;
    let (_bob, _) = server.user("bob").await;
    alice.send_text(2, "seed", "hello").await.unwrap();
    let token = login.token.clone();
    let doc: Value = serde_json::from_str(&http_get(a, "/v1/openapi.json").await.1).unwrap();
    let paths = doc["paths"].as_object().unwrap().clone();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut calls = 0;
    let mut undocumented = Vec::new();
    for (path, ops) in &paths {
        for (method, op) in ops.as_object().unwrap() {
            if method == "parameters" || path == "/v1/logout" || path == "/v1/events" {
                // Logout would end the session the rest runs on; the event
                // stream does not end by itself (tests/events.rs covers it).
                continue;
            }
            let documented: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            for _ in 0..12 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let mut g = Gen(seed | 1);
                let concrete: String = path
                    .split('/')
                    .map(|s| {
                        if s.starts_with('{') {
                            segment(&mut g)
                        } else {
                            s.to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                let body = op["requestBody"]["content"]["application/json"]["schema"]
                    .as_object()
                    .map(|_| {
                        let s = &op["requestBody"]["content"]["application/json"]["schema"];
                        value(&doc, s, &mut g, 0).to_string()
                    });
                let url = format!("{concrete}{}", query(&doc, op, &mut g));
                let status = call(
                    a,
                    method.to_uppercase(),
                    url.clone(),
                    token.clone(),
                    body.clone(),
                )
                .await;
                calls += 1;
                assert!(
                    status != 0 && status < 500,
                    "{method} {url} with {body:?} (seed {seed}): {status}"
                );
                if !documented.iter().any(|d| *d == &status.to_string()) {
                    undocumented.push(format!(
                        "{method} {path}: {status} (seed {seed}: {url} with {body:?}); documented {documented:?}"
                    ));
                }
            }
        }
    }
    assert!(calls > 300, "{calls} calls");
    assert!(
        undocumented.is_empty(),
        "answers the document does not list:\n{}",
        undocumented.join("\n")
    );
}
