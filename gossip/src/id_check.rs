//! The character set of node ids.

/// Checks that `id` can be a node id: 1 to 253 bytes of ASCII letters,
/// digits, `-`, `_` and `.`, not starting or ending with `.` or `-`.
/// Ids reach logs, metric labels, file names and chat messages, so
/// nothing outside this set (no spaces, control characters, markup) is
/// ever a node id.
pub fn check(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 253 {
        return Err(format!("{} bytes (1 to 253 allowed)", id.len()));
    }
    if !id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return Err("only ASCII letters, digits, '-', '_' and '.' are allowed".into());
    }
    if id.starts_with(['.', '-']) || id.ends_with(['.', '-']) {
        return Err("must not start or end with '.' or '-'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_character_set_is_enforced() {
        for ok in ["a", "node-1", "n_1.example.com", &"a".repeat(253)] {
            assert_eq!(super::check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "é",
            "a\n",
            "<!channel>",
            ".a",
            "a-",
            &"a".repeat(254),
        ] {
            assert!(super::check(bad).is_err(), "{bad:?}");
        }
    }
}
