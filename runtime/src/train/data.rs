//! A data set of named columns, and its seeded batches.
//!
//! Every column is a tensor whose first axis is the example axis; all share
//! its length `n`. An epoch visits the examples in a fresh seeded
//! permutation (Fisher–Yates over `rand`'s `StdRng`, seeded from the run's
//! seed and the epoch) and cuts it into batches of exactly `batch` examples:
//! a training step is specialised to its batch size, so the last `n mod
//! batch` examples of a permutation wait for a later epoch. Building a batch
//! copies its rows, O(batch · row bytes).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use tract_onnx::prelude::{DatumType, Tensor};

use crate::error::RuntimeError;

/// Named columns of equal length along their first axis.
#[derive(Debug, Clone)]
pub struct Dataset {
    columns: Vec<(String, Tensor)>,
    len: usize,
}

impl Dataset {
    /// A data set of `columns`.
    ///
    /// # Errors
    /// [`RuntimeError::Data`]: no columns, a scalar column, an empty data
    /// set, columns of different lengths, a column of strings or other
    /// non-numeric type.
    pub fn new(columns: Vec<(String, Tensor)>) -> Result<Self, RuntimeError> {
        let bad = |reason: String| RuntimeError::Data { reason };
        let Some((first, t)) = columns.first() else {
            return Err(bad("the data set has no columns".into()));
        };
        let len = *t.shape().first().ok_or_else(|| {
            bad(format!(
                "column `{first}` is a scalar, not a set of examples"
            ))
        })?;
        for (name, t) in &columns {
            if !is_plain(t.datum_type()) {
                return Err(bad(format!(
                    "column `{name}` holds {:?}, not numbers",
                    t.datum_type()
                )));
            }
            match t.shape().first() {
                Some(&n) if n == len => {}
                Some(&n) => {
                    return Err(bad(format!(
                        "column `{name}` has {n} examples, `{first}` {len}"
                    )));
                }
                None => {
                    return Err(bad(format!(
                        "column `{name}` is a scalar, not a set of examples"
                    )));
                }
            }
        }
        if len == 0 {
            return Err(bad("the data set is empty".into()));
        }
        Ok(Self { columns, len })
    }

    /// The number of examples.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none (never true of a constructed data set).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The columns.
    #[must_use]
    pub fn columns(&self) -> &[(String, Tensor)] {
        &self.columns
    }

    /// A column by name.
    #[must_use]
    pub fn column(&self, name: &str) -> Option<&Tensor> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The examples at `rows`, in that order, column by column.
    ///
    /// # Errors
    /// [`RuntimeError::Data`] for a row out of range.
    pub fn rows(&self, rows: &[usize]) -> Result<Vec<(String, Tensor)>, RuntimeError> {
        self.columns
            .iter()
            .map(|(name, t)| Ok((name.clone(), self.gather(name, t, rows)?)))
            .collect()
    }

    /// The examples at `rows` of the column `name` alone (what a batch needs
    /// of it, without copying the columns it does not read).
    ///
    /// # Errors
    /// [`RuntimeError::Data`] for no such column or a row out of range.
    pub fn column_rows(&self, name: &str, rows: &[usize]) -> Result<Tensor, RuntimeError> {
        let t = self.column(name).ok_or_else(|| RuntimeError::Data {
            reason: format!("no column `{name}`"),
        })?;
        self.gather(name, t, rows)
    }

    /// The rows of one column, copied. O(rows · row bytes).
    fn gather(&self, name: &str, t: &Tensor, rows: &[usize]) -> Result<Tensor, RuntimeError> {
        if let Some(&r) = rows.iter().find(|&&r| r >= self.len) {
            return Err(RuntimeError::Data {
                reason: format!("row {r} of a data set of {}", self.len),
            });
        }
        let mut shape = t.shape().to_vec();
        shape[0] = rows.len();
        let mut out = Tensor::zero_dt(t.datum_type(), &shape).map_err(|e| RuntimeError::Data {
            reason: format!("column `{name}`: {e}"),
        })?;
        let row = t.as_bytes().len() / self.len;
        let src = t.as_bytes();
        let dst = out.as_bytes_mut();
        for (i, &r) in rows.iter().enumerate() {
            dst[i * row..(i + 1) * row].copy_from_slice(&src[r * row..(r + 1) * row]);
        }
        Ok(out)
    }

    /// SHA-256 (hex) of the columns `names`, in that order: each one's name,
    /// element type, shape and bytes. O(bytes of those columns).
    ///
    /// # Errors
    /// [`RuntimeError::Data`] for a name the data set does not hold.
    pub fn digest(&self, names: &[&str]) -> Result<String, RuntimeError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for name in names {
            let t = self.column(name).ok_or_else(|| RuntimeError::Data {
                reason: format!("no column `{name}`"),
            })?;
            let bytes = t.as_bytes();
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(format!("{:?}{:?}", t.datum_type(), t.shape()).as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        Ok(hex(&h.finalize()))
    }

    /// The batches of one epoch: a permutation of the rows seeded by `seed`
    /// and `epoch`, cut into `n / batch` batches of `batch` rows.
    ///
    /// # Errors
    /// [`RuntimeError::Data`] when `batch` is 0 or larger than the data set.
    pub fn epoch(
        &self,
        batch: usize,
        seed: u64,
        epoch: u64,
    ) -> Result<Vec<Vec<usize>>, RuntimeError> {
        if batch == 0 || batch > self.len {
            return Err(RuntimeError::Data {
                reason: format!(
                    "a batch of {batch} examples from a data set of {}",
                    self.len
                ),
            });
        }
        let mut order: Vec<usize> = (0..self.len).collect();
        let mut rng = StdRng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        order.shuffle(&mut rng);
        Ok(order.chunks_exact(batch).map(<[usize]>::to_vec).collect())
    }

    /// The rows in order, in batches of `batch`, the last one padded by
    /// repeating row 0 (for evaluation at a fixed batch size); with the
    /// number of real rows in each.
    ///
    /// # Errors
    /// [`RuntimeError::Data`] when `batch` is 0.
    pub fn in_order(&self, batch: usize) -> Result<Vec<(Vec<usize>, usize)>, RuntimeError> {
        if batch == 0 {
            return Err(RuntimeError::Data {
                reason: "a batch of 0 examples".into(),
            });
        }
        Ok((0..self.len)
            .collect::<Vec<_>>()
            .chunks(batch)
            .map(|c| {
                let mut rows = c.to_vec();
                rows.resize(batch, 0);
                (rows, c.len())
            })
            .collect())
    }
}

/// Whether a tensor of this type is plain bytes per element.
fn is_plain(dt: DatumType) -> bool {
    dt.is_number() || dt == DatumType::Bool
}

/// Bytes (a digest) as lowercase hex. O(bytes).
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Dataset {
        let x = Tensor::from_shape(
            &[5, 2],
            &[0.0f32, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5],
        )
        .unwrap();
        let y = Tensor::from_shape(&[5], &[0i64, 1, 2, 3, 4]).unwrap();
        Dataset::new(vec![("x".into(), x), ("y".into(), y)]).unwrap()
    }

    #[test]
    fn rows_are_copied_in_the_order_asked() {
        let b = data().rows(&[3, 0]).unwrap();
        assert_eq!(
            super::super::elements::<f32>(&b[0].1).unwrap(),
            &[3.0, 3.5, 0.0, 0.5]
        );
        assert_eq!(b[0].1.shape(), &[2, 2]);
        assert_eq!(super::super::elements::<i64>(&b[1].1).unwrap(), &[3, 0]);
    }

    #[test]
    fn an_epoch_is_a_seeded_permutation_in_whole_batches() {
        let d = data();
        let e = d.epoch(2, 7, 0).unwrap();
        assert_eq!(e.len(), 2);
        let mut seen: Vec<usize> = e.concat();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 4, "{e:?}");
        assert_eq!(
            e,
            d.epoch(2, 7, 0).unwrap(),
            "the same seed, the same order"
        );
        let other: Vec<_> = (1..6).map(|k| d.epoch(2, 7, k).unwrap()).collect();
        assert!(other.iter().any(|o| o != &e), "epochs reshuffle");
    }

    #[test]
    fn evaluation_batches_cover_every_row_once() {
        let b = data().in_order(2).unwrap();
        assert_eq!(b, vec![(vec![0, 1], 2), (vec![2, 3], 2), (vec![4, 0], 1)]);
    }

    #[test]
    fn bad_data_is_an_error_not_a_panic() {
        let x = Tensor::from_shape(&[3, 1], &[0.0f32; 3]).unwrap();
        let y = Tensor::from_shape(&[2], &[0i64; 2]).unwrap();
        let e = Dataset::new(vec![("x".into(), x.clone()), ("y".into(), y)]).unwrap_err();
        assert!(
            e.to_string().contains("column `y` has 2 examples, `x` 3"),
            "{e}"
        );
        let empty = Tensor::from_shape(&[0, 1], &[0.0f32; 0]).unwrap();
        let e = Dataset::new(vec![("x".into(), empty)]).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let d = Dataset::new(vec![("x".into(), x)]).unwrap();
        assert!(
            d.epoch(4, 0, 0)
                .unwrap_err()
                .to_string()
                .contains("a batch of 4")
        );
        assert!(d.rows(&[3]).is_err());
    }
}
