//! How `natter client` commands authenticate: this machine's device ids,
//! sessions saved by `natter client login`, and passwords from a prompt or
//! `NATTER_PASSWORD` (never from the command line, where `ps` shows them).
//!
//! A device holds one session, and resuming a session on a second
//! connection ends the first (`REPLACED`), so `listen` uses a device of its
//! own (`<machine id>-listen`): a one-shot command in another terminal,
//! as the same user, leaves a running `listen` alone.

use anyhow::{bail, Context};
use natter_client::{pb, Client, ClientError, ConnectOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The environment variable a password is read from when it is set.
pub const PASSWORD_ENV: &str = "NATTER_PASSWORD";
/// The environment variable naming the configuration directory.
pub const CONFIG_DIR_ENV: &str = "NATTER_CONFIG_DIR";
const SESSIONS_FILE: &str = "sessions.json";
const DEVICE_FILE: &str = "device";
/// What `listen`'s device id adds to this machine's.
const LISTEN_SUFFIX: &str = "-listen";

/// Which of this machine's two devices a command uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Commands that log in, do one thing and exit.
    OneShot,
    /// `listen`, which holds its session until stopped.
    Listen,
}

/// The client's configuration directory: `$NATTER_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/natter`, else `$HOME/.config/natter`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var(CONFIG_DIR_ENV) {
        return Ok(d.into());
    }
    if let Some(d) = var("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(d).join("natter"));
    }
    match var("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".config").join("natter")),
        None => bail!("no configuration directory: set {CONFIG_DIR_ENV} (or HOME)"),
    }
}

/// Creates `dir` (and its parents) readable by its owner only.
fn make_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes `bytes` to `path` as a new file only its owner can read, then
/// renames it into place, so a reader never sees half a file.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// This machine's device id for `kind`: a random id made once and kept in
/// the configuration directory, with `-listen` for [`Kind::Listen`].
pub fn device_id(kind: Kind) -> anyhow::Result<String> {
    let dir = config_dir()?;
    let path = dir.join(DEVICE_FILE);
    let id = match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
        Ok(_) => new_device_id(&dir, &path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_device_id(&dir, &path)?,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(match kind {
        Kind::OneShot => id,
        Kind::Listen => format!("{id}{LISTEN_SUFFIX}"),
    })
}

fn new_device_id(dir: &Path, path: &Path) -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for a device id: {e}"))?;
    let id = format!(
        "cli-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    make_dir(dir)?;
    write_private(path, format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// One saved session: a device's bearer token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedToken {
    pub token: String,
    pub expires_at_ms: i64,
}

/// What `natter client login` saved for one account on one server.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SavedUser {
    pub user_id: u64,
    /// Device id → its session.
    pub devices: BTreeMap<String, SavedToken>,
}

/// Everything saved for one server (as given to `--server`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SavedServer {
    /// The user commands act as when `--user` is not given: the last one
    /// logged in; when they log out, the most recently logged in of those
    /// left (none when nobody is).
    pub current: Option<String>,
    pub users: BTreeMap<String, SavedUser>,
}

impl SavedServer {
    /// The user logged in most recently: the one whose newest session
    /// expires last (every session of a server lasts as long).
    fn newest_user(&self) -> Option<String> {
        self.users
            .iter()
            .max_by_key(|(_, u)| u.devices.values().map(|t| t.expires_at_ms).max())
            .map(|(name, _)| name.clone())
    }
}

/// The sessions file: `<config dir>/sessions.json`, mode 0600.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sessions {
    pub servers: BTreeMap<String, SavedServer>,
}

impl Sessions {
    pub fn path() -> anyhow::Result<PathBuf> {
        Ok(config_dir()?.join(SESSIONS_FILE))
    }

    /// The saved sessions; none when there is no file (or no directory).
    pub fn load() -> anyhow::Result<Sessions> {
        let Ok(path) = Sessions::path() else {
            return Ok(Sessions::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => serde_json::from_str(&s).with_context(|| {
                format!("{} is damaged; delete it and log in again", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sessions::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = Sessions::path()?;
        if let Some(dir) = path.parent() {
            make_dir(dir)?;
        }
        write_private(&path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(path)
    }

    fn token(&self, server: &str, user: &str, device: &str) -> Option<&SavedToken> {
        self.servers
            .get(server)?
            .users
            .get(user)?
            .devices
            .get(device)
    }

    /// Forgets one device's session (and the user, once it has none left).
    fn forget(&mut self, server: &str, user: &str, device: &str) {
        let Some(s) = self.servers.get_mut(server) else {
            return;
        };
        if let Some(u) = s.users.get_mut(user) {
            u.devices.remove(device);
            if u.devices.is_empty() {
                s.users.remove(user);
            }
        }
        if s.current.as_deref() == Some(user) && !s.users.contains_key(user) {
            s.current = s.newest_user();
        }
        if s.users.is_empty() {
            self.servers.remove(server);
        }
    }
}

/// `user`, else the user last logged in on `server`.
pub fn user_or_current(server: &str, user: Option<&str>) -> anyhow::Result<String> {
    if let Some(u) = user {
        return Ok(u.to_owned());
    }
    let current = Sessions::load()?
        .servers
        .get(server)
        .and_then(|s| s.current.clone());
    match current {
        Some(u) => Ok(u),
        None => bail!(
            "no user: give --user NAME, or log in first with `natter client --server {server} login --user NAME`"
        ),
    }
}

/// Who a command acts as, and on which device.
pub struct Identity {
    pub user: String,
    pub device: String,
}

/// Picks the user (`--user`, else the one last logged in on `server`) and
/// the device (`--device`, else this machine's id for `kind`).
pub fn identity(
    server: &str,
    user: Option<&str>,
    device: Option<&str>,
    kind: Kind,
) -> anyhow::Result<Identity> {
    let user = user_or_current(server, user)?;
    let device = match device {
        Some(d) => d.to_owned(),
        None => device_id(kind)?,
    };
    Ok(Identity { user, device })
}

/// The password: `NATTER_PASSWORD` when set, else asked for on the terminal.
/// `None` when there is neither (a script without the variable).
pub fn password(prompt: &str) -> anyhow::Result<Option<String>> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(Some(p));
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let p = rpassword::prompt_password(prompt).context("cannot read the password")?;
    Ok(Some(p))
}

/// A new password for `register`: from `NATTER_PASSWORD`, or typed twice.
pub fn new_password(user: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    let Some(p) = password(&format!("new password for {user}: "))? else {
        bail!("no password: set {PASSWORD_ENV}, or run this on a terminal to be asked for it");
    };
    let again = rpassword::prompt_password("again: ").context("cannot read the password")?;
    if p != again {
        bail!("the two passwords differ");
    }
    Ok(p)
}

/// How this process connects: set once, from `--ca`.
static OPTIONS: std::sync::OnceLock<ConnectOptions> = std::sync::OnceLock::new();

/// Trusts `ca` (a PEM file) for `tls://` and `wss://` servers, instead of
/// the bundled web roots.
pub fn trust_ca(ca: &std::path::Path) -> anyhow::Result<()> {
    let tls = natter_client::client_config(Some(ca)).map_err(anyhow::Error::msg)?;
    let _ = OPTIONS.set(ConnectOptions {
        tls: Some(tls),
        ..ConnectOptions::default()
    });
    Ok(())
}

/// How this process connects (and asks an `https://` node which node to use).
pub fn options() -> ConnectOptions {
    OPTIONS.get().cloned().unwrap_or_default()
}

pub async fn connect(server: &str) -> anyhow::Result<Client> {
    Client::connect_with(server, options())
        .await
        .with_context(|| format!("cannot connect to {server}"))
}

/// Logs in with a password; "login failed" with the server's reason.
pub async fn password_login(
    addr: &str,
    id: &Identity,
    password: &str,
) -> anyhow::Result<(Client, pb::LoginOk)> {
    let mut c = connect(addr).await?;
    let ok = c
        .login(&id.user, password, &id.device)
        .await
        .context("login failed")?;
    Ok((c, ok))
}

/// A token the server no longer takes: the session ended.
fn token_refused(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(pb::ErrorCode::TokenInvalid | pb::ErrorCode::TokenExpired)
    )
}

/// Opens an authenticated connection for a command: resumes the session
/// saved for (server, user, device) if there is one, else logs in with the
/// password. `server` names the saved sessions (as given to `--server`);
/// `addr` is where to connect (a cluster node may have been assigned).
pub async fn sign_in(
    server: &str,
    addr: &str,
    id: &Identity,
) -> anyhow::Result<(Client, pb::LoginOk)> {
    let mut sessions = Sessions::load()?;
    let mut ended = None;
    if let Some(saved) = sessions.token(server, &id.user, &id.device).cloned() {
        let mut c = connect(addr).await?;
        match c.resume(&saved.token, &id.device).await {
            Ok(ok) => return Ok((c, ok)),
            Err(e) if token_refused(&e) => {
                let why = if e.code() == Some(pb::ErrorCode::TokenExpired) {
                    "has expired"
                } else {
                    "was ended (logged out, revoked, or replaced by a newer login)"
                };
                ended = Some(why);
                sessions.forget(server, &id.user, &id.device);
                sessions.save()?;
            }
            Err(e) => return Err(e).context("resuming the saved session failed"),
        }
    }
    let Some(p) = password(&format!("password for {}: ", id.user))? else {
        let login = format!("natter client --server {server} login --user {}", id.user);
        match ended {
            Some(why) => bail!(
                "the saved session of {} on {server} {why}; log in again: `{login}`",
                id.user
            ),
            None => bail!(
                "not logged in as {} on {server}: run `{login}` first, or set {PASSWORD_ENV}",
                id.user
            ),
        }
    };
    password_login(addr, id, &p).await
}

/// Saves `ok` as the session of (server, user, device), and makes the user
/// the server's current one.
pub fn remember(sessions: &mut Sessions, server: &str, device: &str, ok: &pb::LoginOk) {
    let s = sessions.servers.entry(server.to_owned()).or_default();
    s.current = Some(ok.username.clone());
    let u = s.users.entry(ok.username.clone()).or_default();
    u.user_id = ok.user_id;
    u.devices.insert(
        device.to_owned(),
        SavedToken {
            token: ok.token.clone(),
            expires_at_ms: ok.token_expires_at_ms,
        },
    );
}

/// Ends every saved session of `user` on `server` and forgets them:
/// resumes one (a device other than `listen`'s when it can) and logs out
/// with the other devices' tokens, so a running `listen` is told
/// LOGGED_OUT instead of being replaced by the resume. Returns how many
/// saved sessions were forgotten.
pub async fn logout(server: &str, addr: &str, user: &str) -> anyhow::Result<usize> {
    let mut sessions = Sessions::load()?;
    let mut devices: Vec<(String, SavedToken)> = sessions
        .servers
        .get(server)
        .and_then(|s| s.users.get(user))
        .map(|u| u.devices.clone().into_iter().collect())
        .unwrap_or_default();
    if devices.is_empty() {
        bail!("no saved session of {user} on {server}");
    }
    // A listen device is resumed last: resuming it would close the
    // listener as REPLACED before the logout could say LOGGED_OUT.
    devices.sort_by_key(|(d, _)| d.ends_with(LISTEN_SUFFIX));
    for (i, (device, saved)) in devices.iter().enumerate() {
        let mut c = connect(addr).await?;
        match c.resume(&saved.token, device).await {
            Ok(_) => {
                let others = devices[i + 1..].iter().map(|(_, t)| t.token.clone());
                c.logout_with(others.collect())
                    .await
                    .context("logout failed")?;
                break;
            }
            // Already ended on the server: only the local copy is left.
            Err(e) if token_refused(&e) => {}
            Err(e) => return Err(e).context("logout failed"),
        }
    }
    for (device, _) in &devices {
        sessions.forget(server, user, device);
    }
    sessions.save()?;
    Ok(devices.len())
}

/// The user commands act as on `server` without `--user`, if any.
pub fn current(server: &str) -> anyhow::Result<Option<String>> {
    Ok(Sessions::load()?
        .servers
        .get(server)
        .and_then(|s| s.current.clone()))
}
