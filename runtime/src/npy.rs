//! `.npy` and `.npz` files (numpy's formats) to and from tensors.
//!
//! Supported element types: `f2`/`f4`/`f8`, `i1`..`i8`, `u1`..`u8` and `b1` (bool),
//! little or big endian, C or Fortran order on reading. Writing always produces
//! version 1.0, little-endian, C order. `.npz` archives may be stored or deflated;
//! member names lose their `.npy` suffix, and the members keep the archive order.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use ndarray_npy::npy::header::Header;
use tract_onnx::prelude::{DatumType, Tensor, f16};

use crate::datum::{DatumKind, datum_name};
use crate::error::RuntimeError;

const MAGIC: &[u8] = b"\x93NUMPY";

fn npy_err(path: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Npy {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads an `.npy` file into a tensor.
pub fn read_npy(path: &Path) -> Result<Tensor, RuntimeError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    decode_npy(&bytes, &path.display().to_string())
}

/// Writes a tensor to an `.npy` file (version 1.0, little-endian, C order).
///
/// The file is written atomically: to a temporary file in the same directory,
/// then renamed into place.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), RuntimeError> {
    use std::io::Write as _;
    let bytes = encode_npy(t, &path.display().to_string())?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(path))?;
    tmp.write_all(&bytes).map_err(io_err(path))?;
    publish(tmp, path)
}

/// Renames a finished temporary file to `path`, readable by all (0644, as
/// a file written in place would be; a temporary file is created 0600).
fn publish(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), RuntimeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(path))?;
    }
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

/// Reads every array of an `.npz` archive, in archive order, named without the
/// `.npy` suffix.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>, RuntimeError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let shown = path.display().to_string();
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| npy_err(&shown, format!("not a zip archive: {e}")))?;
    let mut out = Vec::with_capacity(archive.len());
    for ix in 0..archive.len() {
        let mut entry = archive
            .by_index(ix)
            .map_err(|e| npy_err(&shown, format!("member #{ix}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        let member = entry.name().to_owned();
        let what = format!("{shown}:{member}");
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| npy_err(&what, e.to_string()))?;
        let name = member.strip_suffix(".npy").unwrap_or(&member).to_owned();
        out.push((name, decode_npy(&bytes, &what)?));
    }
    Ok(out)
}

/// Writes tensors to an uncompressed `.npz` archive, as `<name>.npy` members in the
/// given order (readable by `numpy.load`).
///
/// The file is written atomically, as [`write_npy`] writes, and is the same
/// bytes for the same tensors (the members carry no timestamps).
pub fn write_npz(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), RuntimeError> {
    let shown = path.display().to_string();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(path))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(tmp));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(true);
    for (name, t) in tensors {
        let what = format!("{shown}:{name}.npy");
        let bytes = encode_npy(t, &what)?;
        zip.start_file(format!("{name}.npy"), options)
            .map_err(|e| npy_err(&what, e.to_string()))?;
        zip.write_all(&bytes).map_err(io_err(path))?;
    }
    let inner = zip.finish().map_err(|e| npy_err(&shown, e.to_string()))?;
    let tmp = inner
        .into_inner()
        .map_err(|e| io_err(path)(e.into_error()))?;
    publish(tmp, path)
}

/// Decodes the bytes of an `.npy` file; `what` names it in errors.
pub fn decode_npy(bytes: &[u8], what: &str) -> Result<Tensor, RuntimeError> {
    if !bytes.starts_with(MAGIC) {
        return Err(npy_err(what, "missing the \\x93NUMPY magic string"));
    }
    let mut cursor = Cursor::new(bytes);
    let header =
        Header::from_reader(&mut cursor).map_err(|e| npy_err(what, format!("bad header: {e}")))?;
    let offset =
        usize::try_from(cursor.position()).map_err(|_| npy_err(what, "header too long"))?;
    let data = &bytes[offset..];
    let descr = header.type_descriptor.as_string().ok_or_else(|| {
        npy_err(
            what,
            format!("unsupported dtype descriptor {}", header.type_descriptor),
        )
    })?;
    let (kind, big_endian) =
        parse_descr(descr).ok_or_else(|| npy_err(what, format!("unsupported dtype `{descr}`")))?;
    let fortran = header.layout.is_fortran();
    let shape = header.shape;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| npy_err(what, format!("shape {shape:?} overflows")))?;
    let size = kind.datum_type().size_of();
    let expected = count
        .checked_mul(size)
        .ok_or_else(|| npy_err(what, format!("shape {shape:?} overflows")))?;
    if data.len() != expected {
        return Err(npy_err(
            what,
            format!(
                "shape {shape:?} of `{descr}` needs {expected} data bytes, the file has {}",
                data.len()
            ),
        ));
    }
    // Fortran order: the data is the C-order data of the reversed shape, transposed.
    let storage_shape: Vec<usize> = if fortran {
        shape.iter().rev().copied().collect()
    } else {
        shape.clone()
    };
    let tensor = build_tensor(kind, big_endian, data, &storage_shape)
        .map_err(|e| npy_err(what, format!("{e:#}")))?;
    if fortran && shape.len() > 1 {
        let axes: Vec<usize> = (0..shape.len()).rev().collect();
        return tensor
            .permute_axes(&axes)
            .map_err(|e| npy_err(what, format!("{e:#}")));
    }
    Ok(tensor)
}

/// Parses a numpy dtype descriptor such as `<f4`, `|b1`, `>i8`.
fn parse_descr(descr: &str) -> Option<(DatumKind, bool)> {
    let mut chars = descr.chars();
    let (big, rest) = match chars.next()? {
        '<' | '=' | '|' => (false, chars.as_str()),
        '>' => (true, chars.as_str()),
        _ => (false, descr),
    };
    let kind = match rest {
        "f2" | "e" => DatumKind::F16,
        "f4" | "f" => DatumKind::F32,
        "f8" | "d" => DatumKind::F64,
        "i1" | "b" => DatumKind::I8,
        "i2" | "h" => DatumKind::I16,
        "i4" => DatumKind::I32,
        "i8" | "q" => DatumKind::I64,
        "u1" | "B" => DatumKind::U8,
        "u2" | "H" => DatumKind::U16,
        "u4" => DatumKind::U32,
        "u8" | "Q" => DatumKind::U64,
        "b1" | "?" => DatumKind::Bool,
        _ => return None,
    };
    Some((kind, big))
}

/// Decodes fixed-size elements.
fn decode_elems<const N: usize, T>(
    data: &[u8],
    big: bool,
    le: fn([u8; N]) -> T,
    be: fn([u8; N]) -> T,
) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            if big { be(a) } else { le(a) }
        })
        .collect()
}

fn build_tensor(
    kind: DatumKind,
    big: bool,
    data: &[u8],
    shape: &[usize],
) -> tract_onnx::prelude::TractResult<Tensor> {
    match kind {
        DatumKind::F16 => {
            let v = decode_elems::<2, f16>(data, big, f16::from_le_bytes, f16::from_be_bytes);
            Tensor::from_shape(shape, &v)
        }
        DatumKind::F32 => Tensor::from_shape(
            shape,
            &decode_elems::<4, f32>(data, big, f32::from_le_bytes, f32::from_be_bytes),
        ),
        DatumKind::F64 => Tensor::from_shape(
            shape,
            &decode_elems::<8, f64>(data, big, f64::from_le_bytes, f64::from_be_bytes),
        ),
        DatumKind::I8 => Tensor::from_shape(
            shape,
            &decode_elems::<1, i8>(data, big, i8::from_le_bytes, i8::from_be_bytes),
        ),
        DatumKind::I16 => Tensor::from_shape(
            shape,
            &decode_elems::<2, i16>(data, big, i16::from_le_bytes, i16::from_be_bytes),
        ),
        DatumKind::I32 => Tensor::from_shape(
            shape,
            &decode_elems::<4, i32>(data, big, i32::from_le_bytes, i32::from_be_bytes),
        ),
        DatumKind::I64 => Tensor::from_shape(
            shape,
            &decode_elems::<8, i64>(data, big, i64::from_le_bytes, i64::from_be_bytes),
        ),
        DatumKind::U8 => Tensor::from_shape(shape, data),
        DatumKind::U16 => Tensor::from_shape(
            shape,
            &decode_elems::<2, u16>(data, big, u16::from_le_bytes, u16::from_be_bytes),
        ),
        DatumKind::U32 => Tensor::from_shape(
            shape,
            &decode_elems::<4, u32>(data, big, u32::from_le_bytes, u32::from_be_bytes),
        ),
        DatumKind::U64 => Tensor::from_shape(
            shape,
            &decode_elems::<8, u64>(data, big, u64::from_le_bytes, u64::from_be_bytes),
        ),
        DatumKind::Bool => {
            let v: Vec<bool> = data.iter().map(|&b| b != 0).collect();
            Tensor::from_shape(shape, &v)
        }
    }
}

/// numpy descriptor written for a kind.
fn descr_of(kind: DatumKind) -> &'static str {
    match kind {
        DatumKind::F16 => "<f2",
        DatumKind::F32 => "<f4",
        DatumKind::F64 => "<f8",
        DatumKind::I8 => "|i1",
        DatumKind::I16 => "<i2",
        DatumKind::I32 => "<i4",
        DatumKind::I64 => "<i8",
        DatumKind::U8 => "|u1",
        DatumKind::U16 => "<u2",
        DatumKind::U32 => "<u4",
        DatumKind::U64 => "<u8",
        DatumKind::Bool => "|b1",
    }
}

/// Appends the little-endian bytes of every element of `t`, in C order.
fn push_le_bytes<T, const N: usize>(
    t: &Tensor,
    out: &mut Vec<u8>,
    to_le: fn(T) -> [u8; N],
) -> tract_onnx::prelude::TractResult<()>
where
    T: tract_onnx::prelude::Datum + Copy,
{
    for &x in t.to_plain_array_view::<T>()? {
        out.extend_from_slice(&to_le(x));
    }
    Ok(())
}

/// Encodes a tensor as the bytes of an `.npy` file; `what` names it in errors.
pub fn encode_npy(t: &Tensor, what: &str) -> Result<Vec<u8>, RuntimeError> {
    // TDim tensors (shapes computed by tract) are written as i64.
    if t.datum_type() == DatumType::TDim {
        let cast = t
            .cast_to::<i64>()
            .map_err(|e| npy_err(what, format!("{e:#}")))?;
        return encode_npy(&cast, what);
    }
    let kind = DatumKind::from_datum_type(t.datum_type()).ok_or_else(|| {
        RuntimeError::UnsupportedDatum {
            context: format!("writing {what}"),
            datum: datum_name(t.datum_type()),
        }
    })?;
    let shape = t.shape();
    let shape_str = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_str}, }}",
        descr_of(kind)
    );
    // magic (6) + version (2) + header length (2) + dict + padding + '\n', multiple of 64.
    let unpadded = MAGIC.len() + 2 + 2 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let header_len = u16::try_from(total - MAGIC.len() - 4)
        .map_err(|_| npy_err(what, "header too long for npy version 1.0"))?;
    let mut out = Vec::with_capacity(total + t.len() * t.datum_type().size_of());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    let res = match kind {
        DatumKind::F16 => push_le_bytes::<f16, 2>(t, &mut out, f16::to_le_bytes),
        DatumKind::F32 => push_le_bytes::<f32, 4>(t, &mut out, f32::to_le_bytes),
        DatumKind::F64 => push_le_bytes::<f64, 8>(t, &mut out, f64::to_le_bytes),
        DatumKind::I8 => push_le_bytes::<i8, 1>(t, &mut out, i8::to_le_bytes),
        DatumKind::I16 => push_le_bytes::<i16, 2>(t, &mut out, i16::to_le_bytes),
        DatumKind::I32 => push_le_bytes::<i32, 4>(t, &mut out, i32::to_le_bytes),
        DatumKind::I64 => push_le_bytes::<i64, 8>(t, &mut out, i64::to_le_bytes),
        DatumKind::U8 => push_le_bytes::<u8, 1>(t, &mut out, u8::to_le_bytes),
        DatumKind::U16 => push_le_bytes::<u16, 2>(t, &mut out, u16::to_le_bytes),
        DatumKind::U32 => push_le_bytes::<u32, 4>(t, &mut out, u32::to_le_bytes),
        DatumKind::U64 => push_le_bytes::<u64, 8>(t, &mut out, u64::to_le_bytes),
        DatumKind::Bool => push_le_bytes::<bool, 1>(t, &mut out, |b| [u8::from(b)]),
    };
    res.map_err(|e| npy_err(what, format!("{e:#}")))?;
    Ok(out)
}
