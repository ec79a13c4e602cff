//! Which users a run may touch.

use std::collections::BTreeSet;

use super::{Engine, Subject};
use crate::authentik::normalize_uuid;
use crate::directory::Directory;
use crate::error::Result;
use crate::ledger::LedgerRow;
use crate::plan::Scope;

impl Engine {
    pub(super) async fn scope(
        &self,
        subject: &Subject,
        directory: &Directory,
        ledger: &[LedgerRow],
    ) -> Result<Scope> {
        Ok(match subject {
            Subject::All => Scope::All,
            Subject::User(needle) => {
                let username = match directory.find_user(needle) {
                    Some(u) => Some(u.username.clone()),
                    // Deleted from Authentik: find who they were from our records.
                    None => self.store.known_username(needle).await?,
                };
                Scope::Users(username.into_iter().collect())
            }
            Subject::Group(needle) => {
                let id = directory
                    .find_group(needle)
                    .map(|g| normalize_uuid(&g.pk))
                    .unwrap_or_else(|| normalize_uuid(needle));
                let mut users: BTreeSet<String> = directory
                    .effective_members(&id)
                    .iter()
                    .filter_map(|pk| directory.people.get(pk))
                    .map(|p| p.username.clone())
                    .collect();
                // Everyone the ledger ties to this group or one below it,
                // so leavers (and members of a deleted group) are covered.
                let below = directory.descendants(&id);
                users.extend(
                    ledger
                        .iter()
                        .filter(|r| r.groups.iter().any(|g| below.contains(g)))
                        .map(|r| r.username.clone())
                        .filter(|u| !u.is_empty()),
                );
                // And everyone it ties to a group above this one who is no
                // longer among that group's members: someone who left this
                // group (or one below it) and held the ancestor's grants
                // through it. Their rows name the ancestor, not this group.
                for above in directory.ancestors(&id).into_iter().filter(|g| *g != id) {
                    let members: BTreeSet<&str> = directory
                        .effective_members(&above)
                        .iter()
                        .filter_map(|pk| directory.people.get(pk))
                        .map(|p| p.username.as_str())
                        .collect();
                    users.extend(
                        ledger
                            .iter()
                            .filter(|r| r.groups.iter().any(|g| g == above))
                            .filter(|r| {
                                !r.username.is_empty() && !members.contains(r.username.as_str())
                            })
                            .map(|r| r.username.clone()),
                    );
                }
                Scope::Users(users)
            }
        })
    }
}
