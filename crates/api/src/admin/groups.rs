//! The admin API's conversations: find groups and rooms by name, look at
//! one with its members, dismiss one or remove a member as the server's
//! operators (members see that an administrator of the server did it).

use super::users::Reason;
use super::{next_after, Admin, AdminState};
use crate::rest::{ApiError, ErrorBody, Json, Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use natter_service::admin::{page_limit, MAX_GROUP_MEMBERS_PAGE};
use natter_service::model::{ConversationKind, GroupRecord, MemberRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GroupsQuery {
    /// Text the name contains (any case); empty: all.
    #[serde(default)]
    pub q: String,
    /// The last id of the page before (0: from the start).
    #[serde(default)]
    pub after: u64,
    /// At most this many (default 50, at most 500).
    #[serde(default)]
    pub limit: usize,
}

/// A group or room as an administrator sees it.
#[derive(Serialize, ToSchema)]
pub struct Group {
    pub id: u64,
    pub name: String,
    /// `group` or `room`.
    pub kind: String,
    pub owner_id: u64,
    pub member_count: u32,
    pub dismissed: bool,
    pub notice: String,
    pub created_at_ms: i64,
}

impl From<GroupRecord> for Group {
    fn from(g: GroupRecord) -> Self {
        Group {
            id: g.id,
            name: g.name,
            kind: match g.kind {
                ConversationKind::Room => "room",
                _ => "group",
            }
            .into(),
            owner_id: g.owner_id,
            member_count: g.member_count,
            dismissed: g.dismissed,
            notice: g.notice,
            created_at_ms: g.created_at_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct GroupPage {
    pub groups: Vec<Group>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<u64>,
}

/// Finds and pages through groups and rooms (dismissed ones too), by id.
#[utoipa::path(get, path = "/admin/api/groups", tag = "groups", params(GroupsQuery),
    responses((status = 200, body = GroupPage)))]
pub async fn list(
    State(s): State<AdminState>,
    _a: Admin,
    Query(q): Query<GroupsQuery>,
) -> Result<axum::Json<GroupPage>, ApiError> {
    let limit = page_limit(q.limit);
    let found = s.service.admin_groups(&q.q, q.after, limit).await?;
    let next_after = next_after(&found, limit, |g| g.id);
    Ok(axum::Json(GroupPage {
        groups: found.into_iter().map(Group::from).collect(),
        next_after,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Member {
    pub user_id: u64,
    pub username: String,
    /// `member`, `admin` or `owner`.
    pub role: String,
    /// Muted until then (ms since the epoch); 0: not muted.
    pub muted_until_ms: i64,
    pub joined_at_ms: i64,
}

impl From<MemberRecord> for Member {
    fn from(m: MemberRecord) -> Self {
        Member {
            user_id: m.user_id,
            username: m.username,
            role: m.role.name().into(),
            muted_until_ms: m.muted_until_ms,
            joined_at_ms: m.joined_at_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct GroupInFull {
    #[serde(flatten)]
    pub group: Group,
    /// Its members by user id (at most 200 a page).
    pub members: Vec<Member>,
    /// Pass as `after` for the next page of members; absent on the last.
    pub next_after: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    /// The last member's user id of the page before (0: from the start).
    #[serde(default)]
    pub after: u64,
}

/// One group or room with its members and their roles.
#[utoipa::path(get, path = "/admin/api/groups/{id}", tag = "groups",
    params(("id" = u64, Path), MembersQuery),
    responses((status = 200, body = GroupInFull), (status = 404, description = "NOT_FOUND", body = ErrorBody)))]
pub async fn one(
    State(s): State<AdminState>,
    _a: Admin,
    Path(id): Path<u64>,
    Query(q): Query<MembersQuery>,
) -> Result<axum::Json<GroupInFull>, ApiError> {
    let (group, members) = s.service.admin_group(id, q.after).await?;
    let next_after = next_after(&members, MAX_GROUP_MEMBERS_PAGE, |m| m.user_id);
    Ok(axum::Json(GroupInFull {
        group: group.into(),
        members: members.into_iter().map(Member::from).collect(),
        next_after,
    }))
}

/// Dismisses a group or room: its members hear it as when the owner
/// dismisses it (a `dismissed` event with `by: "operator"`), and nobody
/// can send to it any more.
#[utoipa::path(post, path = "/admin/api/groups/{id}/dismiss", tag = "groups",
    params(("id" = u64, Path)), request_body = Reason,
    responses((status = 204, description = "Dismissed"), (status = 403, description = "FORBIDDEN: a viewer, no X-CSRF-Token, or already dismissed", body = ErrorBody), (status = 404, description = "NOT_FOUND", body = ErrorBody)))]
pub async fn dismiss(
    State(s): State<AdminState>,
    a: Admin,
    Path(id): Path<u64>,
    Json(r): Json<Reason>,
) -> Result<StatusCode, ApiError> {
    s.service
        .admin_dismiss_group(&a.actor, id, &r.reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a member (anyone but the owner): the group hears a `kicked`
/// event with `by: "operator"`, the member's last.
#[utoipa::path(post, path = "/admin/api/groups/{id}/members/{user_id}/remove", tag = "groups",
    params(("id" = u64, Path), ("user_id" = u64, Path)),
    responses((status = 204, description = "Removed"), (status = 403, description = "FORBIDDEN: a viewer, no X-CSRF-Token, the owner, or dismissed", body = ErrorBody), (status = 404, description = "NOT_FOUND: no such group or member", body = ErrorBody)))]
pub async fn remove_member(
    State(s): State<AdminState>,
    a: Admin,
    Path((id, user)): Path<(u64, u64)>,
) -> Result<StatusCode, ApiError> {
    s.service.admin_remove_member(&a.actor, id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}
