//! The LFS wire framing: JSON objects sent back to back, with no length prefix and no delimiter.
//!
//! The original server parsed with heuristics (`}{` splitting, per-chunk UTF-8 decoding) that lost or
//! corrupted messages. Here a small byte scanner finds where each top-level object ends by tracking
//! brace depth outside of strings, so every frame is found exactly, whatever its content, before it is
//! parsed. Anything between objects that is not whitespace is reported as one garbage frame, so a bad
//! client gets an error reply instead of a silent hang, and the stream stays in sync.
//!
//! Output is serialised ASCII-only (non-ASCII escaped as `\uXXXX`, surrogate pairs above the BMP),
//! because the original Python peers decode each 8 KiB chunk as UTF-8 separately.

use serde::Serialize;
use serde_json::Value;
use std::io;

/// Requests larger than this are refused and the connection is closed (a client cannot make the
/// server buffer without bound).
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// One unit found in the input stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The bytes of one complete top-level JSON object (not yet parsed).
    Object(Vec<u8>),
    /// A run of bytes outside any object that is not whitespace (e.g. `[1,2]`, `42`, binary junk).
    Garbage(usize),
    /// An object grew past [`MAX_FRAME_BYTES`] without ending.
    TooLarge,
}

/// Incremental scanner state carried across reads.
#[derive(Default)]
pub struct FrameScanner {
    buf: Vec<u8>,
    /// How far `buf` has been scanned for the current object.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl FrameScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends freshly read bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Returns the next complete frame, or `None` when more input is needed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.depth == 0 {
            // Between objects: skip whitespace, report anything else up to the next '{' as garbage.
            let start = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            if start == self.buf.len() {
                self.buf.clear();
                return None;
            }
            if self.buf[start] != b'{' {
                let end = self.buf[start..]
                    .iter()
                    .position(|&b| b == b'{')
                    .map_or(self.buf.len(), |p| start + p);
                let n = end - start;
                self.buf.drain(..end);
                return Some(Frame::Garbage(n));
            }
            self.buf.drain(..start);
            self.scanned = 0;
        }
        let mut i = self.scanned;
        while i < self.buf.len() {
            let b = self.buf[i];
            i += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        let rest = self.buf.split_off(i);
                        let object = std::mem::replace(&mut self.buf, rest);
                        self.scanned = 0;
                        return Some(Frame::Object(object));
                    }
                }
                _ => {}
            }
        }
        self.scanned = i;
        if self.buf.len() > MAX_FRAME_BYTES {
            return Some(Frame::TooLarge);
        }
        None
    }
}

/// A serde_json formatter that escapes every non-ASCII character.
struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if ch.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{:04x}", unit)?;
            }
            start = i + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Serialises `value` as compact, ASCII-only JSON appended to `out`.
pub fn write_ascii<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut ser = serde_json::Serializer::with_formatter(out, AsciiFormatter);
    // Serialising a Value or plain data into a Vec cannot fail.
    value
        .serialize(&mut ser)
        .expect("serialising JSON into memory");
}

/// `{"value": V, "context": C}`, the success envelope.
pub fn success(value: &Value, context: &Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct Ok<'a> {
        value: &'a Value,
        context: &'a Value,
    }
    let mut out = Vec::with_capacity(256);
    write_ascii(&mut out, &Ok { value, context });
    out
}

/// `{"errmsg": M, "errno": E}`, the error envelope (no context, as the original).
pub fn error(errmsg: &str, errno: i32) -> Vec<u8> {
    #[derive(Serialize)]
    struct Err<'a> {
        errmsg: &'a str,
        errno: i32,
    }
    let mut out = Vec::with_capacity(96);
    write_ascii(&mut out, &Err { errmsg, errno });
    out
}

/// `{"OOBmsg": M}`, the out-of-band broadcast.
pub fn oob(msg: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_ascii(&mut out, &serde_json::json!({ "OOBmsg": msg }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[&[u8]]) -> Vec<Frame> {
        let mut s = FrameScanner::new();
        let mut out = vec![];
        for chunk in input {
            s.extend(chunk);
            while let Some(f) = s.next_frame() {
                out.push(f);
            }
        }
        out
    }

    #[test]
    fn splits_back_to_back_objects() {
        let got = frames(&[br#"{"a":1}{"b":"}{"}"#]);
        assert_eq!(
            got,
            vec![
                Frame::Object(br#"{"a":1}"#.to_vec()),
                Frame::Object(br#"{"b":"}{"}"#.to_vec())
            ]
        );
    }

    #[test]
    fn reassembles_fragments_and_escapes() {
        let got = frames(&[br#"{"a":"x\"}"#, br#"{","c":{"d":[1,{}]}}"#, b"  \n"]);
        assert_eq!(
            got,
            vec![Frame::Object(br#"{"a":"x\"}{","c":{"d":[1,{}]}}"#.to_vec())]
        );
    }

    #[test]
    fn reports_garbage_between_objects_once() {
        let got = frames(&[b"[1,2] 42 {\"a\":1}\xff\xfe"]);
        assert_eq!(
            got,
            vec![
                Frame::Garbage(9),
                Frame::Object(br#"{"a":1}"#.to_vec()),
                Frame::Garbage(2)
            ]
        );
    }

    #[test]
    fn refuses_oversized_objects() {
        let mut s = FrameScanner::new();
        s.extend(b"{\"a\":\"");
        let chunk = vec![b'x'; 1 << 20];
        let mut got = None;
        for _ in 0..17 {
            s.extend(&chunk);
            if let Some(f) = s.next_frame() {
                got = Some(f);
                break;
            }
        }
        assert_eq!(got, Some(Frame::TooLarge));
    }

    #[test]
    fn output_is_ascii_only() {
        let v = serde_json::json!({"n": "é😀~"});
        let mut out = vec![];
        write_ascii(&mut out, &v);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"n":"\u00e9\ud83d\ude00~"}"#
        );
    }
}
