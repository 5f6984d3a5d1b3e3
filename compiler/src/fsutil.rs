//! Atomic file output.
//!
//! A file is written to a temporary file in its destination's directory,
//! synced, and only then renamed over the destination, so a reader sees the
//! old file or the new one, never a partial one, and a failure leaves
//! nothing behind (the temporary file is deleted when dropped). Writing
//! several files that belong together (a model and its external data) is
//! two-phase: [`Staged`] files are all written first and renamed last.
//!
//! A process killed while writing (`SIGKILL`, a power cut) cannot delete its
//! temporary file. Each temporary is named after its writer,
//! `.laurelc-<pid>-<random>.tmp`, and held under an exclusive advisory lock
//! while it is written; before writing into a directory, [`stage`] removes
//! the temporaries there whose writer is provably gone: its process id is no
//! running process, and the lock is free (a live writer holds it from just
//! after creating the file; the process id covers that moment). Files of
//! other names are never touched. The proof needs `/proc` (Linux); elsewhere
//! nothing is removed.

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
    remove_stale_temporaries(dir);
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| io("cannot create a temporary file beside", e))?;
    tmp.as_file()
        .lock()
        .map_err(|e| io("cannot lock a temporary file beside", e))?;
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

/// The start of every temporary file's name.
pub const TEMP_PREFIX: &str = ".laurelc-";

/// The writer's process id in a temporary file's name, `.laurelc-<pid>-….tmp`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?.strip_suffix(".tmp")?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Whether process `pid` runs (or may: without `/proc` we cannot tell).
fn may_be_running(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Removes the temporary files in `dir` whose writer is provably gone (see
/// the module docs); errors are ignored (the directory may be shared, the
/// file may go meanwhile). Returns how many were removed. O(entries of `dir`).
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if pid == std::process::id()
            || may_be_running(pid)
            || !entry.file_type().is_ok_and(|t| t.is_file())
        {
            continue;
        }
        let path = entry.path();
        let free = File::open(&path).is_ok_and(|f| f.try_lock().is_ok());
        if free && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_writers_temporary_is_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has ended: its id is free (until reused).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(format!(".laurelc-{dead}-abc123.tmp"));
        let mine = dir
            .path()
            .join(format!(".laurelc-{}-abc123.tmp", std::process::id()));
        let other = dir.path().join(".laurelc-notapid.tmp");
        let model = dir.path().join("model.onnx");
        for p in [&stale, &mine, &other, &model] {
            std::fs::write(p, b"x").unwrap();
        }
        if Path::new("/proc/self").exists() {
            assert_eq!(remove_stale_temporaries(dir.path()), 1);
            assert!(!stale.exists());
        }
        assert!(mine.exists() && other.exists() && model.exists());
        // A locked temporary (a live writer) stays even under a dead id.
        std::fs::write(&stale, b"x").unwrap();
        let held = File::open(&stale).unwrap();
        held.lock().unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()), 0);
        assert!(stale.exists());
        drop(held);
        // Writing into the directory cleans it up first.
        write_atomically(&dir.path().join("out.json"), |w| w.write_all(b"{}")).unwrap();
        assert_eq!(stale.exists(), !Path::new("/proc/self").exists());
        // And the write's own temporary is gone: only `mine` has our id.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter_map(|e| owner_pid(e.file_name().to_str()?))
            .filter(|&pid| pid == std::process::id())
            .collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn owner_pids_are_read_from_temporary_names_only() {
        assert_eq!(owner_pid(".laurelc-1234-Xy9.tmp"), Some(1234));
        assert_eq!(owner_pid(".laurelc-Xy9.tmp"), None);
        assert_eq!(owner_pid(".laurelc-1234-Xy9"), None);
        assert_eq!(owner_pid("laurelc-1234-Xy9.tmp"), None);
    }
}
