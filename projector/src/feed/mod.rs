//! Reading the stream: where deliveries come from and how they are checked.

pub mod cursor;
mod deliveries;
pub mod history;
pub mod wire;
