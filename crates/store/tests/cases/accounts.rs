//! Accounts, sessions and the store's own life: lookups, the device
//! policy, stopping writes, a newer schema.

use super::*;

pub async fn accounts_and_lookups(env: Env) {
    let s = env.store();
    let [a, b] = users(s, &["alice", "bob"]).await[..] else {
        unreachable!()
    };
    assert!(matches!(
        s.create_user("alice", "h", 0).await,
        Err(StoreError::Conflict("username"))
    ));
    assert_eq!(s.user_by_name("alice").await.unwrap().unwrap().id, a);
    assert_eq!(s.user_by_id(b).await.unwrap().unwrap().username, "bob");
    assert!(s.user_by_name("nobody").await.unwrap().is_none());
    // Ids past what the database stores are unknown ids, never a failure.
    unknown(s.user_by_id(u64::MAX).await.map(|u| u.is_some()));
    let found = s
        .users(&[b, 999_999, u64::MAX], &["alice".into(), "bob".into()])
        .await
        .unwrap();
    assert_eq!(found.iter().map(|u| u.id).collect::<Vec<_>>(), vec![a, b]);
    users(s, &["alina", "al_x", "bert"]).await;
    let names: Vec<String> = s
        .search_users("al", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, vec!["al_x", "alice", "alina"]);
    assert_eq!(s.search_users("al", 1).await.unwrap().len(), 1);
    // A password change revokes every other session.
    let session = |dev: &str, n: u8| NewSession {
        user_id: a,
        device_id: dev.into(),
        token_hash: [n; 32],
        now_ms: n as i64,
        expires_at_ms: 1_000_000,
        policy: DevicePolicy::ReplaceOldest,
        max_sessions: 5,
    };
    let s1 = s.create_session(session("d1", 1)).await.unwrap().session_id;
    let s2 = s.create_session(session("d2", 2)).await.unwrap().session_id;
    let s3 = s.create_session(session("d3", 3)).await.unwrap().session_id;
    let mut revoked = s.set_password(a, "new", Some(s2)).await.unwrap();
    revoked.sort_unstable();
    assert_eq!(revoked, vec![s1, s3]);
    assert_eq!(s.user_by_id(a).await.unwrap().unwrap().password_hash, "new");
    assert!(matches!(
        s.set_password(u64::MAX, "x", None).await,
        Err(StoreError::NotFound(_))
    ));
    let rec = s.session_by_token([2; 32]).await.unwrap().unwrap();
    assert_eq!((rec.id, rec.user_id, rec.revoked), (s2, a, false));
    assert_eq!(rec.username, "alice");
    s.revoke_session(s2).await.unwrap();
    assert!(s.session_by_token([2; 32]).await.unwrap().unwrap().revoked);
    assert!(s.session_by_token([9; 32]).await.unwrap().is_none());
    env.close().await;
}

pub async fn the_device_policy(env: Env) {
    let s = env.store();
    let u = users(s, &["u"]).await[0];
    let new = |dev: &str, n: u8, policy| NewSession {
        user_id: u,
        device_id: dev.into(),
        token_hash: [n; 32],
        now_ms: n as i64,
        expires_at_ms: 1_000,
        policy,
        max_sessions: 2,
    };
    let s1 = s
        .create_session(new("d1", 1, DevicePolicy::Reject))
        .await
        .unwrap();
    let s2 = s
        .create_session(new("d2", 2, DevicePolicy::Reject))
        .await
        .unwrap();
    refused(
        s.create_session(new("d3", 3, DevicePolicy::Reject)).await,
        Refusal::TooManySessions,
    );
    // The same device replaces itself even at the limit.
    let s2b = s
        .create_session(new("d2", 4, DevicePolicy::Reject))
        .await
        .unwrap();
    assert_eq!(s2b.revoked, vec![s2.session_id]);
    let s3 = s
        .create_session(new("d3", 5, DevicePolicy::ReplaceOldest))
        .await
        .unwrap();
    assert_eq!(s3.revoked, vec![s1.session_id]);
    assert!(s.session_by_token([1; 32]).await.unwrap().unwrap().revoked);
    env.close().await;
}

pub async fn writes_stop_when_told(env: Env) {
    let s = env.store();
    let [a, b] = users(s, &["a", "b"]).await[..] else {
        unreachable!()
    };
    s.check().await.unwrap();
    let (queued, capacity) = s.queue();
    assert!(queued <= capacity && capacity > 0);
    s.stop_writes();
    assert!(matches!(
        s.append_message(msg(a, b, "late")).await,
        Err(StoreError::Unavailable)
    ));
    assert!(s.user_by_id(a).await.unwrap().is_some(), "reads go on");
    env.close().await;
}

pub async fn a_newer_schema_is_refused(mut env: Env) {
    users(env.store(), &["a"]).await;
    match env.open_as_if_newer().await {
        Err(e @ StoreError::NewerSchema { found: 999, .. }) => {
            assert!(
                e.to_string().contains("newer than this binary knows"),
                "{e}"
            );
        }
        other => panic!("a newer schema was not refused: {other:?}"),
    }
}

/// Verified addresses are unique; emailed codes are single use, count
/// wrong tries up to the cap, expire, and are kept per purpose.
pub async fn email_addresses_and_codes(env: Env) {
    let s = env.store();
    let verified = |name: &str, email: &str| NewVerifiedUser {
        username: name.into(),
        password_hash: "h".into(),
        email: email.into(),
        now_ms: 0,
    };
    let a = s
        .create_user_with_email(verified("ann", "ann@example.org"))
        .await
        .unwrap();
    assert!(matches!(
        s.create_user_with_email(verified("ann2", "ann@example.org"))
            .await,
        Err(StoreError::Conflict("email"))
    ));
    assert!(matches!(
        s.create_user_with_email(verified("ann", "other@example.org"))
            .await,
        Err(StoreError::Conflict("username"))
    ));
    // Users without an address do not collide with each other.
    users(s, &["nomail1", "nomail2"]).await;
    assert_eq!(
        s.user_by_email("ann@example.org")
            .await
            .unwrap()
            .unwrap()
            .id,
        a
    );
    assert!(s
        .user_by_email("nobody@example.org")
        .await
        .unwrap()
        .is_none());

    let code = |purpose, hash: u8, expires_at_ms| NewEmailCode {
        purpose,
        address: "ann@example.org".into(),
        code_hash: [hash; 32],
        expires_at_ms,
    };
    let try_code = |purpose, hash: u8, now_ms: i64| {
        s.use_email_code(CodeTry {
            purpose,
            address: "ann@example.org".into(),
            code_hash: [hash; 32],
            now_ms,
            max_attempts: 3,
        })
    };
    use CodePurpose::*;
    use CodeVerdict::*;
    assert_eq!(try_code(Register, 1, 0).await.unwrap(), Missing);
    s.put_email_code(code(Register, 1, 1000), 0).await.unwrap();
    // A code for one purpose is not one for the other.
    assert_eq!(try_code(Reset, 1, 10).await.unwrap(), Missing);
    assert_eq!(
        try_code(Register, 2, 10).await.unwrap(),
        Wrong { attempts_left: 2 }
    );
    assert_eq!(try_code(Register, 1, 10).await.unwrap(), Accepted);
    // Single use.
    assert_eq!(try_code(Register, 1, 10).await.unwrap(), Missing);
    // Wrong tries up to the cap kill it, even for the right code after.
    s.put_email_code(code(Register, 1, 1000), 0).await.unwrap();
    for left in [2, 1, 0] {
        assert_eq!(
            try_code(Register, 2, 10).await.unwrap(),
            Wrong {
                attempts_left: left
            }
        );
    }
    assert_eq!(try_code(Register, 1, 10).await.unwrap(), Missing);
    // A new code starts its tries afresh and replaces the old one.
    s.put_email_code(code(Register, 1, 1000), 0).await.unwrap();
    assert_eq!(
        try_code(Register, 2, 10).await.unwrap(),
        Wrong { attempts_left: 2 }
    );
    s.put_email_code(code(Register, 3, 1000), 20).await.unwrap();
    assert_eq!(
        try_code(Register, 1, 30).await.unwrap(),
        Wrong { attempts_left: 2 }
    );
    assert_eq!(try_code(Register, 3, 30).await.unwrap(), Accepted);
    // Expired: refused and gone.
    s.put_email_code(code(Reset, 4, 100), 0).await.unwrap();
    assert_eq!(try_code(Reset, 4, 100).await.unwrap(), Expired);
    assert_eq!(try_code(Reset, 4, 50).await.unwrap(), Missing);
}
