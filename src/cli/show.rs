//! How messages read to a person: a group message as said in its group, a
//! system event (JSON on the wire) as a sentence ("alice created the group
//! team with bob"), a recalled message as such. `View` holds the names it
//! needs, asked for once each.

use anyhow::Context;
use natter_client::{pb, Client, Inbox};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Names of users and groups, learned as messages need them.
#[derive(Default)]
pub struct View {
    users: HashMap<u64, String>,
    groups: HashMap<u64, String>,
}

impl View {
    fn user(&self, id: u64) -> String {
        self.users
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    }

    fn group(&self, id: u64) -> String {
        self.groups
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("group {id}"))
    }

    /// Learns the names `messages` need: their senders, 1:1 peers, the
    /// users their events name, and their groups' names. A conversation
    /// `inbox` does not know yet is asked for first.
    pub async fn learn(
        &mut self,
        c: &Client,
        inbox: &mut Inbox,
        messages: &[pb::Message],
    ) -> anyhow::Result<()> {
        let mut users = Vec::new();
        for m in messages {
            if !inbox.conversations.contains_key(&m.conversation_id) {
                describe(c, inbox, m).await?;
            }
            users.extend(named(m));
            match inbox.conversations.get(&m.conversation_id) {
                Some(cv) if cv.kind() == pb::ConversationKind::Direct => {
                    users.extend(cv.member_ids.iter().copied())
                }
                _ if !self.groups.contains_key(&m.conversation_id) => {
                    // A group left or removed from is not found any more:
                    // it is then named by its id.
                    if let Ok(g) = c.group(m.conversation_id).await {
                        self.groups.insert(m.conversation_id, g.name);
                    }
                }
                _ => {}
            }
        }
        users.retain(|u| !self.users.contains_key(u));
        self.learn_users(c, users).await
    }

    /// Learns the names of `ids` with one lookup per 500.
    pub async fn learn_users(&mut self, c: &Client, mut ids: Vec<u64>) -> anyhow::Result<()> {
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(500) {
            for u in c.users(chunk.to_vec(), vec![]).await? {
                self.users.insert(u.user_id, u.username);
            }
        }
        Ok(())
    }

    /// Where `m` went: the group's name, or the 1:1 peer other than its sender.
    fn target(&self, inbox: &Inbox, m: &pb::Message) -> String {
        match inbox.conversations.get(&m.conversation_id) {
            Some(cv) if cv.kind() == pb::ConversationKind::Direct => {
                let peer = cv.member_ids.iter().copied().find(|u| *u != m.sender_id);
                self.user(peer.unwrap_or(m.sender_id))
            }
            _ => self.group(m.conversation_id),
        }
    }

    /// One line for `m`: `[conv#seq] from -> to: text`, or for an event
    /// `[conv#seq] group: what happened`; with `json_out` a JSON object
    /// (`event` holds the sentence of a system event, `text` its JSON).
    pub fn line(&self, inbox: &Inbox, m: &pb::Message, json_out: bool) -> String {
        let body = m.body.clone().unwrap_or_default();
        let (from, to) = (self.user(m.sender_id), self.target(inbox, m));
        let said = self.said(m);
        if json_out {
            let mut v = json!({
                "conversation_id": m.conversation_id,
                "seq": m.seq,
                "msg_id": m.msg_id,
                "from": from,
                "to": to,
                "kind": body.kind().as_str_name().trim_start_matches("BODY_KIND_").to_ascii_lowercase(),
                "text": body.content,
                "client_msg_id": m.client_msg_id,
                "server_ts_ms": m.server_ts_ms,
            });
            if body.kind() == pb::BodyKind::System {
                v["event"] = said.into();
            }
            v.to_string()
        } else if body.kind() == pb::BodyKind::System {
            format!("[{}#{}] {to}: {said}", m.conversation_id, m.seq)
        } else {
            format!("[{}#{}] {from} -> {to}: {said}", m.conversation_id, m.seq)
        }
    }

    /// A group's last message in a list: "alice: text", or an event alone.
    pub fn preview(&self, m: &pb::Message) -> String {
        match event(m) {
            Some(_) => self.said(m),
            None => format!("{}: {}", self.user(m.sender_id), self.said(m)),
        }
    }

    /// What `m` says: its text, "(recalled)", or its event as a sentence.
    pub fn said(&self, m: &pb::Message) -> String {
        let body = m.body.clone().unwrap_or_default();
        match body.kind() {
            pb::BodyKind::Recalled => "(recalled)".into(),
            pb::BodyKind::System => match event(m) {
                Some(e) => self.sentence(&e, m),
                // A list's preview may leave an event's content out.
                None if body.content.is_empty() => "(an event)".into(),
                None => body.content,
            },
            _ => body.content,
        }
    }

    /// A system event as a person says it.
    fn sentence(&self, e: &Value, m: &pb::Message) -> String {
        let actor = self.user(e["actor_id"].as_u64().unwrap_or(m.sender_id));
        let users = ids(e)
            .into_iter()
            .map(|u| self.user(u))
            .collect::<Vec<_>>()
            .join(", ");
        let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
        match e["type"].as_str().unwrap_or("") {
            "created" if users.is_empty() => format!("{actor} created the group {}", s("name")),
            "created" => format!("{actor} created the group {} with {users}", s("name")),
            "joined" if users == actor || users.is_empty() => format!("{actor} joined"),
            "joined" => format!("{users} joined (approved by {actor})"),
            "invited" => format!("{actor} added {users}"),
            "left" => format!("{users} left"),
            "kicked" => format!("{actor} removed {users}"),
            "role_changed" => format!("{actor} made {users} {}", article(&s("role"))),
            "owner_transferred" => format!("{actor} made {users} the owner"),
            "muted" => {
                let mins = (e["until_ms"].as_i64().unwrap_or(0) - m.server_ts_ms).max(0) / 60_000;
                format!("{actor} muted {users} for {} min", mins.max(1))
            }
            "unmuted" => format!("{actor} unmuted {users}"),
            "updated" => format!("{actor} {}", changes(e)),
            "dismissed" => format!("{actor} dismissed the group"),
            "recalled" => format!("{actor} recalled message {}", e["seq"]),
            other => format!("{actor}: {other} (an event this client does not know)"),
        }
    }
}

fn article(role: &str) -> String {
    match role {
        "admin" => "an admin".into(),
        "member" => "a member".into(),
        other => other.into(),
    }
}

/// What an `updated` event changed, as "renamed the group to x; ...".
fn changes(e: &Value) -> String {
    let mut out = Vec::new();
    if let Some(n) = e["name"].as_str() {
        out.push(format!("renamed the group to {n}"));
    }
    if let Some(n) = e["notice"].as_str() {
        out.push(format!("set the notice to \"{n}\""));
    }
    if let Some(p) = e["join_policy"].as_str() {
        out.push(format!("made joining {p}"));
    }
    match e["muted_all"].as_bool() {
        Some(true) => out.push("muted everyone".into()),
        Some(false) => out.push("lifted the mute on everyone".into()),
        None => {}
    }
    if e["invite_code_reset"].as_bool() == Some(true) {
        out.push("reset the invite code".into());
    }
    if out.is_empty() {
        return "changed the group".into();
    }
    out.join("; ")
}

/// A system event's JSON, when `m` is one.
fn event(m: &pb::Message) -> Option<Value> {
    let body = m.body.as_ref()?;
    if body.kind() != pb::BodyKind::System {
        return None;
    }
    serde_json::from_str(&body.content).ok()
}

/// The users `m` names: its sender and those of its event.
pub fn named(m: &pb::Message) -> Vec<u64> {
    let mut out = vec![m.sender_id];
    if let Some(e) = event(m) {
        out.extend(e["actor_id"].as_u64());
        out.extend(ids(&e));
    }
    out
}

fn ids(e: &Value) -> Vec<u64> {
    e["user_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Asks the server to describe `m`'s conversation (one Sync page of one
/// message starting at it) and adds it to `inbox`, leaving the cursors.
async fn describe(c: &Client, inbox: &mut Inbox, m: &pb::Message) -> anyhow::Result<()> {
    let mut cursors = inbox.cursors();
    cursors.retain(|cur| cur.conversation_id != m.conversation_id);
    cursors.push(pb::Cursor {
        conversation_id: m.conversation_id,
        seq: m.seq.saturating_sub(1),
    });
    let page = c
        .sync_page(cursors, m.conversation_id.saturating_sub(1), 1)
        .await
        .context("cannot ask which conversation a message is in")?;
    for cv in page.conversations {
        inbox.conversations.entry(cv.conversation_id).or_insert(cv);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(content: Value) -> pb::Message {
        pb::Message {
            conversation_id: 7,
            seq: 1,
            sender_id: 1,
            server_ts_ms: 1_000_000,
            body: Some(pb::Body {
                kind: pb::BodyKind::System as i32,
                content: content.to_string(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn events_read_as_sentences() {
        let mut v = View::default();
        for (id, name) in [(1, "alice"), (2, "bob"), (3, "carol")] {
            v.users.insert(id, name.into());
        }
        let cases = [
            (
                json!({"type":"created","actor_id":1,"name":"g","user_ids":[2,3]}),
                "alice created the group g with bob, carol",
            ),
            (
                json!({"type":"joined","actor_id":2,"user_ids":[2]}),
                "bob joined",
            ),
            (
                json!({"type":"joined","actor_id":1,"user_ids":[3]}),
                "carol joined (approved by alice)",
            ),
            (
                json!({"type":"invited","actor_id":1,"user_ids":[2]}),
                "alice added bob",
            ),
            (
                json!({"type":"left","actor_id":3,"user_ids":[3]}),
                "carol left",
            ),
            (
                json!({"type":"kicked","actor_id":1,"user_ids":[3]}),
                "alice removed carol",
            ),
            (
                json!({"type":"role_changed","actor_id":1,"user_ids":[2],"role":"admin"}),
                "alice made bob an admin",
            ),
            (
                json!({"type":"owner_transferred","actor_id":1,"user_ids":[2]}),
                "alice made bob the owner",
            ),
            (
                json!({"type":"muted","actor_id":1,"user_ids":[2],"until_ms":1_600_000}),
                "alice muted bob for 10 min",
            ),
            (
                json!({"type":"updated","actor_id":1,"name":"h","muted_all":true}),
                "alice renamed the group to h; muted everyone",
            ),
            (
                json!({"type":"dismissed","actor_id":1}),
                "alice dismissed the group",
            ),
            (
                json!({"type":"recalled","actor_id":2,"seq":4}),
                "bob recalled message 4",
            ),
            (
                json!({"type":"zapped","actor_id":2}),
                "bob: zapped (an event this client does not know)",
            ),
        ];
        for (content, want) in cases {
            assert_eq!(v.said(&system(content.clone())), want, "{content}");
        }
    }
}
