//! Bench accounts and their tokens: registered and logged in once, cached in
//! a file so later runs (and storms) resume without passwords.

use crate::{Common, DEVICE, PASSWORD};
use natter_client::{pb::ErrorCode, Client};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

pub fn username(prefix: &str, i: usize) -> String {
    format!("{prefix}{i}")
}

pub fn load(c: &Common) -> HashMap<String, String> {
    std::fs::read_to_string(&c.tokens)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// Where the client counts whose dm pairs are already friends are kept,
/// beside the tokens.
fn paired_path(c: &Common) -> std::path::PathBuf {
    let mut p = c.tokens.clone().into_os_string();
    p.push(".paired");
    p.into()
}

/// Makes sure every bench user exists and has a working token and, with
/// `dm_pairs`, that the pairs of the dm scenario for this client count are
/// friends (a run with another count pairs other users).
pub async fn ensure(c: &Common, dm_pairs: bool) -> anyhow::Result<HashMap<String, String>> {
    let mut tokens = load(c);
    let server = c.setup_server().await?;
    let mut paired: Vec<usize> = std::fs::read_to_string(paired_path(c))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    // Tokens from another server (or a wiped one) are all stale: check one.
    if let Some(t) = tokens.get(&username(&c.user_prefix, 0)) {
        let mut probe = Client::connect_with(&server, crate::connect_options()).await?;
        if probe.resume(t, DEVICE).await.is_err() {
            tokens.clear();
        }
    }
    if tokens.is_empty() {
        paired.clear();
    }
    let missing: Vec<String> = (0..c.clients)
        .map(|i| username(&c.user_prefix, i))
        .filter(|u| !tokens.contains_key(u))
        .collect();
    if !missing.is_empty() {
        register(&server, &mut tokens, &missing).await?;
        std::fs::write(&c.tokens, serde_json::to_string(&tokens)?)?;
    }
    if dm_pairs && !paired.contains(&c.clients) {
        befriend_pairs(c, &server, &tokens).await?;
        paired.push(c.clients);
        std::fs::write(paired_path(c), serde_json::to_string(&paired)?)?;
    }
    Ok(tokens)
}

/// Registers (or finds) the missing users and logs them in.
async fn register(
    server: &str,
    tokens: &mut HashMap<String, String>,
    missing: &[String],
) -> anyhow::Result<()> {
    eprintln!("setting up {} bench accounts...", missing.len());
    let permits = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for name in missing.iter().cloned() {
        let permit = permits.clone().acquire_owned().await?;
        let server = server.to_owned();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let mut client = Client::connect_with(&server, crate::connect_options()).await?;
            match client.register(&name, PASSWORD).await {
                Ok(()) => {}
                Err(e) if e.code() == Some(ErrorCode::UsernameTaken) => {}
                Err(e) => return Err(anyhow::anyhow!("register {name}: {e}")),
            }
            let ok = client
                .login(&name, PASSWORD, DEVICE)
                .await
                .map_err(|e| anyhow::anyhow!("login {name}: {e}"))?;
            Ok::<_, anyhow::Error>((name, ok.token))
        }));
    }
    for t in tasks {
        let (name, token) = t.await??;
        tokens.insert(name, token);
    }
    Ok(())
}

/// The dm scenario pairs user k with user k + clients/2; servers allow 1:1
/// messages between friends only by default, so the pairs become friends
/// (pairs that already are are left as they are).
async fn befriend_pairs(
    c: &Common,
    server: &str,
    tokens: &HashMap<String, String>,
) -> anyhow::Result<()> {
    let half = c.clients / 2;
    eprintln!("making {half} dm pairs friends...");
    let pairs: Vec<(String, String)> = (0..half)
        .map(|k| {
            (
                username(&c.user_prefix, k),
                username(&c.user_prefix, k + half),
            )
        })
        .collect();
    let permits = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for (a, b) in pairs {
        let permit = permits.clone().acquire_owned().await?;
        let server = server.to_owned();
        let (ta, tb) = (tokens[&a].clone(), tokens[&b].clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let mut ca = Client::connect_with(&server, crate::connect_options()).await?;
            ca.resume(&ta, DEVICE).await?;
            let mut cb = Client::connect_with(&server, crate::connect_options()).await?;
            let me = cb.resume(&tb, DEVICE).await?;
            match ca.befriend(&cb, me.user_id).await {
                Err(e) if e.code() != Some(ErrorCode::InvalidArgument) => {
                    Err(anyhow::anyhow!("befriend {a} and {b}: {e}"))
                }
                _ => Ok(()),
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
