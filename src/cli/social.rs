//! `natter client friend|group|conversations|read|recall`: the social
//! features from the command line. Every answer is printed as JSON: one
//! object per line with `--json` (lists: one line per item), indented
//! otherwise.

use anyhow::Context;
use clap::{Args, Subcommand};
use natter_client::{pb, Client};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct Output {
    /// One JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum FriendOp {
    /// Ask a user to be friends.
    Add {
        /// The user to ask.
        name: String,
        /// A message shown with the request.
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Accept a friend request by id.
    Accept {
        /// The request's id (see `friend requests`).
        request_id: u64,
        /// A message back to the user who asked.
        #[arg(long, default_value = "")]
        reply: String,
    },
    /// Reject a friend request by id.
    Reject {
        /// The request's id (see `friend requests`).
        request_id: u64,
        /// A message back to the user who asked.
        #[arg(long, default_value = "")]
        reply: String,
    },
    /// Friends (with remarks and presence) and blocked users.
    List,
    /// Friend requests, incoming and outgoing.
    Requests,
    /// Set a private alias for a friend ("" clears it).
    Remark {
        /// The friend.
        name: String,
        /// The alias only you see.
        remark: String,
    },
    /// Stop being friends with a user.
    Remove {
        /// The friend.
        name: String,
    },
    /// Block a user: no messages or friend requests from them.
    Block {
        /// The user to block.
        name: String,
    },
    /// Unblock a user.
    Unblock {
        /// The user to unblock.
        name: String,
    },
    /// Users whose name starts with a prefix.
    Search {
        /// The start of the names.
        prefix: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupOp {
    /// Create a group (or with --room a public room); prints its info.
    Create {
        /// The group's name.
        name: String,
        /// A public room anyone may find and join, instead of a group.
        #[arg(long)]
        room: bool,
        /// Joining needs the owner's or an admin's approval.
        #[arg(long)]
        approval: bool,
        /// Members to add at once.
        #[arg(long, value_delimiter = ',')]
        members: Vec<String>,
    },
    /// A group's or room's settings, and its invite code if you may see it.
    Info {
        /// The group's conversation id.
        id: u64,
    },
    /// The user's groups and rooms.
    List,
    /// Public rooms, optionally by name prefix.
    Rooms {
        /// The start of the rooms' names.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// A group's members and their roles.
    Members {
        /// The group's conversation id.
        id: u64,
    },
    /// Join a room, or a group with its invite code (see `group info`).
    Join {
        /// The group's conversation id.
        id: u64,
        /// A message for the admins, when joining needs approval.
        #[arg(long, default_value = "")]
        message: String,
        /// The group's invite code; rooms need none.
        #[arg(long, default_value = "")]
        code: String,
    },
    /// Add users to a group.
    Invite {
        /// The group's conversation id.
        id: u64,
        /// The users to add.
        names: Vec<String>,
    },
    /// Leave a group or room.
    Leave {
        /// The group's conversation id.
        id: u64,
    },
    /// Remove a member from a group.
    Kick {
        /// The group's conversation id.
        id: u64,
        /// The member to remove.
        name: String,
    },
    /// Make a member an admin or a member again.
    Role {
        /// The group's conversation id.
        id: u64,
        /// The member.
        name: String,
        /// The new role.
        role: RoleArg,
    },
    /// Hand the group's ownership to another member.
    Transfer {
        /// The group's conversation id.
        id: u64,
        /// The new owner.
        name: String,
    },
    /// Mute a member for some seconds (0 unmutes).
    Mute {
        /// The group's conversation id.
        id: u64,
        /// The member.
        name: String,
        /// For how many seconds; 0 unmutes.
        secs: u32,
    },
    /// Only the owner and admins may send while on.
    MuteAll {
        /// The group's conversation id.
        id: u64,
        /// on or off.
        on: OnOff,
    },
    /// Give a group a new name.
    Rename {
        /// The group's conversation id.
        id: u64,
        /// The new name.
        name: String,
    },
    /// Set the group's notice, shown to every member.
    Notice {
        /// The group's conversation id.
        id: u64,
        /// The notice text.
        notice: String,
    },
    /// End a group: nobody may send to it any more.
    Dismiss {
        /// The group's conversation id.
        id: u64,
    },
    /// Pending join requests.
    Requests {
        /// The group's conversation id.
        id: u64,
    },
    /// Let a user who asked to join in.
    Approve {
        /// The group's conversation id.
        id: u64,
        /// The user who asked.
        name: String,
    },
    /// Turn down a user who asked to join.
    Deny {
        /// The group's conversation id.
        id: u64,
        /// The user who asked.
        name: String,
    },
    /// Send text into a group, room or any conversation by id.
    Send {
        /// The conversation id.
        id: u64,
        /// The message text.
        text: String,
        /// Usernames to mention.
        #[arg(long, value_delimiter = ',')]
        mention: Vec<String>,
        /// Mention everyone (owner and admins).
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum RoleArg {
    Admin,
    Member,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OnOff {
    On,
    Off,
}

fn print<T: Serialize>(json: bool, v: &T) -> anyhow::Result<()> {
    let s = if json {
        serde_json::to_string(v)?
    } else {
        serde_json::to_string_pretty(v)?
    };
    println!("{s}");
    Ok(())
}

fn print_all<T: Serialize>(json: bool, items: &[T]) -> anyhow::Result<()> {
    items.iter().try_for_each(|i| print(json, i))
}

fn ok(json: bool) -> anyhow::Result<()> {
    print(json, &serde_json::json!({"ok": true}))
}

async fn id_of(c: &Client, name: &str) -> anyhow::Result<u64> {
    c.user_id(name)
        .await
        .with_context(|| format!("unknown user {name}"))
}

async fn ids_of(c: &Client, names: &[String]) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(id_of(c, n).await?);
    }
    Ok(out)
}

pub async fn friend(c: &Client, op: FriendOp, json: bool) -> anyhow::Result<()> {
    match op {
        FriendOp::Add { name, message } => {
            let id = id_of(c, &name).await?;
            print(json, &c.friend_request(id, &message).await?)
        }
        FriendOp::Accept { request_id, reply } => print(
            json,
            &c.respond_friend_request(request_id, true, &reply).await?,
        ),
        FriendOp::Reject { request_id, reply } => print(
            json,
            &c.respond_friend_request(request_id, false, &reply).await?,
        ),
        FriendOp::List => {
            let list = c.friends().await?;
            print_all(json, &list.friends)?;
            let blocked: Vec<_> = list
                .blocked
                .iter()
                .map(|u| serde_json::json!({"blocked": u}))
                .collect();
            print_all(json, &blocked)
        }
        FriendOp::Requests => {
            let r = c.friend_requests().await?;
            print_all(json, &r.incoming)?;
            print_all(json, &r.outgoing)
        }
        FriendOp::Remark { name, remark } => {
            c.set_remark(id_of(c, &name).await?, &remark).await?;
            ok(json)
        }
        FriendOp::Remove { name } => {
            c.remove_friend(id_of(c, &name).await?).await?;
            ok(json)
        }
        FriendOp::Block { name } => {
            c.block(id_of(c, &name).await?, true).await?;
            ok(json)
        }
        FriendOp::Unblock { name } => {
            c.block(id_of(c, &name).await?, false).await?;
            ok(json)
        }
        FriendOp::Search { prefix } => print_all(json, &c.search_users(&prefix, 50).await?),
    }
}

pub async fn group(c: &Client, op: GroupOp, json: bool) -> anyhow::Result<()> {
    let update = |id| pb::UpdateGroup {
        conversation_id: id,
        ..Default::default()
    };
    match op {
        GroupOp::Create {
            name,
            room,
            approval,
            members,
        } => {
            let kind = if room {
                pb::ConversationKind::Room
            } else {
                pb::ConversationKind::Group
            };
            let policy = if approval {
                pb::JoinPolicy::Approval
            } else {
                pb::JoinPolicy::Open
            };
            let ids = ids_of(c, &members).await?;
            print(json, &c.create_group(kind, &name, policy, ids).await?)
        }
        GroupOp::Info { id } => print(json, &c.group(id).await?),
        GroupOp::List => print_all(json, &c.my_groups().await?),
        GroupOp::Rooms { prefix } => {
            let mut after = 0;
            loop {
                let page = c.rooms(&prefix, after, 100).await?;
                print_all(json, &page)?;
                match page.last() {
                    Some(last) if page.len() == 100 => after = last.conversation_id,
                    _ => return Ok(()),
                }
            }
        }
        GroupOp::Members { id } => {
            let mut after = 0;
            loop {
                let page = c.members(id, after, 500).await?;
                print_all(json, &page.members)?;
                match page.members.last() {
                    Some(last) if page.has_more => after = last.user_id,
                    _ => return Ok(()),
                }
            }
        }
        GroupOp::Join { id, message, code } => {
            print(json, &c.join_group(id, &message, &code).await?)
        }
        GroupOp::Invite { id, names } => {
            c.invite(id, ids_of(c, &names).await?).await?;
            ok(json)
        }
        GroupOp::Leave { id } => {
            c.leave_group(id).await?;
            ok(json)
        }
        GroupOp::Kick { id, name } => {
            c.kick(id, id_of(c, &name).await?).await?;
            ok(json)
        }
        GroupOp::Role { id, name, role } => {
            let role = match role {
                RoleArg::Admin => pb::Role::Admin,
                RoleArg::Member => pb::Role::Member,
            };
            c.set_role(id, id_of(c, &name).await?, role).await?;
            ok(json)
        }
        GroupOp::Transfer { id, name } => {
            c.transfer_ownership(id, id_of(c, &name).await?).await?;
            ok(json)
        }
        GroupOp::Mute { id, name, secs } => {
            c.mute(id, id_of(c, &name).await?, secs).await?;
            ok(json)
        }
        GroupOp::MuteAll { id, on } => {
            let muted_all = Some(matches!(on, OnOff::On));
            print(
                json,
                &c.update_group(pb::UpdateGroup {
                    muted_all,
                    ..update(id)
                })
                .await?,
            )
        }
        GroupOp::Rename { id, name } => {
            let name = Some(name);
            print(
                json,
                &c.update_group(pb::UpdateGroup { name, ..update(id) })
                    .await?,
            )
        }
        GroupOp::Notice { id, notice } => {
            let notice = Some(notice);
            print(
                json,
                &c.update_group(pb::UpdateGroup {
                    notice,
                    ..update(id)
                })
                .await?,
            )
        }
        GroupOp::Dismiss { id } => {
            c.dismiss(id).await?;
            ok(json)
        }
        GroupOp::Requests { id } => print_all(json, &c.join_requests(id).await?),
        GroupOp::Approve { id, name } => {
            c.respond_join(id, id_of(c, &name).await?, true).await?;
            ok(json)
        }
        GroupOp::Deny { id, name } => {
            c.respond_join(id, id_of(c, &name).await?, false).await?;
            ok(json)
        }
        GroupOp::Send {
            id,
            text,
            mention,
            all,
        } => {
            let ack = c
                .send(pb::Send {
                    client_msg_id: super::new_client_msg_id(),
                    target: Some(pb::send::Target::ConversationId(id)),
                    body: Some(pb::Body {
                        kind: pb::BodyKind::Text as i32,
                        content: text,
                    }),
                    mention_user_ids: ids_of(c, &mention).await?,
                    mention_all: all,
                })
                .await?;
            print(json, &ack)
        }
    }
}
