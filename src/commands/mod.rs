//! The subcommands beyond serving, each in its own file, and what they share:
//! - `exec`: resolve `awssm:`/`awsparam:` placeholders in the environment, then exec a command.
//! - `render`: write secrets to files on a memory filesystem, once or kept current.
//! - `placeholder`: the grammar and how a fetched answer fills a reference.
//! - `fetch`: where values come from (a running agent, AWS, or a cache over AWS).

pub mod exec;
pub mod fetch;
pub mod placeholder;
pub mod render;
