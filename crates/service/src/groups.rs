//! Groups and rooms: the rules on names and sizes, then the store does the
//! change (with its system event) in one transaction.

use crate::{now_ms, Event, Service, ServiceError, SessionInfo};
use natter_domain::{
    ConversationId, ConversationKind, GroupAction, GroupLimits, GroupRecord, JoinOutcome,
    JoinPolicy, JoinRequestRecord, MemberRecord, NewGroup, UserId,
};

const MAX_NAME_BYTES: usize = 64;
const MAX_NOTICE_BYTES: usize = 2048;

fn check_name(name: &str) -> Result<String, ServiceError> {
    crate::error::storable("a group name", name)?;
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ServiceError::InvalidArgument(format!(
            "a group name must be 1-{MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(name.to_owned())
}

/// A fresh invite code: 16 random bytes, hex.
fn new_invite_code() -> Result<String, ServiceError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// Hides the invite code from viewers who may not see it.
fn for_viewer(mut g: GroupRecord) -> GroupRecord {
    if !g.invite_code_visible() {
        g.invite_code.clear();
    }
    g
}

fn check_notice(notice: &str) -> Result<(), ServiceError> {
    crate::error::storable("a group notice", notice)?;
    if notice.len() > MAX_NOTICE_BYTES {
        return Err(ServiceError::InvalidArgument(format!(
            "a group notice must be at most {MAX_NOTICE_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Service {
    pub(crate) fn group_limits(&self) -> GroupLimits {
        GroupLimits {
            max_members: self.inner.config.max_group_members,
            room_history: self.inner.config.room_history,
        }
    }

    pub async fn create_group(
        &self,
        s: &SessionInfo,
        kind: ConversationKind,
        name: &str,
        notice: &str,
        join_policy: JoinPolicy,
        members: Vec<UserId>,
    ) -> Result<GroupRecord, ServiceError> {
        if kind == ConversationKind::Direct {
            return Err(ServiceError::InvalidArgument(
                "kind must be GROUP or ROOM".into(),
            ));
        }
        let name = check_name(name)?;
        check_notice(notice)?;
        let limits = self.group_limits();
        if members.len() >= limits.max_members as usize {
            return Err(ServiceError::GroupFull(limits.max_members));
        }
        let new = NewGroup {
            creator: s.user_id,
            kind,
            name,
            notice: notice.to_owned(),
            join_policy,
            members,
            invite_code: new_invite_code()?,
            now_ms: now_ms(),
        };
        Ok(for_viewer(
            self.inner.store.create_group(new, limits).await?,
        ))
    }

    pub async fn group(
        &self,
        s: &SessionInfo,
        id: ConversationId,
    ) -> Result<GroupRecord, ServiceError> {
        Ok(for_viewer(self.inner.store.group(id, s.user_id).await?))
    }

    /// A page of the user's groups and rooms by id after `after`.
    pub async fn my_groups(
        &self,
        s: &SessionInfo,
        after: ConversationId,
        limit: usize,
    ) -> Result<(Vec<GroupRecord>, bool), ServiceError> {
        let page = self.list_page(limit, 100, 500);
        let (groups, more) = self.inner.store.groups_of(s.user_id, after, page).await?;
        Ok((groups.into_iter().map(for_viewer).collect(), more))
    }

    pub async fn rooms(
        &self,
        s: &SessionInfo,
        prefix: &str,
        after: ConversationId,
        limit: usize,
    ) -> Result<(Vec<GroupRecord>, bool), ServiceError> {
        let page = self.list_page(limit, 100, 100);
        let (rooms, more) = self
            .inner
            .store
            .rooms(s.user_id, prefix.trim(), after, page)
            .await?;
        Ok((rooms.into_iter().map(for_viewer).collect(), more))
    }

    pub async fn members(
        &self,
        s: &SessionInfo,
        id: ConversationId,
        after: UserId,
        limit: usize,
    ) -> Result<(Vec<MemberRecord>, bool), ServiceError> {
        let page = self.list_page(limit, 500, 500);
        Ok(self.inner.store.members(id, s.user_id, after, page).await?)
    }

    /// Joins at once when the group is open (rooms always are); otherwise
    /// files a request and tells the owner and admins. A group (not a room)
    /// needs its invite code. Returns true when now a member.
    pub async fn join_group(
        &self,
        s: &SessionInfo,
        id: ConversationId,
        message: &str,
        invite_code: &str,
    ) -> Result<bool, ServiceError> {
        crate::error::storable("the join message", message)?;
        crate::error::storable("the invite code", invite_code)?;
        if message.len() > 256 {
            return Err(ServiceError::InvalidArgument(
                "the join message must be at most 256 bytes".into(),
            ));
        }
        let out = self
            .inner
            .store
            .join_group(
                s.user_id,
                id,
                message,
                invite_code.trim(),
                self.group_limits(),
                now_ms(),
            )
            .await?;
        match out {
            JoinOutcome::Joined => Ok(true),
            JoinOutcome::Pending { request, approvers } => {
                self.inner.events.publish(Event::JoinRequest {
                    request,
                    to: approvers,
                });
                Ok(false)
            }
        }
    }

    pub async fn group_action(
        &self,
        s: &SessionInfo,
        id: ConversationId,
        action: GroupAction,
    ) -> Result<(), ServiceError> {
        let max = self.inner.config.max_group_members;
        let action = match action {
            GroupAction::Update {
                name,
                notice,
                join_policy,
                muted_all,
                invite_code,
            } => {
                if let Some(n) = &notice {
                    check_notice(n)?;
                }
                GroupAction::Update {
                    name: name.as_deref().map(check_name).transpose()?,
                    notice,
                    join_policy,
                    muted_all,
                    // Asking for a reset: the code itself is made here.
                    invite_code: invite_code.map(|_| new_invite_code()).transpose()?,
                }
            }
            GroupAction::Invite(users) if users.len() > max as usize => {
                return Err(ServiceError::GroupFull(max))
            }
            other => other,
        };
        Ok(self
            .inner
            .store
            .group_action(s.user_id, id, action, self.group_limits(), now_ms())
            .await?)
    }

    /// Mutes a member for `secs` seconds (0 unmutes).
    pub async fn mute_member(
        &self,
        s: &SessionInfo,
        id: ConversationId,
        user: UserId,
        secs: u32,
    ) -> Result<(), ServiceError> {
        let until = if secs == 0 {
            0
        } else {
            now_ms() + secs as i64 * 1000
        };
        self.group_action(s, id, GroupAction::Mute(user, until))
            .await
    }

    /// A page of a group's join requests by user id after `after`.
    pub async fn join_requests(
        &self,
        s: &SessionInfo,
        id: ConversationId,
        after: UserId,
        limit: usize,
    ) -> Result<(Vec<JoinRequestRecord>, bool), ServiceError> {
        let page = self.list_page(limit, 100, 500);
        Ok(self
            .inner
            .store
            .join_requests(s.user_id, id, after, page)
            .await?)
    }
}
