//! Atomic file output.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes through `body` into a temporary file beside `path`, then renames it
/// into place. Returns the bytes written. A failure leaves no partial file.
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<u64> {
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
    tmp.persist(path)
        .map_err(|e| io("cannot rename into place", e.error))?;
    Ok(len)
}
