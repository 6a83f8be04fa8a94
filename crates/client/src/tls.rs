//! The client's side of TLS (`tls://` and `wss://` addresses): which roots
//! are trusted (the bundled web roots, or a private CA), and one session
//! cache per configuration, so a reconnect with the same options resumes.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A configuration trusting the certificates in the PEM file `ca` (a
/// private CA); `None`: the bundled web roots. Keep and reuse it: its
/// session cache is what lets the next connection resume.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no certificate in the file", path.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The process's configuration for the web roots, made once.
pub(crate) fn default_config() -> Result<Arc<ClientConfig>, String> {
    static DEFAULT: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    DEFAULT.get_or_init(|| client_config(None)).clone()
}

/// The name the server's certificate must carry: the host of `host:port`.
pub(crate) fn server_name(host_port: &str) -> Result<ServerName<'static>, String> {
    let host = host_of(host_port);
    ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))
}

fn host_of(host_port: &str) -> &str {
    let host = match host_port.rsplit_once(':') {
        Some((h, _)) => h,
        None => host_port,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A failed handshake with `host_port`, said so that a person can fix it:
/// what is wrong with the server's certificate and what to do (rustls's
/// own words for these are its enums' names).
pub(crate) fn handshake_failure(host_port: &str, e: &std::io::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    let host = host_of(host_port);
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return format!("{host_port}: TLS handshake failed: {e}");
    };
    let cert = "the server's certificate";
    let why = match tls {
        E::InvalidCertificate(C::UnknownIssuer) => format!(
            "{cert} is not signed by a CA this client trusts: pass that CA's certificate \
             with --ca (for a self-signed certificate, the certificate itself)"
        ),
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => format!(
            "{cert} does not name {host}: connect by a name it has, or give it \
             subjectAltName=DNS:{host} (IP:{host} for an address)"
        ),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!("{cert} has expired: the server needs a new one")
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            format!("{cert} is not valid yet: check this machine's clock and the server's")
        }
        E::InvalidCertificate(C::BadSignature) => {
            format!("{cert}'s signature does not match its issuer's key")
        }
        E::InvalidCertificate(C::Other(o))
            if matches!(
                o.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ) =>
        {
            format!(
                "{cert} is a CA certificate (basicConstraints CA:TRUE, what \
                 `openssl req -x509` makes by default), which cannot identify a server: \
                 serve a certificate signed by a CA, or a self-signed one made with \
                 -addext basicConstraints=critical,CA:FALSE (see docs/CONFIG.md, [tls])"
            )
        }
        E::InvalidCertificate(C::Other(o)) => format!("{cert} was refused: {}", o.0),
        E::InvalidCertificate(other) => format!("{cert} was refused: {other:?}"),
        E::AlertReceived(alert) => format!("the server ended the handshake ({alert:?})"),
        other => other.to_string(),
    };
    format!("{host_port}: TLS: {why}")
}
