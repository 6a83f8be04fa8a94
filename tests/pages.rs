//! No frame the server sends exceeds the frame limit it told the client:
//! every list pages with a cursor within a byte budget, conversation
//! previews are cut short, and paging through reaches every item once.

mod common;

use common::*;
use natter_client::{pb, Client, ConnectOptions, Inbox};
use std::collections::BTreeSet;

const FRAME: usize = 65_536;

/// A client that fails (its reader drops the connection) on any frame
/// larger than the server's limit.
async fn strict(server: &TestServer, name: &str) -> (Client, pb::LoginOk) {
    let mut c = Client::connect_with(
        &server.tcp,
        ConnectOptions {
            max_frame_bytes: FRAME,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ok = c.login(name, PASSWORD, "strict").await.unwrap();
    (c, ok)
}

async fn small_frames() -> TestServer {
    TestServer::start_with(|c| {
        c.limits.max_frame_bytes = FRAME;
        c.limits.max_message_bytes = 60_000;
    })
    .await
}

#[tokio::test]
async fn the_conversation_list_pages_with_cut_previews() {
    let server = small_frames().await;
    let (alice, _) = server.user("alice").await;
    let long = "z".repeat(59_000);
    let mut peers = BTreeSet::new();
    for i in 0..40 {
        let (_c, peer) = server.user(&format!("peer{i:02}")).await;
        let ack = alice
            .send_text(peer.user_id, &format!("m{i}"), &long)
            .await
            .unwrap();
        peers.insert(ack.conversation_id);
    }
    // 40 summaries with 59 KB each would be 2.3 MB in one frame.
    let (strict, _) = strict(&server, "alice").await;
    let (mut seen, mut before, mut pages) = (BTreeSet::new(), None, 0);
    loop {
        let page = strict.conversations_page(before.as_ref(), 0).await.unwrap();
        pages += 1;
        for c in &page.conversations {
            let m = c.last_message.as_ref().unwrap();
            assert!(c.preview_truncated);
            assert_eq!(m.body.as_ref().unwrap().content.len(), 200);
            assert!(seen.insert(c.conversation_id), "listed twice");
        }
        if !page.has_more {
            break;
        }
        before = page.conversations.last().cloned();
    }
    assert_eq!(seen, peers);
    // History still has the whole message.
    let id = *peers.iter().next().unwrap();
    let h = strict.history(id, 0, 1).await.unwrap();
    assert_eq!(text(&h.messages[0]).len(), 59_000);
    assert!(pages >= 1);
}

#[tokio::test]
async fn sync_pages_many_conversations_and_large_messages_within_the_frame() {
    let server = small_frames().await;
    let (alice, a) = server.user("alice").await;
    let (bob, _) = server.user("bob").await;
    // 400 groups: their states alone are far beyond one page.
    let mut groups = Vec::new();
    for i in 0..400 {
        let g = bob
            .create_group(
                pb::ConversationKind::Group,
                &format!("g{i}"),
                pb::JoinPolicy::Open,
                vec![a.user_id],
            )
            .await
            .unwrap();
        groups.push(g.conversation_id);
    }
    // And a few messages of nearly a frame each.
    let big = "b".repeat(59_000);
    for i in 0..5 {
        bob.send_to(groups[i * 50], &format!("big{i}"), &big)
            .await
            .unwrap();
    }
    drop(alice);
    let (strict, _) = strict(&server, "alice").await;
    let mut inbox = Inbox::default();
    let got = inbox.sync(&strict, 0).await.unwrap();
    let created = got.iter().filter(|m| system_event(m).is_some()).count();
    let bigs = got.iter().filter(|m| text(m).len() == 59_000).count();
    assert_eq!((created, bigs), (400, 5));
    assert_eq!(inbox.conversations.len(), 400);
}

#[tokio::test]
async fn friends_requests_groups_and_join_requests_page() {
    let server = small_frames().await;
    let (alice, a) = server.user("alice").await;
    let note = "n".repeat(256);
    // 80 friend requests with long messages, 40 of them accepted with
    // long remarks set.
    let mut others = Vec::new();
    for i in 0..80 {
        let (c, l) = server.user(&format!("fan{i:02}")).await;
        let r = c.friend_request(a.user_id, &note).await.unwrap();
        if i % 2 == 0 {
            alice
                .respond_friend_request(r.request_id, true, &note)
                .await
                .unwrap();
            alice.set_remark(l.user_id, &note).await.unwrap();
        }
        others.push((c, l));
    }
    // 40 groups with long notices; one with many join requests.
    let notice = "x".repeat(2000);
    let mut groups = BTreeSet::new();
    for i in 0..40 {
        let g = alice
            .create_group(
                pb::ConversationKind::Group,
                &format!("g{i}"),
                pb::JoinPolicy::Approval,
                vec![],
            )
            .await
            .unwrap();
        alice
            .update_group(pb::UpdateGroup {
                conversation_id: g.conversation_id,
                notice: Some(notice.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        groups.insert(g.conversation_id);
    }
    let first = *groups.iter().next().unwrap();
    let code = alice.group(first).await.unwrap().invite_code;
    for (c, _) in &others {
        c.join_group(first, &note, &code).await.unwrap();
    }

    let (strict, _) = strict(&server, "alice").await;
    let requests = strict.friend_requests().await.unwrap();
    assert_eq!(requests.incoming.len(), 80);
    let ids: BTreeSet<u64> = requests.incoming.iter().map(|r| r.request_id).collect();
    assert_eq!(ids.len(), 80, "each request once");
    let one = strict.friend_requests_page(0, 0).await.unwrap();
    assert!(one.has_more && one.incoming.len() < 80, "paged by bytes");
    let friends = strict.friends().await.unwrap();
    assert_eq!(friends.friends.len(), 40);
    let names: BTreeSet<String> = friends.friends.iter().map(|f| f.username.clone()).collect();
    assert_eq!(names.len(), 40);
    let (mut after, mut paged) = (String::new(), 0);
    loop {
        let p = strict.friends_page(&after, 7).await.unwrap();
        paged += p.friends.len();
        if !p.has_more {
            break;
        }
        after = p.friends.last().unwrap().username.clone();
    }
    assert_eq!(paged, 40);
    let mine: BTreeSet<u64> = strict
        .my_groups()
        .await
        .unwrap()
        .iter()
        .map(|g| g.conversation_id)
        .collect();
    assert_eq!(mine, groups);
    assert!(strict.my_groups_page(0, 0).await.unwrap().has_more);
    let asked = strict.join_requests(first).await.unwrap();
    assert_eq!(asked.len(), 80);
    // The pending requests a sync carries are bounded too.
    let page = strict.sync_page(vec![], 0, 1).await.unwrap();
    assert!(page.pending_friend_requests.len() <= 50);
}
