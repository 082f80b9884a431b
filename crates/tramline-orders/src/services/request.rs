//! What a command knows of the HTTP request it runs for — its trace context and its
//! idempotency claim — without a parameter on every service method.
//!
//! The decision to know: the HTTP layer runs a request's handler inside `tokio::task_local!`
//! scopes ([`traced`], [`claimed`]) and [`super::ServiceDb::commit`], where every command
//! commits, reads them. That holds because a handler and the services it calls run in the
//! request's own task: nothing on that path is spawned (spawning there would lose the context,
//! so don't). A commit outside a request — a consumer's — finds no scope and adds nothing.

use crate::events::DomainEvent;
use crate::trace::TraceContext;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tramline_core::Envelope;
use tramline_sql::IdempotencyRecord;

tokio::task_local! {
    /// The trace context of the request being served.
    static TRACE: TraceContext;
    /// The idempotency claim of the request being served, if it has a key.
    static CLAIM: Arc<IdempotencyClaim>;
}

/// Runs `f` (a request's handling) in `trace`: every message its commands commit carries the
/// trace's `traceparent` and `tracestate`.
pub async fn traced<F: Future>(trace: TraceContext, f: F) -> F::Output {
    TRACE.scope(trace, f).await
}

/// Runs `f` (a command's handling) under `claim`: the first commit carrying the command's
/// events also records the response the claim describes, in the same transaction.
pub async fn claimed<F: Future>(claim: Arc<IdempotencyClaim>, f: F) -> F::Output {
    CLAIM.scope(claim, f).await
}

/// How a command route answers a success, so the recorded response is the one a replay gives:
/// the status and, for a creation, the new resource's `Location`. The body is the aggregate the
/// command changed, i.e. the snapshot its first event carries (the handlers answer with that
/// aggregate, serialised by the same serde derive as the event payload).
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    /// The success status code.
    pub status: u16,
    /// The `Location` of the created resource, from the command's first event.
    pub location: Option<fn(&DomainEvent) -> String>,
}

impl Reply {
    /// `200 OK` with the changed aggregate.
    pub const OK: Reply = Reply {
        status: 200,
        location: None,
    };

    /// `201 Created` with the new aggregate, at `location`.
    pub const fn created(location: fn(&DomainEvent) -> String) -> Reply {
        Reply {
            status: 201,
            location: Some(location),
        }
    }
}

/// A request's claim on an idempotency key: what to record when its command commits, and
/// what happened to it.
#[derive(Debug)]
pub struct IdempotencyClaim {
    key: String,
    request: String,
    reply: Reply,
    /// Set once a commit took the claim, so a second commit in the request records nothing.
    taken: AtomicBool,
    /// Set when the commit failed because another request recorded the key first.
    lost: AtomicBool,
}

impl IdempotencyClaim {
    /// A claim on `key` for `request` (the API's encoding of method, path and body), to be
    /// answered as `reply` says.
    pub fn new(key: String, request: String, reply: Reply) -> Self {
        IdempotencyClaim {
            key,
            request,
            reply,
            taken: AtomicBool::new(false),
            lost: AtomicBool::new(false),
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The request's encoding.
    pub fn request(&self) -> &str {
        &self.request
    }

    /// Whether the command's commit failed because a concurrent request with the same key
    /// committed its record first.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Notes that another request recorded the key first.
    pub(crate) fn lose(&self) {
        self.lost.store(true, Ordering::Release);
    }
}

/// Adds the request's trace headers (if a request is being served) to `messages`.
pub(crate) fn stamp(messages: &mut [Envelope]) {
    // Outside a request there is no scope: nothing to add.
    let _ = TRACE.try_with(|trace| {
        for message in messages.iter_mut() {
            trace.stamp(&mut message.headers);
        }
    });
}

/// The idempotency record a commit of `events` (as `messages`) must insert, with its claim:
/// only when a request with a key is being served, its claim was not taken yet, and the commit
/// carries events (a refused command commits none and records nothing, so a retry runs it
/// again).
pub(crate) fn record(
    events: &[DomainEvent],
    messages: &[Envelope],
) -> Option<(Arc<IdempotencyClaim>, IdempotencyRecord)> {
    let (first, message) = events.first().zip(messages.first())?;
    let claim = CLAIM.try_with(Arc::clone).ok()?;
    if claim.taken.swap(true, Ordering::AcqRel) {
        return None;
    }
    let record = IdempotencyRecord {
        key: claim.key.clone(),
        request: claim.request.clone(),
        status: claim.reply.status,
        location: claim.reply.location.map(|location| location(first)),
        body: message.payload.clone(),
        created_at_ms: tramline_core::envelope::now_ms(),
    };
    Some((claim, record))
}
