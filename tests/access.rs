//! Who may reach a group: joiners need its invite code (ids can be
//! guessed, codes cannot), someone waiting for approval does not see it,
//! and no member can take the id of a system event before it is written.

mod common;

use common::*;
use natter_client::pb;

const GROUP: pb::ConversationKind = pb::ConversationKind::Group;

#[tokio::test]
async fn groups_are_joined_with_their_invite_code_not_by_guessing_ids() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (bob, b) = server.user("bob").await;
    let (mallory, _) = server.user("mallory").await;
    let g = alice
        .create_group(GROUP, "open", pb::JoinPolicy::Open, vec![b.user_id])
        .await
        .unwrap();
    assert_eq!(g.invite_code.len(), 32);
    // Guessing every id near it, without the code, finds nothing.
    for id in 1..=g.conversation_id + 5 {
        assert_eq!(
            code(mallory.join_group(id, "", "").await),
            pb::ErrorCode::NotFound,
            "conversation {id}"
        );
        assert_eq!(
            code(
                mallory
                    .join_group(id, "", "0123456789abcdef0123456789abcdef")
                    .await
            ),
            pb::ErrorCode::NotFound
        );
    }
    // Members of an open group see the code (they may invite anyway).
    assert_eq!(
        bob.group(g.conversation_id).await.unwrap().invite_code,
        g.invite_code
    );
    let (carol, _) = server.user("carol").await;
    assert!(
        carol
            .join_group(g.conversation_id, "", &g.invite_code)
            .await
            .unwrap()
            .joined
    );
    // A reset retires the old code.
    let reset = alice
        .update_group(pb::UpdateGroup {
            conversation_id: g.conversation_id,
            reset_invite_code: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_ne!(reset.invite_code, g.invite_code);
    let (dave, _) = server.user("dave").await;
    assert_eq!(
        code(dave.join_group(g.conversation_id, "", &g.invite_code).await),
        pb::ErrorCode::NotFound
    );
    assert!(
        dave.join_group(g.conversation_id, "", &reset.invite_code)
            .await
            .unwrap()
            .joined
    );
    // Rooms are public: no code.
    let room = alice
        .create_group(
            pb::ConversationKind::Room,
            "lobby",
            pb::JoinPolicy::Open,
            vec![],
        )
        .await
        .unwrap();
    assert!(
        mallory
            .join_group(room.conversation_id, "", "")
            .await
            .unwrap()
            .joined
    );
}

#[tokio::test]
async fn a_pending_requester_does_not_see_the_group() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (bob, b) = server.user("bob").await;
    let g = alice
        .create_group(GROUP, "closed", pb::JoinPolicy::Approval, vec![b.user_id])
        .await
        .unwrap();
    let id = g.conversation_id;
    alice.send_to(id, "secret", "the plan").await.unwrap();
    // Plain members of an approval group do not see the code.
    assert_eq!(bob.group(id).await.unwrap().invite_code, "");
    let (eve, _) = server.user("eve").await;
    assert!(
        eve.join_group(id, "let me in", &g.invite_code)
            .await
            .unwrap()
            .pending
    );
    assert_eq!(code(eve.group(id).await), pb::ErrorCode::NotFound);
    assert_eq!(code(eve.members(id, 0, 10).await), pb::ErrorCode::NotFound);
    assert_eq!(code(eve.history(id, 0, 10).await), pb::ErrorCode::Forbidden);
    assert_eq!(code(eve.typing(id).await), pb::ErrorCode::Forbidden);
}

#[tokio::test]
async fn system_event_ids_cannot_be_taken_by_members() {
    let server = TestServer::start().await;
    let (alice, _) = server.user("alice").await;
    let (bob, b) = server.user("bob").await;
    let (_carol, c) = server.user("carol").await;
    let g = alice
        .create_group(GROUP, "team", pb::JoinPolicy::Open, vec![b.user_id])
        .await
        .unwrap();
    let id = g.conversation_id;
    // The next event would be seq 3 after this message (seq 2).
    let taken = format!("system-{id}-3");
    for who in [&alice, &bob] {
        assert_eq!(
            code(who.send_to(id, &taken, "squat").await),
            pb::ErrorCode::InvalidArgument
        );
    }
    alice.send_to(id, "ok", "hello").await.unwrap();
    // So the group change that takes that id still works.
    alice.invite(id, vec![c.user_id]).await.unwrap();
    let info = alice.group(id).await.unwrap();
    assert_eq!(info.member_count, 3);
}
