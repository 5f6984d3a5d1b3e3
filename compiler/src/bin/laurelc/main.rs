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
mod fuse;
mod generate;
mod inspect;
mod profile;
mod progress;
mod run;

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
    /// Time models on tract, interleaved (A B C A B C …), against the first one.
    Bench(bench::BenchArgs),
    /// Time every node of a model's plan on tract: where its time goes.
    Profile(profile::ProfileArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

/// Panics inside dependencies (tract on unusual models) are caught by the
/// libraries and reported as errors; the default hook would still print a
/// backtrace for each. This one prints the first panic's message, once,
/// unless `RUST_BACKTRACE` asks for the full story.
fn quiet_panics() {
    static SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        if !SEEN.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!("laurelc: note: caught a panic: {info}");
        }
    }));
}

fn main() -> ExitCode {
    quiet_panics();
    let cli = match Cli::try_parse() {
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
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`laurelc man | head`): nothing to report.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.is::<check::CheckFailed>() => {
            eprintln!("laurelc: check failed: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("laurelc: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether `e` is a write to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn dispatch(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Some(Command::Run(a)) => run::run(&a),
        Some(Command::Check(a)) => check::run(&a, quiet),
        Some(Command::Inspect(a)) => inspect::run(&a),
        Some(Command::Fuse(a)) => fuse::run(&a, quiet),
        Some(Command::Bench(a)) => bench::run(&a, quiet),
        Some(Command::Profile(a)) => profile::run(&a, quiet),
        Some(Command::Completions(a)) => generate::completions(&a),
        Some(Command::Man) => generate::man(),
        None => compile::run(&cli.compile),
    }
}
