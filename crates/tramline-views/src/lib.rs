//! Declared read models as services: a view declared in configuration ([`spec`]) becomes a
//! [`tramline_core::readmodel::Declaration`], its table and consumer come from
//! [`tramline_sql::readmodel`], and [`http`] serves it: one row by key, filtered keyset pages,
//! and an OpenAPI document generated from the declaration; [`console`] is the web console at `/`
//! of a view's listener. Errors are problem details
//! ([`problem::Problem`]), shared with the order system's APIs.

pub mod console;
pub mod http;
pub mod problem;
pub mod rebuild;
pub mod spec;

pub use spec::{SpecProblem, ViewSpec};
