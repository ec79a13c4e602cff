//! The wire contract between the coordinator, its operators and the agents.

/// The agent contracts, package `reconciler.agent.v2`: one service per
/// agent (`MailcowAgent`, `SogoAgent`, `NextcloudAgent`, `MatrixAgent`,
/// `StalwartAgent`), each observing and applying (with dry-run) its own
/// messages, sharing `Outcome`, `ChangeResult`, `Unavailable` and
/// `ObserveError`.
pub mod agent {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("reconciler.agent.v2");
}

pub mod mailcow;

/// The coordinator's operator service.
pub mod coordinator {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("reconciler.coordinator.v2");
}

pub mod address;
pub mod matrix;

/// Encoded `FileDescriptorSet` of every proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("reconciler_descriptor");
