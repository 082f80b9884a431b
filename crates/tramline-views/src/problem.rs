//! Errors as RFC 9457 problem details (`application/problem+json`), with the status a client
//! can act on. Every type is `urn:tramline:problem:<kind>`; the kinds are listed in
//! docs/HTTP.md. Every tramline API answers its errors with these.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The largest request body a command API takes: 64 KiB.
pub const COMMAND_BODY_LIMIT: usize = 64 * 1024;

/// A problem details document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type, e.g. `urn:tramline:problem:not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's short description.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
}

impl Problem {
    /// A problem of `status`, explained by `detail`.
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:tramline:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    /// The 413 problem of a request body over [`COMMAND_BODY_LIMIT`].
    pub fn payload_too_large() -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the request body is larger than {COMMAND_BODY_LIMIT} bytes"),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("a problem serialises");
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-value",
                e.body_text(),
            ),
            r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::payload_too_large(),
            JsonRejection::MissingJsonContentType(e) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                e.body_text(),
            ),
            other => Problem::new(StatusCode::BAD_REQUEST, "malformed", other.body_text()),
        }
    }
}
