//! Domain types: what a user, bot, execution and worker are, and the rules that keep them valid.
//! Nothing here knows about HTTP or SQL; inputs are parsed into these types at the edge.

pub mod bot;
pub mod execution;
pub mod service;
pub mod user;
pub mod worker;

pub use bot::{Bot, BotKind, BotSpec, BotVersion, Resources, Runtime, Schedule, Webhook};
pub use execution::{
    ExecStatus, Execution, LogLine, LogStream, NewExecution, ResourceUsage, TimelineEvent,
};
pub use service::{Desired, ServiceReport, ServiceSpec, ServiceState, ServiceStatus};
pub use user::{ApiKey, Role, User};
pub use worker::WorkerInfo;

/// An input that breaks a rule: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A stored text that names no variant of a domain enum (a corrupt row or an old schema).
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} {value:?}; expected one of {expected:?}")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

/// Gives a fieldless enum its text form, parsing, and a TEXT mapping in both stores.
#[macro_export]
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::domain::UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err($crate::domain::UnknownVariant {
                        kind: stringify!($ty),
                        value: other.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty where String: sqlx::Type<DB> {
            fn type_info() -> DB::TypeInfo { <String as sqlx::Type<DB>>::type_info() }
            fn compatible(ty: &DB::TypeInfo) -> bool { <String as sqlx::Type<DB>>::compatible(ty) }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $ty where String: sqlx::Encode<'q, DB> {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode(self.as_str().to_owned(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty where String: sqlx::Decode<'r, DB> {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<String as sqlx::Decode<'r, DB>>::decode(value)?.parse()?)
            }
        }
    };
}

/// Checks a name used in URLs, pools and logs: 1–64 of `A-Z a-z 0-9 _ . -`, starting alphanumeric.
pub fn check_name(field: &str, value: &str) -> Result<(), Invalid> {
    let ok_len = (1..=64).contains(&value.len());
    let ok_first = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok_len && ok_first && ok_rest {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!(
                "{value:?} is not a valid name: use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
            ),
        ))
    }
}
