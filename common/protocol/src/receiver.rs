//! What a receiver's name may be. The protocol owns the rule because the
//! name becomes a file name in the spool (`hold/NAME`, `paces/NAME`); the
//! configuration check and the reporter apply the same rule.

/// The longest receiver name.
pub const MAX_RECEIVER_NAME: usize = 64;

/// Whether a receiver name may be used: 1 to 64 of `A-Z a-z 0-9 . _ -`,
/// not starting with `.` or `-`. Names become file names (`hold/NAME`),
/// Prometheus label values and table cells, so nothing else is safe.
pub fn check_receiver_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_RECEIVER_NAME
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a receiver name: use 1 to {MAX_RECEIVER_NAME} of A-Z a-z 0-9 . _ -, not starting with . or -"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_names_are_safe_as_file_names_and_cells() {
        for ok in ["orders", "a", "eu-west_1.v2", "A9"] {
            assert!(check_receiver_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\nb",
            "-x",
            ".hidden",
            "a b",
            "ü",
            &"x".repeat(65),
        ] {
            assert!(check_receiver_name(bad).is_err(), "{bad:?}");
        }
    }
}
