//! A time limit on calls into tract.
//!
//! [`crate::schema::check`] refuses the attributes it can judge, but not
//! every bad model can be judged before tract analyses it (an axis out of
//! range for a rank that only tract's inference knows still loops over
//! about 2⁶⁴ axes). With a limit set ([`set_time_limit`]; the CLI sets
//! 600 s unless `LAURELC_TRACT_TIMEOUT` says otherwise), loading and shape
//! inference ([`crate::load()`], [`crate::infer_shapes`],
//! [`crate::infer_symbolic_shapes`], and so everything built on them) happen
//! on a thread of their own, and a call that has not returned when the limit
//! passes fails with [`RuntimeError::TimedOut`]. The thread cannot be
//! stopped: it is left to finish, or to end with the process (the CLI exits
//! at once on the error). Without a limit (the library's default) the call
//! runs on the caller's thread.
//!
//! Runs of a loaded model ([`crate::Runnable::run`]) are not bounded: a
//! thread per run costs tens of microseconds, as much as a small model's
//! whole run, and `bench`, training and labelling run models thousands of
//! times; a loaded model's shapes are typed and fixed, and its run is the
//! work it describes.
//!
//! Complexity: one thread per bounded call, and a copy of the model's bytes
//! when it is given as bytes (a path is passed as a path).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::{ModelSource, RuntimeError};

/// The limit in milliseconds; 0 for none.
static LIMIT_MS: AtomicU64 = AtomicU64::new(0);

/// Stack of a bounded call's thread: tract recurses on deep graphs, and the
/// default 2 MiB of a spawned thread is less than the main thread has.
const STACK_BYTES: usize = 256 << 20;

/// Sets the time limit of every later call into tract, process-wide;
/// `None` (or zero) for none.
pub fn set_time_limit(limit: Option<Duration>) {
    let ms = limit.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    LIMIT_MS.store(ms, Ordering::Relaxed);
}

/// The time limit of calls into tract ([`set_time_limit`]).
#[must_use]
pub fn time_limit() -> Option<Duration> {
    match LIMIT_MS.load(Ordering::Relaxed) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

/// A model source the bounded thread owns.
enum Owned {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

impl Owned {
    fn of(src: ModelSource<'_>) -> Self {
        match src {
            ModelSource::Path(p) => Owned::Path(p.to_path_buf()),
            ModelSource::Bytes(b) => Owned::Bytes(b.to_vec()),
        }
    }

    fn source(&self) -> ModelSource<'_> {
        match self {
            Owned::Path(p) => ModelSource::Path(p),
            Owned::Bytes(b) => ModelSource::Bytes(b),
        }
    }
}

/// Runs `f` within the time limit, if one is set; `what` says what tract
/// was doing (`loading`, `running`, …) and `model` names the model.
///
/// # Errors
/// `f`'s error, or [`RuntimeError::TimedOut`].
pub(crate) fn bounded<T: Send + 'static>(
    what: &'static str,
    model: &str,
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    let Some(limit) = time_limit() else {
        return f();
    };
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("laurel-tract".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| RuntimeError::Tract {
            context: format!("starting a thread for {what}"),
            message: e.to_string(),
        })?;
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(RuntimeError::TimedOut {
            model: model.to_owned(),
            what,
            seconds: limit.as_secs_f64(),
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(RuntimeError::Tract {
            context: what.to_owned(),
            message: "the thread calling tract ended without a result".to_owned(),
        }),
    }
}

/// `f(src, opts)` within the time limit ([`bounded`]): on the caller's
/// thread when there is none, else on the bounded thread with its own copy
/// of the source (the bytes, or the path) and the options.
///
/// # Errors
/// `f`'s error, or [`RuntimeError::TimedOut`].
pub(crate) fn bounded_on<T: Send + 'static>(
    what: &'static str,
    src: ModelSource<'_>,
    opts: &crate::LoadOptions,
    f: impl FnOnce(ModelSource<'_>, &crate::LoadOptions) -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    if time_limit().is_none() {
        return f(src, opts);
    }
    let (owned, opts) = (Owned::of(src), opts.clone());
    bounded(what, &src.describe(), move || f(owned.source(), &opts))
}
