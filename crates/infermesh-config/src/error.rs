//! Configuration errors as users see them: `file:line:col: field.path: message`, one
//! per line, plus the "did you mean" suggestion used for unknown keys and names.

use std::fmt;

/// One problem in a `mesh.yaml`, located in the file and in the schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the caller named it (`mesh.yaml`, `examples/quickstart/mesh.yaml`).
    pub file: String,
    /// 1-based line; 0 when the problem has no position (e.g. the file is unreadable).
    pub line: u64,
    /// 1-based column (in characters); 0 when unknown.
    pub column: u64,
    /// Where in the schema, e.g. `models[0].route.split`; empty for the top level.
    pub path: String,
    /// What is wrong, and what would be right when we can tell.
    pub message: String,
}

/// Every problem found in one file, in file order. Its `Display` prints one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigErrors {
    /// Sorts by position (stable, so same-position errors keep their order).
    pub(crate) fn new(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors { errors }
    }

    pub(crate) fn one(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }

    /// The errors, in file order (never empty).
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false for an error returned by [`crate::parse`] / [`crate::load`].
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
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

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let len = word.chars().count();
    // A typo changes about one character in three; short words allow one edit.
    let allowed = (len / 3).max(1);
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, c), c))
        .filter(|&(d, _)| d <= allowed)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// "`a`, `b` or `c`" for messages.
pub(crate) fn one_of<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    join(names, "or")
}

/// "`a`, `b` and `c`" for messages.
pub(crate) fn all_of<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    join(names, "and")
}

fn join<'a>(names: impl IntoIterator<Item = &'a str>, conjunction: &str) -> String {
    let names: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    match names.split_last() {
        None => String::from("nothing"),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let keys = [
            "split",
            "pin_header",
            "sticky",
            "mirror",
            "timeout",
            "retries",
        ];
        assert_eq!(suggest("splt", keys), Some("split"));
        assert_eq!(suggest("Timeout", keys), Some("timeout"));
        assert_eq!(suggest("pinheader", keys), Some("pin_header"));
        assert_eq!(suggest("weights", keys), None);
        assert_eq!(suggest("x", keys), None);
    }

    #[test]
    fn lists_names() {
        assert_eq!(one_of([]), "nothing");
        assert_eq!(one_of(["a"]), "`a`");
        assert_eq!(one_of(["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(all_of(["a", "b"]), "`a` and `b`");
    }

    #[test]
    fn displays_one_error_per_line() {
        let e = |line, path: &str| ConfigError {
            file: "mesh.yaml".into(),
            line,
            column: 5,
            path: path.into(),
            message: "bad".into(),
        };
        let errs = ConfigErrors::new(vec![e(12, "models[0].route"), e(0, ""), e(3, "")]);
        assert_eq!(
            errs.to_string(),
            "mesh.yaml: bad\nmesh.yaml:3:5: bad\nmesh.yaml:12:5: models[0].route: bad"
        );
    }
}
