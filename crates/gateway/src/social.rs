//! Handlers for friends, groups and rooms, the conversation list, read
//! cursors, typing and recall: parse, call one service method, map.

use crate::connection::Conn;
use crate::convert;
use natter_proto::pb;
use natter_proto::{ClientFrame, ServerFrame};
use natter_service::model::{Before, GroupAction};
use natter_service::{ServiceError, SessionInfo};

fn done(r: Result<(), ServiceError>) -> Result<ServerFrame, ServiceError> {
    r.map(|_| ServerFrame::Done(pb::Done {}))
}

fn users(list: Vec<(u64, String)>) -> ServerFrame {
    ServerFrame::Users(pb::Users {
        users: list
            .into_iter()
            .map(|(user_id, username)| pb::User { user_id, username })
            .collect(),
    })
}

impl Conn {
    pub(crate) async fn social(
        &mut self,
        s: &SessionInfo,
        request: ClientFrame,
    ) -> Result<ServerFrame, ServiceError> {
        let svc = &self.gw.service;
        let max = svc.config().max_group_members;
        let group = |g| ServerFrame::GroupInfo(convert::group_info(&g, max));
        let groups = |(list, has_more): (Vec<_>, bool)| {
            ServerFrame::GroupList(pb::GroupList {
                groups: list.iter().map(|g| convert::group_info(g, max)).collect(),
                has_more,
            })
        };
        let act = |id, action| svc.group_action(s, id, action);
        match request {
            // ---- friends
            ClientFrame::SendFriendRequest(r) => svc
                .send_friend_request(s, r.user_id, &r.message)
                .await
                .map(|r| ServerFrame::FriendRequest(convert::friend_request(&r))),
            ClientFrame::RespondFriendRequest(r) => svc
                .respond_friend_request(s, r.request_id, r.accept, &r.reply)
                .await
                .map(|r| ServerFrame::FriendRequest(convert::friend_request(&r))),
            ClientFrame::ListFriendRequests(r) => svc
                .friend_requests(s, r.before_id, r.limit as usize)
                .await
                .map(|p| {
                    ServerFrame::FriendRequests(pb::FriendRequests {
                        incoming: p.incoming.iter().map(convert::friend_request).collect(),
                        outgoing: p.outgoing.iter().map(convert::friend_request).collect(),
                        has_more: p.has_more,
                    })
                }),
            ClientFrame::ListFriends(r) => svc
                .friends(s, &r.after_username, r.limit as usize)
                .await
                .map(|(friends, blocked, has_more)| {
                    ServerFrame::Friends(pb::Friends {
                        has_more,
                        friends: friends
                            .into_iter()
                            .map(|f| pb::Friend {
                                user_id: f.friend.user_id,
                                username: f.friend.username,
                                remark: f.friend.remark,
                                online: f.online,
                                since_ms: f.friend.since_ms,
                                blocked: f.friend.blocked,
                            })
                            .collect(),
                        blocked: blocked
                            .into_iter()
                            .map(|(user_id, username)| pb::User { user_id, username })
                            .collect(),
                    })
                }),
            ClientFrame::SetFriendRemark(r) => done(svc.set_remark(s, r.user_id, &r.remark).await),
            ClientFrame::RemoveFriend(r) => done(svc.remove_friend(s, r.user_id).await),
            ClientFrame::BlockUser(r) => done(svc.set_blocked(s, r.user_id, r.blocked).await),
            ClientFrame::SearchUsers(r) => svc
                .search_users(&r.prefix, r.limit as usize)
                .await
                .map(users),

            // ---- groups and rooms
            ClientFrame::CreateGroup(r) => {
                let kind = convert::group_kind_from(r.kind)?;
                let policy = convert::join_policy_from(r.join_policy)?;
                svc.create_group(s, kind, &r.name, &r.notice, policy, r.member_ids)
                    .await
                    .map(group)
            }
            ClientFrame::GetGroup(r) => svc.group(s, r.conversation_id).await.map(group),
            ClientFrame::ListGroups(r) => svc
                .my_groups(s, r.after_id, r.limit as usize)
                .await
                .map(groups),
            ClientFrame::ListRooms(r) => svc
                .rooms(s, &r.prefix, r.after_id, r.limit as usize)
                .await
                .map(groups),
            ClientFrame::GetMembers(r) => svc
                .members(s, r.conversation_id, r.after_user_id, r.limit as usize)
                .await
                .map(|(members, has_more)| {
                    ServerFrame::Members(pb::Members {
                        members: members.iter().map(convert::member).collect(),
                        has_more,
                    })
                }),
            ClientFrame::JoinGroup(r) => svc
                .join_group(s, r.conversation_id, &r.message, &r.invite_code)
                .await
                .map(|joined| {
                    ServerFrame::JoinResult(pb::JoinResult {
                        joined,
                        pending: !joined,
                    })
                }),
            ClientFrame::InviteMembers(r) => {
                done(act(r.conversation_id, GroupAction::Invite(r.user_ids)).await)
            }
            ClientFrame::LeaveGroup(r) => done(act(r.conversation_id, GroupAction::Leave).await),
            ClientFrame::KickMember(r) => {
                done(act(r.conversation_id, GroupAction::Kick(r.user_id)).await)
            }
            ClientFrame::SetRole(r) => {
                let role = convert::role_from(r.role)?;
                done(act(r.conversation_id, GroupAction::SetRole(r.user_id, role)).await)
            }
            ClientFrame::TransferOwnership(r) => {
                done(act(r.conversation_id, GroupAction::Transfer(r.user_id)).await)
            }
            ClientFrame::MuteMember(r) => done(
                svc.mute_member(s, r.conversation_id, r.user_id, r.duration_secs)
                    .await,
            ),
            ClientFrame::UpdateGroup(r) => {
                let join_policy = r.join_policy.map(convert::join_policy_from).transpose()?;
                let update = GroupAction::Update {
                    name: r.name,
                    notice: r.notice,
                    join_policy,
                    muted_all: r.muted_all,
                    invite_code: r.reset_invite_code.then(String::new),
                };
                act(r.conversation_id, update).await?;
                svc.group(s, r.conversation_id).await.map(group)
            }
            ClientFrame::DismissGroup(r) => {
                done(act(r.conversation_id, GroupAction::Dismiss).await)
            }
            ClientFrame::ListJoinRequests(r) => svc
                .join_requests(s, r.conversation_id, r.after_user_id, r.limit as usize)
                .await
                .map(|(list, has_more)| {
                    ServerFrame::JoinRequests(pb::JoinRequests {
                        requests: list.iter().map(convert::join_request).collect(),
                        has_more,
                    })
                }),
            ClientFrame::RespondJoinRequest(r) => done(
                act(
                    r.conversation_id,
                    GroupAction::RespondJoin(r.user_id, r.accept),
                )
                .await,
            ),

            // ---- conversations
            ClientFrame::ListConversations(r) => {
                let before = (r.before_conversation_id != 0).then_some(Before {
                    activity_ms: r.before_activity_ms,
                    id: r.before_conversation_id,
                });
                svc.conversations(s, before, r.limit as usize)
                    .await
                    .map(|(list, has_more)| {
                        ServerFrame::ConversationList(pb::ConversationList {
                            conversations: list.iter().map(convert::summary).collect(),
                            has_more,
                        })
                    })
            }
            ClientFrame::MarkRead(r) => done(svc.mark_read(s, r.conversation_id, r.seq).await),
            ClientFrame::Typing(r) => done(svc.typing(s, r.conversation_id).await),
            ClientFrame::Recall(r) => done(svc.recall(s, r.conversation_id, r.seq).await),

            other => Err(ServiceError::Internal(format!(
                "{} reached the social handlers",
                other.name()
            ))),
        }
    }
}
