//! Which node to connect to: a cluster's assignment endpoint
//! (`GET /v1/cluster/assign` on any node's HTTP or HTTPS port) names the
//! node a client should use; a single server names itself. Asked over
//! HTTPS, the answer is used for its TLS addresses (`tcp_tls`, `wss`), so
//! a client that speaks only TLS never connects in the clear.

use crate::{ClientError, ConnectOptions};
use serde::Deserialize;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The node assignment chose.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Assigned {
    pub node_id: String,
    /// Its frame port, `host:port`.
    pub tcp: String,
    /// Its WebSocket port, `host:port` (empty when it has none).
    #[serde(default)]
    pub ws: String,
    /// Its frame port over TLS, `host:port` (empty when it has none).
    #[serde(default)]
    pub tcp_tls: String,
    /// Its WebSocket port over TLS, `host:port` (empty when it has none).
    #[serde(default)]
    pub wss: String,
}

impl Assigned {
    /// The address to connect to: over TLS when `tls` (`tls://` or, with
    /// `ws`, `wss://`), else plain (`host:port` or `ws://`).
    pub fn address(&self, ws: bool, tls: bool) -> Result<String, ClientError> {
        Ok(match (tls, ws) {
            (true, true) if !self.wss.is_empty() => format!("wss://{}", self.wss),
            (true, _) if !self.tcp_tls.is_empty() => format!("tls://{}", self.tcp_tls),
            (true, _) => {
                return Err(ClientError::Assign(format!(
                    "node {} has no TLS address (its listen.tcp_tls and listen.ws_tls are off)",
                    self.node_id
                )))
            }
            (false, true) if !self.ws.is_empty() => format!("ws://{}", self.ws),
            (false, _) => self.tcp.clone(),
        })
    }
}

/// Whether `server` is an assignment endpoint, and whether over HTTPS.
pub(crate) fn endpoint(server: &str) -> Option<bool> {
    if server.starts_with("https://") {
        Some(true)
    } else if server.starts_with("http://") {
        Some(false)
    } else {
        None
    }
}

/// Asks `http` (`http://host:port` of any node) which node to use; `user`
/// (an id or a name) keys the sticky strategy; `avoid` names nodes this
/// client could not reach, passed over while another is live.
pub async fn assign(
    http: &str,
    user: Option<&str>,
    avoid: &[String],
) -> Result<Assigned, ClientError> {
    assign_with(http, user, avoid, &ConnectOptions::default()).await
}

/// [`assign`], also at `https://host:port`, trusting what `options.tls`
/// trusts (as the connections it leads to do).
pub async fn assign_with(
    http: &str,
    user: Option<&str>,
    avoid: &[String],
    options: &ConnectOptions,
) -> Result<Assigned, ClientError> {
    let base = http.trim_end_matches('/');
    let mut query = Vec::new();
    if let Some(u) = user {
        query.push(format!("user={u}"));
    }
    if !avoid.is_empty() {
        query.push(format!("avoid={}", avoid.join(",")));
    }
    let url = if query.is_empty() {
        format!("{base}/v1/cluster/assign")
    } else {
        format!("{base}/v1/cluster/assign?{}", query.join("&"))
    };
    if endpoint(&url) == Some(true) {
        let (status, body) = tokio::time::timeout(TIMEOUT, get_https(&url, options))
            .await
            .map_err(|_| ClientError::Assign(format!("{url}: no answer within {TIMEOUT:?}")))??;
        if status != 200 {
            return Err(ClientError::Assign(format!("{url}: {status}: {body}")));
        }
        return serde_json::from_str(&body).map_err(|e| ClientError::Assign(format!("{url}: {e}")));
    }
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let mut answer = agent
            .get(&url)
            .call()
            .map_err(|e| ClientError::Assign(format!("{url}: {e}")))?;
        let status = answer.status();
        if !status.is_success() {
            let body = answer.body_mut().read_to_string().unwrap_or_default();
            return Err(ClientError::Assign(format!("{url}: {status}: {body}")));
        }
        answer
            .body_mut()
            .read_json::<Assigned>()
            .map_err(|e| ClientError::Assign(format!("{url}: {e}")))
    })
    .await
    .map_err(|e| ClientError::Assign(e.to_string()))?
}

const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read: the assignment is a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// `GET url` over HTTPS (HTTP/1.1, one request, `Connection: close`):
/// the status and the body.
async fn get_https(url: &str, options: &ConnectOptions) -> Result<(u16, String), ClientError> {
    let fail = |why: String| ClientError::Assign(format!("{url}: {why}"));
    let rest = url.trim_start_matches("https://");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:443")
    };
    let (mut stream, _) = crate::conn::tls_connect(&host_port, options).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some((status, body)) = parse_answer(&answer).map_err(fail)? {
            return Ok((status, body));
        }
        if answer.len() > MAX_ANSWER {
            return Err(fail(format!("an answer over {MAX_ANSWER} bytes")));
        }
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            // A peer that closes without TLS's close_notify: what came is all.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    match parse_answer(&answer).map_err(fail)? {
        Some(a) => Ok(a),
        None => Err(fail("the answer was cut short".into())),
    }
}

/// A whole HTTP/1.1 answer in `raw`: its status and body (by
/// Content-Length, or chunked); `None` while more is needed.
fn parse_answer(raw: &[u8]) -> Result<Option<(u16, String)>, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head:.80}"))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let body = &raw[end + 4..];
    let body = if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| format!("Content-Length {len}"))?;
        if body.len() < len {
            return Ok(None);
        }
        body[..len].to_vec()
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        match dechunk(body)? {
            Some(b) => b,
            None => return Ok(None),
        }
    } else {
        return Ok(None); // until the connection closes
    };
    Ok(Some((status, String::from_utf8_lossy(&body).into_owned())))
}

/// A chunked body, once its last chunk is in.
fn dechunk(mut raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&raw[..eol]).map_err(|e| e.to_string())?;
        let size = size.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| format!("chunk size {size}"))?;
        if size == 0 {
            return Ok(Some(out));
        }
        let data = &raw[eol + 2..];
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        raw = &data[size + 2..];
    }
}

/// A server address as given to a tool: `http://...` is asked for a node
/// (its frame address, or with `ws` its `ws://` address), `https://...`
/// likewise for its TLS addresses (`tls://`, `wss://`); anything else is
/// used as it is.
pub async fn resolve(server: &str, user: Option<&str>, ws: bool) -> Result<String, ClientError> {
    resolve_with(server, user, ws, &ConnectOptions::default()).await
}

/// [`resolve`], trusting for `https://` what `options.tls` trusts.
pub async fn resolve_with(
    server: &str,
    user: Option<&str>,
    ws: bool,
    options: &ConnectOptions,
) -> Result<String, ClientError> {
    let Some(tls) = endpoint(server) else {
        return Ok(server.to_owned());
    };
    assign_with(server, user, &[], options)
        .await?
        .address(ws, tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_whole_by_length_or_chunks() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n{\"a\"";
        assert_eq!(parse_answer(ok).unwrap(), Some((200, "{\"a\"".into())));
        assert_eq!(parse_answer(&ok[..ok.len() - 1]).unwrap(), None);
        let chunked =
            b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked).unwrap(), Some((503, "abcde".into())));
        assert_eq!(parse_answer(&chunked[..60]).unwrap(), None);
        assert!(parse_answer(b"nonsense\r\n\r\n").is_err());
    }
}
