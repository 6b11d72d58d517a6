//! Values as they come from TOML or the environment, before they are typed, and the checks
//! that type them while collecting every problem.

use std::fmt;

/// Collects problems while values are parsed.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    pub(super) fn push(&mut self, p: String) {
        self.0.push(p);
    }

    pub(super) fn int(&mut self, name: &str, raw: &Raw, min: u64, max: u64) -> Option<u64> {
        let parsed = match raw {
            Raw::Int(i) => u64::try_from(*i).ok(),
            Raw::Str(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.push(format!(
                    "{name} = {raw}: must be a whole number from {min} to {max}"
                ));
                None
            }
        }
    }

    /// Like [`Problems::int`], but a value above `max` is used as `max` with a warning: how the
    /// AWS extension treats its own variables (it clamps `SECRETS_MANAGER_TTL` to its cap), so a
    /// function configured for it starts here too.
    /// A whole number from `min` to `max`: for the AWS extension's own variables
    /// (`AWS_EXTENSION_ENV`) a value past `max` is used as `max` with a warning, as the
    /// extension is lenient there; for every other key it is refused.
    pub(super) fn int_or_clamped(
        &mut self,
        name: &str,
        raw: &Raw,
        min: u64,
        max: u64,
        warnings: &mut Vec<String>,
    ) -> Option<u64> {
        if super::AWS_EXTENSION_ENV.contains(&name) {
            self.int_clamped(name, raw, min, max, warnings)
        } else {
            self.int(name, raw, min, max)
        }
    }

    pub(super) fn int_clamped(
        &mut self,
        name: &str,
        raw: &Raw,
        min: u64,
        max: u64,
        warnings: &mut Vec<String>,
    ) -> Option<u64> {
        let parsed = match raw {
            Raw::Int(i) => u64::try_from(*i).ok(),
            Raw::Str(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(v) if v > max => {
                warnings.push(format!(
                    "{name} = {raw} is above the maximum secrets-agent allows; using {max}"
                ));
                Some(max)
            }
            Some(v) if v >= min => Some(v),
            _ => {
                self.push(format!(
                    "{name} = {raw}: must be a whole number of at least {min} (values above \
                     {max} are used as {max})"
                ));
                None
            }
        }
    }

    pub(super) fn float(&mut self, name: &str, raw: &Raw, min: f64, max: f64) -> Option<f64> {
        let parsed = match raw {
            Raw::Int(i) => Some(*i as f64),
            Raw::Float(f) => Some(*f),
            Raw::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(v) if v >= min && v <= max => Some(v),
            _ => {
                self.push(format!(
                    "{name} = {raw}: must be a number from {min} to {max}"
                ));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, name: &str, raw: &Raw) -> Option<bool> {
        let parsed = match raw {
            Raw::Bool(b) => Some(*b),
            Raw::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.push(format!("{name} = {raw}: must be true or false"));
        }
        parsed
    }

    pub(super) fn string(&mut self, name: &str, raw: &Raw) -> Option<String> {
        match raw {
            Raw::Str(s) => Some(s.clone()),
            _ => {
                self.push(format!("{name} = {raw}: must be a string"));
                None
            }
        }
    }

    pub(super) fn strings(&mut self, name: &str, raw: &Raw) -> Option<Vec<String>> {
        match raw {
            Raw::List(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Raw::Str(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                        _ => {
                            self.push(format!(
                                "{name} = {raw}: must be a list of non-empty strings"
                            ));
                            return None;
                        }
                    }
                }
                Some(out)
            }
            // The environment gives lists as comma-separated strings.
            Raw::Str(s) => Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            _ => {
                self.push(format!("{name} = {raw}: must be a list of strings"));
                None
            }
        }
    }
}

/// A value as it came from TOML or the environment, before it is typed.
#[derive(Debug, Clone)]
pub(super) enum Raw {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Raw>),
    Table(String),
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Str(s) => write!(f, "{s:?}"),
            Raw::Int(i) => write!(f, "{i}"),
            Raw::Float(x) => write!(f, "{x}"),
            Raw::Bool(b) => write!(f, "{b}"),
            Raw::List(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
            Raw::Table(t) => write!(f, "{{{t}}}"),
        }
    }
}

impl From<&toml::Value> for Raw {
    fn from(v: &toml::Value) -> Self {
        match v {
            toml::Value::String(s) => Raw::Str(s.clone()),
            toml::Value::Integer(i) => Raw::Int(*i),
            toml::Value::Float(x) => Raw::Float(*x),
            toml::Value::Boolean(b) => Raw::Bool(*b),
            toml::Value::Array(items) => Raw::List(items.iter().map(Raw::from).collect()),
            toml::Value::Table(t) => Raw::Table(
                t.iter()
                    .map(|(k, v)| format!("{k} = {}", Raw::from(v)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            toml::Value::Datetime(d) => Raw::Str(d.to_string()),
        }
    }
}

/// One setting from one source: the flat key it sets, the name to show in messages, the value.
pub(super) struct Setting {
    pub(super) key: String,
    pub(super) shown: String,
    pub(super) raw: Raw,
}
