//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` a request arrives with, and the context it runs in.
//!
//! The decision to know: tramline exports no spans. Each request gets a span id of its own,
//! logged with the trace id (continued from a valid incoming `traceparent`, else new), and
//! that `traceparent`, naming our span as the parent, travels in the response and in the
//! headers of every outbox message the request's commands commit. The consumers find it in the
//! record's headers ([`trace_id_of`]), so an operator can follow one request from its log line
//! to the view update it caused.

use std::collections::BTreeMap;

/// The header carrying version, trace id, parent id and flags.
pub const TRACEPARENT: &str = "traceparent";
/// The header carrying vendor-specific trace state, propagated as received.
pub const TRACESTATE: &str = "tracestate";

/// Most bytes of `tracestate` propagated (the specification asks for at least 512); members
/// past it are dropped from the end, as the specification allows.
const TRACESTATE_MAX: usize = 512;
/// Most `tracestate` list members (the specification's limit).
const TRACESTATE_MEMBERS: usize = 32;
/// The one flag version 00 defines: the caller may have recorded the trace.
const SAMPLED: u8 = 0x01;

/// The parts of a valid `traceparent`, borrowed from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent<'a> {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: &'a str,
    /// 16 lowercase hex digits, not all zero: the caller's span.
    pub parent_id: &'a str,
    /// The trace flags.
    pub flags: u8,
}

/// Parses a `traceparent` value: version 00 exactly (`00-<trace-id>-<parent-id>-<flags>`);
/// a later version by its version-00 prefix, as the specification asks. `None` for anything
/// invalid, which the caller then ignores.
pub fn parse_traceparent(value: &str) -> Option<TraceParent<'_>> {
    let b = value.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = &value[..2];
    if !is_hex(version) || version == "ff" {
        return None;
    }
    // Version 00 is exactly 55 characters; a later one may append fields after a dash.
    if (version == "00" && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
        return None;
    }
    let (trace_id, parent_id, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    if !is_hex(trace_id) || !is_hex(parent_id) || !is_hex(flags) {
        return None;
    }
    if is_zero(trace_id) || is_zero(parent_id) {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        flags: u8::from_str_radix(flags, 16).ok()?,
    })
}

/// The trace id of a `traceparent` header value, if it is valid; borrows, never allocates
/// (the consumers call it per record).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    parse_traceparent(traceparent).map(|t| t.trace_id)
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|c| c == b'0')
}

/// The trace context a request runs in: its trace, our span within it, and what is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `00-<trace-id>-<our span id>-<flags>`, as forwarded (built once, sliced for the ids).
    traceparent: String,
    /// The incoming `tracestate`, if the incoming `traceparent` was valid.
    tracestate: Option<String>,
}

impl TraceContext {
    /// The context of a request that came with these headers: a valid `traceparent`
    /// continues its trace under a new span id (keeping its sampled flag and the
    /// `tracestate`); an absent or invalid one starts a new trace, flagged sampled since its
    /// log lines are recorded.
    pub fn for_request(traceparent: Option<&str>, tracestate: Option<&str>) -> Self {
        let span_id = random_span_id();
        match traceparent.and_then(parse_traceparent) {
            Some(parent) => TraceContext {
                traceparent: format!(
                    "00-{}-{span_id}-{:02x}",
                    parent.trace_id,
                    parent.flags & SAMPLED
                ),
                tracestate: tracestate.and_then(clean_tracestate),
            },
            None => TraceContext {
                traceparent: format!("00-{}-{span_id}-{SAMPLED:02x}", random_trace_id()),
                tracestate: None,
            },
        }
    }

    /// The `traceparent` to forward: this trace, our span as the parent.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` to forward, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id (32 hex digits).
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// Our span id (16 hex digits).
    pub fn span_id(&self) -> &str {
        &self.traceparent[36..52]
    }

    /// Adds `traceparent` (and `tracestate`) to a message's headers.
    pub fn stamp(&self, headers: &mut BTreeMap<String, String>) {
        headers.insert(TRACEPARENT.to_owned(), self.traceparent.clone());
        if let Some(state) = &self.tracestate {
            headers.insert(TRACESTATE.to_owned(), state.clone());
        }
    }
}

/// A random trace id: 16 bytes as 32 lowercase hex digits, never all zero (invalid).
fn random_trace_id() -> String {
    let id = loop {
        let id: u128 = rand::random();
        if id != 0 {
            break id;
        }
    };
    format!("{id:032x}")
}

/// A random span id: 8 bytes as 16 lowercase hex digits, never all zero (invalid).
fn random_span_id() -> String {
    let id = loop {
        let id: u64 = rand::random();
        if id != 0 {
            break id;
        }
    };
    format!("{id:016x}")
}

/// The `tracestate` to propagate: its members, trimmed, in order, while they fit the limits;
/// `None` if it is empty or holds characters a header list member cannot.
fn clean_tracestate(value: &str) -> Option<String> {
    if !value
        .bytes()
        .all(|c| c == b'\t' || (b' '..=b'~').contains(&c))
    {
        return None;
    }
    let mut kept = String::new();
    for member in value
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .take(TRACESTATE_MEMBERS)
    {
        let needed = member.len() + usize::from(!kept.is_empty());
        if kept.len() + needed > TRACESTATE_MAX {
            break;
        }
        if !kept.is_empty() {
            kept.push(',');
        }
        kept.push_str(member);
    }
    (!kept.is_empty()).then_some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_under_a_new_span() {
        let parsed = parse_traceparent(VALID).expect("valid");
        assert_eq!(parsed.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id, "00f067aa0ba902b7");
        assert_eq!(parsed.flags, 1);

        let ctx = TraceContext::for_request(Some(VALID), Some("congo=t61rcWkgMzE, rojo=00f0"));
        assert_eq!(ctx.trace_id(), parsed.trace_id);
        assert_ne!(ctx.span_id(), parsed.parent_id);
        assert_eq!(ctx.span_id().len(), 16);
        assert!(ctx.traceparent().ends_with("-01"));
        assert_eq!(ctx.tracestate(), Some("congo=t61rcWkgMzE,rojo=00f0"));
        let again = parse_traceparent(ctx.traceparent()).expect("we emit valid ones");
        assert_eq!(again.parent_id, ctx.span_id());

        let unsampled = VALID.replace("-01", "-00");
        let ctx = TraceContext::for_request(Some(&unsampled), None);
        assert!(ctx.traceparent().ends_with("-00"));
        // Undefined flag bits are not forwarded (version 00 defines only "sampled").
        let odd = VALID.replace("-01", "-ff");
        let ctx = TraceContext::for_request(Some(&odd), None);
        assert!(ctx.traceparent().ends_with("-01"));
    }

    #[test]
    fn an_invalid_traceparent_is_ignored_and_a_new_trace_started() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent id
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // 00 has 4 fields
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", // misplaced dash
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
            let ctx = TraceContext::for_request(Some(bad), Some("congo=x"));
            assert_ne!(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(parse_traceparent(ctx.traceparent()).is_some(), "{ctx:?}");
            assert_eq!(
                ctx.tracestate(),
                None,
                "tracestate goes with an invalid parent"
            );
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_version_00_prefix() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert_eq!(trace_id_of(later), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let glued = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(trace_id_of(glued), None);
    }

    #[test]
    fn new_traces_are_random_and_well_formed() {
        let a = TraceContext::for_request(None, None);
        let b = TraceContext::for_request(None, None);
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.span_id(), b.span_id());
        let parsed = parse_traceparent(a.traceparent()).expect("valid");
        assert_eq!(parsed.trace_id, a.trace_id());
        assert_eq!(parsed.flags, SAMPLED);
    }

    #[test]
    fn tracestate_is_kept_within_its_limits() {
        assert_eq!(clean_tracestate(" , "), None);
        assert_eq!(clean_tracestate("a=1\u{7f}"), None);
        let long: Vec<String> = (0..40).map(|i| format!("vendor{i:02}=value")).collect();
        let kept = clean_tracestate(&long.join(",")).expect("kept");
        assert!(kept.len() <= TRACESTATE_MAX);
        assert_eq!(kept.split(',').count(), TRACESTATE_MEMBERS);
        assert!(kept.starts_with("vendor00=value,vendor01"));
        let huge = format!("a=1,b={}", "x".repeat(600));
        assert_eq!(clean_tracestate(&huge).as_deref(), Some("a=1"));
    }

    #[test]
    fn stamping_adds_both_headers() {
        let ctx = TraceContext::for_request(Some(VALID), Some("congo=1"));
        let mut headers = BTreeMap::new();
        ctx.stamp(&mut headers);
        assert_eq!(headers[TRACEPARENT], ctx.traceparent());
        assert_eq!(headers[TRACESTATE], "congo=1");
    }
}
