//! Reading and writing an owner's `dovecot-acl` files directly.
//!
//! Reading: one exec lists the folders (`doveadm mailbox list`), asks
//! Dovecot for the mail root (`mailbox path INBOX`) and for one other
//! folder's directory, to check that the folders lie where Maildir++ puts
//! them (`<root>/.<name in modified UTF-7, '/' as '.'>`, INBOX at the root),
//! then prints every folder directory's `dovecot-acl` with shell builtins
//! only (no process per folder).
//!
//! Writing, per folder, as Dovecot's vfile backend does it
//! (acl-backend-vfile-update.c): create `dovecot-acl.lock` exclusively
//! (waiting up to 30 s for a lock someone else holds, and clearing one
//! older than 120 s, Dovecot's stale timeout), check the file is still what
//! we read (else nothing is written and the caller reads again), write the
//! new content into the lock, give it the file's owner, group and mode (a
//! new file: the folder directory's, mode without x bits, as Dovecot
//! creates them), fsync (`sync FILE`; a `sync` without file arguments,
//! which flushes everything, where that is not supported), and rename it
//! over `dovecot-acl`. Then, once per
//! owner, remove `dovecot-acl-list` (Dovecot rebuilds it from the files
//! when it is missing; it lists the folders others may look up) and run
//! `doveadm acl recalc`, which rebuilds it and the shared-mailbox dict
//! (`acl_shared_dict`) that lets grantees see the owner under `Shared/`.
//!
//! The old way (`doveadm acl get/set` per folder) stays for what the files
//! cannot do correctly:
//! - a listed folder without a directory: an `auto = create` special-use
//!   folder not made yet (`acl set` creates it, as a client's first SELECT
//!   would) or a `\NonExistent` parent (`acl get` says 68, so it is no
//!   folder);
//! - a file that is not UTF-8 (this crate reads exec output as text, so
//!   its other entries could not be kept byte-for-byte);
//! - a layout other than Maildir++ (the check above fails): every folder.

use std::collections::{BTreeMap, BTreeSet};

/// Record separator in front of every status line.
const RS: char = '\u{1e}';

/// Marker an observed file's serialisation ends with when its last line
/// has no line break; shared with the apply script's comparison.
const NO_EOL: &str = "\u{1e}NOEOL";
/// The serialisation of "no file".
pub const NO_FILE: &str = "\u{1e}NOFILE";

/// Prints a file's lines with builtins only; a last line without a line
/// break is followed by a NOEOL line, so the content can be rebuilt
/// exactly (and compared, as `$(ser f)`, in the apply script).
const SER_FUNCTION: &str = r#"ser() {
  while IFS= read -r l; do printf '%s\n' "$l"; done < "$1"
  if [ -n "$l" ]; then printf '%s\n\036NOEOL\n' "$l"; fi
}
"#;

const OBSERVE_BODY: &str = r#"set -f
doveadm=$1 owner=$2
list=$($doveadm mailbox list -u "$owner")
rc=$?
if [ "$rc" -ne 0 ]; then printf '\036LIST %s\n' "$rc"; exit 0; fi
printf '\036LISTED\n%s\n\036LISTEND\n' "$list"
root=$($doveadm mailbox path -u "$owner" -t mailbox -- INBOX) || { printf '\036NOLAYOUT\n\036END\n'; exit 0; }
printf '\036ROOT %s\n' "$root"
sample=
while IFS= read -r box; do
  case "$box" in ''|INBOX|Shared|Shared/*) ;; *) sample=$box; break ;; esac
done <<EOF
$list
EOF
if [ -n "$sample" ]; then
  path=$($doveadm mailbox path -u "$owner" -t mailbox -- "$sample") || { printf '\036NOLAYOUT\n\036END\n'; exit 0; }
  printf '\036SAMPLE %s\n\036SAMPLEPATH %s\n' "$sample" "$path"
fi
dump() {
  printf '\036DIR %s\n' "$1"
  if [ -f "$1/dovecot-acl" ]; then
    printf '\036FILE\n'; ser "$1/dovecot-acl"; printf '\036EOF\n'
  fi
}
if cd -- "$root" 2>/dev/null; then
  dump .
  set +f
  for d in .[!.]* ..?*; do
    if [ -d "$d" ]; then dump "$d"; fi
  done
fi
printf '\036END\n'
"#;

const APPLY_BODY: &str = r#"set -f
doveadm=$1 owner=$2 root=$3
shift 3
wrote=0
while [ "$#" -ge 3 ]; do
  dir=$1 old=$2 new=$3
  shift 3
  f=$dir/dovecot-acl lock=$dir/dovecot-acl.lock
  if [ ! -d "$dir" ]; then printf '\036RC 68\n'; continue; fi
  if [ -e "$lock" ] && [ -n "$(find "$lock" -prune -mmin +2 2>/dev/null)" ]; then rm -f -- "$lock"; fi
  n=0
  until (set -C; : > "$lock") 2>/dev/null; do
    n=$((n + 1))
    if [ "$n" -ge 300 ]; then break; fi
    sleep 0.1
  done
  if [ "$n" -ge 300 ]; then printf '\036RC 75\n'; continue; fi
  if [ -f "$f" ]; then cur=$(ser "$f"); ref=$f; else cur=$(printf '\036NOFILE'); ref=$dir; fi
  if [ "$cur" != "$old" ]; then rm -f -- "$lock"; printf '\036RC 1001\n'; continue; fi
  read -r own mode <<EOF
$(stat -c '%u:%g %a' -- "$ref")
EOF
  if [ "$ref" = "$dir" ]; then mode=$(printf '%o' $((0$mode & 0666))); fi
  if printf '%s' "$new" > "$lock" && chown "$own" "$lock" && chmod "$mode" "$lock" \
     && { sync -- "$lock" 2>/dev/null || sync; } && mv -f -- "$lock" "$f"; then
    wrote=1
    printf '\036RC 0\n'
  else
    rm -f -- "$lock"
    printf '\036RC 75\n'
  fi
done
if [ "$wrote" = 1 ]; then
  rm -f -- "$root/dovecot-acl-list"
  $doveadm acl recalc -u "$owner"
  printf '\036RECALC %s\n' "$?"
fi
printf '\036END\n'
"#;

pub fn observe_script() -> String {
    format!("{SER_FUNCTION}{OBSERVE_BODY}")
}

pub fn apply_script() -> String {
    format!("{SER_FUNCTION}{APPLY_BODY}")
}

/// What the observe script saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `doveadm mailbox list` failed with this exit code.
    pub list_failed: Option<i64>,
    pub listed: Vec<String>,
    /// Folder directories are not where Maildir++ puts them.
    pub unknown_layout: bool,
    pub root: Option<String>,
    /// Directory (relative to the root, `.` for INBOX) → its `dovecot-acl`
    /// content, `None` when it has none.
    pub dirs: BTreeMap<String, Option<String>>,
}

pub fn parse_observe(stdout: &str) -> Observed {
    let mut seen = Observed::default();
    let mut sample: Option<(String, String)> = None;
    let mut lines = stdout.split('\n');
    let mut current_dir: Option<String> = None;
    while let Some(line) = lines.next() {
        let Some(tag) = line.strip_prefix(RS) else {
            continue;
        };
        let (key, value) = tag.split_once(' ').unwrap_or((tag, ""));
        match key {
            "LIST" => seen.list_failed = Some(value.trim().parse().unwrap_or(-1)),
            "LISTED" => {
                for name in lines.by_ref() {
                    if name == "\u{1e}LISTEND" {
                        break;
                    }
                    if !name.is_empty() {
                        seen.listed.push(name.to_owned());
                    }
                }
            }
            "NOLAYOUT" => seen.unknown_layout = true,
            "ROOT" => seen.root = Some(value.to_owned()),
            "SAMPLE" => sample = Some((value.to_owned(), String::new())),
            "SAMPLEPATH" => {
                if let Some((_, path)) = sample.as_mut() {
                    *path = value.to_owned();
                }
            }
            "DIR" => {
                seen.dirs.insert(value.to_owned(), None);
                current_dir = Some(value.to_owned());
            }
            "FILE" => {
                let mut content = String::new();
                for l in lines.by_ref() {
                    if l == "\u{1e}EOF" {
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if let Some(body) = content.strip_suffix(&format!("\n{NO_EOL}\n")) {
                    content = body.to_owned();
                }
                if let Some(dir) = &current_dir {
                    seen.dirs.insert(dir.clone(), Some(content));
                }
            }
            _ => {}
        }
    }
    if let (Some(root), Some((name, path))) = (&seen.root, &sample)
        && *path != format!("{root}/{}", maildir_dir(name))
    {
        seen.unknown_layout = true;
    }
    seen
}

/// The Maildir++ directory of a folder, relative to the mail root.
pub fn maildir_dir(folder: &str) -> String {
    if folder == "INBOX" {
        ".".to_owned()
    } else {
        format!(".{}", super::mutf7::encode(folder).replace('/', "."))
    }
}

/// The serialisation the apply script compares a file against (see
/// `SER_FUNCTION`); `$(…)` drops trailing line breaks, so they go here too.
pub fn serialized(content: Option<&str>) -> String {
    match content {
        None => NO_FILE.to_owned(),
        Some(c) if c.is_empty() || c.ends_with('\n') => c.trim_end_matches('\n').to_owned(),
        Some(c) => format!("{c}\n{NO_EOL}"),
    }
}

/// One folder file to write.
#[derive(Clone, Debug)]
pub struct Write {
    /// Absolute directory of the folder.
    pub dir: String,
    pub old: Option<String>,
    pub new: String,
}

pub fn apply_args(owner: &str, root: &str, writes: &[Write]) -> Vec<String> {
    let mut args = vec![owner.to_owned(), root.to_owned()];
    for w in writes {
        args.extend([w.dir.clone(), serialized(w.old.as_deref()), w.new.clone()]);
    }
    args
}

/// Exit codes per written folder, and `acl recalc`'s (None: not run).
pub fn parse_apply(stdout: &str) -> (Vec<i64>, Option<i64>) {
    let mut codes = Vec::new();
    let mut recalc = None;
    for line in stdout.lines() {
        let Some(tag) = line.strip_prefix(RS) else {
            continue;
        };
        if let Some(code) = tag.strip_prefix("RC ") {
            codes.push(code.trim().parse().unwrap_or(-1));
        } else if let Some(code) = tag.strip_prefix("RECALC ") {
            recalc = Some(code.trim().parse().unwrap_or(-1));
        }
    }
    (codes, recalc)
}

/// Folders whose file cannot be kept byte-for-byte through text.
pub fn opaque(content: &str) -> bool {
    content.contains(['\u{fffd}', '\0'])
}

/// Folders listed without a directory of their own.
pub fn dirless<'a>(seen: &'a Observed, folders: &'a [String]) -> BTreeSet<&'a str> {
    folders
        .iter()
        .filter(|f| !seen.dirs.contains_key(&maildir_dir(f)))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_files_exactly_and_checks_the_layout() {
        let out = "\u{1e}LISTED\nINBOX\nPro jects\n-x\n\u{1e}LISTEND\n\
                   \u{1e}ROOT /m\n\u{1e}SAMPLE Pro jects\n\u{1e}SAMPLEPATH /m/.Pro jects\n\
                   \u{1e}DIR .\n\u{1e}FILE\nowner lr\n\u{1e}EOF\n\
                   \u{1e}DIR .Pro jects\n\u{1e}FILE\n# c\nuser=a lr\n\u{1e}NOEOL\n\u{1e}EOF\n\
                   \u{1e}DIR .-x\n\u{1e}END\n";
        let seen = parse_observe(out);
        assert!(!seen.unknown_layout);
        assert_eq!(seen.listed, ["INBOX", "Pro jects", "-x"]);
        assert_eq!(seen.dirs["."].as_deref(), Some("owner lr\n"));
        assert_eq!(seen.dirs[".Pro jects"].as_deref(), Some("# c\nuser=a lr"));
        assert_eq!(seen.dirs[".-x"], None);

        let elsewhere = out.replace("/m/.Pro jects", "/m/Pro jects");
        assert!(parse_observe(&elsewhere).unknown_layout);
    }

    #[test]
    fn serialisation_matches_what_the_script_prints() {
        assert_eq!(serialized(None), NO_FILE);
        assert_eq!(serialized(Some("a\nb\n\n")), "a\nb");
        assert_eq!(serialized(Some("a\nb")), "a\nb\n\u{1e}NOEOL");
        assert_eq!(serialized(Some("")), "");
    }
}
