//! Sizes as users type them (`32G`, `8M`, `1024`): the one parser of `lfs_proto::size`, in bytes
//! (fame's flags and scenario files have no book suffix: the book size is what they set).

pub use lfs_proto::size::format_size;

/// Parses a byte count: digits with an optional `K`, `M`, `G` or `T` suffix (binary, any case,
/// also `KiB`..`TiB`); the message says what was wrong, the caller names the flag and the fix.
pub fn parse_size(text: &str) -> Result<u64, String> {
    lfs_proto::size::parse_size(text, None).map_err(|e| format!("\"{}\": {e}", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes_in_any_case() {
        assert_eq!(parse_size("32G"), Ok(32 << 30));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size(" 2T "), Ok(2 << 40));
        assert_eq!(parse_size("4k"), Ok(4096));
    }

    #[test]
    fn rejects_garbage_overflow_and_books() {
        for bad in [
            "",
            "G",
            "1.5G",
            "-1G",
            "12X",
            "99999999999999999999",
            "16777216T",
            "512B",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.starts_with(&format!("\"{}\": ", bad.trim())), "{e}");
        }
    }
}
