pub mod action;
pub mod cli;
pub mod job;
pub mod store;
pub mod trigger;
