//! Symfony Console's argv parsing, as `occ` does it (`ArgvInput::parse`):
//! a token starting with `--` is a long option, one starting with `-` is a
//! short option (or a cluster of them), everything after a bare `--` is
//! positional. An option the command does not define is an error, so a
//! positional value starting with `-` (a user id such as `-bob`) must
//! follow `--`, or occ refuses it, or worse, reads it as an option.

use std::collections::BTreeMap;

/// Whether an option takes a value (`InputOption::VALUE_*`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    Nothing,
    Value,
}

/// One option of a command's definition.
pub struct Opt {
    pub name: &'static str,
    pub shortcut: Option<char>,
    pub takes: Takes,
}

impl Opt {
    pub const fn flag(name: &'static str) -> Self {
        Self {
            name,
            shortcut: None,
            takes: Takes::Nothing,
        }
    }

    pub const fn value(name: &'static str) -> Self {
        Self {
            name,
            shortcut: None,
            takes: Takes::Value,
        }
    }

    const fn short(name: &'static str, shortcut: char) -> Self {
        Self {
            name,
            shortcut: Some(shortcut),
            takes: Takes::Nothing,
        }
    }
}

/// Options every command accepts: Symfony's application definition plus
/// Nextcloud's `--no-warnings`.
const GLOBAL: [Opt; 8] = [
    Opt::short("help", 'h'),
    Opt::short("quiet", 'q'),
    Opt::short("verbose", 'v'),
    Opt::short("version", 'V'),
    Opt::flag("ansi"),
    Opt::flag("no-ansi"),
    Opt::short("no-interaction", 'n'),
    Opt::flag("no-warnings"),
];

/// A command's input definition.
pub struct Definition<'a> {
    pub name: &'a str,
    /// Positional arguments in order: (name, required).
    pub arguments: &'static [(&'static str, bool)],
    /// The last argument takes every remaining token (`app:enable <app-id>...`).
    pub variadic: bool,
    pub options: &'static [Opt],
}

/// What was parsed: positional values after the command name, and the
/// options given (a flag maps to `None`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Input {
    pub arguments: Vec<String>,
    pub options: BTreeMap<String, Option<String>>,
}

impl Input {
    pub fn has(&self, option: &str) -> bool {
        self.options.contains_key(option)
    }

    pub fn value(&self, option: &str) -> Option<&str> {
        self.options.get(option).and_then(|v| v.as_deref())
    }

    pub fn argument(&self, index: usize) -> &str {
        self.arguments.get(index).map(String::as_str).unwrap_or("")
    }
}

impl Definition<'_> {
    fn option(&self, name: &str) -> Option<&Opt> {
        self.options
            .iter()
            .chain(GLOBAL.iter())
            .find(|o| o.name == name)
    }

    fn shortcut(&self, c: char) -> Option<&Opt> {
        self.options
            .iter()
            .chain(GLOBAL.iter())
            .find(|o| o.shortcut == Some(c))
    }

    /// Parses the tokens after the command name; the error is Symfony's
    /// message.
    pub fn parse(&self, tokens: &[String]) -> Result<Input, String> {
        let mut input = Input::default();
        let mut options_end = false;
        let mut tokens = tokens.iter();
        while let Some(token) = tokens.next() {
            if options_end || token.is_empty() {
                self.push_argument(&mut input, token)?;
            } else if token == "--" {
                options_end = true;
            } else if let Some(long) = token.strip_prefix("--") {
                let (name, value) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (long, None),
                };
                let Some(opt) = self.option(name) else {
                    return Err(format!("The \"--{name}\" option does not exist."));
                };
                let value = match (opt.takes, value) {
                    (Takes::Nothing, Some(_)) => {
                        return Err(format!("The \"--{name}\" option does not accept a value."));
                    }
                    (Takes::Nothing, None) => None,
                    (Takes::Value, Some(v)) => Some(v),
                    // `--name value`: the next token is the value.
                    (Takes::Value, None) => match tokens.next() {
                        Some(v) => Some(v.clone()),
                        None => return Err(format!("The \"--{name}\" option requires a value.")),
                    },
                };
                input.options.insert(name.to_owned(), value);
            } else if token.len() > 1 && token.starts_with('-') {
                self.parse_short(&mut input, &token[1..], &mut tokens)?;
            } else {
                self.push_argument(&mut input, token)?;
            }
        }
        let missing: Vec<String> = self
            .arguments
            .iter()
            .skip(input.arguments.len())
            .filter(|(_, required)| *required)
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        if !missing.is_empty() && !input.has("help") {
            return Err(format!(
                "Not enough arguments (missing: {}).",
                missing.join(", ")
            ));
        }
        Ok(input)
    }

    fn parse_short<'t>(
        &self,
        input: &mut Input,
        cluster: &str,
        rest: &mut impl Iterator<Item = &'t String>,
    ) -> Result<(), String> {
        for (index, c) in cluster.char_indices() {
            let Some(opt) = self.shortcut(c) else {
                return Err(format!("The \"-{c}\" option does not exist."));
            };
            if opt.takes == Takes::Value {
                // `-xVALUE` or `-x VALUE`.
                let attached = &cluster[index + c.len_utf8()..];
                let value = if attached.is_empty() {
                    rest.next()
                        .cloned()
                        .ok_or_else(|| format!("The \"--{}\" option requires a value.", opt.name))?
                } else {
                    attached.to_owned()
                };
                input.options.insert(opt.name.to_owned(), Some(value));
                return Ok(());
            }
            input.options.insert(opt.name.to_owned(), None);
        }
        Ok(())
    }

    fn push_argument(&self, input: &mut Input, token: &str) -> Result<(), String> {
        if input.arguments.len() >= self.arguments.len() && !self.variadic {
            let expected: Vec<String> = std::iter::once("command")
                .chain(self.arguments.iter().map(|(n, _)| *n))
                .map(|n| format!("\"{n}\""))
                .collect();
            return Err(if self.arguments.is_empty() {
                format!(
                    "No arguments expected for \"{}\" command, got \"{token}\".",
                    self.name
                )
            } else {
                format!(
                    "Too many arguments, expected arguments {}.",
                    expected.join(" ")
                )
            });
        }
        input.arguments.push(token.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORT: Definition<'static> = Definition {
        name: "mail:account:export",
        arguments: &[("user-id", true)],
        variadic: false,
        options: &[Opt::value("output")],
    };

    fn parse(tokens: &[&str]) -> Result<Input, String> {
        let tokens: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        EXPORT.parse(&tokens)
    }

    #[test]
    fn a_dash_value_is_an_option_unless_after_double_dash() {
        assert_eq!(
            parse(&["-bob"]).unwrap_err(),
            "The \"-b\" option does not exist."
        );
        assert_eq!(
            parse(&["--bob"]).unwrap_err(),
            "The \"--bob\" option does not exist."
        );
        let input = parse(&["--output=json", "--", "-bob"]).unwrap();
        assert_eq!(input.arguments, ["-bob"]);
        assert_eq!(input.value("output"), Some("json"));
        // `-v` is a real global flag: `-v` alone would be swallowed silently.
        assert_eq!(
            parse(&["-v"]).unwrap_err(),
            "Not enough arguments (missing: \"user-id\")."
        );
    }

    #[test]
    fn symfony_errors() {
        assert_eq!(
            parse(&["a", "b"]).unwrap_err(),
            "Too many arguments, expected arguments \"command\" \"user-id\"."
        );
        assert_eq!(
            parse(&["a", "--output"]).unwrap_err(),
            "The \"--output\" option requires a value."
        );
        assert_eq!(
            parse(&["a", "--help=x"]).unwrap_err(),
            "The \"--help\" option does not accept a value."
        );
        assert_eq!(parse(&["--output", "json", "a"]).unwrap().argument(0), "a");
    }
}
