//! Panics caught at a task's or a batch's edge, turned into the message they carried so the
//! failure can be reported where the work was asked for.

use std::any::Any;

/// The message of a panic's payload (`panic!` gives a `&str` or a `String`).
pub fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
