//! Field-path errors for `validate()`: every problem with its path, for the controller to report.
//!
//! Kubernetes 1.20 ignores CEL rules (`x-kubernetes-validations`), so each kind also checks its
//! cross-field rules in Rust and the controller reports them as a `Stalled` condition.

use std::fmt;

/// A JSON path into an object, written the way `kubectl explain` spells fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// The path `spec`.
    pub fn spec() -> Self {
        FieldPath("spec".to_owned())
    }

    /// `self.name`.
    pub fn child(&self, name: &str) -> Self {
        FieldPath(format!("{}.{name}", self.0))
    }

    /// `self[i]`.
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where, e.g. `spec.steps[0].scriptTimeout`.
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A list of field errors; empty means valid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// Records a problem.
    pub fn push(&mut self, path: FieldPath, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.0,
            message: message.into(),
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The recorded problems.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Consumes the list.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Checks `value` lies in `[min, max]`.
pub(crate) fn check_range(
    errors: &mut FieldErrors,
    path: FieldPath,
    value: i64,
    min: i64,
    max: i64,
) {
    if value < min || value > max {
        errors.push(
            path,
            format!("must be between {min} and {max}, got {value}"),
        );
    }
}

/// Checks a string's length in characters.
pub(crate) fn check_len(
    errors: &mut FieldErrors,
    path: FieldPath,
    value: &str,
    min: usize,
    max: usize,
) {
    let n = value.chars().count();
    if n < min || n > max {
        if min > 0 && n == 0 {
            errors.push(path, "must not be empty");
        } else {
            errors.push(path, format!("must be {min} to {max} characters, got {n}"));
        }
    }
}
