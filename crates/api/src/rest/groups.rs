//! Groups and rooms over HTTP: create, read, list, join, members and
//! roles, moderation, join requests.

use super::messages::ConversationType;
use super::{done, ApiError, Authed, ErrorBody, Json, Path, Query, RestState};
use axum::extract::State;
use axum::http::StatusCode;
use natter_service::model::{
    ConversationKind, GroupAction, GroupRecord, JoinPolicy, JoinRequestRecord, MemberRecord, Role,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Who may join, named as the wire protocol names it.
#[derive(Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Policy {
    /// Anyone with the invite code (rooms: anyone).
    Open,
    /// The owner or an admin approves each request.
    Approval,
}

impl From<JoinPolicy> for Policy {
    fn from(p: JoinPolicy) -> Self {
        match p {
            JoinPolicy::Open => Policy::Open,
            JoinPolicy::Approval => Policy::Approval,
        }
    }
}

impl From<Policy> for JoinPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Open => JoinPolicy::Open,
            Policy::Approval => JoinPolicy::Approval,
        }
    }
}

/// A member's role, named as the wire protocol names it.
#[derive(Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MemberRole {
    Member,
    Admin,
    Owner,
}

impl From<Role> for MemberRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Member => MemberRole::Member,
            Role::Admin => MemberRole::Admin,
            Role::Owner => MemberRole::Owner,
        }
    }
}

impl From<MemberRole> for Role {
    fn from(r: MemberRole) -> Self {
        match r {
            MemberRole::Member => Role::Member,
            MemberRole::Admin => Role::Admin,
            MemberRole::Owner => Role::Owner,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Group {
    pub conversation_id: u64,
    pub kind: ConversationType,
    pub name: String,
    pub notice: String,
    pub owner_id: u64,
    pub join_policy: Policy,
    /// Only the owner and admins may send.
    pub muted_all: bool,
    pub dismissed: bool,
    pub member_count: u32,
    pub last_seq: u64,
    pub created_at_ms: i64,
    /// Yours, when you are a member.
    pub my_role: Option<MemberRole>,
    /// What joiners of a group present; shown to its members (empty
    /// otherwise, and for rooms).
    pub invite_code: String,
}

impl From<&GroupRecord> for Group {
    fn from(g: &GroupRecord) -> Self {
        Group {
            conversation_id: g.id,
            kind: g.kind.into(),
            name: g.name.clone(),
            notice: g.notice.clone(),
            owner_id: g.owner_id,
            join_policy: g.join_policy.into(),
            muted_all: g.muted_all,
            dismissed: g.dismissed,
            member_count: g.member_count,
            last_seq: g.last_seq,
            created_at_ms: g.created_at_ms,
            my_role: g.my_role.map(Into::into),
            invite_code: g.invite_code.clone(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NewKind {
    Group,
    Room,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    pub kind: NewKind,
    pub name: String,
    #[serde(default)]
    pub notice: String,
    /// Default `OPEN`.
    #[serde(default)]
    pub join_policy: Option<Policy>,
    /// Members besides the creator (who is the owner).
    #[serde(default)]
    pub member_ids: Vec<u64>,
}

/// Creates a group or a room; the creator owns it.
#[utoipa::path(post, path = "/v1/groups", tag = "groups",
    security(("bearer" = [])),
    request_body = NewGroup,
    responses(
        (status = 201, body = Group),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: a user in member_ids does not exist", body = ErrorBody),
        (status = 409, description = "GROUP_FULL", body = ErrorBody),
    ))]
pub async fn create(
    State(s): State<RestState>,
    Authed(me): Authed,
    Json(r): Json<NewGroup>,
) -> Result<(StatusCode, axum::Json<Group>), ApiError> {
    let kind = match r.kind {
        NewKind::Group => ConversationKind::Group,
        NewKind::Room => ConversationKind::Room,
    };
    let g = s
        .service
        .create_group(
            &me,
            kind,
            &r.name,
            &r.notice,
            r.join_policy.unwrap_or(Policy::Open).into(),
            r.member_ids,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(Group::from(&g))))
}

/// A group as you may see it: rooms are public, a group only to its
/// members (to anyone else it does not exist).
#[utoipa::path(get, path = "/v1/groups/{id}", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group or room")),
    responses(
        (status = 200, body = Group),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn get(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<u64>,
) -> Result<axum::Json<Group>, ApiError> {
    Ok(axum::Json(Group::from(&s.service.group(&me, id).await?)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Those with a higher id (absent: from the first).
    #[serde(default)]
    pub after: u64,
    /// At most this many (0 or absent: the server's default).
    #[serde(default)]
    pub limit: usize,
}

#[derive(Serialize, ToSchema)]
pub struct Groups {
    /// By id.
    pub groups: Vec<Group>,
    pub has_more: bool,
}

/// Your groups and rooms by id (dismissed ones left out).
#[utoipa::path(get, path = "/v1/groups", tag = "groups",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, body = Groups),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
    ))]
pub async fn mine(
    State(s): State<RestState>,
    Authed(me): Authed,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Groups>, ApiError> {
    let (groups, has_more) = s.service.my_groups(&me, q.after, q.limit).await?;
    Ok(axum::Json(Groups {
        groups: groups.iter().map(Group::from).collect(),
        has_more,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RoomsQuery {
    /// Rooms whose name starts with this (ASCII letters in any case).
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub after: u64,
    #[serde(default)]
    pub limit: usize,
}

/// Live rooms to discover, by id.
#[utoipa::path(get, path = "/v1/rooms", tag = "groups",
    security(("bearer" = [])),
    params(RoomsQuery),
    responses(
        (status = 200, body = Groups),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
    ))]
pub async fn rooms(
    State(s): State<RestState>,
    Authed(me): Authed,
    Query(q): Query<RoomsQuery>,
) -> Result<axum::Json<Groups>, ApiError> {
    let (groups, has_more) = s.service.rooms(&me, &q.prefix, q.after, q.limit).await?;
    Ok(axum::Json(Groups {
        groups: groups.iter().map(Group::from).collect(),
        has_more,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Member {
    pub user_id: u64,
    pub username: String,
    pub role: MemberRole,
    /// Muted until then (ms since the epoch); 0: not muted.
    pub muted_until_ms: i64,
    pub joined_at_ms: i64,
}

impl From<&MemberRecord> for Member {
    fn from(m: &MemberRecord) -> Self {
        Member {
            user_id: m.user_id,
            username: m.username.clone(),
            role: m.role.into(),
            muted_until_ms: m.muted_until_ms,
            joined_at_ms: m.joined_at_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Members {
    /// By user id.
    pub members: Vec<Member>,
    pub has_more: bool,
}

/// A group's current members, by user id.
#[utoipa::path(get, path = "/v1/groups/{id}/members", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group or room"), PageQuery),
    responses(
        (status = 200, body = Members),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn members(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<u64>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Members>, ApiError> {
    let (members, has_more) = s.service.members(&me, id, q.after, q.limit).await?;
    Ok(axum::Json(Members {
        members: members.iter().map(Member::from).collect(),
        has_more,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// For a group that needs approval: a note to its admins (256 bytes).
    #[serde(default)]
    pub message: String,
    /// A group's invite code (rooms need none).
    #[serde(default)]
    pub invite_code: String,
}

#[derive(Serialize, ToSchema)]
pub struct Joined {
    /// `false`: the group needs approval and your request waits for it.
    pub joined: bool,
}

/// Joins a room, or a group with its invite code.
#[utoipa::path(post, path = "/v1/groups/{id}/join", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group or room")),
    request_body = Join,
    responses(
        (status = 200, body = Joined),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: a wrong invite code, or dismissed", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 409, description = "GROUP_FULL", body = ErrorBody),
    ))]
pub async fn join(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<u64>,
    Json(r): Json<Join>,
) -> Result<axum::Json<Joined>, ApiError> {
    let joined = s
        .service
        .join_group(&me, id, &r.message, &r.invite_code)
        .await?;
    Ok(axum::Json(Joined { joined }))
}

/// One change to a group, through the same rules as the frame protocol's
/// group actions.
async fn act(
    s: &RestState,
    me: &Authed,
    id: u64,
    action: GroupAction,
) -> Result<StatusCode, ApiError> {
    s.service.group_action(&me.0, id, action).await?;
    Ok(done())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    pub user_ids: Vec<u64>,
}

/// Adds members (a group that needs approval: its owner and admins only).
#[utoipa::path(post, path = "/v1/groups/{id}/members", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group")),
    request_body = Invite,
    responses(
        (status = 204, description = "Added"),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 409, description = "GROUP_FULL", body = ErrorBody),
    ))]
pub async fn invite(
    State(s): State<RestState>,
    me: Authed,
    Path(id): Path<u64>,
    Json(r): Json<Invite>,
) -> Result<StatusCode, ApiError> {
    act(&s, &me, id, GroupAction::Invite(r.user_ids)).await
}

/// Removes a member (the owner: anyone; admins: members).
#[utoipa::path(delete, path = "/v1/groups/{id}/members/{user_id}", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group"), ("user_id" = u64, Path, description = "The member")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn kick(
    State(s): State<RestState>,
    me: Authed,
    Path((id, user)): Path<(u64, u64)>,
) -> Result<StatusCode, ApiError> {
    act(&s, &me, id, GroupAction::Kick(user)).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    /// `MEMBER` or `ADMIN` (the owner changes by a transfer).
    pub role: MemberRole,
}

/// Sets a member's role (the owner only).
#[utoipa::path(put, path = "/v1/groups/{id}/members/{user_id}/role", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group"), ("user_id" = u64, Path, description = "The member")),
    request_body = NewRole,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn role(
    State(s): State<RestState>,
    me: Authed,
    Path((id, user)): Path<(u64, u64)>,
    Json(r): Json<NewRole>,
) -> Result<StatusCode, ApiError> {
    act(&s, &me, id, GroupAction::SetRole(user, r.role.into())).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mute {
    /// For this long; 0 unmutes.
    pub seconds: u32,
}

/// Mutes a member for a while (the owner: anyone; admins: members).
#[utoipa::path(put, path = "/v1/groups/{id}/members/{user_id}/mute", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group"), ("user_id" = u64, Path, description = "The member")),
    request_body = Mute,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn mute(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path((id, user)): Path<(u64, u64)>,
    Json(r): Json<Mute>,
) -> Result<StatusCode, ApiError> {
    s.service.mute_member(&me, id, user, r.seconds).await?;
    Ok(done())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// The new owner, a member; the old one becomes an admin.
    pub user_id: u64,
}

/// Hands the group to another member (the owner only).
#[utoipa::path(post, path = "/v1/groups/{id}/owner", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group")),
    request_body = Transfer,
    responses(
        (status = 204, description = "Transferred"),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn transfer(
    State(s): State<RestState>,
    me: Authed,
    Path(id): Path<u64>,
    Json(r): Json<Transfer>,
) -> Result<StatusCode, ApiError> {
    act(&s, &me, id, GroupAction::Transfer(r.user_id)).await
}

/// Leaves a group or room (its owner must transfer it or dismiss it).
#[utoipa::path(post, path = "/v1/groups/{id}/leave", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group or room")),
    responses(
        (status = 204, description = "Left"),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn leave(
    State(s): State<RestState>,
    me: Authed,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    act(&s, &me, id, GroupAction::Leave).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// Absent fields stay as they are.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub notice: Option<String>,
    #[serde(default)]
    pub join_policy: Option<Policy>,
    #[serde(default)]
    pub muted_all: Option<bool>,
    /// `true`: a new invite code; the old one stops working.
    #[serde(default)]
    pub new_invite_code: bool,
}

/// Changes a group's name, notice, policy or mute-all, or its invite code
/// (the owner and admins).
#[utoipa::path(patch, path = "/v1/groups/{id}", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group or room")),
    request_body = Update,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn update(
    State(s): State<RestState>,
    me: Authed,
    Path(id): Path<u64>,
    Json(r): Json<Update>,
) -> Result<StatusCode, ApiError> {
    let action = GroupAction::Update {
        name: r.name,
        notice: r.notice,
        join_policy: r.join_policy.map(Into::into),
        muted_all: r.muted_all,
        // The service makes the code itself.
        invite_code: r.new_invite_code.then(String::new),
    };
    act(&s, &me, id, action).await
}

/// Dismisses a group (the owner only): nobody can send or join after.
#[utoipa::path(delete, path = "/v1/groups/{id}", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group or room")),
    responses(
        (status = 204, description = "Dismissed"),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn dismiss(
    State(s): State<RestState>,
    me: Authed,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    act(&s, &me, id, GroupAction::Dismiss).await
}

#[derive(Serialize, ToSchema)]
pub struct JoinRequest {
    pub user_id: u64,
    pub username: String,
    pub message: String,
    pub created_at_ms: i64,
}

impl From<&JoinRequestRecord> for JoinRequest {
    fn from(r: &JoinRequestRecord) -> Self {
        JoinRequest {
            user_id: r.user_id,
            username: r.username.clone(),
            message: r.message.clone(),
            created_at_ms: r.created_at_ms,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct JoinRequests {
    /// By user id.
    pub requests: Vec<JoinRequest>,
    pub has_more: bool,
}

/// Requests to join a group that needs approval (its owner and admins).
#[utoipa::path(get, path = "/v1/groups/{id}/join-requests", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group"), PageQuery),
    responses(
        (status = 200, body = JoinRequests),
        (status = 400, description = "INVALID_ARGUMENT", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
    ))]
pub async fn join_requests(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<u64>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<JoinRequests>, ApiError> {
    let (requests, has_more) = s.service.join_requests(&me, id, q.after, q.limit).await?;
    Ok(axum::Json(JoinRequests {
        requests: requests.iter().map(JoinRequest::from).collect(),
        has_more,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub accept: bool,
}

/// Accepts or rejects a request to join (the owner and admins).
#[utoipa::path(post, path = "/v1/groups/{id}/join-requests/{user_id}", tag = "groups",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The group"), ("user_id" = u64, Path, description = "Who asked")),
    request_body = Decision,
    responses(
        (status = 204, description = "Decided"),
        (status = 400, description = "INVALID_ARGUMENT or MALFORMED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 409, description = "GROUP_FULL", body = ErrorBody),
    ))]
pub async fn decide(
    State(s): State<RestState>,
    me: Authed,
    Path((id, user)): Path<(u64, u64)>,
    Json(r): Json<Decision>,
) -> Result<StatusCode, ApiError> {
    act(&s, &me, id, GroupAction::RespondJoin(user, r.accept)).await
}
