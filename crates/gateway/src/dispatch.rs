//! The one table from a connection's phase and a request to its handler.
//! The match is exhaustive: the compiler proves that every request has an
//! answer in every phase, and a new request type does not build until it
//! has one.

use crate::connection::{Conn, Flow, Phase};
use crate::requests::{auth, conversations, friends, groups, messages};
use natter_proto::pb::{DisconnectReason, ErrorCode};
use natter_proto::ClientFrame as F;

/// Runs a handler boxed and answers with its result. Every handler is
/// boxed, a Send's too: an idle connection's task waits in the read loop
/// and would otherwise reserve room for the largest handler's state (a
/// Send's was 912 bytes of every connection's task; boxed, it is an
/// allocation the size of one of the thread's cached blocks, per Send).
macro_rules! ask {
    ($conn:ident, $id:ident, $handler:path, $($arg:expr),+) => {{
        let reply = Box::pin($handler(&$conn.gw.service, $($arg),+)).await;
        $conn.answer($id, reply);
        Flow::Continue
    }};
}

pub(crate) async fn dispatch(conn: &mut Conn, id: u32, request: F) -> Flow {
    // Anything but a Send waits for the Sends before it, so answers and
    // their effects stay in request order.
    if !matches!(request, F::Send(_)) {
        conn.finish_in_flight().await;
    }
    // Names the user, so a trace of one user shows each request.
    if let Phase::Authed(s) = &conn.phase {
        tracing::debug!(
            user = s.user_id,
            conn = conn.conn_id,
            id,
            request = request.name(),
            "request"
        );
    }
    match (&conn.phase, request) {
        // ---- before login
        (Phase::New, F::Hello(h)) => match auth::hello(&conn.gw.config, &conn.gw.service, h) {
            Ok(hello_ok) => {
                conn.phase = Phase::Greeted;
                conn.reply(id, hello_ok);
                Flow::Continue
            }
            Err(why) => conn.refuse(id, ErrorCode::UnsupportedVersion, &why),
        },
        (Phase::New, _) => conn.refuse(id, ErrorCode::Protocol, "the first frame must be Hello"),
        (_, F::Hello(_)) => conn.error(id, ErrorCode::Protocol, "Hello was already received"),
        (_, F::Ping(p)) => {
            conn.reply(id, auth::ping(p));
            Flow::Continue
        }
        (_, F::Register(r)) => ask!(conn, id, auth::register, r, conn.peer.ip()),
        (Phase::Greeted, F::Login(l)) => {
            let r = Box::pin(auth::login(&conn.gw.service, l, conn.peer.ip())).await;
            Box::pin(conn.logged_in(id, "login", r)).await
        }
        (Phase::Greeted, F::Resume(r)) => {
            let r = Box::pin(auth::resume(&conn.gw.service, r)).await;
            Box::pin(conn.logged_in(id, "resume", r)).await
        }
        (Phase::Greeted, _) => conn.error(id, ErrorCode::NotAuthenticated, "log in first"),

        // ---- logged in
        (Phase::Authed(_), F::Login(_) | F::Resume(_)) => conn.error(
            id,
            ErrorCode::AlreadyAuthenticated,
            "this connection is already logged in",
        ),
        (Phase::Authed(s), F::Logout(l)) => {
            let r = Box::pin(auth::logout(&conn.gw.service, s, l)).await;
            let ok = r.is_ok();
            conn.answer(id, r);
            if ok {
                conn.close(DisconnectReason::LoggedOut, "logged out");
                return Flow::Stop;
            }
            Flow::Continue
        }
        (Phase::Authed(s), F::ChangePassword(c)) => {
            ask!(conn, id, auth::change_password, s, c)
        }

        // messages
        (Phase::Authed(s), F::Send(m)) => {
            let queued = Box::pin(messages::send(&conn.gw.service, s, m)).await;
            conn.owe(id, queued);
            Flow::Continue
        }
        (Phase::Authed(s), F::Sync(q)) => ask!(conn, id, messages::sync, s, q),
        (Phase::Authed(s), F::History(q)) => ask!(conn, id, messages::history, s, q),
        (Phase::Authed(s), F::DeliveryAck(a)) => {
            ask!(conn, id, messages::delivery_ack, s, a)
        }

        // users and friends
        (Phase::Authed(_), F::GetUsers(q)) => ask!(conn, id, friends::get_users, q),
        (Phase::Authed(_), F::SearchUsers(r)) => ask!(conn, id, friends::search_users, r),
        (Phase::Authed(s), F::SendFriendRequest(r)) => ask!(conn, id, friends::send_request, s, r),
        (Phase::Authed(s), F::RespondFriendRequest(r)) => {
            ask!(conn, id, friends::respond_request, s, r)
        }
        (Phase::Authed(s), F::ListFriendRequests(r)) => {
            ask!(conn, id, friends::list_requests, s, r)
        }
        (Phase::Authed(s), F::ListFriends(r)) => ask!(conn, id, friends::list, s, r),
        (Phase::Authed(s), F::SetFriendRemark(r)) => ask!(conn, id, friends::set_remark, s, r),
        (Phase::Authed(s), F::RemoveFriend(r)) => ask!(conn, id, friends::remove, s, r),
        (Phase::Authed(s), F::BlockUser(r)) => ask!(conn, id, friends::block, s, r),

        // groups and rooms
        (Phase::Authed(s), F::CreateGroup(r)) => ask!(conn, id, groups::create, s, r),
        (Phase::Authed(s), F::GetGroup(r)) => ask!(conn, id, groups::get, s, r),
        (Phase::Authed(s), F::ListGroups(r)) => ask!(conn, id, groups::list, s, r),
        (Phase::Authed(s), F::ListRooms(r)) => ask!(conn, id, groups::rooms, s, r),
        (Phase::Authed(s), F::GetMembers(r)) => ask!(conn, id, groups::members, s, r),
        (Phase::Authed(s), F::JoinGroup(r)) => ask!(conn, id, groups::join, s, r),
        (Phase::Authed(s), F::InviteMembers(r)) => ask!(conn, id, groups::invite, s, r),
        (Phase::Authed(s), F::LeaveGroup(r)) => ask!(conn, id, groups::leave, s, r),
        (Phase::Authed(s), F::KickMember(r)) => ask!(conn, id, groups::kick, s, r),
        (Phase::Authed(s), F::SetRole(r)) => ask!(conn, id, groups::set_role, s, r),
        (Phase::Authed(s), F::TransferOwnership(r)) => ask!(conn, id, groups::transfer, s, r),
        (Phase::Authed(s), F::MuteMember(r)) => ask!(conn, id, groups::mute, s, r),
        (Phase::Authed(s), F::UpdateGroup(r)) => ask!(conn, id, groups::update, s, r),
        (Phase::Authed(s), F::DismissGroup(r)) => ask!(conn, id, groups::dismiss, s, r),
        (Phase::Authed(s), F::ListJoinRequests(r)) => ask!(conn, id, groups::join_requests, s, r),
        (Phase::Authed(s), F::RespondJoinRequest(r)) => ask!(conn, id, groups::respond_join, s, r),

        // conversations
        (Phase::Authed(s), F::ListConversations(r)) => ask!(conn, id, conversations::list, s, r),
        (Phase::Authed(s), F::MarkRead(r)) => ask!(conn, id, conversations::mark_read, s, r),
        (Phase::Authed(s), F::Typing(r)) => ask!(conn, id, conversations::typing, s, r),
        (Phase::Authed(s), F::Recall(r)) => ask!(conn, id, conversations::recall, s, r),
    }
}
