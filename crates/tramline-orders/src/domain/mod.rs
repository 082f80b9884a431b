//! The three aggregates as pure state machines: no I/O, no SQL. Every accepted change bumps the
//! aggregate's version and names the event it produces; a refused command changes nothing.

pub mod delivery;
pub mod order;
pub mod payment;

/// Declares a closed set of names (statuses, event types) with their exact spelling in code,
/// SQL and JSON (and the OpenAPI documents), and parsing back from it. The spelling is taken
/// as a token tree, not a `literal` fragment: utoipa does not see through the invisible group
/// a `literal` fragment is wrapped in, and documented the variants' Rust names instead.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:tt),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The exact spelling used in SQL, JSON and headers.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the exact spelling; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use named_enum;

/// Builds the error for a command the current status does not allow.
pub(crate) fn refuse(
    entity: &'static str,
    id: &str,
    status: &'static str,
    action: &'static str,
) -> crate::OrderSystemError {
    crate::OrderSystemError::IllegalTransition {
        entity,
        id: id.to_owned(),
        status,
        action,
    }
}
