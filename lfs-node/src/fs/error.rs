//! What the file-system logic fails with: [`FsError`], which says which step failed and carries
//! the errno for the FUSE caller and a message for the log.
//!
//! The logic only returns errors; the `Filesystem` adapter logs each one once, at a level that
//! fits its kind ([`FsError::log`]), as it answers the kernel (the layout of mountpoint-s3's
//! FUSE adapter). An ENOENT from a lookup is what `ls` and every path walk produce all day, so it
//! is debug; a reply this daemon cannot use is a protocol mismatch that an operator must hear of.

use crate::link::LinkError;
use fuser::Errno;
use lfs_proto::request::BadReply;
use lfs_proto::Request;

/// A failed file-system operation.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An ordinary answer decided here (ENOENT for a hidden name, EISDIR, EBUSY...): what a POSIX
    /// program expects, nothing to report.
    #[error("{}", std::io::Error::from_raw_os_error(.0.code()))]
    Errno(Errno),
    /// The Librarian ran the request and refused it: its errno and message (mostly ordinary
    /// answers too: ENOENT, EEXIST, ENOTEMPTY).
    #[error("the Librarian refused: {msg} (errno {errno})")]
    Refused { errno: i32, msg: String },
    /// The Librarian could not be asked (unreachable past `--librarian-timeout`, or stopping).
    #[error("{msg}")]
    Unreachable { msg: String },
    /// The Librarian answered with something this daemon cannot use (a protocol mismatch, e.g. a
    /// peer of another version): what was expected and what came.
    #[error("{path}: {reply}")]
    BadReply { path: String, reply: BadReply },
    /// A file's data cannot be reached in FAM: a book outside the FAM device or of an interleave
    /// group the Librarian did not report.
    #[error("{path}: {msg}")]
    Fam { path: String, msg: String },
}

/// What the file-system logic returns: a value, or what went wrong.
pub type Res<T> = Result<T, FsError>;

impl From<Errno> for FsError {
    fn from(e: Errno) -> FsError {
        FsError::Errno(e)
    }
}

impl FsError {
    /// The errno the FUSE caller gets.
    pub fn errno(&self) -> Errno {
        match self {
            FsError::Errno(e) => *e,
            // 0 ("internal error" in the original) and other nonsense become EIO.
            FsError::Refused { errno, .. } => Errno::from_i32(*errno),
            FsError::Unreachable { .. } | FsError::BadReply { .. } | FsError::Fam { .. } => {
                Errno::EIO
            }
        }
    }

    /// A failed Librarian call for `req`; the path the request names (if any) goes with a bad
    /// reply, whose message would otherwise not say which file it was about.
    pub(super) fn from_link(e: LinkError, req: &impl Request) -> FsError {
        match e {
            LinkError::Refused { errno, msg, .. } => FsError::Refused { errno, msg },
            LinkError::Unreachable { msg, .. } => FsError::Unreachable { msg },
            LinkError::BadReply(reply) => FsError::BadReply {
                path: req
                    .params()
                    .get("path")
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .to_string(),
                reply,
            },
        }
    }

    /// A bad reply found after decoding (a value missing or out of range).
    pub(super) fn bad_reply(path: &str, reply: BadReply) -> FsError {
        FsError::BadReply {
            path: path.to_string(),
            reply,
        }
    }

    pub(super) fn fam(path: &str, e: impl std::fmt::Display) -> FsError {
        FsError::Fam {
            path: path.to_string(),
            msg: e.to_string(),
        }
    }

    /// Logs the error of FUSE operation `op` (once, at the boundary) and returns the errno to
    /// answer with. Ordinary answers are debug; refusals that mean the Librarian is in trouble
    /// and lost connections are warnings; unusable replies and unreachable data are errors.
    pub fn log(self, op: &str) -> Errno {
        match &self {
            // EIO decided here means this daemon's own state disagrees with itself.
            FsError::Errno(e) if *e == Errno::EIO => tracing::warn!("{op}: {self}"),
            FsError::Errno(_) => tracing::debug!("{op}: {self}"),
            FsError::Refused { errno, .. } if *errno <= 0 || troubled(*errno) => {
                tracing::warn!("{op}: {self}")
            }
            FsError::Refused { .. } => tracing::debug!("{op}: {self}"),
            FsError::Unreachable { .. } => tracing::warn!("{op}: {self}"),
            FsError::BadReply { .. } | FsError::Fam { .. } => tracing::error!("{op}: {self}"),
        }
        self.errno()
    }
}

/// Errnos with which the Librarian reports trouble of its own (a failed database access, counters
/// that disagree) rather than an answer about the file.
fn troubled(errno: i32) -> bool {
    [libc::EIO, libc::EREMOTEIO].contains(&errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lfs_proto::Command;

    #[test]
    fn each_kind_has_its_errno_and_says_what_happened() {
        assert_eq!(FsError::from(Errno::ENOENT).errno(), Errno::ENOENT);
        assert_eq!(
            FsError::from(Errno::ENOENT).to_string(),
            "No such file or directory (os error 2)"
        );
        let refused = FsError::Refused {
            errno: 0,
            msg: "INTERNAL CODING ERROR".into(),
        };
        assert_eq!(refused.errno(), Errno::EIO);
        let bad = FsError::bad_reply(
            "/f",
            BadReply::new(Command::GetShelf, "shelf", "missing field `mode`", &"{}"),
        );
        assert_eq!(bad.errno(), Errno::EIO);
        assert_eq!(
            bad.to_string(),
            "/f: the Librarian's reply to get_shelf holds no valid shelf: missing field `mode`; got {}"
        );
        assert_eq!(bad.log("lookup"), Errno::EIO);
    }
}
