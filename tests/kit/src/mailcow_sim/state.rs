//! The part of Mailcow's MariaDB schema the API touches (`init_db.inc.php`),
//! as in-memory tables. Lookups follow the SQL Mailcow runs: string
//! comparisons are case-insensitive (utf8mb4_general_ci), rows come back in
//! primary-key order, and auto-increment ids are never reused.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use super::app_passwd::hash_password;
use super::php::{Arr, Key, Val, htmlspecialchars, trim};
use super::sql::{sql_eq, sql_key};
use super::validate::{filter_email, idn_to_ascii, is_valid_domain_name};

pub(crate) const MIB: i64 = 1_048_576;

/// Mailcow's default mailbox quota (MiB) for new mailboxes.
pub(crate) const DEFAULT_MAILBOX_QUOTA_MIB: i64 = 3072;

#[derive(Clone, Debug)]
pub(crate) struct Domain {
    pub name: String,
    pub description: String,
    /// Limits as the domain form stores them (`aliases`, `mailboxes`, MiB).
    pub max_aliases: i64,
    pub max_mailboxes: i64,
    pub defquota: i64,
    pub maxquota: i64,
    pub quota: i64,
    pub created: String,
    pub modified: Option<String>,
    pub active: i64,
}

impl Domain {
    /// Limits are generous so that large simulated directories never hit
    /// them unless a test lowers them on purpose.
    fn new(name: &str) -> Domain {
        Domain {
            name: name.to_owned(),
            description: String::new(),
            max_aliases: 100_000,
            max_mailboxes: 100_000,
            defquota: DEFAULT_MAILBOX_QUOTA_MIB,
            maxquota: 10_240,
            quota: 1 << 30,
            created: now(),
            modified: None,
            active: 1,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct AliasDomain {
    pub alias_domain: String,
    pub target_domain: String,
    pub created: String,
    pub modified: Option<String>,
    pub active: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Mailbox {
    pub username: String,
    pub local_part: String,
    pub domain: String,
    pub name: String,
    /// Bytes.
    pub quota: i64,
    pub active: i64,
    /// The JSON `attributes` column, key order as stored.
    pub attributes: Arr,
    pub created: String,
    pub modified: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Alias {
    pub id: i64,
    pub address: String,
    pub goto: String,
    pub domain: String,
    pub created: String,
    pub modified: Option<String>,
    pub private_comment: Option<String>,
    pub public_comment: Option<String>,
    pub sogo_visible: i64,
    pub internal: i64,
    pub sender_allowed: i64,
    pub active: i64,
}

impl Alias {
    /// Every mailbox owns one (`address = goto`); listings hide it.
    pub(crate) fn is_self_alias(&self) -> bool {
        sql_eq(&self.address, &self.goto)
    }

    pub(crate) fn goto_list(&self) -> Vec<String> {
        self.goto
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SenderAcl {
    pub id: i64,
    pub logged_in_as: String,
    pub send_as: String,
    pub external: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct AppPasswd {
    pub id: i64,
    pub name: String,
    pub mailbox: String,
    pub domain: String,
    pub password: String,
    pub created: String,
    pub modified: Option<String>,
    pub imap_access: i64,
    pub smtp_access: i64,
    pub dav_access: i64,
    pub eas_access: i64,
    pub pop3_access: i64,
    pub sieve_access: i64,
    pub active: i64,
}

/// The protocol flags in column order, as `protocols` names them.
pub(crate) const PROTOCOLS: [&str; 6] = [
    "imap_access",
    "smtp_access",
    "dav_access",
    "eas_access",
    "pop3_access",
    "sieve_access",
];

impl AppPasswd {
    pub(crate) fn flags(&self) -> [i64; 6] {
        [
            self.imap_access,
            self.smtp_access,
            self.dav_access,
            self.eas_access,
            self.pop3_access,
            self.sieve_access,
        ]
    }

    pub(crate) fn set_flags(&mut self, flags: [i64; 6]) {
        [
            self.imap_access,
            self.smtp_access,
            self.dav_access,
            self.eas_access,
            self.pop3_access,
            self.sieve_access,
        ] = flags;
    }
}

/// Redis `PASSWD_POLICY`; the php-fpm entrypoint's defaults.
#[derive(Clone, Debug)]
pub(crate) struct PasswordPolicy {
    pub length: i64,
    pub chars: i64,
    pub special_chars: i64,
    pub lowerupper: i64,
    pub numbers: i64,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            length: 6,
            chars: 0,
            special_chars: 0,
            lowerupper: 0,
            numbers: 0,
        }
    }
}

#[derive(Default)]
pub(crate) struct Db {
    pub domains: Vec<Domain>,
    pub alias_domains: Vec<AliasDomain>,
    pub mailboxes: Vec<Mailbox>,
    /// The `alias` table, in id order (ids only grow, rows are appended);
    /// written only through the methods below, which keep its indexes.
    aliases: Vec<Alias>,
    pub sender_acl: Vec<SenderAcl>,
    pub app_passwd: Vec<AppPasswd>,
    pub policy: PasswordPolicy,
    /// `mailbox.username`'s primary-key index: [`sql_key`] → position in
    /// `mailboxes`. Mailboxes are only ever appended (the API deletes
    /// none), so positions stay valid. Without it every lookup scanned
    /// 10,000 mailboxes under the simulator's one lock, where MariaDB
    /// answers from the index.
    mailbox_positions: HashMap<String, usize>,
    /// The alias table's indexes (see [`AliasIndex`]).
    alias_index: AliasIndex,
    next_alias_id: i64,
    next_sender_acl_id: i64,
    next_app_passwd_id: i64,
}

/// Primary-key order under a case-insensitive collation.
fn collation_key(s: &str) -> String {
    s.to_lowercase()
}

/// What MariaDB answers from indexes rather than by reading every alias
/// row under the simulator's one lock.
#[derive(Default)]
struct AliasIndex {
    /// `alias.address`'s UNIQUE index: [`sql_key`] → id.
    ids: HashMap<String, i64>,
    /// Per alias row domain ([`sql_key`]): rows whose address is not a
    /// mailbox, the `aliases_in_domain` MariaDB counts on every
    /// `add/alias` (php-fpm workers run that query side by side).
    non_mailbox: HashMap<String, i64>,
    /// The rows counted in `non_mailbox`, so that taking a row back
    /// undoes exactly what adding it did, whatever became of mailboxes.
    counted: HashSet<i64>,
}

impl AliasIndex {
    fn insert(&mut self, alias: &Alias, is_mailbox: bool) {
        let previous = self
            .ids
            .insert(sql_key(&alias.address).into_owned(), alias.id);
        assert!(
            previous.is_none_or(|id| id == alias.id),
            "two alias rows with the address {:?}",
            alias.address
        );
        if !is_mailbox {
            *self
                .non_mailbox
                .entry(sql_key(&alias.domain).into_owned())
                .or_default() += 1;
            self.counted.insert(alias.id);
        }
    }

    fn remove(&mut self, alias: &Alias) {
        let key = sql_key(&alias.address);
        if self.ids.get(&*key) == Some(&alias.id) {
            self.ids.remove(&*key);
        }
        if self.counted.remove(&alias.id) {
            let domain = sql_key(&alias.domain);
            if let Some(count) = self.non_mailbox.get_mut(&*domain) {
                *count -= 1;
                if *count == 0 {
                    self.non_mailbox.remove(&*domain);
                }
            }
        }
    }
}

impl Db {
    pub(crate) fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| sql_eq(&d.name, name))
    }

    pub(crate) fn domain_mut(&mut self, name: &str) -> Option<&mut Domain> {
        self.domains.iter_mut().find(|d| sql_eq(&d.name, name))
    }

    pub(crate) fn alias_domain(&self, name: &str) -> Option<&AliasDomain> {
        self.alias_domains
            .iter()
            .find(|d| sql_eq(&d.alias_domain, name))
    }

    /// `SELECT domain FROM domain` (primary-key order).
    pub(crate) fn domain_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.domains.iter().map(|d| d.name.clone()).collect();
        names.sort_by_key(|n| collation_key(n));
        names
    }

    pub(crate) fn alias_domain_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .alias_domains
            .iter()
            .map(|d| d.alias_domain.clone())
            .collect();
        names.sort_by_key(|n| collation_key(n));
        names
    }

    /// `domain = :d OR domain = (target of alias domain :d)`.
    pub(crate) fn domain_or_alias_target_exists(&self, name: &str) -> bool {
        self.domain(name).is_some()
            || self
                .alias_domain(name)
                .is_some_and(|ad| self.domain(&ad.target_domain).is_some())
    }

    pub(crate) fn mailbox(&self, username: &str) -> Option<&Mailbox> {
        let position = *self.mailbox_positions.get(&*sql_key(username))?;
        self.mailboxes.get(position)
    }

    pub(crate) fn mailbox_mut(&mut self, username: &str) -> Option<&mut Mailbox> {
        let position = *self.mailbox_positions.get(&*sql_key(username))?;
        self.mailboxes.get_mut(position)
    }

    /// Mailbox usernames in primary-key order, optionally of one domain.
    pub(crate) fn mailbox_names(&self, domain: Option<&str>) -> Vec<String> {
        let mut names: Vec<String> = self
            .mailboxes
            .iter()
            .filter(|m| domain.is_none_or(|d| sql_eq(&m.domain, d)))
            .map(|m| m.username.clone())
            .collect();
        names.sort_by_key(|n| collation_key(n));
        names
    }

    /// Every alias row, self-aliases included, in id order.
    pub(crate) fn aliases(&self) -> &[Alias] {
        &self.aliases
    }

    pub(crate) fn alias_by_id(&self, id: i64) -> Option<&Alias> {
        let position = self.aliases.binary_search_by_key(&id, |a| a.id).ok()?;
        self.aliases.get(position)
    }

    pub(crate) fn alias_by_address(&self, address: &str) -> Option<&Alias> {
        self.alias_by_id(*self.alias_index.ids.get(&*sql_key(address))?)
    }

    /// `aliases_in_domain` of a domain's details: alias rows of `domain`
    /// and of the alias domains pointing at it, mailbox self-aliases left
    /// out, from the per-domain counts rather than a scan of every row.
    pub(crate) fn aliases_in_domain(&self, domain: &str) -> i64 {
        let counted = |row_domain: &str| {
            self.alias_index
                .non_mailbox
                .get(&*sql_key(row_domain))
                .copied()
                .unwrap_or(0)
        };
        counted(domain)
            + self
                .alias_domains
                .iter()
                .filter(|ad| sql_eq(&ad.target_domain, domain) && !sql_eq(&ad.alias_domain, domain))
                .map(|ad| counted(&ad.alias_domain))
                .sum::<i64>()
    }

    /// INSERT of a new row; its id must come from [`Db::next_alias_id`]
    /// (rows stay in id order, which the lookups by id rely on).
    pub(crate) fn insert_alias(&mut self, alias: Alias) {
        assert!(self.aliases.last().is_none_or(|last| last.id < alias.id));
        let is_mailbox = self.mailbox(&alias.address).is_some();
        self.alias_index.insert(&alias, is_mailbox);
        self.aliases.push(alias);
    }

    /// UPDATE of the row with `alias.id`, every column as given.
    pub(crate) fn replace_alias(&mut self, alias: Alias) {
        let Ok(position) = self.aliases.binary_search_by_key(&alias.id, |a| a.id) else {
            return;
        };
        let is_mailbox = self.mailbox(&alias.address).is_some();
        let old = std::mem::replace(&mut self.aliases[position], alias);
        self.alias_index.remove(&old);
        self.alias_index.insert(&self.aliases[position], is_mailbox);
    }

    /// DELETE by id.
    pub(crate) fn remove_alias(&mut self, id: i64) {
        if let Ok(position) = self.aliases.binary_search_by_key(&id, |a| a.id) {
            let old = self.aliases.remove(position);
            self.alias_index.remove(&old);
        }
    }

    /// Is `local@domain` a mailbox reached through alias domain `domain`?
    pub(crate) fn is_alias_domain_mailbox(&self, local: &str, domain: &str) -> bool {
        self.alias_domains
            .iter()
            .filter(|ad| sql_eq(&ad.alias_domain, domain))
            .any(|ad| {
                self.mailbox(&format!("{local}@{}", ad.target_domain))
                    .is_some()
            })
    }

    /// `fixed_sender_aliases_allowed` of `sender_acl_handles`: addresses of
    /// non-catch-all aliases with `sender_allowed = 1` whose goto list holds
    /// the login (`goto REGEXP '(^|,)login($|,)'`), the own self-alias
    /// included.
    pub(crate) fn fixed_sender_aliases_allowed(&self, login: &str) -> Vec<Val> {
        let login = login.to_lowercase();
        self.aliases
            .iter()
            .filter(|a| !a.address.starts_with('@'))
            .filter(|a| a.goto.split(',').any(|g| g.to_lowercase() == login))
            .filter(|a| a.sender_allowed == 1)
            .map(|a| Val::str(&a.address))
            .collect()
    }

    pub(crate) fn next_alias_id(&mut self) -> i64 {
        self.next_alias_id += 1;
        self.next_alias_id
    }

    pub(crate) fn insert_sender_acl(&mut self, logged_in_as: &str, send_as: &str, external: i64) {
        self.next_sender_acl_id += 1;
        self.sender_acl.push(SenderAcl {
            id: self.next_sender_acl_id,
            logged_in_as: logged_in_as.to_owned(),
            send_as: send_as.to_owned(),
            external,
        });
    }

    pub(crate) fn next_app_passwd_id(&mut self) -> i64 {
        self.next_app_passwd_id += 1;
        self.next_app_passwd_id
    }

    // === out-of-band changes (a person in the UI, or a seed) ===

    pub(crate) fn create_domain(&mut self, name: &str) -> Result<(), String> {
        if !is_valid_domain_name(name) {
            return Err(format!("{name:?} is not a valid domain name"));
        }
        if self.domain(name).is_some() || self.alias_domain(name).is_some() {
            return Ok(());
        }
        let ascii = idn_to_ascii(name).unwrap_or_else(|| name.to_lowercase());
        self.domains.push(Domain::new(&ascii));
        Ok(())
    }

    pub(crate) fn create_alias_domain(&mut self, alias: &str, target: &str) -> Result<(), String> {
        if self.domain(target).is_none() {
            return Err(format!("alias domain target {target:?} is not a domain"));
        }
        if !is_valid_domain_name(alias) || self.domain(alias).is_some() {
            return Err(format!("{alias:?} cannot be an alias domain"));
        }
        if self.alias_domain(alias).is_none() {
            self.alias_domains.push(AliasDomain {
                alias_domain: alias.to_lowercase(),
                target_domain: target.to_lowercase(),
                created: now(),
                modified: None,
                active: 1,
            });
        }
        Ok(())
    }

    /// A mailbox with Mailcow's default attributes and its self-alias row;
    /// the domain is created when missing (Mailcow has no orphan mailboxes).
    pub(crate) fn create_mailbox(&mut self, username: &str) -> Result<(), String> {
        if !filter_email(username) {
            return Err(format!("{username:?} is not a valid mailbox address"));
        }
        if self.mailbox(username).is_some() {
            return Ok(());
        }
        if self.alias_by_address(username).is_some() {
            return Err(format!("{username:?} is already an alias"));
        }
        let (local, domain) = username.split_once('@').unwrap_or((username, ""));
        self.create_domain(domain)?;
        let domain = self
            .domain(domain)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| domain.to_owned());
        let username = format!("{local}@{domain}");
        let mut attributes = Arr::new();
        for (key, value) in [
            ("force_pw_update", Val::str("0")),
            ("force_tfa", Val::str("0")),
            ("tls_enforce_in", Val::str("0")),
            ("tls_enforce_out", Val::str("0")),
            ("sogo_access", Val::str("1")),
            ("imap_access", Val::str("1")),
            ("pop3_access", Val::str("1")),
            ("smtp_access", Val::str("1")),
            ("sieve_access", Val::str("1")),
            ("eas_access", Val::str("1")),
            ("dav_access", Val::str("1")),
            ("relayhost", Val::str("0")),
            ("passwd_update", Val::Int(unix_now())),
            ("mailbox_format", Val::str("maildir:")),
            ("quarantine_notification", Val::str("hourly")),
            ("quarantine_category", Val::str("reject")),
            ("attribute_hash", Val::str("")),
        ] {
            attributes.set(Key::Str(key.into()), value);
        }
        self.mailbox_positions
            .insert(sql_key(&username).into_owned(), self.mailboxes.len());
        self.mailboxes.push(Mailbox {
            username: username.clone(),
            local_part: local.to_owned(),
            domain: domain.clone(),
            name: local.to_owned(),
            quota: DEFAULT_MAILBOX_QUOTA_MIB * MIB,
            active: 1,
            attributes,
            created: now(),
            modified: None,
        });
        let id = self.next_alias_id();
        self.insert_alias(Alias {
            id,
            address: username.clone(),
            goto: username,
            domain,
            created: now(),
            modified: None,
            private_comment: None,
            public_comment: None,
            sogo_visible: 1,
            internal: 0,
            sender_allowed: 1,
            active: 1,
        });
        Ok(())
    }

    /// An app password as the UI creates it: active, every protocol on.
    pub(crate) fn create_app_password(
        &mut self,
        mailbox: &str,
        name: &str,
        plaintext: &str,
    ) -> Result<i64, String> {
        let Some(owner) = self.mailbox(mailbox).cloned() else {
            return Err(format!("unknown mailbox {mailbox:?}"));
        };
        let id = self.next_app_passwd_id();
        self.app_passwd.push(AppPasswd {
            id,
            name: htmlspecialchars(trim(name)),
            mailbox: owner.username,
            domain: owner.domain,
            password: hash_password(plaintext),
            created: now(),
            modified: None,
            imap_access: 1,
            smtp_access: 1,
            dav_access: 1,
            eas_access: 1,
            pop3_access: 1,
            sieve_access: 1,
            active: 1,
        });
        Ok(id)
    }

    /// An alias as the UI creates it (active, visible in SOGo).
    pub(crate) fn create_alias(
        &mut self,
        address: &str,
        goto: &[&str],
        sender_allowed: bool,
        private_comment: &str,
    ) -> Result<i64, String> {
        if self.alias_by_address(address).is_some() {
            return Err(format!("{address:?} is already an alias or a mailbox"));
        }
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
        if !self.domain_or_alias_target_exists(&domain) {
            return Err(format!("domain of {address:?} does not exist"));
        }
        if goto.is_empty() {
            return Err(format!("alias {address:?} needs at least one goto"));
        }
        let id = self.next_alias_id();
        self.insert_alias(Alias {
            id,
            address: address.to_owned(),
            goto: goto.join(","),
            domain,
            created: now(),
            modified: None,
            private_comment: Some(private_comment.to_owned()),
            public_comment: Some(String::new()),
            sogo_visible: 1,
            internal: 0,
            sender_allowed: i64::from(sender_allowed),
            active: 1,
        });
        Ok(id)
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// `NOW()` as a DATETIME string (UTC).
pub(crate) fn now() -> String {
    let secs = unix_now();
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
