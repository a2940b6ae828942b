//! Names that clients choose and that become file names (topics, groups).
//!
//! A name is 1..=249 bytes of `[A-Za-z0-9._-]`, and not `.` or `..`, so it can
//! never escape the data directory or collide with our own files.

use thiserror::Error;

/// Longest accepted name, as in Kafka: leaves room for a partition suffix
/// within a 255-byte file name.
pub const NAME_BYTES_MAX: usize = 249;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("name is empty: give 1 to {NAME_BYTES_MAX} characters from [A-Za-z0-9._-]")]
    Empty,
    #[error("name is {0} bytes long: at most {NAME_BYTES_MAX} are allowed")]
    TooLong(usize),
    #[error("name {0:?} is reserved: '.' and '..' cannot be used")]
    Reserved(String),
    #[error("name {name:?} contains {bad:?}: only [A-Za-z0-9._-] are allowed")]
    BadChar { name: String, bad: char },
}

/// Checks a client-chosen name before it is used as a file name.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(NameError::TooLong(name.len()));
    }
    if name == "." || name == ".." {
        return Err(NameError::Reserved(name.to_owned()));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(NameError::BadChar { name: name.to_owned(), bad });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_could_escape_or_collide() {
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "a b", "é", "a\0b"] {
            assert!(validate(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(validate(&"a".repeat(250)), Err(NameError::TooLong(250)));
        for good in ["orders", "a.b-c_d", "...x", "A9", &"z".repeat(249)] {
            validate(good).unwrap();
        }
    }
}
