//! Registration, login, token resume, logout and password change
//! (registration's emailed code and the reset by code are in `email.rs`).

use crate::password::{Lane, Source};
use crate::{now_ms, Event, RevokeReason, Service, ServiceError, Unavailable};
use base64::Engine;
use natter_domain::{NewSession, NewVerifiedUser, SessionId, UserId, UserRecord};
use natter_runtime::clock::Instant;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// Other sessions one Logout may end (a client's saved devices: a few).
pub const MAX_LOGOUT_TOKENS: usize = 16;

/// A live, authenticated session as the gateway holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub user_id: UserId,
    pub username: String,
    pub session_id: SessionId,
    pub device_id: String,
    /// The bearer token; the store keeps only its SHA-256.
    pub token: String,
    pub expires_at_ms: i64,
}

/// Token helpers, public so tests and tools can reason about tokens.
pub struct Tokens;

impl Tokens {
    /// A fresh random token: 32 bytes from the OS, base64url.
    pub fn generate() -> Result<String, ServiceError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
    }

    pub fn hash(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }
}

/// Usernames: 3 to 32 of a-z, 0-9, '_', '.', '-', starting with a letter;
/// compared case-insensitively (stored lower-case).
fn normalize_username(name: &str) -> Result<String, ServiceError> {
    let name = name.trim().to_ascii_lowercase();
    let ok_len = (3..=32).contains(&name.len());
    let ok_first = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if ok_len && ok_first && ok_chars {
        Ok(name)
    } else {
        Err(ServiceError::InvalidArgument(
            "username must be 3-32 characters of a-z, 0-9, '_', '.', '-' and start with a letter"
                .into(),
        ))
    }
}

fn check_device_id(device_id: &str) -> Result<(), ServiceError> {
    crate::error::storable("device_id", device_id)?;
    if device_id.is_empty() || device_id.len() > 64 {
        return Err(ServiceError::InvalidArgument(
            "device_id must be 1-64 bytes".into(),
        ));
    }
    Ok(())
}

/// The key a login is throttled by: the name as it would be stored, or, for
/// a name that could never exist, a bounded form of what was typed, so that
/// unknown names back off exactly like known ones.
fn throttle_key(username: &str) -> String {
    normalize_username(username).unwrap_or_else(|_| {
        let mut s = username.trim().to_lowercase();
        let mut end = s.len().min(64);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s
    })
}

impl Service {
    /// Refuses what creates new load while the node sheds it.
    pub(crate) fn admit_new(&self) -> Result<(), ServiceError> {
        if self.inner.load.accepts_new() {
            Ok(())
        } else {
            metrics::counter!("natter_limit_hits_total", "limit" => "overload").increment(1);
            Err(ServiceError::Unavailable(Unavailable::Overloaded))
        }
    }

    pub(crate) fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(), ServiceError> {
        let min = self.inner.config.password.min_length;
        if password.chars().count() < min {
            return Err(ServiceError::WeakPassword(format!(
                "password must be at least {min} characters"
            )));
        }
        if password.len() > 1024 {
            return Err(ServiceError::WeakPassword(
                "password must be at most 1024 bytes".into(),
            ));
        }
        if password.eq_ignore_ascii_case(username) {
            return Err(ServiceError::WeakPassword(
                "password must differ from the username".into(),
            ));
        }
        Ok(())
    }

    /// Creates an account; `from` is the address asking, for its limit.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<UserId, ServiceError> {
        self.register_with_email(username, password, None, from)
            .await
    }

    /// Creates an account, with `email`, an address and the code emailed
    /// to it (required when `email.require_verified`), verified first.
    pub async fn register_with_email(
        &self,
        username: &str,
        password: &str,
        email: Option<(&str, &str)>,
        from: IpAddr,
    ) -> Result<UserId, ServiceError> {
        self.admit_new()?;
        let username = normalize_username(username)?;
        self.check_password(&username, password)?;
        let email = self.registration_email(email)?;
        self.inner.throttles.before_register(from, Instant::now())?;
        if let Some((address, code)) = &email {
            self.verify_registration(&username, address, code, from)
                .await?;
        }
        let hash = self
            .inner
            .hasher
            .hash(password.to_owned(), Source::stranger(Some(from)))
            .await?;
        let store = &self.inner.store;
        let id = match &email {
            Some((address, _)) => {
                store
                    .create_user_with_email(NewVerifiedUser {
                        username: username.clone(),
                        password_hash: hash,
                        email: address.clone(),
                        now_ms: now_ms(),
                    })
                    .await?
            }
            None => store.create_user(&username, &hash, now_ms()).await?,
        };
        metrics::counter!("natter_users_registered_total").increment(1);
        tracing::info!(user_id = id, %username, "registered");
        Ok(id)
    }

    /// Checks a password under the failed-login limits: of the username
    /// always, and of the address when there is one (a login; a password
    /// change comes from a session, and its address is not the point).
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
        from: Option<IpAddr>,
    ) -> Result<UserRecord, ServiceError> {
        let throttles = &self.inner.throttles;
        let key = throttle_key(username);
        throttles.before_password(&key, from, Instant::now())?;
        let user = match normalize_username(username) {
            Ok(name) => self.inner.store.user_by_name(&name).await,
            Err(_) => Ok(None),
        };
        let user = match user {
            Ok(user) => user,
            Err(e) => {
                // The storage is down: no password was judged.
                throttles.not_looked_up(&key, from, Instant::now());
                return Err(e.into());
            }
        };
        // An address that gave this account's password before is hashed
        // in a lane of its own, so a flood of strangers cannot keep it out.
        let mut source = Source::stranger(from);
        if from.is_some_and(|a| throttles.known(&key, a, Instant::now())) {
            source.lane = Lane::Known;
        }
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let checked = self
            .inner
            .hasher
            .verify(password.to_owned(), hash, source)
            .await;
        let (user, ok) = match checked.map(|ok| (user, ok)) {
            Ok(c) => c,
            Err(e) => {
                throttles.not_checked(from, Instant::now());
                return Err(e);
            }
        };
        match user {
            Some(user) if ok => {
                throttles.password_right(&key, from, Instant::now());
                if user.barred(now_ms()) {
                    Err(ServiceError::AccountDisabled)
                } else {
                    Ok(user)
                }
            }
            _ => {
                metrics::counter!("natter_login_failures_total").increment(1);
                Err(ServiceError::BadCredentials)
            }
        }
    }

    /// Checks the password and opens a session for `device_id`, applying the
    /// device policy; sessions it ends are announced as revoked. `from` is
    /// the address asking, for the login limits.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        device_id: &str,
        from: IpAddr,
    ) -> Result<SessionInfo, ServiceError> {
        check_device_id(device_id)?;
        self.admit_new()?;
        let user = self.authenticate(username, password, Some(from)).await?;
        let token = Tokens::generate()?;
        let now = now_ms();
        let expires_at_ms = now + (self.inner.config.token_ttl_secs as i64).saturating_mul(1000);
        let grant = self
            .inner
            .store
            .create_session(NewSession {
                user_id: user.id,
                device_id: device_id.to_owned(),
                token_hash: Tokens::hash(&token),
                now_ms: now,
                expires_at_ms,
                policy: self.inner.config.device_policy,
                max_sessions: self.inner.config.max_sessions_per_user,
            })
            .await?;
        if !grant.revoked.is_empty() {
            self.inner.events.publish(Event::Revoked {
                user: user.id,
                sessions: grant.revoked,
                reason: RevokeReason::Kicked,
            });
        }
        metrics::counter!("natter_logins_total", "method" => "password").increment(1);
        Ok(SessionInfo {
            user_id: user.id,
            username: user.username,
            session_id: grant.session_id,
            device_id: device_id.to_owned(),
            token,
            expires_at_ms,
        })
    }

    /// Resumes a session from its token, without the password.
    pub async fn resume(&self, token: &str, device_id: &str) -> Result<SessionInfo, ServiceError> {
        let record = self
            .inner
            .store
            .session_by_token(Tokens::hash(token))
            .await?
            .ok_or(ServiceError::TokenInvalid)?;
        if record.revoked || record.device_id != device_id {
            return Err(ServiceError::TokenInvalid);
        }
        if record.expires_at_ms <= now_ms() {
            return Err(ServiceError::TokenExpired);
        }
        if record.user_barred(now_ms()) {
            return Err(ServiceError::AccountDisabled);
        }
        metrics::counter!("natter_logins_total", "method" => "token").increment(1);
        Ok(SessionInfo {
            user_id: record.user_id,
            username: record.username,
            session_id: record.id,
            device_id: record.device_id,
            token: token.to_owned(),
            expires_at_ms: record.expires_at_ms,
        })
    }

    /// The session a bearer token names, for edges that authenticate each
    /// request by its token (HTTP): the checks of [`Service::resume`] but
    /// the device's, since a request names no device.
    pub async fn bearer(&self, token: &str) -> Result<SessionInfo, ServiceError> {
        if token.is_empty() || token.len() > 128 {
            return Err(ServiceError::TokenInvalid);
        }
        let record = self
            .inner
            .store
            .session_by_token(Tokens::hash(token))
            .await?
            .ok_or(ServiceError::TokenInvalid)?;
        if record.revoked {
            return Err(ServiceError::TokenInvalid);
        }
        if record.expires_at_ms <= now_ms() {
            return Err(ServiceError::TokenExpired);
        }
        if record.user_barred(now_ms()) {
            return Err(ServiceError::AccountDisabled);
        }
        Ok(SessionInfo {
            user_id: record.user_id,
            username: record.username,
            session_id: record.id,
            device_id: record.device_id,
            token: token.to_owned(),
            expires_at_ms: record.expires_at_ms,
        })
    }

    /// Ends `session`, and the user's other sessions whose tokens are in
    /// `others` (their connections are told LOGGED_OUT). Tokens that are
    /// unknown, already ended or another user's are skipped.
    pub async fn logout(
        &self,
        session: &SessionInfo,
        others: &[String],
    ) -> Result<(), ServiceError> {
        if others.len() > MAX_LOGOUT_TOKENS {
            return Err(ServiceError::InvalidArgument(format!(
                "at most {MAX_LOGOUT_TOKENS} other sessions per logout"
            )));
        }
        let mut ended = Vec::new();
        for token in others {
            let record = self
                .inner
                .store
                .session_by_token(Tokens::hash(token))
                .await?;
            if let Some(r) = record.filter(|r| r.user_id == session.user_id && !r.revoked) {
                if r.id != session.session_id && !ended.contains(&r.id) {
                    self.inner.store.revoke_session(r.id).await?;
                    ended.push(r.id);
                }
            }
        }
        self.inner.store.revoke_session(session.session_id).await?;
        if !ended.is_empty() {
            self.inner.events.publish(Event::Revoked {
                user: session.user_id,
                sessions: ended,
                reason: RevokeReason::LoggedOut,
            });
        }
        Ok(())
    }

    /// [`Service::logout`] from an edge that holds no connection of the
    /// session (HTTP): whatever holds it elsewhere (a frame connection of
    /// the same device's token, an event stream, on any node) is closed as
    /// LOGGED_OUT too. A frame connection logging itself out closes itself
    /// after its answer instead, so its answer is not raced by the close.
    pub async fn logout_elsewhere(
        &self,
        session: &SessionInfo,
        others: &[String],
    ) -> Result<(), ServiceError> {
        self.logout(session, others).await?;
        self.inner.events.publish(Event::Revoked {
            user: session.user_id,
            sessions: vec![session.session_id],
            reason: RevokeReason::LoggedOut,
        });
        Ok(())
    }

    /// Changes the password and ends every other session of the user, in
    /// one store transaction.
    pub async fn change_password(
        &self,
        session: &SessionInfo,
        old: &str,
        new: &str,
    ) -> Result<(), ServiceError> {
        let user = self.authenticate(&session.username, old, None).await?;
        self.check_password(&user.username, new)?;
        let from = Source::stranger(None);
        let hash = self.inner.hasher.hash(new.to_owned(), from).await?;
        let revoked = self
            .inner
            .store
            .set_password(user.id, &hash, Some(session.session_id))
            .await?;
        if !revoked.is_empty() {
            self.inner.events.publish(Event::Revoked {
                user: user.id,
                sessions: revoked,
                reason: RevokeReason::Kicked,
            });
        }
        Ok(())
    }

    pub async fn users(
        &self,
        ids: &[UserId],
        names: &[String],
    ) -> Result<Vec<(UserId, String)>, ServiceError> {
        if ids.len() + names.len() > 500 {
            return Err(ServiceError::InvalidArgument(
                "at most 500 users per lookup".into(),
            ));
        }
        let names: Vec<String> = names
            .iter()
            .filter_map(|n| normalize_username(n).ok())
            .collect();
        let users = self.inner.store.users(ids, &names).await?;
        Ok(users.into_iter().map(|u| (u.id, u.username)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(normalize_username(" Alice_1 ").unwrap(), "alice_1");
        for bad in ["ab", "1abc", "a b c", "ümlaut", &"a".repeat(33)] {
            assert!(normalize_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let (a, b) = (Tokens::generate().unwrap(), Tokens::generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(Tokens::hash(&a), Tokens::hash(&a));
        assert_ne!(Tokens::hash(&a), Tokens::hash(&b));
    }
}
