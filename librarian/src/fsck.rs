//! Offline consistency checks and repairs of a Librarian database, used by `fsck-lfs`.
