//! A logged-in session on a running server's admin API (cookie and CSRF
//! token, as the console holds them), for the remote `natter admin`
//! commands, and the small parsers they share.

use super::{Remote, ADMIN_PASSWORD_ENV};
use crate::cli::auth::password;
use anyhow::{bail, Context};

/// A logged-in admin API session.
pub(super) struct Session {
    base: String,
    agent: ureq::Agent,
    cookie: String,
    csrf: String,
}

type Reply = ureq::http::Response<ureq::Body>;

fn json(r: Reply, what: &str) -> anyhow::Result<serde_json::Value> {
    let status = r.status();
    let text = r.into_body().read_to_string().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        let message = v["message"].as_str().unwrap_or(&text);
        bail!("{what}: {status} {message}");
    }
    Ok(v)
}

impl Session {
    pub(super) fn open(r: &Remote) -> anyhow::Result<Session> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let base = r.server.trim_end_matches('/').to_owned();
        let pw = match std::env::var(ADMIN_PASSWORD_ENV) {
            Ok(p) => p,
            Err(_) => password(&format!("password for {}: ", r.admin))?
                .context("no password: set NATTER_ADMIN_PASSWORD or run on a terminal")?,
        };
        let reply = agent
            .post(format!("{base}/admin/api/login"))
            .send_json(serde_json::json!({"name": r.admin, "password": pw}))
            .with_context(|| format!("cannot reach {base}"))?;
        let cookie = reply
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned);
        let v = json(reply, "login")?;
        Ok(Session {
            base,
            agent,
            cookie: cookie.context("the server set no session cookie")?,
            csrf: v["csrf"].as_str().unwrap_or_default().to_owned(),
        })
    }

    pub(super) fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .call()?;
        json(r, path)
    }

    /// A body that is not JSON (a download).
    pub(super) fn text(&self, path: &str) -> anyhow::Result<String> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .call()?;
        let status = r.status();
        let text = r.into_body().read_to_string().unwrap_or_default();
        if !status.is_success() {
            bail!("{path}: {status} {text}");
        }
        Ok(text)
    }

    pub(super) fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .send_json(body)?;
        json(r, path)
    }

    pub(super) fn put(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let r = self
            .agent
            .put(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .send_json(body)?;
        json(r, path)
    }

    pub(super) fn delete(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let r = self
            .agent
            .delete(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .call()?;
        json(r, path)
    }

    /// A user id from an id or a username.
    pub(super) fn user(&self, user: &str) -> anyhow::Result<u64> {
        if let Ok(id) = user.parse() {
            return Ok(id);
        }
        let q: String = user
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
            .collect();
        let mut after = 0;
        loop {
            let page = self.get(&format!("/admin/api/users?q={q}&after={after}&limit=500"))?;
            for u in page["users"].as_array().into_iter().flatten() {
                if u["username"].as_str() == Some(&user.to_ascii_lowercase()) {
                    return u["id"].as_u64().context("a user without an id");
                }
            }
            match page["next_after"].as_u64() {
                Some(n) => after = n,
                None => bail!("no user named {user}"),
            }
        }
    }

    pub(super) fn close(self) {
        let _ = self.post("/admin/api/logout", serde_json::json!({}));
    }
}

pub(super) fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `90`, `90s`, `30m`, `12h`, `7d` as seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n.parse().with_context(|| format!("not a duration: {s}"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("not a duration: {s} (use s, m, h or d)"),
    };
    Ok(n.saturating_mul(mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("7d").unwrap(), 604_800);
        assert!(parse_duration("7w").is_err());
        assert!(parse_duration("x").is_err());
    }
}
