//! Sizes as users type them (`32G`, `8M`, `1024`): binary multipliers, no fractions.
//!
//! Parsing is kept here rather than borrowed from `librarian::topology` because `fame` validates
//! its own flags before any Librarian tool runs, and its messages speak about flags, not INI keys.

/// Parses a byte count: digits with an optional `K`, `M`, `G` or `T` suffix (binary, any case).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let (digits, shift) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 10),
        Some('M') => (&s[..s.len() - 1], 20),
        Some('G') => (&s[..s.len() - 1], 30),
        Some('T') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{text}\" is not a size (expected digits with an optional K, M, G or T suffix, e.g. 32G)"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("\"{text}\" is too large"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

/// Renders a byte count with the largest exact binary suffix (`8M`, `32G`, `1536K`, `100`): the
/// same rendering as the topology's, so fame and `node_fame.ini` spell sizes alike.
pub use librarian::topology::format_size;

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
    fn rejects_garbage_and_overflow() {
        for bad in [
            "",
            "G",
            "1.5G",
            "-1G",
            "12X",
            "99999999999999999999",
            "16777216T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_with_the_largest_exact_suffix() {
        assert_eq!(format_size(8 << 20), "8M");
        assert_eq!(format_size(32 << 30), "32G");
        assert_eq!(format_size(1536 << 10), "1536K");
        assert_eq!(format_size(100), "100");
        assert_eq!(format_size(0), "0");
    }
}
