//! Sandbox identifiers, checked by containerd's rules for identifiers.
//!
//! An identifier is 1 to 76 characters of `[A-Za-z0-9]` runs joined by
//! single `.`, `_` or `-` separators. That keeps `/`, `..` and anything
//! path-like out, so an id is always safe as one path component.

use crate::error::Error;

pub const MAX_ID_LEN: usize = 76;

pub fn validate(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::invalid("sandbox id must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::invalid(format!(
            "sandbox id is {} characters, more than {MAX_ID_LEN}",
            id.len()
        )));
    }
    let mut prev_sep = true; // an id may not start with a separator
    for c in id.chars() {
        let sep = matches!(c, '.' | '_' | '-');
        if !(c.is_ascii_alphanumeric() || sep) {
            return Err(Error::invalid(format!(
                "sandbox id {id:?} has character {c:?}: only [A-Za-z0-9._-] are allowed"
            )));
        }
        if sep && prev_sep {
            return Err(Error::invalid(format!(
                "sandbox id {id:?} must start with a letter or digit and not repeat separators"
            )));
        }
        prev_sep = sep;
    }
    if prev_sep {
        return Err(Error::invalid(format!(
            "sandbox id {id:?} must end with a letter or digit"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_containerd_style_ids() {
        for id in [
            "a",
            "pod1",
            "abc-def_1.2",
            "0123456789abcdef",
            &"a".repeat(76),
        ] {
            assert!(validate(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_bad_ids() {
        for id in [
            "",
            "/",
            "a/b",
            "..",
            "a..b",
            "-a",
            "a-",
            ".",
            "a b",
            "ä",
            "a\0",
            &"a".repeat(77),
        ] {
            assert!(
                matches!(validate(id), Err(Error::InvalidArgument(_))),
                "{id:?}"
            );
        }
    }
}
