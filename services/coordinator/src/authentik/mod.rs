//! The Authentik side: an API client that reads every page, and the
//! directory model (users, groups, nesting).

pub mod client;
pub mod events;
pub mod listing;
pub mod model;

pub use client::{AuthentikClient, DirectorySource, UserField};
pub use events::{Event, EventSource};
pub use model::{Group, User, into_normal_uuid, is_uuid, normalize_uuid};
