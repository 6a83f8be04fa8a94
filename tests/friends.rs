//! Friends over the real protocol: requests and answers seen by both sides,
//! live and on next sync; remarks; removal; blocks that the blocked user
//! cannot detect; user search; the friends-only rule for 1:1 messages.

mod common;

use common::*;
use natter_client::{pb, ServerFrame};
use std::time::Duration;

fn request_push(f: ServerFrame) -> Option<pb::FriendRequest> {
    match f {
        ServerFrame::FriendRequestPush(p) => p.request,
        _ => None,
    }
}

/// An answer to a request: the requester's own devices also hear of the
/// request itself, which this skips.
fn answer_push(f: ServerFrame) -> Option<pb::FriendRequest> {
    request_push(f).filter(|r| r.status() != pb::FriendRequestStatus::Pending)
}

#[tokio::test]
async fn request_accept_and_reject_reach_both_sides() {
    let server = friends_only_server().await;
    let (mut alice, a) = server.user("alice").await;
    let (mut bob, b) = server.user("bob").await;
    let (mut carol, c) = server.user("carol").await;

    // Strangers cannot talk 1:1.
    let e = code(alice.send_text(b.user_id, "s1", "hi").await);
    assert_eq!(e, pb::ErrorCode::Forbidden);

    let r = alice
        .friend_request(b.user_id, "hi, it's alice")
        .await
        .unwrap();
    assert_eq!(r.status(), pb::FriendRequestStatus::Pending);
    let seen = next_push(&mut bob, request_push).await;
    assert_eq!(
        (seen.request_id, seen.from_user_id, seen.message.as_str()),
        (r.request_id, a.user_id, "hi, it's alice")
    );
    assert_eq!(seen.from_username, "alice");
    // Also on the next sync.
    let page = bob.sync_page(vec![], 0, 10).await.unwrap();
    assert_eq!(page.pending_friend_requests.len(), 1);

    // Only the recipient may answer.
    let e = code(alice.respond_friend_request(r.request_id, true, "").await);
    assert_eq!(e, pb::ErrorCode::NotFound);
    let accepted = bob
        .respond_friend_request(r.request_id, true, "sure")
        .await
        .unwrap();
    assert_eq!(accepted.status(), pb::FriendRequestStatus::Accepted);
    let told = next_push(&mut alice, answer_push).await;
    assert_eq!(told.status(), pb::FriendRequestStatus::Accepted);
    assert_eq!(told.reply, "sure");
    assert!(bob
        .sync_page(vec![], 0, 10)
        .await
        .unwrap()
        .pending_friend_requests
        .is_empty());

    // Friends can talk now.
    let ack = alice
        .send_text(b.user_id, "s2", "hello friend")
        .await
        .unwrap();
    assert_eq!(text(&next_message(&mut bob).await), "hello friend");
    assert_eq!(ack.seq, 1, "the refused send used no seq");
    let e = code(alice.friend_request(b.user_id, "again").await);
    assert_eq!(e, pb::ErrorCode::InvalidArgument, "already friends");

    // Remarks are private to the one who sets them.
    alice.set_remark(b.user_id, "Bobby").await.unwrap();
    let list = alice.friends().await.unwrap();
    assert_eq!(list.friends.len(), 1);
    assert_eq!(
        (list.friends[0].user_id, list.friends[0].remark.as_str()),
        (b.user_id, "Bobby")
    );
    assert!(list.friends[0].online);
    assert_eq!(bob.friends().await.unwrap().friends[0].remark, "");
    let e = code(alice.set_remark(c.user_id, "x").await);
    assert_eq!(e, pb::ErrorCode::NotFound, "remarks are for friends");

    // A rejection reaches the requester with its reply.
    let r = carol.friend_request(b.user_id, "me too?").await.unwrap();
    next_push(&mut bob, request_push).await;
    bob.respond_friend_request(r.request_id, false, "no thanks")
        .await
        .unwrap();
    let told = next_push(&mut carol, answer_push).await;
    assert_eq!(told.status(), pb::FriendRequestStatus::Rejected);
    assert_eq!(told.reply, "no thanks");
    let e = code(carol.send_text(b.user_id, "c1", "hey").await);
    assert_eq!(e, pb::ErrorCode::Forbidden);
    let out = carol.friend_requests().await.unwrap().outgoing;
    assert_eq!(out[0].status(), pb::FriendRequestStatus::Rejected);

    // Removal ends it both ways.
    bob.remove_friend(a.user_id).await.unwrap();
    assert!(alice.friends().await.unwrap().friends.is_empty());
    let e = code(alice.send_text(b.user_id, "s3", "still there?").await);
    assert_eq!(e, pb::ErrorCode::Forbidden);
    let e = code(bob.remove_friend(a.user_id).await);
    assert_eq!(e, pb::ErrorCode::NotFound);
}

#[tokio::test]
async fn requests_to_offline_users_wait_for_them() {
    let server = friends_only_server().await;
    let (alice, _) = server.user("alice").await;
    server
        .client()
        .await
        .register("dave", PASSWORD)
        .await
        .unwrap();
    let dave_id = alice.user_id("dave").await.unwrap();
    alice.friend_request(dave_id, "ping me").await.unwrap();
    // Asking twice updates the one request.
    alice.friend_request(dave_id, "ping me!").await.unwrap();

    let (dave, _) = server.device("dave", "phone").await;
    let page = dave.sync_page(vec![], 0, 10).await.unwrap();
    assert_eq!(page.pending_friend_requests.len(), 1);
    assert_eq!(page.pending_friend_requests[0].message, "ping me!");
    let listed = dave.friend_requests().await.unwrap();
    assert_eq!(listed.incoming.len(), 1);

    // When both ask, the second request accepts the first.
    let r = dave
        .friend_request(alice.user_id("alice").await.unwrap(), "")
        .await
        .unwrap();
    assert_eq!(r.status(), pb::FriendRequestStatus::Accepted);
    assert_eq!(dave.friends().await.unwrap().friends.len(), 1);
}

#[tokio::test]
async fn a_block_is_silent_and_total() {
    let server = TestServer::start().await; // anyone may message anyone here
    let (mut bob, b) = server.user("bob").await;
    let (eve, e_) = server.user("eve").await;

    eve.send_text(b.user_id, "e1", "hello").await.unwrap();
    next_message(&mut bob).await;
    bob.block(e_.user_id, true).await.unwrap();

    // Eve's message is refused with the same answer a stranger gets under
    // the friends-only rule: nothing says "blocked".
    let err = eve.send_text(b.user_id, "e2", "hello?").await.unwrap_err();
    assert_eq!(err.code(), Some(pb::ErrorCode::Forbidden));
    assert!(!err.to_string().contains("block"), "{err}");
    // Her friend request looks accepted for delivery, but Bob never sees it.
    let r = eve.friend_request(b.user_id, "please").await.unwrap();
    assert_eq!(r.status(), pb::FriendRequestStatus::Pending);
    let pushes = drain_pushes(&mut bob, Duration::from_millis(300)).await;
    assert!(pushes.is_empty(), "{pushes:?}");
    assert!(bob.friend_requests().await.unwrap().incoming.is_empty());
    assert!(bob
        .sync_page(vec![], 0, 10)
        .await
        .unwrap()
        .pending_friend_requests
        .is_empty());
    let listed = bob.friends().await.unwrap();
    assert_eq!(listed.blocked.len(), 1);
    assert_eq!(listed.blocked[0].username, "eve");

    // A block is one-way: Bob may still message Eve.
    bob.send_text(e_.user_id, "b1", "bye").await.unwrap();

    // Unblocking brings the waiting request into view.
    bob.block(e_.user_id, false).await.unwrap();
    assert_eq!(bob.friend_requests().await.unwrap().incoming.len(), 1);
    eve.send_text(b.user_id, "e3", "back").await.unwrap();

    let e = code(bob.block(b.user_id, true).await);
    assert_eq!(e, pb::ErrorCode::InvalidArgument, "cannot block yourself");
    let e = code(bob.block(999_999, true).await);
    assert_eq!(e, pb::ErrorCode::NotFound);
}

#[tokio::test]
async fn search_users_by_name_prefix() {
    let server = TestServer::start().await;
    let (c, _) = server.user("alice").await;
    for name in ["alan", "albert", "bob", "al_x"] {
        server
            .client()
            .await
            .register(name, PASSWORD)
            .await
            .unwrap();
    }
    let names = |v: Vec<pb::User>| v.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(
        names(c.search_users("al", 10).await.unwrap()),
        ["al_x", "alan", "albert", "alice"]
    );
    assert_eq!(
        names(c.search_users("AL", 2).await.unwrap()),
        ["al_x", "alan"]
    );
    // '_' is a name character here, not a wildcard.
    assert_eq!(names(c.search_users("al_", 10).await.unwrap()), ["al_x"]);
    assert!(c.search_users("zz", 10).await.unwrap().is_empty());
    let e = code(c.search_users("", 10).await);
    assert_eq!(e, pb::ErrorCode::InvalidArgument);
}
