//! The remote `natter admin` commands about the deployment rather than one
//! account: groups and rooms, the configuration, the log.

use super::{url_escape, AdminOps, Session};
use anyhow::bail;

pub(super) fn act(s: &Session, op: &AdminOps) -> anyhow::Result<()> {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    match op {
        AdminOps::Groups {
            search,
            after,
            limit,
            ..
        } => {
            let q = url_escape(search);
            let v = s.get(&format!(
                "/admin/api/groups?q={q}&after={after}&limit={limit}"
            ))?;
            println!(
                "{:>8}  {:<32} {:<6} {:>8} {:>8}  state",
                "id", "name", "kind", "owner", "members"
            );
            for g in v["groups"].as_array().into_iter().flatten() {
                println!(
                    "{:>8}  {:<32} {:<6} {:>8} {:>8}  {}",
                    g["id"],
                    text(&g["name"]),
                    text(&g["kind"]),
                    g["owner_id"],
                    g["member_count"],
                    if g["dismissed"].as_bool() == Some(true) {
                        "dismissed"
                    } else {
                        "live"
                    }
                );
            }
            if let Some(n) = v["next_after"].as_u64() {
                println!("(more: --after {n})");
            }
        }
        AdminOps::Group { group, after, .. } => {
            let v = s.get(&format!("/admin/api/groups/{group}?after={after}"))?;
            println!("{}", pretty(&v));
        }
        AdminOps::DismissGroup {
            group, reason, yes, ..
        } => {
            if !yes {
                bail!("dismissing group {group} cannot be undone: add --yes");
            }
            s.post(
                &format!("/admin/api/groups/{group}/dismiss"),
                serde_json::json!({ "reason": reason }),
            )?;
            println!("group {group} dismissed");
        }
        AdminOps::RemoveMember { group, user, .. } => {
            let id = s.user(user)?;
            s.post(
                &format!("/admin/api/groups/{group}/members/{id}/remove"),
                serde_json::json!({}),
            )?;
            println!("user {id} removed from group {group}");
        }
        AdminOps::Config { key, .. } => {
            let v = s.get("/admin/api/config")?;
            for k in v["keys"].as_array().into_iter().flatten() {
                let name = text(&k["key"]);
                if !name.starts_with(key.as_str()) {
                    continue;
                }
                println!(
                    "{name} = {}  # {}{}",
                    k["value"],
                    text(&k["source"]),
                    if k["live"].as_bool() == Some(true) {
                        ", live"
                    } else {
                        ""
                    }
                );
            }
        }
        AdminOps::LogLevel { level, .. } => {
            let v = match level {
                Some(l) => s.put("/admin/api/logs/level", serde_json::json!({ "level": l }))?,
                None => s.get("/admin/api/logs/level")?,
            };
            println!("{}", text(&v["level"]));
        }
        AdminOps::Logs {
            level,
            search,
            limit,
            ..
        } => {
            let q = url_escape(search);
            let v = s.get(&format!(
                "/admin/api/logs?level={}&q={q}&limit={limit}",
                url_escape(level)
            ))?;
            for l in v["lines"].as_array().into_iter().flatten() {
                println!(
                    "{} {:<5} {} {} {}",
                    l["ts_ms"],
                    text(&l["level"]).to_uppercase(),
                    text(&l["target"]),
                    text(&l["message"]),
                    text(&l["fields"])
                );
            }
        }
        AdminOps::Trace {
            user,
            minutes,
            show,
            ..
        } => {
            let id = s.user(user)?;
            if *show {
                print!("{}", s.text(&format!("/admin/api/traces/{id}"))?);
            } else {
                let v = s.post(
                    "/admin/api/traces",
                    serde_json::json!({ "user_id": id, "minutes": minutes }),
                )?;
                println!(
                    "tracing user {id} until {} ms since the epoch; then: natter admin trace {user} --show",
                    v["until_ms"]
                );
            }
        }
        _ => unreachable!("account commands are acted on in mod.rs"),
    }
    Ok(())
}
