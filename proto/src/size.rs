//! Sizes as users and the original's configs spell them (`32G`, `8M`, `1024`, `512B` for 512
//! books): one parser for `book-register`'s topologies, `fame`'s flags and scenario files, and
//! the node tools, so a size means the same everywhere.

use std::fmt;

/// Why a size value was rejected by [`parse_size`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    Empty,
    Negative,
    NotInteger(String),
    BadSuffix(char),
    BooksWithoutBookSize,
    TooLarge,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::Empty => f.write_str("empty value (expected a size such as 8M or 512B)"),
            SizeError::Negative => f.write_str("sizes cannot be negative"),
            SizeError::NotInteger(base) => write!(
                f,
                "\"{base}\" is not an integer (expected digits with an optional K, M, G, T or B suffix)"
            ),
            SizeError::BadSuffix(c) => write!(
                f,
                "unknown size suffix \"{c}\" (use K, M, G, T for binary bytes, or B for books)"
            ),
            SizeError::BooksWithoutBookSize => f.write_str(
                "multiplier suffix \"B\" (books) is not useable here because the book size is not known yet; give bytes, e.g. 8M",
            ),
            SizeError::TooLarge => f.write_str("value is too large (does not fit in 64 bits)"),
        }
    }
}

/// Parses a size with the original's multiplier syntax: a plain integer, or an integer followed
/// by one case-insensitive suffix: `K`, `M`, `G`, `T` (binary: 2^10..2^40, also spelt `KiB` to
/// `TiB`) or `B` (books: the grammar option, only when `book_size` is given). Surrounding
/// whitespace is ignored.
pub fn parse_size(text: &str, book_size: Option<u64>) -> Result<u64, SizeError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    if s.starts_with('-') {
        return Err(SizeError::Negative);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return parse_digits(s);
    }
    // `8MiB` and the like: the binary suffix spelt out (never books).
    let s = match s.strip_suffix("iB") {
        Some(t) if t.ends_with(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']) => t,
        _ => s,
    };
    let Some(last) = s.chars().last() else {
        return Err(SizeError::Empty);
    };
    let base = s[..s.len() - last.len_utf8()].trim_end();
    let factor = match last.to_ascii_uppercase() {
        'K' => 1u64 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        'B' => match book_size {
            Some(b) => b,
            None => {
                // Still report a malformed number first, like the original.
                parse_digits(base)?;
                return Err(SizeError::BooksWithoutBookSize);
            }
        },
        c if c.is_ascii_digit() => return Err(SizeError::NotInteger(s.to_string())),
        c => {
            if base.is_empty() || !base.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SizeError::NotInteger(s.to_string()));
            }
            return Err(SizeError::BadSuffix(c));
        }
    };
    let n = parse_digits(base)?;
    n.checked_mul(factor).ok_or(SizeError::TooLarge)
}

fn parse_digits(s: &str) -> Result<u64, SizeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SizeError::NotInteger(s.to_string()));
    }
    s.parse::<u64>().map_err(|_| SizeError::TooLarge)
}

/// Renders a byte count with the largest exact binary suffix (`8M`, `4T`, `3145728`).
pub fn format_size(bytes: u64) -> String {
    for (shift, suffix) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{}", bytes >> shift, suffix);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_plain_and_suffixes() {
        assert_eq!(parse_size("0", None), Ok(0));
        assert_eq!(parse_size(" 42 ", None), Ok(42));
        assert_eq!(parse_size("1k", None), Ok(1024));
        assert_eq!(parse_size("8M", None), Ok(8 << 20));
        assert_eq!(parse_size("8 m", None), Ok(8 << 20));
        assert_eq!(parse_size("2G", None), Ok(2 << 30));
        assert_eq!(parse_size("4T", None), Ok(4 << 40));
        assert_eq!(parse_size("512B", Some(8 << 20)), Ok(512 * (8 << 20)));
        assert_eq!(parse_size("512b", Some(2)), Ok(1024));
        assert_eq!(parse_size("1GiB", None), Ok(1 << 30));
        assert_eq!(parse_size("64kiB", Some(2)), Ok(64 << 10));
    }

    #[test]
    fn multiplier_errors() {
        assert_eq!(parse_size("", None), Err(SizeError::Empty));
        assert_eq!(parse_size("   ", None), Err(SizeError::Empty));
        assert_eq!(parse_size("-4M", None), Err(SizeError::Negative));
        assert_eq!(parse_size("3X", None), Err(SizeError::BadSuffix('X')));
        assert_eq!(
            parse_size("abc", None),
            Err(SizeError::NotInteger("abc".into()))
        );
        assert_eq!(
            parse_size("1.5G", None),
            Err(SizeError::NotInteger("1.5".into()))
        );
        assert_eq!(
            parse_size("0x10", None),
            Err(SizeError::NotInteger("0x10".into()))
        );
        assert_eq!(parse_size("8B", None), Err(SizeError::BooksWithoutBookSize));
        assert_eq!(
            parse_size("8iB", None),
            Err(SizeError::NotInteger("8i".into()))
        );
        assert_eq!(
            parse_size("8MB", Some(2)),
            Err(SizeError::NotInteger("8M".into()))
        );
        assert_eq!(parse_size("99999999999T", None), Err(SizeError::TooLarge));
        assert_eq!(
            parse_size("99999999999999999999999", None),
            Err(SizeError::TooLarge)
        );
        assert_eq!(
            parse_size("MM", None),
            Err(SizeError::NotInteger("M".into()))
        );
        assert_eq!(parse_size("M", None), Err(SizeError::NotInteger("".into())));
        // Messages name the rule.
        assert!(SizeError::BooksWithoutBookSize
            .to_string()
            .contains("multiplier suffix \"B\""));
        assert!(SizeError::NotInteger("x".into())
            .to_string()
            .contains("\"x\" is not an integer"));
    }

    #[test]
    fn size_formatting() {
        assert_eq!(format_size(8 << 20), "8M");
        assert_eq!(format_size(8 << 30), "8G");
        assert_eq!(format_size(4 << 40), "4T");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(3 << 19), "1536K");
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(1000), "1000");
    }
}
