//! The wire contract between the coordinator, its operators and the agents.

/// The agent contract: observe and apply (with dry-run).
pub mod agent {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("reconciler.agent.v1");
}

/// The coordinator's operator service.
pub mod coordinator {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("reconciler.coordinator.v1");
}

pub mod address;

/// Encoded `FileDescriptorSet` of every proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("reconciler_descriptor");

/// How objects we create are recognised as ours on the target. Both sides of
/// the contract need these: the coordinator names objects, agents refuse to
/// touch objects without them.
pub mod markers {
    /// Prefix of every app password name we create: `authentik-sync:<user>:<target>`.
    pub const APP_PASSWORD_PREFIX: &str = "authentik-sync:";

    /// Start of the `private_comment` of every alias we create.
    pub const ALIAS_MARKER: &str = "[authentik-reconciler]";

    /// The full `private_comment` written on our aliases (Mailcow allows 160 chars).
    pub const ALIAS_COMMENT: &str = "[authentik-reconciler] managed from Authentik group attributes; manual edits are overwritten";

    /// The app password name for `user` on `target`.
    pub fn app_password_name(user: &str, target: &str) -> String {
        format!("{APP_PASSWORD_PREFIX}{user}:{target}")
    }

    /// The name an observed app password would have if we made it now, or
    /// `None` when it does not follow our naming pattern.
    pub fn canonical_app_password_name(observed: &str) -> Option<String> {
        observed
            .starts_with(APP_PASSWORD_PREFIX)
            .then(|| observed.to_owned())
    }

    /// True when an alias `private_comment` says we created the alias.
    pub fn is_managed_alias_comment(comment: &str) -> bool {
        comment.trim_start().starts_with(ALIAS_MARKER)
    }
}
