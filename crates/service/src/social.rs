//! Friends, friend requests, blocks, user search and presence.

use crate::{now_ms, Event, Service, ServiceError, SessionInfo};
use natter_domain::{FriendList, FriendRecord, FriendRequestPage, FriendRequestRecord, UserId};

/// The longest friend request message, reply or remark.
const MAX_NOTE_BYTES: usize = 256;

/// A friend as a client sees them: the stored record plus live presence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FriendView {
    pub friend: FriendRecord,
    pub online: bool,
}

fn check_note(what: &str, text: &str) -> Result<(), ServiceError> {
    crate::error::storable(what, text)?;
    if text.len() > MAX_NOTE_BYTES {
        return Err(ServiceError::InvalidArgument(format!(
            "{what} must be at most {MAX_NOTE_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Service {
    pub async fn send_friend_request(
        &self,
        s: &SessionInfo,
        to: UserId,
        message: &str,
    ) -> Result<FriendRequestRecord, ServiceError> {
        check_note("the request message", message)?;
        let out = self
            .inner
            .store
            .send_friend_request(s.user_id, to, message, now_ms())
            .await?;
        if out.notify {
            self.announce_request(&out.request);
        }
        Ok(out.request)
    }

    pub async fn respond_friend_request(
        &self,
        s: &SessionInfo,
        request: u64,
        accept: bool,
        reply: &str,
    ) -> Result<FriendRequestRecord, ServiceError> {
        check_note("the reply", reply)?;
        let r = self
            .inner
            .store
            .respond_friend_request(s.user_id, request, accept, reply, now_ms())
            .await?;
        self.announce_request(&r);
        Ok(r)
    }

    /// Both sides hear of a request and of its answer, on every device.
    fn announce_request(&self, r: &FriendRequestRecord) {
        self.inner.events.publish(Event::FriendRequest {
            request: r.clone(),
            to: vec![r.from, r.to],
        });
    }

    /// A page of requests to and from the user with an id below `before_id`
    /// (0: from the newest), newest first.
    pub async fn friend_requests(
        &self,
        s: &SessionInfo,
        before_id: u64,
        limit: usize,
    ) -> Result<FriendRequestPage, ServiceError> {
        let page = self.list_page(limit, 100, 200);
        Ok(self
            .inner
            .store
            .friend_requests(s.user_id, before_id, page)
            .await?)
    }

    /// A page of friends by username after `after` ("" for the first, which
    /// also carries the blocked list), and whether more follow.
    pub async fn friends(
        &self,
        s: &SessionInfo,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<FriendView>, Vec<(UserId, String)>, bool), ServiceError> {
        let page = self.list_page(limit, 200, 500);
        let FriendList {
            friends,
            blocked,
            has_more,
        } = self
            .inner
            .store
            .friends(s.user_id, &after.to_ascii_lowercase(), page)
            .await?;
        let ids: Vec<UserId> = friends.iter().map(|f| f.user_id).collect();
        let online = self.online(&ids).await;
        let friends = friends
            .into_iter()
            .zip(online)
            .map(|(friend, online)| FriendView { online, friend })
            .collect();
        Ok((friends, blocked, has_more))
    }

    pub async fn set_remark(
        &self,
        s: &SessionInfo,
        friend: UserId,
        remark: &str,
    ) -> Result<(), ServiceError> {
        check_note("the remark", remark)?;
        Ok(self
            .inner
            .store
            .set_remark(s.user_id, friend, remark.trim())
            .await?)
    }

    pub async fn remove_friend(&self, s: &SessionInfo, other: UserId) -> Result<(), ServiceError> {
        Ok(self.inner.store.remove_friend(s.user_id, other).await?)
    }

    pub async fn set_blocked(
        &self,
        s: &SessionInfo,
        other: UserId,
        blocked: bool,
    ) -> Result<(), ServiceError> {
        let max = self.inner.config.max_blocked;
        Ok(self
            .inner
            .store
            .set_blocked(s.user_id, other, blocked, max)
            .await?)
    }

    pub async fn search_users(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(UserId, String)>, ServiceError> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.is_empty() || prefix.len() > 32 {
            return Err(ServiceError::InvalidArgument(
                "the search prefix must be 1-32 bytes".into(),
            ));
        }
        let users = self
            .inner
            .store
            .search_users(&prefix, limit.clamp(1, 50))
            .await?;
        Ok(users.into_iter().map(|u| (u.id, u.username)).collect())
    }

    /// A session attached on this node (`first_here`: the user had no other
    /// session here). The directory is told, and then the user's friends.
    pub async fn attached(&self, session: &SessionInfo, first_here: bool) {
        let user = session.user_id;
        self.inner
            .presence
            .attached(user, session.session_id, first_here)
            .await;
        if first_here {
            self.presence_changed(user).await;
        }
    }

    /// A connection of `session` closed (`last_here`: the user's last on
    /// this node). The directory is told; the user's friends too, unless
    /// the node is `draining`, when everyone goes at once and nobody is
    /// left to tell.
    pub async fn detached(&self, session: &SessionInfo, last_here: bool, draining: bool) {
        let user = session.user_id;
        self.inner.presence.detached(user, last_here).await;
        if last_here && !draining {
            self.presence_changed(user).await;
        }
    }

    /// The users of a node found dead, already cleared from the directory:
    /// their friends hear they went, one user at a time.
    pub async fn users_gone(self, users: Vec<UserId>) {
        for user in users {
            self.presence_changed(user).await;
        }
    }

    /// Tells a user's online friends that their presence may have changed.
    /// The state sent is the one at the time of sending, so a quick
    /// disconnect and reconnect cannot leave friends with a stale answer.
    async fn presence_changed(&self, user: UserId) {
        if !self.inner.load.serves_extras() {
            return;
        }
        let friends = match self.inner.store.friend_ids(user).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, user, "cannot load friends for presence");
                return;
            }
        };
        if friends.is_empty() {
            return;
        }
        let online = self.online(&[user]).await.first().copied().unwrap_or(false);
        self.inner.events.publish(Event::Presence {
            user_id: user,
            online,
            to: friends,
        });
    }

    /// Who of `users` is online; all offline when the directory cannot be
    /// asked (presence is best-effort).
    async fn online(&self, users: &[UserId]) -> Vec<bool> {
        if users.is_empty() {
            return Vec::new();
        }
        match self.inner.presence.online(users).await {
            Ok(v) if v.len() == users.len() => v,
            Ok(_) => vec![false; users.len()],
            Err(e) => {
                tracing::debug!(error = %e, "presence unknown: shown as offline");
                vec![false; users.len()]
            }
        }
    }
}
