//! `natter admin ...` for people operating a deployment: `create-admin`
//! makes an administrator in the configured store directly (argon2id, the
//! server's parameters); the account commands (`users`, `user`, `disable`,
//! `enable`, `ban`, `logout`, `reset-password`, `delete`, `audit`) and the
//! deployment's (`groups`, `group`, `dismiss-group`, `remove-member`,
//! `config`, `log-level`, `logs`, `trace`, in `deployment.rs`) go through a
//! running server's admin API, so they take effect at once on every node and
//! are in the audit log under the administrator's name.

mod deployment;
mod session;

use super::auth::password;
use crate::config::Config;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
pub use session::parse_duration;
use session::{url_escape, Session};
use std::path::PathBuf;

/// The administrator's password, when not typed at a prompt.
pub const ADMIN_PASSWORD_ENV: &str = "NATTER_ADMIN_PASSWORD";

#[derive(Subcommand, Debug)]
pub enum AdminOps {
    /// Make an administrator (or, with --replace, give one a new password
    /// and role). The password comes from NATTER_ADMIN_PASSWORD or a prompt.
    /// Writes to the configured store: with SQLite, stop the server first.
    CreateAdmin {
        /// The administrator's name (1-64 of a-z, 0-9, '_', '.', '-', '@').
        #[arg(long)]
        name: String,
        /// admin (may change anything) or viewer (may only look).
        #[arg(long, default_value = "admin")]
        role: String,
        /// Replace an administrator of that name (its sessions end).
        #[arg(long)]
        replace: bool,
        /// The server's configuration file (its [store] and [password]).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The server's data directory (its SQLite database).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// List accounts, by id; --search filters by name or address.
    Users {
        #[command(flatten)]
        server: Remote,
        /// Text the name or email address contains.
        #[arg(long, default_value = "")]
        search: String,
        /// The last id of the page before.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (up to 500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one account: sessions, groups, last login.
    User {
        #[command(flatten)]
        server: Remote,
        /// A user id, or a username.
        user: String,
    },
    /// Disable an account until enabled: its sessions end at once.
    Disable {
        #[command(flatten)]
        server: Remote,
        /// A user id, or a username.
        user: String,
        /// Why (kept with the account and in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Enable an account (ending a ban too).
    Enable {
        #[command(flatten)]
        server: Remote,
        /// A user id, or a username.
        user: String,
    },
    /// Ban an account for a time (e.g. 30m, 12h, 7d).
    Ban {
        #[command(flatten)]
        server: Remote,
        /// A user id, or a username.
        user: String,
        /// How long: 90 (seconds), 30m, 12h, 7d.
        #[arg(long = "for")]
        duration: String,
        /// Why (kept with the account and in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// End every session of an account.
    Logout {
        #[command(flatten)]
        server: Remote,
        /// A user id, or a username.
        user: String,
    },
    /// Set a new random password (printed) and end every session.
    ResetPassword {
        #[command(flatten)]
        server: Remote,
        /// A user id, or a username.
        user: String,
    },
    /// Delete an account and its data (sessions, friends, requests, blocks,
    /// mentions, uploads; its name, password and address erased).
    Delete {
        #[command(flatten)]
        server: Remote,
        /// A user id, or a username.
        user: String,
        /// Yes, delete it: there is no undo.
        #[arg(long)]
        yes: bool,
    },
    /// What administrators did, newest first.
    Audit {
        #[command(flatten)]
        server: Remote,
        /// The newest this many lines.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// List groups and rooms (dismissed ones too), by id; --search by name.
    Groups {
        #[command(flatten)]
        server: Remote,
        /// Text the name contains.
        #[arg(long, default_value = "")]
        search: String,
        /// The last id of the page before.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (up to 500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one group or room with its members and their roles.
    Group {
        #[command(flatten)]
        server: Remote,
        /// The group's conversation id.
        group: u64,
        /// The last member's user id of the page before.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Dismiss a group or room: its members hear it, nobody can send to it.
    DismissGroup {
        #[command(flatten)]
        server: Remote,
        /// The group's conversation id.
        group: u64,
        /// Why (kept in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
        /// Yes, dismiss it: there is no undo.
        #[arg(long)]
        yes: bool,
    },
    /// Remove a member (anyone but the owner) from a group or room.
    RemoveMember {
        #[command(flatten)]
        server: Remote,
        /// The group's conversation id.
        group: u64,
        /// A user id, or a username.
        user: String,
    },
    /// The effective configuration: every key, its value (secrets
    /// redacted), where it came from, and whether it changes live.
    Config {
        #[command(flatten)]
        server: Remote,
        /// Only keys that start with this (e.g. `store.`).
        #[arg(long, default_value = "")]
        key: String,
    },
    /// Show the log level, or set it at once (e.g. `debug`, or
    /// `natter_gateway=debug,info`) until the next change or restart.
    LogLevel {
        #[command(flatten)]
        server: Remote,
        /// The new level filter; without it, the level now is shown.
        level: Option<String>,
    },
    /// Recent log lines from the server's memory, oldest first.
    Logs {
        #[command(flatten)]
        server: Remote,
        /// The least severe level shown: error, warn, info, debug, trace.
        #[arg(long, default_value = "info")]
        level: String,
        /// Text the line contains (any case).
        #[arg(long, default_value = "")]
        search: String,
        /// The newest this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Keep one user's debug lines for 1-10 minutes, whatever the level;
    /// with --show, print what was kept (NDJSON).
    Trace {
        #[command(flatten)]
        server: Remote,
        /// A user id, or a username.
        user: String,
        /// How long, 1 to 10 minutes.
        #[arg(long, default_value_t = 5)]
        minutes: u64,
        /// Print the lines kept instead of starting a trace.
        #[arg(long)]
        show: bool,
    },
}

/// Where the admin API is, and who logs in to it.
#[derive(Args, Debug)]
pub struct Remote {
    /// The server's admin base URL (listen.admin, or listen.http on loopback).
    #[arg(long, default_value = "http://127.0.0.1:7780")]
    pub server: String,
    /// The administrator to log in as (default: NATTER_ADMIN).
    #[arg(long, env = "NATTER_ADMIN")]
    pub admin: String,
}

pub async fn run(op: AdminOps) -> anyhow::Result<()> {
    match op {
        AdminOps::CreateAdmin {
            name,
            role,
            replace,
            config,
            data_dir,
        } => create_admin(&name, &role, replace, config, data_dir).await,
        op => tokio::task::spawn_blocking(move || remote(op))
            .await
            .context("the admin command failed")?,
    }
}

async fn create_admin(
    name: &str,
    role: &str,
    replace: bool,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    use figment::providers::Serialized;
    let role =
        natter_service::model::AdminRole::parse(role).context("--role is admin or viewer")?;
    let name = natter_service::admin::check_admin_name(name)?;
    let mut figment = Config::figment(config.as_deref());
    if let Some(d) = data_dir {
        figment = figment.merge(Serialized::default("data_dir", d));
    }
    let config = Config::from_figment(figment)?;
    let pw = match std::env::var(ADMIN_PASSWORD_ENV) {
        Ok(p) => p,
        Err(_) => password("new administrator password: ")?
            .context("no password: set NATTER_ADMIN_PASSWORD or run on a terminal")?,
    };
    if pw.chars().count() < 10 {
        bail!("an administrator's password has at least 10 characters");
    }
    let hash = natter_service::hash_password(&config.password, &pw)?;
    let store = crate::server::assemble::open_store_alone(&config).await?;
    let made = store
        .put_admin(&name, &hash, role, natter_runtime::clock::now_ms(), replace)
        .await
        .map_err(|e| match e {
            natter_store::StoreError::Conflict(_) => {
                anyhow::anyhow!("an administrator named {name} exists (--replace to change it)")
            }
            e => anyhow::anyhow!("cannot store the administrator: {e}"),
        })?;
    let cli = natter_service::admin::Actor::cli();
    let action = if made {
        "admin.create"
    } else {
        "admin.replace"
    };
    store
        .audit(natter_service::model::NewAudit {
            at_ms: natter_runtime::clock::now_ms(),
            actor: cli.name,
            address: cli.address,
            action: action.into(),
            target: format!("admin:{name}"),
            detail: format!("role={}", role.name()),
            ok: true,
        })
        .await?;
    store.close().await;
    println!(
        "{} administrator {name} ({})",
        if made { "made" } else { "replaced" },
        role.name()
    );
    Ok(())
}

fn remote(op: AdminOps) -> anyhow::Result<()> {
    let server = match &op {
        AdminOps::CreateAdmin { .. } => unreachable!("create-admin runs locally"),
        AdminOps::Users { server, .. }
        | AdminOps::User { server, .. }
        | AdminOps::Disable { server, .. }
        | AdminOps::Enable { server, .. }
        | AdminOps::Ban { server, .. }
        | AdminOps::Logout { server, .. }
        | AdminOps::ResetPassword { server, .. }
        | AdminOps::Delete { server, .. }
        | AdminOps::Audit { server, .. }
        | AdminOps::Groups { server, .. }
        | AdminOps::Group { server, .. }
        | AdminOps::DismissGroup { server, .. }
        | AdminOps::RemoveMember { server, .. }
        | AdminOps::Config { server, .. }
        | AdminOps::LogLevel { server, .. }
        | AdminOps::Logs { server, .. }
        | AdminOps::Trace { server, .. } => server,
    };
    let s = Session::open(server)?;
    let out = act(&s, &op);
    s.close();
    out
}

fn act(s: &Session, op: &AdminOps) -> anyhow::Result<()> {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    match op {
        AdminOps::Users {
            search,
            after,
            limit,
            ..
        } => {
            let q: String = url_escape(search);
            let v = s.get(&format!(
                "/admin/api/users?q={q}&after={after}&limit={limit}"
            ))?;
            println!("{:>8}  {:<32} {:<10} email", "id", "username", "state");
            for u in v["users"].as_array().into_iter().flatten() {
                let state = match (u["disabled"].as_bool(), u["banned_until_ms"].as_i64()) {
                    (Some(true), Some(_)) => "banned",
                    (Some(true), None) => "disabled",
                    _ => "active",
                };
                println!(
                    "{:>8}  {:<32} {:<10} {}",
                    u["id"],
                    u["username"].as_str().unwrap_or(""),
                    state,
                    u["email"].as_str().unwrap_or("")
                );
            }
            if let Some(n) = v["next_after"].as_u64() {
                println!("(more: --after {n})");
            }
        }
        AdminOps::User { user, .. } => {
            let id = s.user(user)?;
            println!("{}", pretty(&s.get(&format!("/admin/api/users/{id}"))?));
        }
        AdminOps::Disable { user, reason, .. } => {
            let id = s.user(user)?;
            s.post(
                &format!("/admin/api/users/{id}/disable"),
                serde_json::json!({ "reason": reason }),
            )?;
            println!("user {id} disabled; its sessions ended");
        }
        AdminOps::Enable { user, .. } => {
            let id = s.user(user)?;
            s.post(
                &format!("/admin/api/users/{id}/enable"),
                serde_json::json!({}),
            )?;
            println!("user {id} enabled");
        }
        AdminOps::Ban {
            user,
            duration,
            reason,
            ..
        } => {
            let seconds = parse_duration(duration)?;
            let id = s.user(user)?;
            let v = s.post(
                &format!("/admin/api/users/{id}/ban"),
                serde_json::json!({ "seconds": seconds, "reason": reason }),
            )?;
            println!(
                "user {id} banned until {} ms since the epoch",
                v["banned_until_ms"]
            );
        }
        AdminOps::Logout { user, .. } => {
            let id = s.user(user)?;
            let v = s.post(
                &format!("/admin/api/users/{id}/logout"),
                serde_json::json!({}),
            )?;
            println!("user {id}: {} sessions ended", v["sessions"]);
        }
        AdminOps::ResetPassword { user, .. } => {
            let id = s.user(user)?;
            let v = s.post(
                &format!("/admin/api/users/{id}/password"),
                serde_json::json!({}),
            )?;
            println!(
                "user {id}: new password {}",
                v["password"].as_str().unwrap_or("")
            );
        }
        AdminOps::Delete { user, yes, .. } => {
            if !yes {
                bail!("deleting {user} cannot be undone: add --yes");
            }
            let id = s.user(user)?;
            let v = s.delete(&format!("/admin/api/users/{id}"))?;
            println!(
                "user {id} deleted: {} sessions ended, {} uploads deleted",
                v["sessions"], v["uploads"]
            );
        }
        AdminOps::Audit { limit, .. } => {
            let v = s.get(&format!("/admin/api/audit?limit={limit}"))?;
            for l in v["lines"].as_array().into_iter().flatten() {
                println!(
                    "{:>6} {} {:<16} {:<15} {:<22} {:<12} {} {}",
                    l["id"],
                    l["at_ms"],
                    l["actor"].as_str().unwrap_or(""),
                    l["address"].as_str().unwrap_or(""),
                    l["action"].as_str().unwrap_or(""),
                    l["target"].as_str().unwrap_or(""),
                    if l["ok"].as_bool() == Some(true) {
                        "ok"
                    } else {
                        "REFUSED"
                    },
                    l["detail"].as_str().unwrap_or("")
                );
            }
        }
        AdminOps::CreateAdmin { .. } => unreachable!("create-admin runs locally"),
        op => return deployment::act(s, op),
    }
    Ok(())
}
