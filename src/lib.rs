pub mod cli;
pub mod trigger;
