//! Atomic file output.
//!
//! A file is written to a temporary file in its destination's directory,
//! synced, and only then renamed over the destination, so a reader sees the
//! old file or the new one, never a partial one, and a failure leaves
//! nothing behind (the temporary file is deleted when dropped). Writing
//! several files that belong together (a model and its external data) is
//! two-phase: [`Staged`] files are all written first and renamed last.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file written to a temporary beside its destination, not yet renamed.
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
    len: u64,
}

impl Staged {
    /// Bytes written.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Renames the file into place.
    ///
    /// # Errors
    /// [`Error::Io`] naming the destination.
    pub fn commit(self) -> Result<u64> {
        let path = self.path;
        self.tmp.persist(&path).map_err(|e| Error::Io {
            path: path.clone(),
            action: "cannot rename into place",
            source: e.error,
        })?;
        Ok(self.len)
    }
}

/// Writes through `body` into a temporary file beside `path`, synced, ready
/// to [`Staged::commit`]. Dropping the result deletes the temporary file.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn stage(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<Staged> {
    let io = |action, source| Error::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".laurelc-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| io("cannot create a temporary file beside", e))?;
    let mut w = BufWriter::with_capacity(1 << 18, tmp.as_file());
    body(&mut w).map_err(|e| io("cannot write", e))?;
    w.flush().map_err(|e| io("cannot write", e))?;
    drop(w);
    let file: &File = tmp.as_file();
    file.sync_all().map_err(|e| io("cannot sync", e))?;
    let len = file.metadata().map_err(|e| io("cannot stat", e))?.len();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| io("cannot set permissions on", e))?;
    }
    Ok(Staged {
        tmp,
        path: path.to_path_buf(),
        len,
    })
}

/// Writes one file atomically: [`stage`], then [`Staged::commit`]. Returns the bytes written.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<u64> {
    stage(path, body)?.commit()
}
