//! The HTTP face: routes and auth (`server`), errors to HTTP status and JSON (`error`), per-connection timeouts (`conn`), the listening
//! socket (`listener`), the SSRF token (`token`), and JSON answers for what hyper refuses itself
//! (`rejection`).

pub mod conn;
pub mod error;
pub mod listener;
pub mod rejection;
pub mod server;
pub mod token;
