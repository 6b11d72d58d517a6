//! How the agent lives: as a Lambda extension (`lambda`, speaking the Extensions API through
//! `extensions_api`), as a container sidecar or host service (`sidecar`), and the one shutdown
//! future both pass to the server (`shutdown`).

pub mod extensions_api;
pub mod lambda;
pub mod shutdown;
pub mod sidecar;
