//! The `laurelc` command line: a thin shell over the `laurelc` and
//! `laurel-runtime` libraries, one file per command (`compile.rs` is
//! `laurelc MODEL -o OUT`), the shared arguments in `args.rs`, progress bars in
//! `progress.rs`. Every report renders itself in its library.
//!
//! Exit codes: 0 success, 1 a check failed, 2 bad input or usage.

mod args;
mod bench;
mod check;
mod compile;
mod distill;
mod fuse;
mod generate;
mod grad;
mod inspect;
mod label;
mod profile;
mod progress;
mod run;
mod train;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// laurelc: add `LAuReL` residual connections to ONNX models, fuse them, run them on tract.
#[derive(Debug, Parser)]
#[command(
    name = "laurelc",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    compile: compile::CompileArgs,
    /// Show no progress bar (bars are drawn on stderr, only when it is a terminal).
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a model on tract and print a summary of each output.
    Run(run::RunArgs),
    /// Run two models on the same inputs and compare their outputs (exit 1 if they differ).
    Check(check::CheckArgs),
    /// Print a summary of a model.
    Inspect(inspect::InspectArgs),
    /// Fuse a `LAuReL` model for inference: fold its scalars into weights and
    /// norms, merge its low-rank maps, and extract the cheapest equivalent graph.
    Fuse(fuse::FuseArgs),
    /// Write a model's training step: its loss and the gradients of its trainable tensors,
    /// in standard ONNX.
    Grad(grad::GradArgs),
    /// Train a model on tract: its `LAuReL` parameters (or any float weights) on data
    /// from an `.npz`, then write it with the learned tensors (exit 1 if the loss diverges).
    Train(train::TrainArgs),
    /// Label unlabeled examples with a teacher on tract: its soft labels, written beside
    /// the examples for `train --loss kd`, cached by content.
    Label(label::LabelArgs),
    /// Train a student from a teacher's labels on unlabeled data: vanilla
    /// distillation or SLaM, with uniform, margin, entropy or RAD selection under a budget.
    Distill(distill::DistillArgs),
    /// Time models on tract, interleaved (A B C A B C …), against the first one.
    Bench(bench::BenchArgs),
    /// Time every node of a model's plan on tract: where its time goes.
    Profile(profile::ProfileArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Print the man page (roff) of laurelc, or of one of its commands.
    Man(generate::ManArgs),
}

/// Panics inside dependencies (tract on unusual models) are caught by the
/// libraries and reported as one-line errors, so the hook prints nothing: no
/// panic text or backtrace reaches the user, whatever `RUST_BACKTRACE` says.
/// It keeps the last panic's first line and place, for [`main`] to report a
/// panic nothing caught (a bug) in one line too. `LAURELC_PANIC_TRACE=1`
/// restores the default hook, for developers.
fn quiet_panics() {
    if std::env::var_os("LAURELC_PANIC_TRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let first = message.lines().next().unwrap_or_default().to_owned();
        let place = info
            .location()
            .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{first}{place}"));
        }
    }));
}

/// The last panic's message, first line, and place (see [`quiet_panics`]).
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The arguments with any `-q`/`--quiet` given before the subcommand (or the
/// model) moved to the end: clap refuses top-level flags beside a subcommand
/// when, as here, the default command's arguments conflict with
/// subcommands, and `--quiet` is meant for every command.
fn quiet_last(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let is_quiet = |a: &std::ffi::OsString| a == "-q" || a == "--quiet";
    let first_word = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map_or(args.len(), |i| i + 1);
    let (mut out, mut moved) = (Vec::with_capacity(args.len()), 0);
    for (i, a) in args.into_iter().enumerate() {
        if i > 0 && i < first_word && is_quiet(&a) {
            moved += 1;
        } else {
            out.push(a);
        }
    }
    // Before a `--`, which ends the flags.
    let at = out.iter().position(|a| a == "--").unwrap_or(out.len());
    for _ in 0..moved {
        out.insert(at, "--quiet".into());
    }
    out
}

/// Keeps freed memory in the heap for reuse, the way an inference runtime's
/// arena does (glibc only; a no-op elsewhere).
///
/// tract allocates every intermediate tensor afresh on every run. glibc's
/// `malloc` serves a block over its mmap threshold (128 KiB, rising with use
/// to at most 32 MiB, also through `mallopt`) with its own `mmap` and unmaps
/// it at `free`, so the next run faults the same pages in again. A training
/// step's dense gradient of `MiniLM`'s 30522 × 384 word embeddings (47 MB) took
/// 23 ms per step that way and 4.8 ms from the heap; the whole step went from
/// 74 to 36 ms (docs/benchmarks.md). With mmap off and trimming off, every
/// block comes from the heap and freed ones are reused. Peak RSS is
/// unchanged (`MiniLM`'s import + export: 78.7 MB, 77.1 MB before); the heap
/// keeps its peak until exit, which a run of a model needs again at its next
/// run anyway. mimalloc gave the same step time but 1.7× the peak RSS of an
/// import + export; jemalloc 0.6 did not help. The costs: without mmap,
/// `realloc` of a huge block copies it (no `mremap`), and memory freed after
/// a peak (a teacher's labelling before a student's training) stays with
/// the process until it exits. Allocations do not fail for it: glibc
/// retries a thread arena's oversized request in the main arena, and falls
/// back to mmap when the heap cannot grow.
fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets allocator parameters, with documented names
    // and in-range values, before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}

/// The time limit on each call into tract that loads or analyses a model:
/// `LAURELC_TRACT_TIMEOUT` seconds, 0 for none, default
/// [`DEFAULT_TRACT_TIMEOUT`] (`laurel_runtime::watchdog`).
fn tract_time_limit() -> Result<Option<std::time::Duration>, String> {
    let Some(v) = std::env::var_os("LAURELC_TRACT_TIMEOUT") else {
        return Ok(Some(std::time::Duration::from_secs(DEFAULT_TRACT_TIMEOUT)));
    };
    let text = v.to_string_lossy();
    match text.trim().parse::<f64>() {
        Ok(0.0) => Ok(None),
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Some(std::time::Duration::from_secs_f64(s))),
        _ => Err(format!(
            "LAURELC_TRACT_TIMEOUT={text}: expected a number of seconds (0 for no limit)"
        )),
    }
}

/// Seconds a call into tract may take unless `LAURELC_TRACT_TIMEOUT` says
/// otherwise: far beyond loading a 2 GiB model, far below a CI job's limit.
const DEFAULT_TRACT_TIMEOUT: u64 = 600;

fn main() -> ExitCode {
    reuse_freed_memory();
    quiet_panics();
    match tract_time_limit() {
        Ok(limit) => laurel_runtime::watchdog::set_time_limit(limit),
        Err(e) => {
            eprintln!("laurelc: error: {e}");
            return ExitCode::from(2);
        }
    }
    let cli = match Cli::try_parse_from(quiet_last(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(cli)));
    let Ok(result) = outcome else {
        let what = LAST_PANIC
            .lock()
            .ok()
            .and_then(|m| m.clone())
            .unwrap_or_else(|| "a panic".to_owned());
        eprintln!("laurelc: error: internal error (please report it): {what}");
        return ExitCode::from(2);
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`laurelc man | head`): nothing to report.
        Err(e) if e.is::<args::StdoutClosed>() => ExitCode::SUCCESS,
        Err(e) if e.is::<check::CheckFailed>() => {
            eprintln!("laurelc: check failed: {e}");
            ExitCode::from(1)
        }
        Err(e) if e.is::<train::Diverged>() => {
            eprintln!("laurelc: training stopped: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("laurelc: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Some(Command::Run(a)) => run::run(&a),
        Some(Command::Check(a)) => check::run(&a, quiet),
        Some(Command::Inspect(a)) => inspect::run(&a),
        Some(Command::Fuse(a)) => fuse::run(&a, quiet),
        Some(Command::Grad(a)) => grad::run(&a),
        Some(Command::Train(a)) => train::run(&a, quiet),
        Some(Command::Label(a)) => label::run(&a, quiet),
        Some(Command::Distill(a)) => distill::run(&a, quiet),
        Some(Command::Bench(a)) => bench::run(&a, quiet),
        Some(Command::Profile(a)) => profile::run(&a, quiet),
        Some(Command::Completions(a)) => generate::completions(&a),
        Some(Command::Man(a)) => generate::man(&a),
        None => compile::run(&cli.compile),
    }
}

#[cfg(test)]
mod tests {
    use super::quiet_last;

    fn args(s: &str) -> Vec<std::ffi::OsString> {
        s.split(' ').map(Into::into).collect()
    }

    #[test]
    fn a_leading_quiet_moves_behind_the_command() {
        assert_eq!(
            quiet_last(args("laurelc -q inspect m")),
            args("laurelc inspect m --quiet")
        );
        assert_eq!(
            quiet_last(args("laurelc --quiet m -o o")),
            args("laurelc m -o o --quiet")
        );
        assert_eq!(
            quiet_last(args("laurelc bench a -q b")),
            args("laurelc bench a -q b")
        );
        assert_eq!(
            quiet_last(args("laurelc -q run m -- x")),
            args("laurelc run m --quiet -- x")
        );
    }
}
