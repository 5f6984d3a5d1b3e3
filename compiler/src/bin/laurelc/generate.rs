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

/// Writes the completion script to stdout.
pub fn completions(a: &CompletionsArgs) -> Result<()> {
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "laurelc", &mut script);
    crate::args::emit(&String::from_utf8_lossy(&script))?;
    Ok(())
}

/// `laurelc man [COMMAND]`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// A command's page (`laurelc-fuse(1)`) instead of laurelc's own.
    #[arg(value_parser = PAGES.map(|(c, _)| c))]
    pub command: Option<String>,
}

/// Each command's page name.
const PAGES: [(&str, &str); 8] = [
    ("run", "laurelc-run"),
    ("check", "laurelc-check"),
    ("inspect", "laurelc-inspect"),
    ("fuse", "laurelc-fuse"),
    ("bench", "laurelc-bench"),
    ("profile", "laurelc-profile"),
    ("completions", "laurelc-completions"),
    ("man", "laurelc-man"),
];

/// Writes the man page (roff) of laurelc, or of one of its commands, to stdout.
pub fn man(a: &ManArgs) -> Result<()> {
    let top = crate::Cli::command();
    let cmd = match &a.command {
        None => top,
        Some(name) => {
            let (_, page) = PAGES
                .iter()
                .find(|(c, _)| c == name)
                .ok_or_else(|| anyhow::anyhow!("no command `{name}`"))?;
            let sub = top
                .find_subcommand(name)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no command `{name}`"))?;
            sub.name(*page)
                .bin_name(format!("laurelc {name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    crate::args::emit(&String::from_utf8_lossy(&page))?;
    Ok(())
}
