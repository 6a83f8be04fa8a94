//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! served at `/v1/openapi.json` (no UI: nothing is fetched at build time).

use super::{auth, email, events, files, groups, messages, social, ErrorBody};
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
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
        messages::typing,
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
        // What the HTTP edge itself may answer to any operation, beside
        // what each one lists: a path, query or body it cannot take, a
        // missing or bad token, and a node that cannot serve now.
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let json_body = op
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"));
                let authed = op.security.is_some();
                let mut add = |code: &str, what: &str| {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error(what));
                };
                add(
                    "400",
                    "INVALID_ARGUMENT or MALFORMED: a path, query or body the server cannot take",
                );
                if authed {
                    add("401", "NOT_AUTHENTICATED, TOKEN_INVALID or TOKEN_EXPIRED");
                    add("403", "ACCOUNT_DISABLED");
                }
                if json_body {
                    add("413", "FRAME_TOO_LARGE: a body over 256 KiB");
                    add("415", "UNSUPPORTED_MEDIA_TYPE: not application/json");
                }
                add(
                    "503",
                    "UNAVAILABLE: the node cannot serve now (shutting down, overloaded, its storage failing); retry after `retry_after_ms`",
                );
            }
        }
    }
}

/// A response with the error body.
fn error(what: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

/// `GET /v1/openapi.json`.
pub async fn document() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}
