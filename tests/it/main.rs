//! The integration tests, as one binary so the crate is linked once: one module per area, sharing `harness` (the
//! real server, the webhook receiver, PostgreSQL scratch schemas). Everything here runs in one process on parallel
//! threads: a test must not change process-wide state (environment, working directory); configuration read from the
//! environment is tested in the library's unit tests (`src/settings.rs`). Run one area with
//! `cargo test --test it <area>::`.

mod harness;

mod audit;
mod backfill;
mod bad_input;
mod calendars;
mod cli;
mod crash;
mod delivery;
mod differential;
mod events;
mod health;
mod jobs_api;
mod labels;
mod library;
mod metrics;
mod notifications;
mod openapi;
mod policies;
mod postgres;
mod replicas;
mod retention;
mod scheduling;
mod security;
mod signatures;
mod templates;
mod trigger_properties;
mod ui_browser;
