//! Configuration errors.
//!
//! Loading never stops at the first problem: it returns a [`ConfigErrors`] holding every problem it
//! found, each naming the file, the key path (`chains[0].venues[2].kind`), the line when known and
//! the reason. No error ever carries a value from the file that could be a secret: reasons describe
//! the problem (`expected an integer, found a string`), never the offending text.

use std::fmt;

/// What kind of problem a [`ConfigError`] reports, so callers decide on a kind and never on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be read, or is too large to be a configuration file.
    Io,
    /// The text is not valid TOML.
    Syntax,
    /// A key the schema does not know: a typo, or a key from another version.
    UnknownKey,
    /// A value of the wrong TOML type (a string where a number belongs, …).
    WrongType,
    /// A required key is absent.
    Missing,
    /// A value of the right type outside its allowed range or set: zero or negative limits,
    /// buckets over 100%, an unknown enum value, a malformed address.
    InvalidValue,
    /// Two entries that must be unique share a name, chain id or address.
    Duplicate,
    /// A reference to a chain, token or venue that is not declared.
    CrossReference,
    /// A value that looks like a secret pasted into the file.
    Secret,
    /// A setting that would expose the process, such as metrics bound to a public address.
    Unsafe,
    /// An environment variable the file references is not set or is empty.
    Environment,
    /// Checking stopped because the file has too many errors; fix the ones shown and rerun.
    TooManyErrors,
}

/// One problem in a configuration file.
///
/// `Display` renders `file:line: key: reason` (without `:line` when the line is unknown, without
/// `key: ` for problems with the document as a whole). Neither `Display` nor `Debug` contains a
/// value read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: String,
    line: Option<usize>,
    key: String,
    kind: ConfigErrorKind,
    reason: String,
}

impl ConfigError {
    /// Builds an error. `line` is 1-based; `key` is a path such as `chains[0].venues[2].kind`, or
    /// empty for the document as a whole.
    pub(crate) fn new(
        file: impl Into<String>,
        line: Option<usize>,
        key: impl Into<String>,
        kind: ConfigErrorKind,
        reason: impl Into<String>,
    ) -> Self {
        Self { file: file.into(), line, key: key.into(), kind, reason: reason.into() }
    }

    /// The file the error is in, as given to the loader (`<config>` for an in-memory config).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The 1-based line of the offending key or value, when it could be located.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The key path, e.g. `chains[0].venues[2].kind`; empty for the document as a whole.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The kind of problem.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// Why the key is refused, without the offending value.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether the error is a secret found in the file.
    pub fn is_secret(&self) -> bool {
        self.kind == ConfigErrorKind::Secret
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration; never empty when returned as an `Err`.
///
/// `Display` renders one error per line, in the order they were found: secrets first, then syntax,
/// then schema, environment and cross-reference problems, each group in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub(crate) fn new(errors: Vec<ConfigError>) -> Self {
        Self { errors }
    }

    /// A single-error list.
    pub(crate) fn single(error: ConfigError) -> Self {
        Self { errors: vec![error] }
    }

    /// The errors, in report order.
    pub fn as_slice(&self) -> &[ConfigError] {
        &self.errors
    }

    /// Iterates over the errors in report order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// How many errors were found.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether the list is empty (never true for a list returned by the loader).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether any error is of `kind`.
    pub fn has_kind(&self, kind: ConfigErrorKind) -> bool {
        self.errors.iter().any(|e| e.kind == kind)
    }

    /// Consumes the list into its errors.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.errors
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
