//! The `apsched` command line: `serve`, `migrate`, `preview`.

pub mod preview;
