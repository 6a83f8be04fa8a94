//! Email, when the `[email]` section names an SMTP server: the section,
//! codes sent over SMTP (lettre, on tokio, with a deadline), and what a
//! code proves: an address at registration, or the right to reset a
//! password. Codes are 6 digits, stored as hashes with their expiry and
//! failed tries (so they survive a restart and serve every node), single
//! use, and limited per address and per source address. A registration
//! code is sent while the request waits (a failing mail server is its
//! UNAVAILABLE); a reset code is sent off the request path by
//! [`Service::mail_resets`], so the answer, and how long it takes, are the
//! same whether or not an account has the address.

use crate::password::Source;
use crate::throttle::limited;
use crate::{now_ms, Event, RevokeReason, Service, ServiceError, Unavailable};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use natter_domain::{CodePurpose, CodeTry, CodeVerdict, NewEmailCode};
use natter_runtime::clock::Instant;
use natter_runtime::config::{check, Invalid};
use natter_runtime::limits::{address_key, KeyedBuckets};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// Reset codes waiting to be sent; more are UNAVAILABLE.
const RESET_QUEUE: usize = 1024;

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EmailTls {
    /// Plain text: only for a relay on the same host or network.
    None,
    /// Plain, then upgraded with STARTTLS (required), usually port 587.
    Starttls,
    /// TLS from the first byte, usually port 465.
    Tls,
}

/// The `[email]` section. Without `smtp_host` no email is sent and
/// registration works without an address.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: EmailTls,
    /// SMTP login; empty: none.
    pub username: String,
    pub password: String,
    /// The sender, e.g. `natter <no-reply@example.org>`.
    pub from: String,
    /// Registration needs an address and the code sent to it.
    pub require_verified: bool,
    /// How long a code is valid.
    pub code_ttl_secs: u64,
    /// Wrong tries after which a code is dead.
    pub max_attempts: u32,
    /// Codes sent to one address per hour (the burst, refilled evenly).
    pub codes_per_address_per_hour: u32,
    /// Codes asked for by one source address (IPv4, or IPv6 /64) per hour.
    pub codes_per_source_per_hour: u32,
    /// The whole of one SMTP exchange; past it the request is UNAVAILABLE.
    pub send_timeout_ms: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp_host: String::new(),
            smtp_port: 587,
            tls: EmailTls::Starttls,
            username: String::new(),
            password: String::new(),
            from: String::new(),
            require_verified: false,
            code_ttl_secs: 300,
            max_attempts: 5,
            codes_per_address_per_hour: 5,
            codes_per_source_per_hour: 20,
            send_timeout_ms: 10_000,
        }
    }
}

impl EmailConfig {
    pub fn enabled(&self) -> bool {
        !self.smtp_host.is_empty()
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        let c = self;
        if !c.enabled() {
            return check(!c.require_verified, "email.require_verified", || {
                "needs email.smtp_host: codes are sent by email".into()
            });
        }
        check(c.smtp_port >= 1, "email.smtp_port", || {
            "must be a port number".into()
        })?;
        check(c.from.parse::<Mailbox>().is_ok(), "email.from", || {
            format!(
                "`{}` is not an address such as `natter <no-reply@example.org>`",
                c.from
            )
        })?;
        check(
            (1..=86_400).contains(&c.code_ttl_secs),
            "email.code_ttl_secs",
            || "must be between 1 and 86400".into(),
        )?;
        check(
            (1..=100).contains(&c.max_attempts),
            "email.max_attempts",
            || "must be between 1 and 100".into(),
        )?;
        check(
            c.codes_per_address_per_hour >= 1,
            "email.codes_per_address_per_hour",
            || "must be at least 1".into(),
        )?;
        check(
            c.codes_per_source_per_hour >= 1,
            "email.codes_per_source_per_hour",
            || "must be at least 1".into(),
        )?;
        check(c.send_timeout_ms >= 1, "email.send_timeout_ms", || {
            "must be at least 1".into()
        })?;
        check(
            c.username.is_empty() || !c.password.is_empty(),
            "email.password",
            || "is needed with email.username".into(),
        )?;
        transport(c).map(drop).map_err(|e| Invalid {
            key: "email.smtp_host",
            reason: e.to_string(),
        })
    }
}

fn transport(
    c: &EmailConfig,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    type T = AsyncSmtpTransport<Tokio1Executor>;
    let b = match c.tls {
        EmailTls::None => T::builder_dangerous(&c.smtp_host),
        EmailTls::Starttls => T::starttls_relay(&c.smtp_host)?,
        EmailTls::Tls => T::relay(&c.smtp_host)?,
    };
    let mut b = b
        .port(c.smtp_port)
        .timeout(Some(Duration::from_millis(c.send_timeout_ms)));
    if !c.username.is_empty() {
        b = b.credentials(Credentials::new(c.username.clone(), c.password.clone()));
    }
    Ok(b.build())
}

/// The mailer and its limits, when `[email]` is set.
pub(crate) struct Mail {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
    ttl_ms: i64,
    max_attempts: u32,
    /// Codes sent per address, and asked for per source address.
    by_address: KeyedBuckets<String>,
    by_source: KeyedBuckets<IpAddr>,
    /// Codes tried per source address: as many tries as its codes allow.
    tries_by_source: KeyedBuckets<IpAddr>,
    /// Addresses to send a reset code to, and their receiving end until
    /// [`Service::mail_resets`] takes it.
    resets: mpsc::Sender<String>,
    reset_queue: Mutex<Option<mpsc::Receiver<String>>>,
}

impl Mail {
    /// `None` without `[email]`; a section `validate` passed always builds.
    pub(crate) fn new(c: &EmailConfig, max_tracked: usize) -> Option<Mail> {
        if !c.enabled() {
            return None;
        }
        let built = transport(c).map_err(|e| e.to_string()).and_then(|t| {
            let from = c.from.parse::<Mailbox>().map_err(|e| e.to_string())?;
            Ok((t, from))
        });
        let (transport, from) = match built {
            Ok(b) => b,
            Err(e) => {
                // Fails closed: no code can be sent, so none is accepted.
                tracing::error!(error = %e, "the [email] settings do not build a mailer");
                return None;
            }
        };
        let per_hour = |n: u32| (f64::from(n) / 3600.0, f64::from(n));
        let (a_rate, a_burst) = per_hour(c.codes_per_address_per_hour);
        let (s_rate, s_burst) = per_hour(c.codes_per_source_per_hour);
        let tries = per_hour(c.codes_per_source_per_hour.saturating_mul(c.max_attempts));
        let (resets, reset_queue) = mpsc::channel(RESET_QUEUE);
        Some(Mail {
            resets,
            reset_queue: Mutex::new(Some(reset_queue)),
            transport,
            from,
            timeout: Duration::from_millis(c.send_timeout_ms),
            ttl_ms: (c.code_ttl_secs as i64).saturating_mul(1000),
            max_attempts: c.max_attempts,
            by_address: KeyedBuckets::new("email_codes_address", a_rate, a_burst, max_tracked),
            by_source: KeyedBuckets::new("email_codes_source", s_rate, s_burst, max_tracked),
            tries_by_source: KeyedBuckets::new("email_code_tries", tries.0, tries.1, max_tracked),
        })
    }

    /// Sends one plain-text mail within the deadline: a server that fails
    /// or does not answer in time is UNAVAILABLE, never a hang.
    async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), ServiceError> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| ServiceError::InvalidArgument("not an email address".into()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| ServiceError::Internal(format!("an email could not be built: {e}")))?;
        let failed = match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        metrics::counter!("natter_email_failures_total").increment(1);
        tracing::warn!(error = %failed, "sending an email failed");
        Err(ServiceError::Unavailable(Unavailable::MailFailing))
    }
}

/// An address as it is stored and compared: trimmed and lower-case.
pub(crate) fn normalize_email(email: &str) -> Result<String, ServiceError> {
    let email = email.trim().to_lowercase();
    let bad = || ServiceError::InvalidArgument("not an email address".into());
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    match email.split_once('@') {
        Some((local, domain)) if !local.is_empty() && domain.contains('.') => {}
        _ => return Err(bad()),
    }
    email.parse::<lettre::Address>().map_err(|_| bad())?;
    Ok(email)
}

/// A fresh code: 6 decimal digits, uniformly drawn.
fn new_code() -> Result<String, ServiceError> {
    loop {
        let mut raw = [0u8; 4];
        getrandom::fill(&mut raw)
            .map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
        let n = u32::from_le_bytes(raw);
        // Below the largest multiple of 10^6, so every code is as likely.
        if n < 4_294_000_000 {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

/// What is stored of a code: bound to its purpose and address.
fn code_hash(purpose: CodePurpose, address: &str, code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"natter email code\0");
    h.update([purpose as u8]);
    h.update(address.as_bytes());
    h.update(b"\0");
    h.update(code.as_bytes());
    h.finalize().into()
}

impl Service {
    fn mail(&self) -> Result<&Mail, ServiceError> {
        self.inner.mail.as_ref().ok_or_else(|| {
            ServiceError::InvalidArgument("this server sends no email (no [email] settings)".into())
        })
    }

    /// Emails a code for `purpose` to `email`; `from` is the address asking,
    /// for its limit. A reset code is only queued (see
    /// [`Service::mail_resets`]); for an address no account has, nothing
    /// is sent, and the answer is the same.
    pub async fn send_email_code(
        &self,
        email: &str,
        purpose: CodePurpose,
        from: IpAddr,
    ) -> Result<(), ServiceError> {
        let mail = self.mail()?;
        self.admit_new()?;
        let address = normalize_email(email)?;
        let now = Instant::now();
        mail.by_source
            .take(&address_key(from), now)
            .map_err(|d| limited("email_codes_source", d))?;
        mail.by_address
            .take(&address, now)
            .map_err(|d| limited("email_codes_address", d))?;
        if purpose == CodePurpose::Reset {
            return mail.resets.try_send(address).map_err(|_| {
                metrics::counter!("natter_limit_hits_total", "limit" => "email_queue").increment(1);
                ServiceError::Unavailable(Unavailable::Overloaded)
            });
        }
        self.issue_code(mail, purpose, &address).await
    }

    /// Sends the reset codes asked for, one at a time, until `stop` (each
    /// send is bounded by `email.send_timeout_ms`): run one for the
    /// server's life on a tracker the drain waits for. Without `[email]`
    /// it returns at once.
    pub async fn mail_resets(self, stop: impl Future<Output = ()>) {
        let Some(mail) = self.inner.mail.as_ref() else {
            return;
        };
        let queue = mail.reset_queue.lock().ok().and_then(|mut q| q.take());
        let Some(mut queue) = queue else {
            return;
        };
        let mut stop = std::pin::pin!(stop);
        loop {
            let address = tokio::select! {
                _ = &mut stop => return,
                a = queue.recv() => match a {
                    Some(a) => a,
                    None => return,
                },
            };
            // A panic costs this one mail, not the worker.
            let send = std::pin::pin!(self.send_reset_code(mail, &address));
            match natter_runtime::panics::guard("reset_mail", send).await {
                // A failed send is logged and counted where it failed.
                None
                | Some(Ok(()))
                | Some(Err(ServiceError::Unavailable(Unavailable::MailFailing))) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "a reset code was not sent"),
            }
        }
    }

    async fn send_reset_code(&self, mail: &Mail, address: &str) -> Result<(), ServiceError> {
        if self.inner.store.user_by_email(address).await?.is_none() {
            return Ok(());
        }
        self.issue_code(mail, CodePurpose::Reset, address).await
    }

    /// Stores a new code for the address and emails it.
    async fn issue_code(
        &self,
        mail: &Mail,
        purpose: CodePurpose,
        address: &str,
    ) -> Result<(), ServiceError> {
        let code = new_code()?;
        let now_ms = now_ms();
        self.inner
            .store
            .put_email_code(
                NewEmailCode {
                    purpose,
                    address: address.to_owned(),
                    code_hash: code_hash(purpose, address, &code),
                    expires_at_ms: now_ms + mail.ttl_ms,
                },
                now_ms,
            )
            .await?;
        let (subject, what) = match purpose {
            CodePurpose::Register => ("Your natter registration code", "confirm this address"),
            CodePurpose::Reset => ("Your natter password reset code", "reset your password"),
        };
        let valid = match mail.ttl_ms / 1000 {
            s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
            s => format!("{s} seconds"),
        };
        let body = format!(
            "Your code to {what} is {code}\r\n\r\nIt is valid for {valid}. \
             If you did not ask for it, ignore this email.\r\n"
        );
        mail.send(address, subject, body).await?;
        metrics::counter!("natter_email_codes_sent_total").increment(1);
        Ok(())
    }

    /// Uses up the address's code for `purpose` if `code` is it.
    async fn check_code(
        &self,
        purpose: CodePurpose,
        address: &str,
        code: &str,
        from: IpAddr,
    ) -> Result<(), ServiceError> {
        let mail = self.mail()?;
        mail.tries_by_source
            .take(&address_key(from), Instant::now())
            .map_err(|d| limited("email_code_tries", d))?;
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ServiceError::BadCode(
                "the code is the 6 digits the email gave".into(),
            ));
        }
        let verdict = self
            .inner
            .store
            .use_email_code(CodeTry {
                purpose,
                address: address.to_owned(),
                code_hash: code_hash(purpose, address, code),
                now_ms: now_ms(),
                max_attempts: mail.max_attempts,
            })
            .await?;
        Err(ServiceError::BadCode(match verdict {
            CodeVerdict::Accepted => return Ok(()),
            CodeVerdict::Wrong { attempts_left: 0 } => {
                "wrong code; it is no longer valid, ask for a new one".into()
            }
            CodeVerdict::Wrong { attempts_left } => {
                format!("wrong code; {attempts_left} more tries")
            }
            CodeVerdict::Expired => "the code has expired; ask for a new one".into(),
            CodeVerdict::Missing => "no code is waiting for this address; ask for one".into(),
        }))
    }

    /// The address a registration verifies, normalized, with its code:
    /// required when `email.require_verified`, refused without `[email]`.
    pub(crate) fn registration_email<'a>(
        &self,
        email: Option<(&str, &'a str)>,
    ) -> Result<Option<(String, &'a str)>, ServiceError> {
        match email {
            None if self.inner.config.email.require_verified => Err(ServiceError::InvalidArgument(
                "this server registers only with an email address and the code sent to it".into(),
            )),
            None => Ok(None),
            Some((email, code)) => {
                self.mail()?;
                Ok(Some((normalize_email(email)?, code)))
            }
        }
    }

    /// Checks the registration's code before the account is made: the name
    /// and the address must be free, so a taken one costs no code.
    pub(crate) async fn verify_registration(
        &self,
        username: &str,
        address: &str,
        code: &str,
        from: IpAddr,
    ) -> Result<(), ServiceError> {
        if self.inner.store.user_by_name(username).await?.is_some() {
            return Err(ServiceError::UsernameTaken);
        }
        if self.inner.store.user_by_email(address).await?.is_some() {
            return Err(ServiceError::InvalidArgument(
                "that email address is already in use".into(),
            ));
        }
        self.check_code(CodePurpose::Register, address, code, from)
            .await
    }

    /// Sets a new password with the code emailed for a reset, and ends
    /// every session of the account.
    pub async fn reset_password(
        &self,
        email: &str,
        code: &str,
        new_password: &str,
        from: IpAddr,
    ) -> Result<(), ServiceError> {
        self.mail()?;
        let address = normalize_email(email)?;
        let user = self.inner.store.user_by_email(&address).await?;
        if let Some(u) = &user {
            self.check_password(&u.username, new_password)?;
        }
        // No account, no code was stored: the answer is a missing code.
        self.check_code(CodePurpose::Reset, &address, code, from)
            .await?;
        let user = user.ok_or(ServiceError::BadCode(
            "no code is waiting for this address; ask for one".into(),
        ))?;
        if user.barred(crate::now_ms()) {
            return Err(ServiceError::AccountDisabled);
        }
        let hash = self
            .inner
            .hasher
            .hash(new_password.to_owned(), Source::stranger(Some(from)))
            .await?;
        let revoked = self.inner.store.set_password(user.id, &hash, None).await?;
        if !revoked.is_empty() {
            self.inner.events.publish(Event::Revoked {
                user: user.id,
                sessions: revoked,
                reason: RevokeReason::Kicked,
            });
        }
        tracing::info!(user_id = user.id, "password reset by email");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_codes_and_the_section() {
        assert_eq!(
            normalize_email(" Ann@Example.ORG ").unwrap(),
            "ann@example.org"
        );
        for bad in ["ann", "@example.org", "ann@localhost", "a b@x.org", "ann@"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        let code = new_code().unwrap();
        assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(
            code_hash(CodePurpose::Register, "a@x.org", "123456"),
            code_hash(CodePurpose::Reset, "a@x.org", "123456")
        );
        // Off by default; require_verified alone names the key it needs.
        assert!(EmailConfig::default().validate().is_ok());
        let e = EmailConfig {
            require_verified: true,
            ..EmailConfig::default()
        };
        assert_eq!(e.validate().unwrap_err().key, "email.require_verified");
        let on = EmailConfig {
            smtp_host: "smtp.example.org".into(),
            from: "natter <no-reply@example.org>".into(),
            ..EmailConfig::default()
        };
        assert!(on.validate().is_ok());
        let e = EmailConfig {
            from: "nobody".into(),
            ..on.clone()
        };
        assert_eq!(e.validate().unwrap_err().key, "email.from");
        let e = EmailConfig {
            username: "u".into(),
            ..on
        };
        assert_eq!(e.validate().unwrap_err().key, "email.password");
    }
}
