//! The coordinator: Authentik group membership in, a plan out, agents apply it.
//!
//! The loop (docs/ARCHITECTURE.md, "The loop"): a trigger enqueues a durable job
//! ([`http`], [`grpc`], [`worker`]); a worker runs it through the [`engine`]:
//! read the [`directory`] from [`authentik`], compute [`desired`] state from
//! group [`attributes`], ask the agents what is [`observed`], [`plan`] the
//! difference under the ledger's ownership rules, apply through [`agents`],
//! and record everything in the [`store`].

pub mod agents;
pub mod app;
pub mod attributes;
pub mod audit_api;
pub mod authentik;
pub mod catchup;
pub mod certs;
pub mod cli;
pub mod config;
pub mod desired;
pub mod directory;
pub mod duties;
pub mod engine;
pub mod error;
pub mod explain;
pub mod group_set;
pub mod grpc;
pub mod health;
pub mod healthcheck;
pub mod http;
pub mod ingest;
pub mod leader;
pub mod ledger;
pub mod metrics;
pub mod observed;
pub mod plan;
pub mod serve_http;
pub mod status_page;
pub mod store;
pub mod subject;
pub mod targets;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
pub mod webhook;
pub mod worker;

pub use error::{Error, Result};
