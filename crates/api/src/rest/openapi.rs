//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! served at `/v1/openapi.json` (no UI: nothing is fetched at build time).

use super::{auth, email, events, files, groups, messages, social, ErrorBody};
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "natter",
        description = "natter's REST API: the same accounts, sessions, conversations, rules and limits as the frame protocol (docs/PROTOCOL.md). Errors are `{code, message, retry_after_ms?}` with the frame protocol's codes.",
    ),
    paths(
        auth::register,
        auth::login,
        auth::logout,
        auth::me,
        auth::change_password,
        email::send_code,
        email::reset_password,
        messages::send,
        messages::sync,
        events::events,
        messages::history,
        messages::conversations,
        messages::mark_read,
        messages::recall,
        social::search,
        social::request,
        social::requests,
        social::answer,
        social::friends,
        social::remark,
        social::remove,
        social::block,
        social::unblock,
        groups::create,
        groups::mine,
        groups::get,
        groups::update,
        groups::dismiss,
        groups::rooms,
        groups::members,
        groups::invite,
        groups::kick,
        groups::role,
        groups::mute,
        groups::transfer,
        groups::leave,
        groups::join,
        groups::join_requests,
        groups::decide,
        files::create,
        files::append,
        files::delete,
        files::download,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Bearer),
    tags(
        (name = "accounts", description = "Registration, login, sessions"),
        (name = "messages", description = "Sending, sync, history, the conversation list"),
        (name = "friends", description = "Finding users, friend requests, friends, blocks"),
        (name = "groups", description = "Groups and rooms"),
        (name = "files", description = "Resumable uploads (tus 1.0) and downloads with ranges"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token `POST /v1/login` returns"))
                    .build(),
            ),
        );
    }
}

/// `GET /v1/openapi.json`.
pub async fn document() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}
