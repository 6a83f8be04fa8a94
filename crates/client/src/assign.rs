//! Which node to connect to: a cluster's assignment endpoint
//! (`GET /v1/cluster/assign` on any node's HTTP port) names the node a
//! client should use; a single server names itself.

use crate::ClientError;
use serde::Deserialize;
use std::time::Duration;

/// The node assignment chose.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Assigned {
    pub node_id: String,
    /// Its frame port, `host:port`.
    pub tcp: String,
    /// Its WebSocket port, `host:port` (empty when it has none).
    #[serde(default)]
    pub ws: String,
}

/// Asks `http` (`http://host:port` of any node) which node to use; `user`
/// (an id or a name) keys the sticky strategy; `avoid` names nodes this
/// client could not reach, passed over while another is live.
pub async fn assign(
    http: &str,
    user: Option<&str>,
    avoid: &[String],
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
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
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

/// A server address as given to a tool: `http://...` is asked for a node
/// (its frame address, or with `ws` its `ws://` address); anything else is
/// used as it is.
pub async fn resolve(server: &str, user: Option<&str>, ws: bool) -> Result<String, ClientError> {
    if !server.starts_with("http://") {
        return Ok(server.to_owned());
    }
    let a = assign(server, user, &[]).await?;
    Ok(if ws && !a.ws.is_empty() {
        format!("ws://{}", a.ws)
    } else {
        a.tcp
    })
}
