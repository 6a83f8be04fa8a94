//! TLS for every listener (rustls, ring provider): the certificate that is
//! served now (replaced on reload only by a chain whose key matches), the
//! session cache and rotating ticketer shared by all listeners, and the
//! handshake with its deadline and metrics, written once for the frame,
//! WebSocket and HTTP listeners.

use crate::config::{check, Invalid};
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{HandshakeKind, ServerConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The `[tls]` section: the certificate the TLS listeners (`listen.tcp_tls`,
/// `ws_tls`, `https`) serve; reloaded on SIGHUP and when the files change.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM: the leaf certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Sessions kept for stateful resumption (tickets need none).
    pub session_cache: usize,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            session_cache: 20_000,
        }
    }
}

impl TlsOptions {
    /// The section's own rule. (That a TLS listener needs `cert` and `key`
    /// is the binary's: it spans `[listen]` too.)
    pub fn validate(&self) -> Result<(), Invalid> {
        check(self.session_cache >= 1, "tls.session_cache", || {
            "must be at least 1".into()
        })
    }
}

/// A certificate and key that belong together, and when the certificate expires.
struct Loaded {
    key: Arc<CertifiedKey>,
    not_after: Option<u64>,
    stamp: Stamp,
}

/// What the files looked like when they were read (modified time, length).
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(o: &TlsOptions) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.modified().ok(), m.len()))
            .unwrap_or((None, 0))
    };
    [one(&o.cert), one(&o.key)]
}

/// Reads the chain and the key and checks that the key is the certificate's.
fn load(o: &TlsOptions) -> Result<Loaded, String> {
    let stamp = stamp(o);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&o.cert)
        .map_err(|e| format!("tls.cert {}: {e}", o.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert {}: {e}", o.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "tls.cert {}: no certificate in the file",
            o.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&o.key)
        .map_err(|e| format!("tls.key {}: {e}", o.key.display()))?;
    let not_after = not_after(&chain[0]);
    let signing = provider::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("tls.key {}: {e}", o.key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "tls.key {} does not belong to tls.cert {}: {e}",
            o.key.display(),
            o.cert.display()
        )
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
        stamp,
    })
}

/// The certificate served now; every new handshake reads it.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The server side of TLS: one per process, shared by its listeners.
pub struct Tls {
    options: TlsOptions,
    current: Arc<Current>,
    state: RwLock<(Option<u64>, Stamp)>,
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
}

impl Tls {
    /// Loads the certificate and key; an error names the bad key.
    pub fn new(options: TlsOptions) -> Result<Arc<Tls>, String> {
        let loaded = load(&options)?;
        let ticketer = provider::Ticketer::new().map_err(|e| format!("TLS tickets: {e}"))?;
        let tls = Tls {
            sessions: ServerSessionMemoryCache::new(options.session_cache.max(1)),
            options,
            current: Arc::new(Current(RwLock::new(loaded.key))),
            state: RwLock::new((loaded.not_after, loaded.stamp)),
            ticketer,
        };
        tls.report_expiry();
        Ok(Arc::new(tls))
    }

    /// An acceptor for one listener; `alpn` is what it offers (empty: none).
    pub fn acceptor(&self, listener: &'static str, alpn: &[&[u8]]) -> Acceptor {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_no_client_auth()
                .with_cert_resolver(self.current.clone());
        config.session_storage = self.sessions.clone();
        config.ticketer = self.ticketer.clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Acceptor {
            inner: TlsAcceptor::from(Arc::new(config)),
            listener,
        }
    }

    /// Reads the files again. On success new handshakes get the new
    /// certificate; on any error the old one stays. Either way it is logged
    /// and counted. Connections already open are untouched.
    pub fn reload(&self) -> Result<(), String> {
        match load(&self.options) {
            Ok(l) => {
                *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = l.key;
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = (l.not_after, l.stamp);
                self.report_expiry();
                metrics::counter!("natter_tls_reloads_total", "result" => "ok").increment(1);
                tracing::info!(cert = %self.options.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                // Not read again until the files change once more.
                self.state.write().unwrap_or_else(|p| p.into_inner()).1 = stamp(&self.options);
                metrics::counter!("natter_tls_reloads_total", "result" => "error").increment(1);
                tracing::error!(error = %e, "TLS reload failed; the old certificate stays");
                Err(e)
            }
        }
    }

    fn report_expiry(&self) {
        let not_after = self.state.read().unwrap_or_else(|p| p.into_inner()).0;
        if let Some(at) = not_after {
            let now = crate::clock::now_ms() as f64 / 1000.0;
            metrics::gauge!("natter_tls_certificate_expiry_seconds").set(at as f64 - now);
        }
    }

    /// Reloads on SIGHUP and when the files change (checked every
    /// `interval`), until `stop`.
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(interval);
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = hangup => { let _ = self.reload(); }
                _ = tick.tick() => {
                    let seen = self.state.read().unwrap_or_else(|p| p.into_inner()).1;
                    if stamp(&self.options) != seen {
                        let _ = self.reload();
                    }
                    self.report_expiry();
                }
            }
        }
    }
}

/// One listener's side of the handshake.
#[derive(Clone)]
pub struct Acceptor {
    inner: TlsAcceptor,
    listener: &'static str,
}

impl Acceptor {
    /// Completes the handshake within `timeout`, counting it as full or
    /// resumed, or its failure by reason. `None`: the socket is dropped.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Option<TlsStream<TcpStream>> {
        let failed = |reason: &'static str| {
            metrics::counter!("natter_tls_handshake_failures_total",
                "listener" => self.listener, "reason" => reason)
            .increment(1);
        };
        match tokio::time::timeout(timeout, self.inner.accept(stream)).await {
            Ok(Ok(s)) => {
                let kind = match s.get_ref().1.handshake_kind() {
                    Some(HandshakeKind::Resumed) => "resumed",
                    _ => "full",
                };
                metrics::counter!("natter_tls_handshakes_total",
                    "listener" => self.listener, "kind" => kind)
                .increment(1);
                Some(s)
            }
            Ok(Err(e)) => {
                let reason = failure_reason(&e);
                tracing::debug!(listener = self.listener, error = %e, reason, "TLS handshake failed");
                failed(reason);
                None
            }
            Err(_) => {
                failed("timeout");
                None
            }
        }
    }
}

/// Every label `natter_tls_handshake_failures_total` counts by (`reason`):
/// what [`failure_reason`] returns, and `timeout`.
pub const FAILURE_REASONS: [&str; 8] = [
    "not_tls",
    "protocol",
    "bad_certificate",
    "alert",
    "incompatible",
    "eof",
    "io",
    "timeout",
];

/// A handshake error as a metric label (one of [`FAILURE_REASONS`]).
fn failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription as A, Error as E, InvalidMessage as M};
    match e.get_ref().and_then(|i| i.downcast_ref::<E>()) {
        Some(E::InvalidMessage(M::InvalidContentType | M::UnknownProtocolVersion)) => "not_tls",
        Some(E::InvalidMessage(_)) => "protocol",
        Some(E::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::CertificateRevoked
            | A::UnsupportedCertificate,
        )) => "bad_certificate",
        Some(E::AlertReceived(_)) => "alert",
        Some(E::PeerIncompatible(_)) => "incompatible",
        Some(_) => "protocol",
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "eof",
        None => "io",
    }
}

/// The certificate's notAfter as Unix seconds, read from its DER (a
/// TBSCertificate's fixed order: [0] version, serial, signature algorithm,
/// issuer, validity). `None` when it cannot be read.
fn not_after(cert: &CertificateDer<'_>) -> Option<u64> {
    /// One DER element: (tag, contents, rest).
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, mut b) = b.split_first()?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || b.len() < n {
                return None;
            }
            let len = b[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
            b = &b[n..];
            len
        };
        (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
    }
    let (_, cert, _) = tlv(cert.as_ref())?;
    let (_, mut tbs, _) = tlv(cert)?;
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for _ in 0..3 {
        tbs = tlv(tbs)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = tlv(tbs)?;
    let (_, _, rest) = tlv(validity)?;
    let (tag, time, _) = tlv(rest)?;
    let s = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let (year, s) = match tag {
        0x17 => {
            let y: i64 = s.get(..2)?.parse().ok()?;
            (if y >= 50 { 1900 + y } else { 2000 + y }, s.get(2..)?)
        }
        0x18 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { s.get(i..i + 2)?.parse().ok() };
    let (month, day, h, m, sec) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_expiring(year: i32, month: u8, day: u8) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn not_after_reads_both_time_encodings() {
        // UTCTime before 2050, GeneralizedTime from 2050 on.
        for (y, m, d, unix) in [
            (2030, 1, 1, 1_893_456_000u64),
            (2026, 12, 31, 1_798_675_200),
            (2060, 3, 1, 2_845_324_800),
        ] {
            assert_eq!(
                not_after(&cert_expiring(y, m, d)),
                Some(unix),
                "{y}-{m}-{d}"
            );
        }
        assert_eq!(
            not_after(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
            None
        );
    }
}
