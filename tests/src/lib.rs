//! placeholder
pub mod authentik_sim;
pub mod harness;
pub mod mailcow_sim;
