//! Friends, groups and rooms over the REST API, reaching frame clients.
#![allow(clippy::unwrap_used)]

mod common;

use common::http::{call, register_and_login};
use common::*;
use serde_json::json;

#[tokio::test]
async fn friends_and_groups_over_http_reach_frame_clients() {
    let server = TestServer::start_with(|c| {
        c.social.direct_messages = natter::config::DirectMessages::Friends;
    })
    .await;
    let a = server.http;
    let (alice, alice_t) = register_and_login(a, "alice").await;
    let (mut bob_frames, bob_login) = server.user("bob").await;
    let (bob, bob_t) = (bob_login.user_id, bob_login.token.clone());

    // Found by name, asked, accepted: then a 1:1 is allowed.
    let (_, found, _) = call(a, "GET", "/v1/users?prefix=BO", Some(&alice_t), None).await;
    assert_eq!(found["users"][0]["user_id"].as_u64(), Some(bob), "{found}");
    let dm = json!({"client_msg_id": "d1", "to_user_id": bob, "body": {"kind": "TEXT", "content": "hi"}});
    let (st, e, _) = call(a, "POST", "/v1/messages", Some(&alice_t), Some(dm.clone())).await;
    assert_eq!((st, e["code"].as_str()), (403, Some("FORBIDDEN")), "{e}");
    let (st, r, _) = call(
        a,
        "POST",
        "/v1/friends/requests",
        Some(&alice_t),
        Some(json!({"to_user_id": bob, "message": "it's alice"})),
    )
    .await;
    assert_eq!((st, r["status"].as_str()), (200, Some("PENDING")), "{r}");
    let (_, waiting, _) = call(a, "GET", "/v1/friends/requests", Some(&bob_t), None).await;
    assert_eq!(waiting["incoming"][0]["message"], "it's alice", "{waiting}");
    let id = r["id"].as_u64().unwrap();
    let (st, r, _) = call(
        a,
        "POST",
        &format!("/v1/friends/requests/{id}"),
        Some(&bob_t),
        Some(json!({"accept": true})),
    )
    .await;
    assert_eq!((st, r["status"].as_str()), (200, Some("ACCEPTED")), "{r}");
    let (st, _, _) = call(a, "POST", "/v1/messages", Some(&alice_t), Some(dm)).await;
    assert_eq!(st, 200);
    assert_eq!(text(&next_message(&mut bob_frames).await), "hi");
    let (_, f, _) = call(a, "GET", "/v1/friends", Some(&alice_t), None).await;
    assert_eq!(
        (
            f["friends"][0]["username"].as_str(),
            f["friends"][0]["online"].as_bool()
        ),
        (Some("bob"), Some(true)),
        "{f}"
    );
    let (st, _, _) = call(
        a,
        "PUT",
        &format!("/v1/friends/{bob}/remark"),
        Some(&alice_t),
        Some(json!({"remark": "from school"})),
    )
    .await;
    assert_eq!(st, 204);

    // A group over HTTP; its messages reach the frame client.
    let (st, g, _) = call(
        a,
        "POST",
        "/v1/groups",
        Some(&alice_t),
        Some(json!({"kind": "GROUP", "name": "climbers", "member_ids": [bob]})),
    )
    .await;
    assert_eq!(st, 201, "{g}");
    assert_eq!(
        (g["my_role"].as_str(), g["member_count"].as_u64()),
        (Some("OWNER"), Some(2))
    );
    let gid = g["conversation_id"].as_u64().unwrap();
    let (st, ack, _) = call(
        a,
        "POST",
        "/v1/messages",
        Some(&alice_t),
        Some(json!({"client_msg_id": "g1", "conversation_id": gid, "body": {"kind": "TEXT", "content": "@bob rope?"}, "mention_user_ids": [bob]})),
    )
    .await;
    assert_eq!(st, 200, "{ack}");
    let m = loop {
        let m = next_message(&mut bob_frames).await;
        if m.conversation_id == gid && text(&m) == "@bob rope?" {
            break m;
        }
    };
    assert_eq!(m.mention_user_ids, vec![bob]);
    let (_, members, _) = call(
        a,
        "GET",
        &format!("/v1/groups/{gid}/members"),
        Some(&bob_t),
        None,
    )
    .await;
    let roles: Vec<(&str, &str)> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["username"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [("alice", "OWNER"), ("bob", "MEMBER")]);

    // The rules are the frame protocol's: a member may not kick, the
    // owner may promote, and may not leave without a transfer.
    let (st, e, _) = call(
        a,
        "DELETE",
        &format!("/v1/groups/{gid}/members/{alice}"),
        Some(&bob_t),
        None,
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (403, Some("FORBIDDEN")), "{e}");
    let (st, _, _) = call(
        a,
        "PUT",
        &format!("/v1/groups/{gid}/members/{bob}/role"),
        Some(&alice_t),
        Some(json!({"role": "ADMIN"})),
    )
    .await;
    assert_eq!(st, 204);
    let (st, e, _) = call(
        a,
        "POST",
        &format!("/v1/groups/{gid}/leave"),
        Some(&alice_t),
        None,
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (403, Some("FORBIDDEN")), "{e}");
    let (st, _, _) = call(
        a,
        "PATCH",
        &format!("/v1/groups/{gid}"),
        Some(&bob_t),
        Some(json!({"notice": "meet at 9"})),
    )
    .await;
    assert_eq!(st, 204);
    let (_, g, _) = call(a, "GET", &format!("/v1/groups/{gid}"), Some(&alice_t), None).await;
    assert_eq!(g["notice"], "meet at 9");
    let (_, mine, _) = call(a, "GET", "/v1/groups", Some(&bob_t), None).await;
    assert_eq!(mine["groups"][0]["my_role"], "ADMIN", "{mine}");
    // A muted member's send says until when, as a field.
    let (st, _, _) = call(
        a,
        "PUT",
        &format!("/v1/groups/{gid}/members/{bob}/mute"),
        Some(&alice_t),
        Some(json!({"seconds": 600})),
    )
    .await;
    assert_eq!(st, 204);
    let send = json!({"client_msg_id": "muted-1", "conversation_id": gid,
        "body": {"kind": "TEXT", "content": "hm"}});
    let (st, e, _) = call(a, "POST", "/v1/messages", Some(&bob_t), Some(send)).await;
    assert_eq!((st, e["code"].as_str()), (403, Some("MUTED")), "{e}");
    let now_ms = natter_runtime::clock::now_ms();
    let until = e["muted_until_ms"].as_i64().unwrap();
    assert!(
        (now_ms + 590_000..=now_ms + 610_000).contains(&until),
        "{e}"
    );

    // A group is invisible to a stranger; a room is public and joinable.
    let (_, carol_t) = register_and_login(a, "carol").await;
    let (st, _, _) = call(a, "GET", &format!("/v1/groups/{gid}"), Some(&carol_t), None).await;
    assert_eq!(st, 404);
    let (_, room, _) = call(
        a,
        "POST",
        "/v1/groups",
        Some(&alice_t),
        Some(json!({"kind": "ROOM", "name": "Lobby"})),
    )
    .await;
    let rid = room["conversation_id"].as_u64().unwrap();
    let (_, rooms, _) = call(a, "GET", "/v1/rooms?prefix=lob", Some(&carol_t), None).await;
    assert_eq!(
        rooms["groups"][0]["conversation_id"].as_u64(),
        Some(rid),
        "{rooms}"
    );
    let (st, j, _) = call(
        a,
        "POST",
        &format!("/v1/groups/{rid}/join"),
        Some(&carol_t),
        Some(json!({})),
    )
    .await;
    assert_eq!((st, j["joined"].as_bool()), (200, Some(true)), "{j}");

    // Blocking: the blocked user can no longer message.
    let (st, _, _) = call(a, "PUT", &format!("/v1/blocks/{alice}"), Some(&bob_t), None).await;
    assert_eq!(st, 204);
    let (st, e, _) = call(
        a,
        "POST",
        "/v1/messages",
        Some(&alice_t),
        Some(json!({"client_msg_id": "d2", "to_user_id": bob, "body": {"kind": "TEXT", "content": "?"}})),
    )
    .await;
    assert_eq!((st, e["code"].as_str()), (403, Some("FORBIDDEN")), "{e}");
    let (st, _, _) = call(
        a,
        "DELETE",
        &format!("/v1/friends/{bob}"),
        Some(&alice_t),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (_, f, _) = call(a, "GET", "/v1/friends", Some(&alice_t), None).await;
    assert_eq!(f["friends"], json!([]), "{f}");
}
