//! A model's inputs, one way for every command: tensors read from files, and
//! seeded random values ([`crate::random_inputs`]) for the rest.
//!
//! Given tensors also size the model: their shapes are added to the load
//! options ([`sized`]), so a file fixes its input's shape and binds the
//! symbols of the input's declared shape for the whole graph.
//!
//! Complexity: reading the files, then O(inputs).

use std::path::{Path, PathBuf};

use tract_onnx::prelude::Tensor;

use crate::error::RuntimeError;
use crate::model::{LoadOptions, ModelSource};
use crate::runnable::Runnable;

/// Where given tensors come from: `NAME=FILE.npy`, or an `.npz` file holding
/// tensors by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// One `.npy` file for the input `name`.
    Named(String, PathBuf),
    /// Every tensor of an `.npz` file, by its name in the archive.
    Npz(PathBuf),
}

impl std::str::FromStr for InputSource {
    type Err = String;

    /// `NAME=FILE.npy`, or an archive: any file name without `=` that is not a
    /// `.npy`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some(("", _)) => Err(format!("--input `{s}`: expected NAME=FILE.npy")),
            Some((name, file)) => Ok(Self::Named(name.to_owned(), PathBuf::from(file))),
            // One `.npy` holds one tensor and needs the input's name.
            None if Path::new(s).extension().is_some_and(|e| e == "npy") => Err(format!(
                "--input `{s}`: a .npy file needs the input's name: NAME={s}"
            )),
            // Any other file without a name is an archive of named tensors.
            None => Ok(Self::Npz(PathBuf::from(s))),
        }
    }
}

/// The tensors of `sources`, in order, a later one replacing an earlier one
/// of the same name.
///
/// # Errors
/// A file that cannot be read or decoded.
pub fn read_given(sources: &[InputSource]) -> Result<Vec<(String, Tensor)>, RuntimeError> {
    let mut given: Vec<(String, Tensor)> = Vec::new();
    for s in sources {
        let loaded = match s {
            InputSource::Named(name, path) => vec![(name.clone(), crate::npy::read_npy(path)?)],
            InputSource::Npz(path) => crate::npy::read_npz(path)?,
        };
        for (name, t) in loaded {
            given.retain(|(n, _)| *n != name);
            given.push((name, t));
        }
    }
    Ok(given)
}

/// `load` with the shapes of the `given` tensors added (replacing entries of
/// the same name).
#[must_use]
pub fn sized(load: &LoadOptions, given: &[(String, Tensor)]) -> LoadOptions {
    let mut load = load.clone();
    load.shapes
        .extend(given.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())));
    // Small integer and boolean inputs may decide `If`s ([`crate::decide`]).
    for (n, t) in given {
        if let Some(v) = crate::decide::deciding_values(t) {
            load.values.insert(n.clone(), (t.shape().to_vec(), v));
        }
    }
    load
}

/// Loads the model at `path`, sized by `load` and the `given` tensors.
///
/// # Errors
/// The loader's error ([`crate::load()`]).
pub fn load_sized(
    path: &Path,
    load: &LoadOptions,
    given: &[(String, Tensor)],
) -> Result<Runnable, RuntimeError> {
    crate::load::load(ModelSource::Path(path), &sized(load, given))
}

/// Every input of `model` for one run: the `given` tensors, then seeded
/// random values for the rest.
///
/// # Errors
/// Random generation fails (an input too large, or of a type without a generator).
pub fn complete(
    model: &Runnable,
    given: &[(String, Tensor)],
    seed: u64,
) -> Result<Vec<(String, Tensor)>, RuntimeError> {
    let mut inputs = given.to_vec();
    let rest: Vec<_> = model
        .inputs()
        .iter()
        .filter(|s| !given.iter().any(|(n, _)| *n == s.name))
        .cloned()
        .collect();
    inputs.extend(crate::random::random_inputs(&rest, seed)?);
    Ok(inputs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_like_the_flag() {
        assert_eq!(
            "x=a.npy".parse(),
            Ok(InputSource::Named("x".into(), "a.npy".into()))
        );
        assert_eq!("in.npz".parse(), Ok(InputSource::Npz("in.npz".into())));
        // A file without a name is an archive, whatever it is called.
        assert_eq!("inputs".parse(), Ok(InputSource::Npz("inputs".into())));
        assert!("a.npy".parse::<InputSource>().is_err());
        assert!("=a.npy".parse::<InputSource>().is_err());
    }

    #[test]
    fn a_later_source_replaces_an_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.npy");
        let b = dir.path().join("b.npy");
        crate::npy::write_npy(&a, &Tensor::from(1.0f32)).unwrap();
        crate::npy::write_npy(&b, &Tensor::from(2.0f32)).unwrap();
        let given = read_given(&[
            InputSource::Named("x".into(), a),
            InputSource::Named("x".into(), b),
        ])
        .unwrap();
        assert_eq!(given.len(), 1);
        assert_eq!(given[0].1, Tensor::from(2.0f32));
    }
}
