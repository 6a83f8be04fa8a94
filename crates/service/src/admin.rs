//! Operating a deployment, the one API every admin edge calls (the admin
//! console's REST API, `natter admin ...`): administrators log in apart from
//! chat users (argon2id, throttled like a login), a viewer only looks, and
//! every change an administrator makes, or is refused, is written to the
//! audit log. Barring an account or ending its sessions closes whatever it
//! holds open at once, on every node (an `Event::Revoked`). Groups are
//! found and looked at whole, and changed as the server's operators (the
//! group rules' `GroupActor::Operator`): members hear it as from the owner
//! and see that an administrator of the server did it.

use crate::{now_ms, Event, RevokeReason, Service, ServiceError, Tokens};
use natter_domain::{
    AccountDetail, AccountSummary, AdminRole, AuditRecord, Bar, ConversationId, GroupAction,
    GroupRecord, MemberRecord, NewAudit, SessionId, UserId,
};
use natter_runtime::clock::Instant;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// How long an administrator's session lasts without logging in again.
pub const ADMIN_SESSION_MS: i64 = 8 * 3600 * 1000;
/// The longest ban, and the longest reason given for one.
pub const MAX_BAN_MS: i64 = 100 * 365 * 24 * 3600 * 1000;
pub const MAX_REASON_BYTES: usize = 500;
/// The most accounts or audit lines one page holds.
pub const MAX_ADMIN_PAGE: usize = 500;
/// The most members one look at a group shows.
pub const MAX_GROUP_MEMBERS_PAGE: usize = 200;

/// Who does an administrative action, and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: AdminRole,
    /// An address, or `cli`.
    pub address: String,
}

impl Actor {
    /// The command line on this machine: it holds the database, so it may
    /// do anything.
    pub fn cli() -> Actor {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        Actor {
            name: format!("cli:{user}"),
            role: AdminRole::Admin,
            address: "cli".into(),
        }
    }
}

/// An administrator logged in: the token goes in a cookie, the CSRF token
/// in every change's header.
#[derive(Clone, Debug)]
pub struct AdminLogin {
    pub actor: Actor,
    pub token: String,
    pub csrf: String,
    pub expires_at_ms: i64,
}

/// The CSRF token of an administrator's session: derived from its token,
/// so it needs no storage, and useless without the cookie.
pub fn admin_csrf(token: &str) -> String {
    let d = Sha256::digest(format!("natter-admin-csrf\0{token}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// An account as an administrator sees it, with whether it is online.
#[derive(Clone, Debug)]
pub struct AccountView {
    pub detail: AccountDetail,
    /// `None` when the directory could not be asked.
    pub online: Option<bool>,
}

fn throttle_key(name: &str) -> String {
    let mut key = format!("admin:{}", name.trim().to_lowercase());
    let mut end = key.len().min(70);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key.truncate(end);
    key
}

/// Administrator names: 1-64 of a-z, 0-9, '_', '.', '-', '@'.
pub fn check_admin_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim().to_ascii_lowercase();
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-@".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(ServiceError::InvalidArgument(
            "an administrator's name is 1-64 of a-z, 0-9, '_', '.', '-', '@'".into(),
        ))
    }
}

impl Service {
    /// Checks an administrator's password and opens a session. Throttled
    /// as a user's login is (per name and per address), and logged in the
    /// audit log either way.
    pub async fn admin_login(
        &self,
        name: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<AdminLogin, ServiceError> {
        let throttles = &self.inner.throttles;
        let key = throttle_key(name);
        let refused = |e: ServiceError| {
            let actor = Actor {
                name: name.chars().take(64).collect(),
                role: AdminRole::Viewer,
                address: from.to_string(),
            };
            (actor, e)
        };
        if let Err(e) = throttles.before_password(&key, Some(from), Instant::now()) {
            let (actor, e) = refused(e);
            self.audit(&actor, "admin.login", "", &e.to_string(), false)
                .await;
            return Err(e);
        }
        let record = match check_admin_name(name) {
            Ok(n) => self.inner.store.admin_by_name(&n).await,
            Err(_) => Ok(None),
        };
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                throttles.not_looked_up(&key, Some(from), Instant::now());
                return Err(e.into());
            }
        };
        let source = crate::password::Source::stranger(Some(from));
        let hash = record.as_ref().map(|r| r.password_hash.clone());
        let ok = match self
            .inner
            .hasher
            .verify(password.to_owned(), hash, source)
            .await
        {
            Ok(ok) => ok,
            Err(e) => {
                throttles.not_checked(Some(from), Instant::now());
                return Err(e);
            }
        };
        let Some(admin) = record.filter(|_| ok) else {
            metrics::counter!("natter_admin_login_failures_total").increment(1);
            let (actor, e) = refused(ServiceError::BadCredentials);
            self.audit(&actor, "admin.login", "", "wrong name or password", false)
                .await;
            return Err(e);
        };
        throttles.password_right(&key, Some(from), Instant::now());
        let token = Tokens::generate()?;
        let now = now_ms();
        let expires_at_ms = now + ADMIN_SESSION_MS;
        self.inner
            .store
            .create_admin_session(admin.id, Tokens::hash(&token), now, expires_at_ms)
            .await?;
        let actor = Actor {
            name: admin.name,
            role: admin.role,
            address: from.to_string(),
        };
        self.audit(&actor, "admin.login", "", "", true).await;
        Ok(AdminLogin {
            csrf: admin_csrf(&token),
            actor,
            token,
            expires_at_ms,
        })
    }

    /// The administrator a session token names, acting from `from`.
    pub async fn admin_session(&self, token: &str, from: IpAddr) -> Result<Actor, ServiceError> {
        if token.is_empty() || token.len() > 128 {
            return Err(ServiceError::TokenInvalid);
        }
        let s = self
            .inner
            .store
            .admin_session(Tokens::hash(token))
            .await?
            .ok_or(ServiceError::TokenInvalid)?;
        if s.expires_at_ms <= now_ms() {
            return Err(ServiceError::TokenExpired);
        }
        Ok(Actor {
            name: s.name,
            role: s.role,
            address: from.to_string(),
        })
    }

    pub async fn admin_logout(&self, actor: &Actor, token: &str) -> Result<(), ServiceError> {
        self.inner
            .store
            .end_admin_session(Tokens::hash(token))
            .await?;
        self.audit(actor, "admin.logout", "", "", true).await;
        Ok(())
    }

    /// Writes one line of the audit log. A log that cannot be written is
    /// itself logged (and the action it records was already done or refused).
    pub async fn audit(&self, actor: &Actor, action: &str, target: &str, detail: &str, ok: bool) {
        let entry = NewAudit {
            at_ms: now_ms(),
            actor: actor.name.clone(),
            address: actor.address.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail: detail.chars().take(1000).collect(),
            ok,
        };
        tracing::info!(
            actor = %entry.actor, address = %entry.address, action = %entry.action,
            target = %entry.target, ok, "admin action");
        if let Err(e) = self.inner.store.audit(entry).await {
            tracing::error!(error = %e, action, "cannot write the audit log");
        }
    }

    /// Runs a change for `actor`: refused for a viewer; logged in the audit
    /// log either way. Changes made outside the service (the log level) go
    /// through it too.
    pub async fn admin_change<T>(
        &self,
        actor: &Actor,
        action: &str,
        target: String,
        detail: String,
        run: impl std::future::Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, ServiceError> {
        let out = if actor.role.may_change() {
            run.await
        } else {
            Err(ServiceError::Forbidden(
                "a viewer may look but not change anything".into(),
            ))
        };
        let detail = match &out {
            Ok(_) => detail,
            Err(e) if detail.is_empty() => e.to_string(),
            Err(e) => format!("{detail}; {e}"),
        };
        self.audit(actor, action, &target, &detail, out.is_ok())
            .await;
        out
    }

    pub async fn admin_accounts(
        &self,
        text: &str,
        after: UserId,
        limit: usize,
    ) -> Result<Vec<AccountSummary>, ServiceError> {
        check_search(text)?;
        let limit = page_limit(limit);
        Ok(self.inner.store.accounts(text, after, limit).await?)
    }

    pub async fn admin_account(&self, id: UserId) -> Result<AccountView, ServiceError> {
        let detail = self
            .inner
            .store
            .account(id, now_ms())
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        let online = self
            .inner
            .presence
            .online(&[id])
            .await
            .ok()
            .and_then(|v| v.first().copied());
        Ok(AccountView { detail, online })
    }

    /// Disables (until enabled) or enables an account; disabling closes
    /// its sessions at once.
    pub async fn admin_set_disabled(
        &self,
        actor: &Actor,
        id: UserId,
        disabled: bool,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let bar = Bar {
            disabled,
            until_ms: None,
            reason: check_reason(reason)?,
        };
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        self.admin_change(
            actor,
            action,
            format!("user:{id}"),
            bar.reason.clone(),
            async { self.apply_bar(id, bar).await },
        )
        .await
    }

    /// Bans an account for `for_ms` with a reason; it may log in again by
    /// itself after that.
    pub async fn admin_ban(
        &self,
        actor: &Actor,
        id: UserId,
        for_ms: i64,
        reason: &str,
    ) -> Result<i64, ServiceError> {
        let until = now_ms().saturating_add(for_ms);
        let detail = format!("until_ms={until} {reason}");
        self.admin_change(actor, "user.ban", format!("user:{id}"), detail, async {
            if !(1..=MAX_BAN_MS).contains(&for_ms) {
                return Err(ServiceError::InvalidArgument(
                    "a ban lasts from 1 ms to 100 years".into(),
                ));
            }
            let bar = Bar {
                disabled: true,
                until_ms: Some(until),
                reason: check_reason(reason)?,
            };
            self.apply_bar(id, bar).await?;
            Ok(until)
        })
        .await
    }

    /// Closes whatever holds the `sessions` of `user` open, on every node.
    fn ended(&self, user: UserId, sessions: Vec<SessionId>, reason: RevokeReason) {
        if !sessions.is_empty() {
            self.inner.events.publish(Event::Revoked {
                user,
                sessions,
                reason,
            });
        }
    }

    async fn apply_bar(&self, id: UserId, bar: Bar) -> Result<(), ServiceError> {
        let ended = self.inner.store.set_bar(id, bar).await?;
        self.ended(id, ended, RevokeReason::Disabled);
        Ok(())
    }

    /// Ends every session of an account (its connections and event streams
    /// close at once, on every node); how many were ended.
    pub async fn admin_logout_user(
        &self,
        actor: &Actor,
        id: UserId,
    ) -> Result<usize, ServiceError> {
        self.admin_change(
            actor,
            "user.logout",
            format!("user:{id}"),
            String::new(),
            async {
                if self.inner.store.user_by_id(id).await?.is_none() {
                    return Err(ServiceError::NotFound("user"));
                }
                let ended = self.inner.store.end_sessions(id).await?;
                let n = ended.len();
                self.ended(id, ended, RevokeReason::Admin);
                Ok(n)
            },
        )
        .await
    }

    /// Sets a new password (`None`: a random one, returned) and ends every
    /// session of the account.
    pub async fn admin_reset_password(
        &self,
        actor: &Actor,
        id: UserId,
        password: Option<&str>,
    ) -> Result<String, ServiceError> {
        self.admin_change(
            actor,
            "user.reset_password",
            format!("user:{id}"),
            String::new(),
            async {
                let user = self
                    .inner
                    .store
                    .user_by_id(id)
                    .await?
                    .ok_or(ServiceError::NotFound("user"))?;
                let password = match password {
                    Some(p) => p.to_owned(),
                    None => Tokens::generate()?.chars().take(20).collect(),
                };
                self.check_password(&user.username, &password)?;
                let from = crate::password::Source::stranger(None);
                let hash = self.inner.hasher.hash(password.clone(), from).await?;
                let ended = self.inner.store.set_password(id, &hash, None).await?;
                self.ended(id, ended, RevokeReason::Admin);
                Ok(password)
            },
        )
        .await
    }

    /// Deletes an account and its data: sessions (closed at once), friends,
    /// requests, blocks, mentions, uploads; its name, password and address
    /// erased (it stays as `~deleted-<id>`, the sender of what it wrote).
    /// Sessions and uploads deleted.
    pub async fn admin_delete_user(
        &self,
        actor: &Actor,
        id: UserId,
    ) -> Result<(usize, usize), ServiceError> {
        self.admin_change(
            actor,
            "user.delete",
            format!("user:{id}"),
            String::new(),
            async {
                let user = self
                    .inner
                    .store
                    .user_by_id(id)
                    .await?
                    .ok_or(ServiceError::NotFound("user"))?;
                if user.username.starts_with("~deleted-") && user.password_hash.is_empty() {
                    return Err(ServiceError::NotFound("user"));
                }
                let ended = self.inner.store.delete_account(id).await?;
                let sessions = ended.len();
                self.ended(id, ended, RevokeReason::Admin);
                let uploads = match self.files() {
                    Ok(f) => f.delete_owned_by(id).await,
                    Err(_) => 0,
                };
                Ok((sessions, uploads))
            },
        )
        .await
    }

    pub async fn admin_audit_log(
        &self,
        before: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, ServiceError> {
        let limit = if limit == 0 {
            100
        } else {
            limit.min(MAX_ADMIN_PAGE)
        };
        Ok(self.inner.store.audit_log(before, limit).await?)
    }

    /// Groups and rooms, dismissed ones too, whose name contains `text`, by
    /// id after `after`.
    pub async fn admin_groups(
        &self,
        text: &str,
        after: ConversationId,
        limit: usize,
    ) -> Result<Vec<GroupRecord>, ServiceError> {
        check_search(text)?;
        let limit = page_limit(limit);
        Ok(self.inner.store.admin_groups(text, after, limit).await?)
    }

    /// A group or room with a page of its members (up to
    /// [`MAX_GROUP_MEMBERS_PAGE`]) by user id after `after`.
    pub async fn admin_group(
        &self,
        id: ConversationId,
        after: UserId,
    ) -> Result<(GroupRecord, Vec<MemberRecord>), ServiceError> {
        self.inner
            .store
            .admin_group(id, after, MAX_GROUP_MEMBERS_PAGE)
            .await?
            .ok_or(ServiceError::NotFound("group"))
    }

    /// Dismisses a group or room as the server's operators: its members
    /// hear it as when the owner dismisses it, and see that an
    /// administrator of the server did.
    pub async fn admin_dismiss_group(
        &self,
        actor: &Actor,
        id: ConversationId,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let target = format!("group:{id}");
        self.admin_change(actor, "group.dismiss", target, reason.to_owned(), async {
            check_reason(reason)?;
            self.operate(id, GroupAction::Dismiss).await
        })
        .await
    }

    /// Removes a member from a group or room as the server's operators
    /// (anyone but the owner: dismiss the group instead).
    pub async fn admin_remove_member(
        &self,
        actor: &Actor,
        id: ConversationId,
        user: UserId,
    ) -> Result<(), ServiceError> {
        let (target, detail) = (format!("group:{id}"), format!("user:{user}"));
        self.admin_change(actor, "group.remove_member", target, detail, async {
            self.operate(id, GroupAction::Kick(user)).await
        })
        .await
    }

    async fn operate(&self, id: ConversationId, action: GroupAction) -> Result<(), ServiceError> {
        let limits = self.group_limits();
        Ok(self
            .inner
            .store
            .operate_group(id, action, limits, now_ms())
            .await?)
    }

    /// Lifts the bans that have ended (run now and then by the server).
    pub async fn lift_ended_bans(&self) -> Result<usize, ServiceError> {
        Ok(self.inner.store.lift_ended_bans(now_ms()).await?.len())
    }
}

/// How many a page of accounts or groups holds: 50 unless asked, at most
/// [`MAX_ADMIN_PAGE`]. A page this full may have more after it.
pub fn page_limit(asked: usize) -> usize {
    if asked == 0 {
        50
    } else {
        asked.min(MAX_ADMIN_PAGE)
    }
}

fn check_search(text: &str) -> Result<(), ServiceError> {
    if text.len() > 100 {
        return Err(ServiceError::InvalidArgument(
            "search text is at most 100 bytes".into(),
        ));
    }
    Ok(())
}

fn check_reason(reason: &str) -> Result<String, ServiceError> {
    crate::error::storable("reason", reason)?;
    if reason.len() > MAX_REASON_BYTES {
        return Err(ServiceError::InvalidArgument(format!(
            "a reason is at most {MAX_REASON_BYTES} bytes"
        )));
    }
    Ok(reason.trim().to_owned())
}
