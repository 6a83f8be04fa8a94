//! `natter client ...`: a command-line client for people and scripts.
//! Output with `--json` is one JSON object per line.

use super::auth::{self, Identity, Kind};
use super::new_client_msg_id;
use super::show::{self, View};
use super::social::{self, FriendOp, GroupOp, Output};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use natter_client::{pb, Client, Inbox, ServerFrame};
use serde_json::json;

#[derive(Args, Debug)]
#[command(after_long_help = "\
Log in once with `natter client login --user NAME`: it asks for the password \
(or reads NATTER_PASSWORD) and saves the session in the configuration \
directory ($NATTER_CONFIG_DIR, else $XDG_CONFIG_HOME/natter, else \
~/.config/natter; file mode 0600), so later commands need no password. \
Without a saved session a command asks for the password on the terminal, \
or reads NATTER_PASSWORD. Passwords are never taken on the command line.")]
pub struct ClientArgs {
    /// Server address: host:port (TCP), ws://host:port (WebSocket), or
    /// http://host:port of any node's HTTP port, asked which node to use.
    /// tls://host:port and wss://host:port connect over TLS, and
    /// https://host:port asks over HTTPS and connects to the node's TLS port.
    #[arg(long, env = "NATTER_SERVER", default_value = "127.0.0.1:7700")]
    pub server: String,
    /// A PEM file of the CA that signed the server's certificate (a
    /// private CA); without it, the bundled web roots are trusted.
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: ClientCommand,
}

/// Who a command acts as. The password, when no saved session is found,
/// comes from NATTER_PASSWORD or a prompt.
#[derive(Args, Debug)]
pub struct Login {
    /// The account to act as (default: the last one `natter client login`
    /// saved for this server).
    #[arg(long, short)]
    pub user: Option<String>,
    /// Device id of the session (default: this machine's id, kept in the
    /// configuration directory; `listen` uses "<id>-listen", so a command
    /// in another terminal does not end a running listen).
    #[arg(long)]
    pub device: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create an account; the password is asked for twice (or read from
    /// NATTER_PASSWORD).
    Register {
        /// The new account's name: 3-32 of a-z 0-9 _ . -, starting with a letter.
        username: String,
    },
    /// Log in and save the session, so later commands need no password.
    Login {
        /// The account to log in as.
        #[arg(long, short)]
        user: String,
        /// Save the session of this device only (default: this machine's
        /// two devices, one for commands and one for listen).
        #[arg(long)]
        device: Option<String>,
    },
    /// End the saved sessions of a user on the server and forget them.
    Logout {
        /// The account (default: the one last logged in on this server).
        #[arg(long, short)]
        user: Option<String>,
    },
    /// Show who commands act as: the account, its id and the device.
    Whoami {
        #[command(flatten)]
        login: Login,
        /// Print one JSON object.
        /// Print JSON, one object per line.
        #[arg(long)]
        json: bool,
    },
    /// Send a text message to a user; prints the ACK.
    Send {
        #[command(flatten)]
        login: Login,
        /// The recipient's username.
        #[arg(long)]
        to: String,
        /// Idempotency key; resending with the same key never duplicates.
        #[arg(long)]
        client_msg_id: Option<String>,
        /// Print JSON, one object per line.
        #[arg(long)]
        json: bool,
        /// The message text.
        text: String,
    },
    /// Print every message the user can see, then exit.
    Sync {
        #[command(flatten)]
        login: Login,
        /// Print JSON, one object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print the conversation with one user, newest last.
    History {
        #[command(flatten)]
        login: Login,
        /// The other user of the conversation.
        #[arg(long)]
        with: String,
        /// How many of the newest messages to print.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON, one object per line.
        #[arg(long)]
        json: bool,
    },
    /// Friends: requests, list, remarks, blocks, search.
    Friend {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        op: FriendOp,
    },
    /// Groups and rooms: create, join, members, roles, moderation, send.
    Group {
        #[command(flatten)]
        login: Login,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        op: GroupOp,
    },
    /// Every conversation with its last message and unread count.
    Conversations {
        #[command(flatten)]
        login: Login,
        /// Print JSON, one object per line.
        #[arg(long)]
        json: bool,
    },
    /// Mark a conversation read up to a seq.
    Read {
        #[command(flatten)]
        login: Login,
        /// The conversation id.
        conversation: u64,
        /// Everything up to and including this seq is read.
        seq: u64,
    },
    /// Recall one of your messages (or, as a group admin, anyone's).
    Recall {
        #[command(flatten)]
        login: Login,
        /// The conversation id.
        conversation: u64,
        /// The seq of the message to recall.
        seq: u64,
    },
    /// Upload a file (resuming an upload of it a cut left unfinished) and
    /// send it to a user or a group as a file message.
    Upload {
        #[command(flatten)]
        login: Login,
        /// The file.
        file: std::path::PathBuf,
        /// To this user ...
        #[arg(long, conflicts_with = "group", required_unless_present = "group")]
        to: Option<String>,
        /// ... or into this group or room (its conversation id).
        #[arg(long)]
        group: Option<u64>,
        /// The server's HTTP address (default: the server when it is an
        /// http(s):// one, else port 7780 of its host).
        #[arg(long, env = "NATTER_HTTP")]
        http: Option<String>,
        /// Print JSON, one object per line.
        #[arg(long)]
        json: bool,
    },
    /// Download a file (going on from a partial download left by a cut),
    /// checking its SHA-256.
    Download {
        #[command(flatten)]
        login: Login,
        /// The file's id (a file message's `file_id`).
        id: String,
        /// Where to write it (default: the file id, in this directory).
        #[arg(long, short)]
        out: Option<std::path::PathBuf>,
        /// The server's HTTP address (as for upload).
        #[arg(long, env = "NATTER_HTTP")]
        http: Option<String>,
    },
    /// Print messages as they arrive until interrupted (or --count arrive).
    Listen {
        #[command(flatten)]
        login: Login,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Print JSON, one object per line.
        #[arg(long)]
        json: bool,
    },
}

/// Connects and authenticates as `l` says, on this machine's device for
/// `kind` unless `--device` names one.
async fn login(
    server: &Server<'_>,
    l: &Login,
    kind: Kind,
) -> anyhow::Result<(Client, pb::LoginOk)> {
    let id = auth::identity(server.name, l.user.as_deref(), l.device.as_deref(), kind)?;
    auth::sign_in(server.name, server.addr, &id).await
}

/// The server as given (it names saved sessions) and the address to use.
struct Server<'a> {
    name: &'a str,
    addr: &'a str,
}

/// Why `listen` stopped, in words, with what to do next.
fn ended(user: &str, server: &Server<'_>, d: &pb::Disconnect) -> String {
    let login = format!("natter client --server {} login --user {user}", server.name);
    match d.reason() {
        pb::DisconnectReason::LoggedOut => {
            format!("{user} was logged out; to listen again, log in: `{login}`")
        }
        pb::DisconnectReason::Kicked => {
            format!(
                "this session of {user} was ended ({}); log in again: `{login}`",
                d.message
            )
        }
        _ => format!("disconnected by the server: {}", d.message),
    }
}

pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    if let Some(ca) = &args.ca {
        auth::trust_ca(ca)?;
    }
    let server = natter_client::resolve_with(&args.server, None, false, &auth::options())
        .await
        .with_context(|| format!("cannot ask {} which node to use", args.server))?;
    let server = &Server {
        name: &args.server,
        addr: server.as_str(),
    };
    match args.command {
        ClientCommand::Register { username } => {
            let password = auth::new_password(&username)?;
            let c = auth::connect(server.addr).await?;
            c.register(&username, &password)
                .await
                .context("register failed")?;
            println!("registered {username}");
        }
        ClientCommand::Login { user, device } => {
            let devices = match device {
                Some(d) => vec![d],
                None => vec![
                    auth::device_id(Kind::OneShot)?,
                    auth::device_id(Kind::Listen)?,
                ],
            };
            let Some(password) = auth::password(&format!("password for {user}: "))? else {
                bail!(
                    "no password: set {}, or run this on a terminal to be asked for it",
                    auth::PASSWORD_ENV
                );
            };
            let mut sessions = auth::Sessions::load()?;
            let mut expires = 0;
            for device in devices {
                let id = Identity {
                    user: user.clone(),
                    device,
                };
                let (_, ok) = auth::password_login(server.addr, &id, &password).await?;
                auth::remember(&mut sessions, server.name, &id.device, &ok);
                expires = ok.token_expires_at_ms;
            }
            let path = sessions.save()?;
            println!(
                "logged in as {user} on {}; session saved in {} (valid for {} more days)",
                server.name,
                path.display(),
                (expires - natter_runtime::clock::now_ms()).max(0) / 86_400_000
            );
        }
        ClientCommand::Logout { user } => {
            let user = auth::user_or_current(server.name, user.as_deref())?;
            let n = auth::logout(server.name, server.addr, &user).await?;
            let now = match auth::current(server.name)? {
                Some(u) => format!("commands now act as {u}"),
                None => format!(
                    "nobody is logged in on {} now: `natter client login --user NAME`",
                    server.name
                ),
            };
            println!("logged out {user} ({n} sessions ended); {now}");
        }
        ClientCommand::Whoami { login: l, json } => {
            let id = auth::identity(
                server.name,
                l.user.as_deref(),
                l.device.as_deref(),
                Kind::OneShot,
            )?;
            let (_, ok) = auth::sign_in(server.name, server.addr, &id).await?;
            if json {
                println!(
                    "{}",
                    json!({"user_id": ok.user_id, "username": ok.username, "device": id.device,
                           "server": server.name, "token_expires_at_ms": ok.token_expires_at_ms})
                );
            } else {
                println!(
                    "{} (user {}) on {}, device {}",
                    ok.username, ok.user_id, server.name, id.device
                );
            }
        }
        ClientCommand::Send {
            login: l,
            to,
            client_msg_id,
            json: json_out,
            text,
        } => {
            let (c, _) = login(server, &l, Kind::OneShot).await?;
            let peer = c
                .user_id(&to)
                .await
                .with_context(|| format!("unknown recipient {to}"))?;
            let id = client_msg_id.unwrap_or_else(new_client_msg_id);
            let ack = c.send_text(peer, &id, &text).await.context("send failed")?;
            if json_out {
                println!(
                    "{}",
                    json!({"conversation_id": ack.conversation_id, "seq": ack.seq, "msg_id": ack.msg_id,
                           "server_ts_ms": ack.server_ts_ms, "duplicate": ack.duplicate, "client_msg_id": id})
                );
            } else {
                println!(
                    "sent: conversation {} seq {} msg_id {}",
                    ack.conversation_id, ack.seq, ack.msg_id
                );
            }
        }
        ClientCommand::Upload {
            login: l,
            file,
            to,
            group,
            http,
            json: json_out,
        } => {
            let (c, ok) = login(server, &l, Kind::OneShot).await?;
            let target = match (to, group) {
                (Some(to), _) => pb::send::Target::PeerUserId(
                    c.user_id(&to)
                        .await
                        .with_context(|| format!("unknown recipient {to}"))?,
                ),
                (None, Some(g)) => pb::send::Target::ConversationId(g),
                (None, None) => bail!("give --to USER or --group ID"),
            };
            let base = super::files::http_base(server.name, http.as_deref());
            let path = file.clone();
            let (id, sha256, size) =
                tokio::task::spawn_blocking(move || super::files::upload(&base, &ok.token, &path))
                    .await??;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let content = json!({"file_id": id, "name": name, "size": size, "sha256": sha256});
            let send = pb::Send {
                client_msg_id: format!("file-{id}"),
                target: Some(target),
                body: Some(pb::Body {
                    kind: pb::BodyKind::File as i32,
                    content: content.to_string(),
                }),
                ..Default::default()
            };
            let ack = c
                .send(send)
                .await
                .context("sending the file message failed")?;
            if json_out {
                println!(
                    "{}",
                    json!({"file_id": id, "sha256": sha256, "size": size,
                           "conversation_id": ack.conversation_id, "seq": ack.seq})
                );
            } else {
                println!(
                    "uploaded {name} ({size} bytes) as {id}; sent: conversation {} seq {}",
                    ack.conversation_id, ack.seq
                );
            }
        }
        ClientCommand::Download {
            login: l,
            id,
            out,
            http,
        } => {
            let (_, ok) = login(server, &l, Kind::OneShot).await?;
            let base = super::files::http_base(server.name, http.as_deref());
            let out = out.unwrap_or_else(|| std::path::PathBuf::from(&id));
            let path = out.clone();
            let n = tokio::task::spawn_blocking(move || {
                super::files::download(&base, &ok.token, &id, &path)
            })
            .await??;
            println!(
                "downloaded {} bytes to {} (SHA-256 checked)",
                n,
                out.display()
            );
        }
        ClientCommand::Sync {
            login: l,
            json: json_out,
        } => {
            let (c, _) = login(server, &l, Kind::OneShot).await?;
            let mut inbox = Inbox::default();
            let messages = inbox.sync(&c, 500).await.context("sync failed")?;
            let mut view = View::default();
            view.learn(&c, &mut inbox, &messages).await?;
            for m in &messages {
                println!("{}", view.line(&inbox, m, json_out));
            }
            for cur in inbox.cursors() {
                c.delivery_ack(cur.conversation_id, cur.seq).await?;
            }
        }
        ClientCommand::History {
            login: l,
            with,
            limit,
            json: json_out,
        } => {
            let (c, me) = login(server, &l, Kind::OneShot).await?;
            let peer = c
                .user_id(&with)
                .await
                .with_context(|| format!("unknown user {with}"))?;
            let page = c.sync_page(vec![], 0, 1).await?;
            let Some(conv) = page
                .conversations
                .iter()
                .find(|cv| cv.member_ids.contains(&peer) && cv.member_ids.contains(&me.user_id))
            else {
                bail!("no conversation with {with}");
            };
            let h = c.history(conv.conversation_id, 0, limit).await?;
            let mut inbox = Inbox::default();
            inbox
                .conversations
                .insert(conv.conversation_id, conv.clone());
            let mut view = View::default();
            view.learn(&c, &mut inbox, &h.messages).await?;
            for m in h.messages.iter().rev() {
                println!("{}", view.line(&inbox, m, json_out));
            }
        }
        ClientCommand::Friend { login: l, out, op } => {
            let (c, _) = login(server, &l, Kind::OneShot).await?;
            social::friend(&c, op, out.json).await?;
        }
        ClientCommand::Group { login: l, out, op } => {
            let (c, _) = login(server, &l, Kind::OneShot).await?;
            social::group(&c, op, out.json).await?;
        }
        ClientCommand::Conversations { login: l, json } => {
            let (c, _) = login(server, &l, Kind::OneShot).await?;
            let list = c.conversations(0).await?;
            let mut view = View::default();
            if !json {
                let users = list.iter().flat_map(|s| s.last_message.iter());
                view.learn_users(&c, users.flat_map(show::named).collect())
                    .await?;
            }
            for s in list {
                if json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    let last = match &s.last_message {
                        Some(m) if s.kind() != pb::ConversationKind::Direct => view.preview(m),
                        Some(m) => view.said(m),
                        None => String::new(),
                    };
                    let flag = if s.mentioned { " @" } else { "" };
                    println!(
                        "[{}] {} unread {}{flag}: {last}",
                        s.conversation_id, s.title, s.unread
                    );
                }
            }
        }
        ClientCommand::Read {
            login: l,
            conversation,
            seq,
        } => {
            let (c, _) = login(server, &l, Kind::OneShot).await?;
            c.mark_read(conversation, seq).await?;
        }
        ClientCommand::Recall {
            login: l,
            conversation,
            seq,
        } => {
            let (c, _) = login(server, &l, Kind::OneShot).await?;
            c.recall(conversation, seq).await.context("recall failed")?;
        }
        ClientCommand::Listen {
            login: l,
            count,
            json: json_out,
        } => {
            let (mut c, me) = login(server, &l, Kind::Listen).await?;
            let mut inbox = Inbox::default();
            inbox.sync(&c, 500).await?;
            let mut view = View::default();
            eprintln!("listening as {} (Ctrl-C to stop)", me.username);
            let mut seen = 0;
            while count.is_none_or(|n| seen < n) {
                let Some(push) = c.next_push().await else {
                    bail!("connection closed");
                };
                match push {
                    ServerFrame::MessagePush(p) => {
                        let Some(m) = p.message else { continue };
                        let fresh = match inbox.accept(m.clone()) {
                            natter_client::Accepted::New(m) => vec![m],
                            natter_client::Accepted::Duplicate => vec![],
                            natter_client::Accepted::Gap => inbox.sync(&c, 500).await?,
                        };
                        view.learn(&c, &mut inbox, &fresh).await?;
                        for m in fresh {
                            println!("{}", view.line(&inbox, &m, json_out));
                            c.delivery_ack(m.conversation_id, m.seq).await?;
                            seen += 1;
                        }
                    }
                    ServerFrame::Disconnect(d) => bail!("{}", ended(&me.username, server, &d)),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}
