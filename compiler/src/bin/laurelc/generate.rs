//! `laurelc completions SHELL` and `laurelc man`: shell completions and a roff
//! man page, generated from the command line's own definition.

use anyhow::Result;
use clap::{Args, CommandFactory as _};

/// `laurelc completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

use std::io::Write as _;

/// Writes the completion script to stdout.
pub fn completions(a: &CompletionsArgs) -> Result<()> {
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "laurelc", &mut script);
    std::io::stdout().write_all(&script)?;
    Ok(())
}

/// Writes the man page (roff) to stdout.
pub fn man() -> Result<()> {
    let cmd = crate::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    std::io::stdout().write_all(&page)?;
    Ok(())
}
