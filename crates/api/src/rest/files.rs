//! Files over HTTP: resumable uploads by the tus 1.0 protocol (core,
//! creation, checksum, termination, expiration) at `/v1/files/`, and
//! downloads with RFC 9110 ranges at `GET /v1/files/{id}`.

use super::{ApiError, Authed, ErrorBody, RestState};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use natter_service::files::{valid_id, AppendError, Checksum, Files, Upload};
use natter_service::ServiceError;
use std::time::{Duration, UNIX_EPOCH};

const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,checksum,termination,expiration";

fn h(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

fn value(v: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&v.to_string()).unwrap_or(HeaderValue::from_static(""))
}

fn now_ms() -> i64 {
    natter_runtime::clock::now_ms()
}

/// An HTTP date for `Upload-Expires`.
fn http_date(ms: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// A tus answer: the status, `Tus-Resumable`, and these headers.
fn tus(status: StatusCode, headers: Vec<(HeaderName, HeaderValue)>) -> Response {
    let mut r = status.into_response();
    r.headers_mut()
        .insert(h("tus-resumable"), HeaderValue::from_static(TUS_VERSION));
    for (k, v) in headers {
        r.headers_mut().insert(k, v);
    }
    r
}

fn files(s: &RestState) -> Result<&Files, ApiError> {
    Ok(s.service.files()?)
}

/// Every tus request but OPTIONS names the protocol version it speaks:
/// the answer to one that does not.
fn wrong_version(headers: &HeaderMap) -> Option<Response> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => None,
        _ => Some(tus(
            StatusCode::PRECONDITION_FAILED,
            vec![(h("tus-version"), HeaderValue::from_static(TUS_VERSION))],
        )),
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::new("INVALID_ARGUMENT", format!("{name} must be a number"))),
    }
}

fn upload_headers(f: &Files, u: &Upload) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = vec![
        (h("upload-offset"), value(u.offset)),
        (h("upload-length"), value(u.length)),
    ];
    if !u.finished() {
        out.push((h("upload-expires"), value(http_date(f.expires_at_ms(u)))));
    }
    out
}

/// `OPTIONS /v1/files/`: what this server speaks.
pub async fn options(State(s): State<RestState>) -> Response {
    let max = s.service.files().map_or(0, |f| f.config().max_file_bytes);
    tus(
        StatusCode::NO_CONTENT,
        vec![
            (h("tus-version"), HeaderValue::from_static(TUS_VERSION)),
            (h("tus-extension"), HeaderValue::from_static(TUS_EXTENSIONS)),
            (h("tus-max-size"), value(max)),
            (
                h("tus-checksum-algorithm"),
                HeaderValue::from_static("sha256"),
            ),
        ],
    )
}

/// `Upload-Metadata`: `key base64,key base64`.
fn metadata(headers: &HeaderMap) -> Result<(String, String), ApiError> {
    use base64::Engine;
    let mut name = String::new();
    let mut media = String::new();
    let Some(raw) = headers.get("upload-metadata") else {
        return Ok((name, media));
    };
    let bad = || ApiError::new("INVALID_ARGUMENT", "Upload-Metadata is `key base64,...`");
    for pair in raw.to_str().map_err(|_| bad())?.split(',') {
        let mut parts = pair.trim().splitn(2, ' ');
        let key = parts.next().unwrap_or_default();
        let val = match parts.next() {
            Some(v) => base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(bad)?,
            None => String::new(),
        };
        match key {
            "filename" | "name" => name = val,
            "filetype" | "type" => media = val,
            _ => {}
        }
    }
    Ok((name, media))
}

/// Creates an upload.
#[utoipa::path(post, path = "/v1/files", tag = "files",
    security(("bearer" = [])),
    params(
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Length" = u64, Header, description = "The file's size in bytes"),
        ("Upload-Metadata" = Option<String>, Header, description = "tus metadata: `filename` and `filetype`, base64"),
    ),
    responses(
        (status = 201, description = "Created: `Location` names the upload; `Upload-Expires` says when it expires unfinished"),
        (status = 400, description = "INVALID_ARGUMENT: no Upload-Length", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: over the quota", body = ErrorBody),
        (status = 412, description = "Not tus 1.0.0"),
        (status = 413, description = "MESSAGE_TOO_LARGE: over files.max_file_bytes", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many unfinished uploads", body = ErrorBody),
    ))]
pub async fn create(
    State(s): State<RestState>,
    Authed(me): Authed,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(r) = wrong_version(&headers) {
        return Ok(r);
    }
    let f = files(&s)?;
    let length = header_u64(&headers, "upload-length")?.ok_or_else(|| {
        ApiError::new(
            "INVALID_ARGUMENT",
            "Upload-Length is required (deferred lengths are not supported)",
        )
    })?;
    let (name, media) = metadata(&headers)?;
    let u = f
        .create(me.user_id, length, &name, &media, now_ms())
        .await?;
    let mut out = upload_headers(f, &u);
    out.push((header::LOCATION, value(format!("/v1/files/{}", u.id))));
    Ok(tus(StatusCode::CREATED, out))
}

fn checked_id(id: &str) -> Result<(), ApiError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ServiceError::NotFound("file").into())
    }
}

/// The offset an upload has reached (tus `HEAD`).
pub async fn offset(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(r) = wrong_version(&headers) {
        return Ok(r);
    }
    checked_id(&id)?;
    let f = files(&s)?;
    let u = f.get(me.user_id, &id)?;
    let mut out = upload_headers(f, &u);
    out.push((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    Ok(tus(StatusCode::OK, out))
}

/// Appends to an upload at its offset (tus `PATCH`).
#[utoipa::path(patch, path = "/v1/files/{id}", tag = "files",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The upload"),
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Offset" = u64, Header, description = "Where these bytes go: the upload's offset (HEAD tells it)"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha256 <base64>` of this request's bytes"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Stored and synced: `Upload-Offset` is the new offset"),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 409, description = "Upload-Offset is not the upload's offset"),
        (status = 412, description = "Not tus 1.0.0"),
        (status = 413, description = "More bytes than Upload-Length", body = ErrorBody),
        (status = 415, description = "Not application/offset+octet-stream", body = ErrorBody),
        (status = 460, description = "The bytes do not match Upload-Checksum; none were kept"),
    ))]
pub async fn append(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(r) = wrong_version(&headers) {
        return Ok(r);
    }
    checked_id(&id)?;
    let f = files(&s)?;
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/offset+octet-stream")
    {
        return Err(ApiError::new(
            "UNSUPPORTED_MEDIA_TYPE",
            "an append is application/offset+octet-stream",
        ));
    }
    let offset = header_u64(&headers, "upload-offset")?
        .ok_or_else(|| ApiError::new("INVALID_ARGUMENT", "Upload-Offset is required"))?;
    let checksum = match headers.get("upload-checksum") {
        None => None,
        Some(v) => Some(parse_checksum(v)?),
    };
    let reader = tokio_util::io::StreamReader::new(
        body.into_data_stream()
            .map_err(|e| std::io::Error::other(e.to_string())),
    );
    match f
        .append(me.user_id, &id, offset, checksum, reader, now_ms())
        .await
    {
        Ok(u) => Ok(tus(StatusCode::NO_CONTENT, upload_headers(f, &u))),
        Err(AppendError::OffsetMismatch { at }) => Ok(tus(
            StatusCode::CONFLICT,
            vec![(h("upload-offset"), value(at))],
        )),
        Err(AppendError::ChecksumMismatch) => Ok(tus(
            StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            vec![],
        )),
        Err(AppendError::TooLong) => Err(ApiError::new(
            "MESSAGE_TOO_LARGE",
            "more bytes than the upload's length",
        )),
        Err(AppendError::Service(e)) => Err(e.into()),
    }
}

fn parse_checksum(v: &HeaderValue) -> Result<Checksum, ApiError> {
    use base64::Engine;
    let bad = |m: &str| ApiError::new("INVALID_ARGUMENT", m.to_owned());
    let v = v
        .to_str()
        .map_err(|_| bad("Upload-Checksum is `sha256 <base64>`"))?;
    let (algo, sum) = v
        .split_once(' ')
        .ok_or_else(|| bad("Upload-Checksum is `sha256 <base64>`"))?;
    if algo != "sha256" {
        return Err(bad("the checksum algorithm this server supports is sha256"));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sum.trim())
        .map_err(|_| bad("Upload-Checksum's sum is base64"))?;
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| bad("a sha256 sum is 32 bytes"))?;
    Ok(Checksum::Sha256(raw))
}

/// Deletes an upload, finished or not (tus termination).
#[utoipa::path(delete, path = "/v1/files/{id}", tag = "files",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The upload"), ("Tus-Resumable" = String, Header, description = "1.0.0")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 412, description = "Not tus 1.0.0"),
        (status = 429, description = "RATE_LIMITED: an append to this upload is running; `Retry-After`", body = ErrorBody),
    ))]
pub async fn delete(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(r) = wrong_version(&headers) {
        return Ok(r);
    }
    checked_id(&id)?;
    files(&s)?.delete(me.user_id, &id).await?;
    Ok(tus(StatusCode::NO_CONTENT, vec![]))
}

/// One range of `len` bytes asked for, or why not; `None` for "send it
/// all" (no Range, or several, which are answered whole).
fn range(headers: &HeaderMap, len: u64, etag: &str) -> Result<Option<(u64, u64)>, ()> {
    let Some(r) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    // A Range with an If-Range that no longer matches: the whole file.
    if let Some(cond) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if cond.trim() != etag {
            return Ok(None);
        }
    }
    let Some(spec) = r.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        // The last `b` bytes.
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            let e: u64 = b.parse().map_err(|_| ())?;
            if e < start {
                return Err(());
            }
            // Past the end is clamped.
            e.min(len.saturating_sub(1))
        };
        (start, end)
    };
    if len == 0 || start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Downloads a finished file, whole or one range.
#[utoipa::path(get, path = "/v1/files/{id}", tag = "files",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The file"),
        ("Range" = Option<String>, Header, description = "`bytes=a-b`, `bytes=a-` or `bytes=-n`; several ranges are answered with the whole file"),
        ("If-Range" = Option<String>, Header, description = "The ETag: the range only if the file is still that one"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag: 304 if it still matches"),
    ),
    responses(
        (status = 200, description = "The file; `ETag` is its quoted SHA-256", content_type = "application/octet-stream"),
        (status = 206, description = "One range; `Content-Range: bytes a-b/len`", content_type = "application/octet-stream"),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "NOT_FOUND: no such finished file of yours", body = ErrorBody),
        (status = 416, description = "Unsatisfiable: `Content-Range: bytes */len`"),
    ))]
pub async fn download(
    State(s): State<RestState>,
    Authed(me): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    checked_id(&id)?;
    let u = s.service.open_file(&me, &id).await?;
    let etag = format!("\"{}\"", u.sha256.clone().unwrap_or_default());
    let len = u.length;
    let mut common = vec![
        (header::ETAG, value(&etag)),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        (
            header::CONTENT_TYPE,
            value(if u.media_type.is_empty() {
                "application/octet-stream"
            } else {
                &u.media_type
            }),
        ),
    ];
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            r.headers_mut().insert(header::ETAG, value(&etag));
            return Ok(r);
        }
    }
    let (status, start, count) = match range(&headers, len, &etag) {
        Ok(None) => (StatusCode::OK, 0, len),
        Ok(Some((a, b))) => {
            common.push((header::CONTENT_RANGE, value(format!("bytes {a}-{b}/{len}"))));
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
        Err(()) => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            r.headers_mut()
                .insert(header::CONTENT_RANGE, value(format!("bytes */{len}")));
            return Ok(r);
        }
    };
    let stream = files(&s)?.read(&u, start, count).await?;
    let mut r = Response::new(Body::from_stream(stream));
    *r.status_mut() = status;
    common.push((header::CONTENT_LENGTH, value(count)));
    for (k, v) in common {
        r.headers_mut().insert(k, v);
    }
    Ok(r)
}
