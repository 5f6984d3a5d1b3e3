//! External tensor data: safe resolution of `location` and memory mapping.
//!
//! ONNX lets an initializer keep its bytes in a separate file named by the
//! `external_data` entry `location`, with optional `offset` and `length`.
//! A location must be a relative path that stays inside the model's
//! directory: absolute paths, `..` components that climb out, and symlinks
//! that resolve outside the directory are all rejected. Files are mapped
//! read-only and shared between the tensors that use them, so tensor bytes
//! are never copied on import.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use onnx_protobuf::TensorProto;

use crate::ir::ExternalBytes;

/// The `external_data` entries of a tensor, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    /// The relative file name.
    pub location: String,
    /// Byte offset; 0 when absent.
    pub offset: usize,
    /// Byte length, when given.
    pub length: Option<usize>,
}

/// Whether a tensor's data lives in an external file.
#[must_use]
pub fn is_external(t: &TensorProto) -> bool {
    t.data_location.value() == onnx_protobuf::tensor_proto::DataLocation::EXTERNAL as i32
}

/// Parses a tensor's `external_data` entries.
///
/// # Errors
/// A reason string when `location` is missing or a number does not parse.
pub fn parse_ref(t: &TensorProto) -> Result<ExternalRef, String> {
    let mut location = None;
    let mut offset = 0usize;
    let mut length = None;
    for kv in &t.external_data {
        match kv.key.as_str() {
            "location" => location = Some(kv.value.clone()),
            "offset" => {
                offset = kv
                    .value
                    .parse()
                    .map_err(|_| format!("offset `{}` is not a number", kv.value))?;
            }
            "length" => {
                length = Some(
                    kv.value
                        .parse()
                        .map_err(|_| format!("length `{}` is not a number", kv.value))?,
                );
            }
            _ => {}
        }
    }
    let location = location.ok_or_else(|| "no `location` entry".to_string())?;
    Ok(ExternalRef {
        location,
        offset,
        length,
    })
}

/// The longest location [`resolve`] takes (Linux's `PATH_MAX`).
pub const MAX_LOCATION: usize = 4096;
/// The longest component of a location (Linux's `NAME_MAX`).
pub const MAX_COMPONENT: usize = 255;

/// Resolves `location` against `dir`, refusing anything that leaves `dir`
/// or could on another system: absolute paths, `..` climbing out, symlinks
/// (the file or a parent directory) resolving outside, `\` separators, NUL
/// bytes, and names longer than Linux allows.
///
/// # Errors
/// A reason string for absolute paths, escapes, symlinks leaving `dir`, or a missing file.
pub fn resolve(dir: &Path, location: &str) -> Result<PathBuf, String> {
    let rel = Path::new(location);
    if location.is_empty() {
        return Err("empty location".into());
    }
    if location.contains('\0') {
        return Err("location contains a NUL byte".into());
    }
    if location.contains('\\') {
        // ONNX locations are `/`-separated; on Windows `..\..\x` would climb out.
        return Err(format!(
            "location `{location}` contains `\\`: locations are relative paths separated by `/`"
        ));
    }
    if location.len() > MAX_LOCATION || location.split('/').any(|c| c.len() > MAX_COMPONENT) {
        return Err(format!(
            "location of {} bytes is too long (at most {MAX_LOCATION} bytes, {MAX_COMPONENT} per component)",
            location.len()
        ));
    }
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, Component::Prefix(_) | Component::RootDir))
    {
        return Err(format!(
            "location `{location}` is absolute; it must be relative to the model's directory"
        ));
    }
    let mut depth = 0i64;
    for c in rel.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!(
                "location `{location}` leaves the model's directory"
            ));
        }
    }
    let base = dir.canonicalize().map_err(|e| {
        format!(
            "cannot resolve the model's directory {}: {e}",
            dir.display()
        )
    })?;
    let full = base.join(rel);
    let resolved = full
        .canonicalize()
        .map_err(|e| format!("file {} is missing or unreadable: {e}", full.display()))?;
    if !resolved.starts_with(&base) {
        return Err(format!(
            "location `{location}` resolves to {}, outside the model's directory (symlink?)",
            resolved.display()
        ));
    }
    Ok(resolved)
}

/// Maps external data files once each and hands out tensor slices.
#[derive(Debug)]
pub struct ExternalLoader {
    dir: PathBuf,
    maps: HashMap<PathBuf, Arc<memmap2::Mmap>>,
}

impl ExternalLoader {
    /// A loader resolving locations against `dir`.
    #[must_use]
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            maps: HashMap::new(),
        }
    }

    /// The bytes of an external tensor, checked against the file size and,
    /// for fixed-size element types, against `dims`.
    ///
    /// # Errors
    /// A reason string for any problem with the reference or the file.
    pub fn load(&mut self, t: &TensorProto) -> Result<ExternalBytes, String> {
        let r = parse_ref(t)?;
        let path = resolve(&self.dir, &r.location)?;
        let map = if let Some(m) = self.maps.get(&path) {
            Arc::clone(m)
        } else {
            let m = Arc::new(map_file(&path)?);
            self.maps.insert(path.clone(), Arc::clone(&m));
            m
        };
        let expected = expected_bytes(t);
        let len = match (r.length, expected) {
            (Some(l), Some(e)) if l != e => {
                return Err(format!(
                    "length {l} does not match the {e} bytes its shape and type need"
                ));
            }
            (Some(l), _) => l,
            (None, Some(e)) => e,
            (None, None) => {
                return Err("no `length`, and its size does not follow from its type (strings, unknown types)".into());
            }
        };
        let end = r
            .offset
            .checked_add(len)
            .ok_or("offset + length overflows")?;
        if end > map.len() {
            return Err(format!(
                "bytes {}..{end} are past the end of {} ({} bytes)",
                r.offset,
                path.display(),
                map.len()
            ));
        }
        Ok(ExternalBytes {
            file: Arc::from(path.as_path()),
            map,
            offset: r.offset,
            len,
        })
    }
}

#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<memmap2::Mmap, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: the mapping is read-only. Another process truncating the file
    // while we hold it would fault; this is the accepted contract of every
    // mmap-based model loader (onnxruntime's and tract's included), and the
    // CLI never writes to a file it has mapped (outputs are renamed into place).
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map {}: {e}", path.display()))
}

/// Bits per element of ONNX fixed-size data types; `None` for strings and unknown types.
#[must_use]
pub fn element_bits(data_type: i32) -> Option<usize> {
    Some(match data_type {
        1 | 6 | 12 => 32,              // FLOAT, INT32, UINT32
        2 | 3 | 9 | 17..=20 | 24 => 8, // UINT8, INT8, BOOL, FLOAT8 variants, FLOAT8E8M0
        4 | 5 | 10 | 16 => 16,         // UINT16, INT16, FLOAT16, BFLOAT16
        7 | 11 | 13 | 14 => 64,        // INT64, DOUBLE, UINT64, COMPLEX64
        15 => 128,                     // COMPLEX128
        21..=23 => 4,                  // UINT4, INT4, FLOAT4E2M1 (packed two per byte)
        25 | 26 => 2,                  // UINT2, INT2 (packed four per byte)
        _ => return None,              // STRING, UNDEFINED, unknown
    })
}

/// Bytes per element of byte-aligned ONNX data types; `None` for packed
/// sub-byte types, strings and unknown types.
#[must_use]
pub fn element_size(data_type: i32) -> Option<usize> {
    element_bits(data_type)
        .filter(|b| b % 8 == 0)
        .map(|b| b / 8)
}

/// The byte size `n` elements of a type take, packed types rounded up to whole bytes.
#[must_use]
pub fn data_bytes(data_type: i32, n: usize) -> Option<usize> {
    Some(n.checked_mul(element_bits(data_type)?)?.div_ceil(8))
}

/// The byte size a tensor's `dims` and `data_type` call for, when fixed.
#[must_use]
pub fn expected_bytes(t: &TensorProto) -> Option<usize> {
    let mut n = 1usize;
    for &d in &t.dims {
        n = n.checked_mul(usize::try_from(d).ok()?)?;
    }
    data_bytes(t.data_type, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_rejects_escapes_and_accepts_inner_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/w.bin"), [0u8; 8]).unwrap();
        assert!(resolve(dir.path(), "sub/w.bin").is_ok());
        assert!(resolve(dir.path(), "sub/../sub/w.bin").is_ok());
        assert!(
            resolve(dir.path(), "/etc/passwd")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            resolve(dir.path(), "../w.bin")
                .unwrap_err()
                .contains("leaves")
        );
        assert!(
            resolve(dir.path(), "sub/../../w.bin")
                .unwrap_err()
                .contains("leaves")
        );
        assert!(
            resolve(dir.path(), "missing.bin")
                .unwrap_err()
                .contains("missing")
        );
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.bin"), [1u8; 8]).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.bin"),
            dir.path().join("link.bin"),
        )
        .unwrap();
        assert!(
            resolve(dir.path(), "link.bin")
                .unwrap_err()
                .contains("outside")
        );
        // A symlinked parent directory that leads out.
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
        assert!(
            resolve(dir.path(), "linkdir/secret.bin")
                .unwrap_err()
                .contains("outside")
        );
        // Windows-style separators, NUL bytes, over-long names.
        std::fs::write(dir.path().join("..\\w.bin"), [0u8; 8]).unwrap();
        assert!(
            resolve(dir.path(), "..\\w.bin")
                .unwrap_err()
                .contains("separated by `/`")
        );
        assert!(
            resolve(dir.path(), "sub\\w.bin")
                .unwrap_err()
                .contains("separated by `/`")
        );
        assert!(resolve(dir.path(), "w\0.bin").unwrap_err().contains("NUL"));
        assert!(
            resolve(dir.path(), &"a".repeat(256))
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            resolve(dir.path(), &"a/".repeat(2100))
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            resolve(dir.path(), "C:/w.bin")
                .unwrap_err()
                .contains("missing")
        );
    }

    #[test]
    fn expected_bytes_follows_dims_and_type() {
        let t = TensorProto {
            dims: vec![2, 3],
            data_type: 1,
            ..Default::default()
        };
        assert_eq!(expected_bytes(&t), Some(24));
        let s = TensorProto {
            dims: vec![2],
            data_type: 8,
            ..Default::default()
        };
        assert_eq!(expected_bytes(&s), None);
    }
}
