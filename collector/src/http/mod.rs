//! The HTTP side: serving with limits (`serve`), TLS (`https`), the shared handler state and
//! errors (`state`), logins (`auth`), the JSON API (`api`) and the agent configuration push
//! (`push`). The console's pages are in `crate::console`; `crate::serve` puts the two together.

pub mod api;
pub mod auth;
pub mod https;
pub mod push;
mod serve;
pub mod state;

pub use serve::{Limits, harden, serve};
