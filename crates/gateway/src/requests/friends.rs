//! Users, friends, friend requests and blocks.

use super::{done, users, Reply};
use crate::convert;
use natter_proto::{pb, ServerFrame};
use natter_service::{Service, SessionInfo};

pub(crate) async fn get_users(svc: &Service, q: pb::GetUsers) -> Reply {
    svc.users(&q.user_ids, &q.usernames)
        .await
        .map(|list| ServerFrame::Users(pb::Users { users: users(list) }))
}

pub(crate) async fn search_users(svc: &Service, r: pb::SearchUsers) -> Reply {
    svc.search_users(&r.prefix, r.limit as usize)
        .await
        .map(|list| ServerFrame::Users(pb::Users { users: users(list) }))
}

pub(crate) async fn send_request(
    svc: &Service,
    s: &SessionInfo,
    r: pb::SendFriendRequest,
) -> Reply {
    svc.send_friend_request(s, r.user_id, &r.message)
        .await
        .map(|r| ServerFrame::FriendRequest(convert::friend_request(&r)))
}

pub(crate) async fn respond_request(
    svc: &Service,
    s: &SessionInfo,
    r: pb::RespondFriendRequest,
) -> Reply {
    svc.respond_friend_request(s, r.request_id, r.accept, &r.reply)
        .await
        .map(|r| ServerFrame::FriendRequest(convert::friend_request(&r)))
}

pub(crate) async fn list_requests(
    svc: &Service,
    s: &SessionInfo,
    r: pb::ListFriendRequests,
) -> Reply {
    svc.friend_requests(s, r.before_id, r.limit as usize)
        .await
        .map(|p| {
            ServerFrame::FriendRequests(pb::FriendRequests {
                incoming: p.incoming.iter().map(convert::friend_request).collect(),
                outgoing: p.outgoing.iter().map(convert::friend_request).collect(),
                has_more: p.has_more,
            })
        })
}

pub(crate) async fn list(svc: &Service, s: &SessionInfo, r: pb::ListFriends) -> Reply {
    svc.friends(s, &r.after_username, r.limit as usize)
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
                blocked: users(blocked),
            })
        })
}

pub(crate) async fn set_remark(svc: &Service, s: &SessionInfo, r: pb::SetFriendRemark) -> Reply {
    done(svc.set_remark(s, r.user_id, &r.remark).await)
}

pub(crate) async fn remove(svc: &Service, s: &SessionInfo, r: pb::RemoveFriend) -> Reply {
    done(svc.remove_friend(s, r.user_id).await)
}

pub(crate) async fn block(svc: &Service, s: &SessionInfo, r: pb::BlockUser) -> Reply {
    done(svc.set_blocked(s, r.user_id, r.blocked).await)
}
