//! The subcommands beyond serving, each in its own file, and the placeholder grammar they share:
//! - `exec`: resolve `awssm:`/`awsparam:` placeholders in the environment, then exec a command.
//! - `placeholder`: the grammar and how a fetched answer fills a reference.

pub mod exec;
pub mod placeholder;
