//! Groups and rooms: creating, finding, joining, members and their roles,
//! settings, join requests.

use super::{done, Reply};
use crate::convert;
use natter_proto::{pb, ServerFrame};
use natter_service::model::{ConversationId, GroupAction, GroupRecord};
use natter_service::{Service, SessionInfo};

fn group(svc: &Service, g: &GroupRecord) -> ServerFrame {
    ServerFrame::GroupInfo(convert::group_info(g, svc.config().max_group_members))
}

fn groups(svc: &Service, (list, has_more): (Vec<GroupRecord>, bool)) -> ServerFrame {
    let max = svc.config().max_group_members;
    ServerFrame::GroupList(pb::GroupList {
        groups: list.iter().map(|g| convert::group_info(g, max)).collect(),
        has_more,
    })
}

async fn act(svc: &Service, s: &SessionInfo, id: ConversationId, action: GroupAction) -> Reply {
    done(svc.group_action(s, id, action).await)
}

pub(crate) async fn create(svc: &Service, s: &SessionInfo, r: pb::CreateGroup) -> Reply {
    let kind = convert::group_kind_from(r.kind)?;
    let policy = convert::join_policy_from(r.join_policy)?;
    svc.create_group(s, kind, &r.name, &r.notice, policy, r.member_ids)
        .await
        .map(|g| group(svc, &g))
}

pub(crate) async fn get(svc: &Service, s: &SessionInfo, r: pb::GetGroup) -> Reply {
    svc.group(s, r.conversation_id)
        .await
        .map(|g| group(svc, &g))
}

pub(crate) async fn list(svc: &Service, s: &SessionInfo, r: pb::ListGroups) -> Reply {
    svc.my_groups(s, r.after_id, r.limit as usize)
        .await
        .map(|p| groups(svc, p))
}

pub(crate) async fn rooms(svc: &Service, s: &SessionInfo, r: pb::ListRooms) -> Reply {
    svc.rooms(s, &r.prefix, r.after_id, r.limit as usize)
        .await
        .map(|p| groups(svc, p))
}

pub(crate) async fn members(svc: &Service, s: &SessionInfo, r: pb::GetMembers) -> Reply {
    svc.members(s, r.conversation_id, r.after_user_id, r.limit as usize)
        .await
        .map(|(members, has_more)| {
            ServerFrame::Members(pb::Members {
                members: members.iter().map(convert::member).collect(),
                has_more,
            })
        })
}

pub(crate) async fn join(svc: &Service, s: &SessionInfo, r: pb::JoinGroup) -> Reply {
    svc.join_group(s, r.conversation_id, &r.message, &r.invite_code)
        .await
        .map(|joined| {
            ServerFrame::JoinResult(pb::JoinResult {
                joined,
                pending: !joined,
            })
        })
}

pub(crate) async fn invite(svc: &Service, s: &SessionInfo, r: pb::InviteMembers) -> Reply {
    act(svc, s, r.conversation_id, GroupAction::Invite(r.user_ids)).await
}

pub(crate) async fn leave(svc: &Service, s: &SessionInfo, r: pb::LeaveGroup) -> Reply {
    act(svc, s, r.conversation_id, GroupAction::Leave).await
}

pub(crate) async fn kick(svc: &Service, s: &SessionInfo, r: pb::KickMember) -> Reply {
    act(svc, s, r.conversation_id, GroupAction::Kick(r.user_id)).await
}

pub(crate) async fn set_role(svc: &Service, s: &SessionInfo, r: pb::SetRole) -> Reply {
    let role = convert::role_from(r.role)?;
    act(
        svc,
        s,
        r.conversation_id,
        GroupAction::SetRole(r.user_id, role),
    )
    .await
}

pub(crate) async fn transfer(svc: &Service, s: &SessionInfo, r: pb::TransferOwnership) -> Reply {
    act(svc, s, r.conversation_id, GroupAction::Transfer(r.user_id)).await
}

pub(crate) async fn mute(svc: &Service, s: &SessionInfo, r: pb::MuteMember) -> Reply {
    done(
        svc.mute_member(s, r.conversation_id, r.user_id, r.duration_secs)
            .await,
    )
}

/// Changes the settings and answers with the group as it now is.
pub(crate) async fn update(svc: &Service, s: &SessionInfo, r: pb::UpdateGroup) -> Reply {
    let join_policy = r.join_policy.map(convert::join_policy_from).transpose()?;
    let update = GroupAction::Update {
        name: r.name,
        notice: r.notice,
        join_policy,
        muted_all: r.muted_all,
        invite_code: r.reset_invite_code.then(String::new),
    };
    svc.group_action(s, r.conversation_id, update).await?;
    svc.group(s, r.conversation_id)
        .await
        .map(|g| group(svc, &g))
}

pub(crate) async fn dismiss(svc: &Service, s: &SessionInfo, r: pb::DismissGroup) -> Reply {
    act(svc, s, r.conversation_id, GroupAction::Dismiss).await
}

pub(crate) async fn join_requests(
    svc: &Service,
    s: &SessionInfo,
    r: pb::ListJoinRequests,
) -> Reply {
    svc.join_requests(s, r.conversation_id, r.after_user_id, r.limit as usize)
        .await
        .map(|(list, has_more)| {
            ServerFrame::JoinRequests(pb::JoinRequests {
                requests: list.iter().map(convert::join_request).collect(),
                has_more,
            })
        })
}

pub(crate) async fn respond_join(
    svc: &Service,
    s: &SessionInfo,
    r: pb::RespondJoinRequest,
) -> Reply {
    let action = GroupAction::RespondJoin(r.user_id, r.accept);
    act(svc, s, r.conversation_id, action).await
}
