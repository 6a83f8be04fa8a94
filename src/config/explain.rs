//! The effective configuration as an administrator reads it
//! (`GET /admin/api/config`): every leaf key of [`Config`] with its value,
//! which layer set it, and whether it changes without a restart. Secrets
//! never leave the process: a key named like one shows `***`, and a URL
//! with a password in it shows `***` in the password's place.
//!
//! Computed once at start-up from the figment `serve` extracted the
//! configuration from: figment remembers which provider gave each value.

use super::Config;
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;
use serde_json::Value;

/// Which layer a key's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The built-in default.
    Default,
    /// The `--config` TOML file.
    File,
    /// A `NATTER_*` environment variable.
    Env,
    /// A command-line flag of `natter serve`.
    Flag,
    /// Handed to the server whole, without layers (in-process servers).
    Given,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Env => "env",
            Source::Flag => "flag",
            Source::Given => "given",
        }
    }
}

/// One leaf key of the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyReport {
    /// Dotted, as in the TOML file: `files.s3.bucket`.
    pub key: String,
    /// Redacted where it is a secret.
    pub value: Value,
    pub source: Source,
    /// Changes without a restart.
    pub live: bool,
    pub note: Option<String>,
}

/// The keys that change while the server runs: the log filter (the admin
/// console sets it), and the TLS certificate and key (reloaded on SIGHUP or
/// when the files change).
const LIVE: &[&str] = &["log.level", "tls.cert", "tls.key"];

/// The name the command-line flags' provider goes by, so a flag is told
/// from a default (both are serialized values).
const FLAG: &str = "command-line flag";

/// A `natter serve` flag as a figment layer: `key` set to `value`, known
/// as a flag by [`explain`].
pub fn flag<T: Serialize>(key: &str, value: T) -> impl Provider {
    Flag(figment::providers::Serialized::default(key, value))
}

struct Flag<T>(figment::providers::Serialized<T>);

impl<T: Serialize> Provider for Flag<T> {
    fn metadata(&self) -> Metadata {
        Metadata::named(FLAG)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.0.data()
    }
}

/// Every leaf key of `config`, with the layer of `figment` that set it.
pub fn explain(figment: &Figment, config: &Config) -> Vec<KeyReport> {
    report(config, |key| match figment.find_metadata(key) {
        None => Source::Default,
        Some(m) if m.name == FLAG => Source::Flag,
        Some(m) if m.name.contains("environment variable") => Source::Env,
        Some(m) if m.name.contains("TOML") => Source::File,
        Some(_) => Source::Default,
    })
}

/// Every leaf key of a configuration handed over whole: each `given`.
pub fn given(config: &Config) -> Vec<KeyReport> {
    report(config, |_| Source::Given)
}

fn report(config: &Config, source: impl Fn(&str) -> Source) -> Vec<KeyReport> {
    let mut leaves = Vec::new();
    // A Config is plain data: it always serializes.
    let value = serde_json::to_value(config).unwrap_or(Value::Null);
    walk(String::new(), value, &mut leaves);
    leaves
        .into_iter()
        .map(|(key, value)| {
            let live = LIVE.contains(&key.as_str());
            KeyReport {
                value: redact(&key, value),
                source: source(&key),
                live,
                note: (!live).then(|| "restart to change".to_owned()),
                key,
            }
        })
        .collect()
}

/// Sections nest; anything else (arrays too) is a leaf.
fn walk(prefix: String, value: Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                walk(key, v, out);
            }
        }
        v => out.push((prefix, v)),
    }
}

/// A secret's value as shown: a key named like a secret shows `***` when
/// it holds text (a number, such as `session.token_ttl_secs`, or an unset
/// empty value tells nothing); any URL with a password shows `***` for it.
pub fn redact(key: &str, value: Value) -> Value {
    let last = key.rsplit('.').next().unwrap_or(key);
    let secret = ["password", "secret", "token"]
        .iter()
        .any(|w| last.contains(w))
        || last == "access_key_id";
    match value {
        Value::String(s) if secret && !s.is_empty() => Value::String("***".into()),
        Value::String(s) => Value::String(hide_url_password(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| redact(key, v)).collect()),
        v => v,
    }
}

/// `scheme://user:password@host/...` → `scheme://user:***@host/...`;
/// anything else as it is.
fn hide_url_password(s: &str) -> String {
    let Some(start) = s.find("://").map(|i| i + 3) else {
        return s.to_owned();
    };
    let rest = &s[start..];
    let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
    let Some(at) = authority.rfind('@') else {
        return s.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return s.to_owned();
    };
    format!("{}***{}", &s[..start + colon + 1], &s[start + at..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::{Format, Serialized, Toml};
    use serde_json::json;

    #[test]
    fn secrets_and_passwords_in_urls_are_hidden() {
        for (key, value, shown) in [
            ("email.password", json!("hunter2"), json!("***")),
            ("files.s3.secret_access_key", json!("abc"), json!("***")),
            ("files.s3.access_key_id", json!("AKIA"), json!("***")),
            ("x.api_token", json!("t"), json!("***")),
            ("email.password", json!(""), json!("")),
            ("session.token_ttl_secs", json!(3600), json!(3600)),
            ("files.s3.bucket", json!("b"), json!("b")),
            (
                "store.url",
                json!("postgres://natter:pw@db:5432/natter"),
                json!("postgres://natter:***@db:5432/natter"),
            ),
            (
                "cluster.redis_url",
                json!("redis://:s3cret@redis:6379/0"),
                json!("redis://:***@redis:6379/0"),
            ),
            (
                "store.url",
                json!("postgres://natter@db/natter?x=a:b@c"),
                json!("postgres://natter@db/natter?x=a:b@c"),
            ),
            (
                "store.url",
                json!("postgres://db/natter"),
                json!("postgres://db/natter"),
            ),
            (
                "listen.tcp",
                json!("127.0.0.1:7700"),
                json!("127.0.0.1:7700"),
            ),
        ] {
            assert_eq!(redact(key, value.clone()), shown, "{key} = {value}");
        }
    }

    #[test]
    fn each_key_names_the_layer_that_set_it() {
        let f = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(
                "[files.s3]\nsecret_access_key = \"k\"\n[log]\nlevel = \"debug\"",
            ))
            .merge(flag("listen.http", "127.0.0.1:0"));
        let c: Config = f.extract().unwrap();
        let r = explain(&f, &c);
        let find = |k: &str| r.iter().find(|x| x.key == k).unwrap().clone();
        let s3 = find("files.s3.secret_access_key");
        assert_eq!((s3.source, s3.value), (Source::File, json!("***")));
        let level = find("log.level");
        assert_eq!(
            (level.source, level.live, level.note),
            (Source::File, true, None)
        );
        assert_eq!(find("listen.http").source, Source::Flag);
        let tcp = find("listen.tcp");
        assert_eq!((tcp.source, tcp.live), (Source::Default, false));
        assert_eq!(tcp.note.as_deref(), Some("restart to change"));
        assert!(find("tls.cert").live);
        // Leaves only, each once.
        assert!(r
            .iter()
            .all(|k| !k.value.is_object() || k.value == json!({})));
        assert!(given(&c).iter().all(|k| k.source == Source::Given));
        assert_eq!(given(&c).len(), r.len());
    }
}
