//! The subcommands beyond serving, each in its own file, and what they share (the placeholder
//! grammar they all read is `crate::placeholder`, below the HTTP face that also uses it):
//! - `exec`: resolve `awssm:`/`awsparam:` placeholders in the environment, then exec a command.
//! - `render`: write secrets to files on a memory filesystem, once or kept current.
//! - `webhook`: the Kubernetes admission webhook that adds the agent, `exec` or `render` to pods.
//! - `install`: copy this binary into a volume (the webhook's env mode).
//! - `fetch`: where values come from (a running agent, AWS, or a cache over AWS).

pub mod exec;
pub mod fetch;
pub mod health;
pub mod install;
pub mod lambda;
pub mod render;
pub mod serve;
pub mod webhook;
