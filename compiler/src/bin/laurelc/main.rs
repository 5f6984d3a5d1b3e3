//! The `laurelc` command line: a thin shell over the `laurelc` library.
//!
//! Exit codes: 0 success, 1 a check failed, 2 bad input or usage.

use std::collections::BTreeMap;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use laurelc::check::{CheckOptions, check_models};
use laurelc::onnx::ExportOptions;
use laurelc::pipeline::{PipelineOptions, compile_file};

/// laurelc: add `LAuReL` residual connections to ONNX models, fuse them, run them on tract.
#[derive(Debug, Parser)]
#[command(
    name = "laurelc",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    compile: CompileArgs,
}

/// `laurelc MODEL -o OUT`: run the pipeline.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // independent command-line flags
struct CompileArgs {
    /// The input model.
    #[arg(required = true)]
    model: Option<PathBuf>,
    /// Where to write the result.
    #[arg(short, long, required = true)]
    output: Option<PathBuf>,
    /// Run no pass: a pure import → export round trip.
    #[arg(long)]
    no_passes: bool,
    /// Allow OUT to be the input file.
    #[arg(long)]
    force: bool,
    /// Write initializers of at least 1 KiB to `OUT.data` (automatic above 2 GiB).
    #[arg(long)]
    external_data: bool,
    /// The `LAuReL` variant.
    #[arg(long, default_value = "rw", value_parser = NamedValues::<VariantArg>::new())]
    variant: VariantArg,
    /// The rank r of LR (and of rw+lr+pa's per-state maps).
    #[arg(long, default_value_t = 4)]
    rank: u64,
    /// PA's window k: the block's own input and up to k − 1 earlier states of its stream.
    #[arg(long, default_value_t = 3)]
    pa_window: usize,
    /// The rank of PA's shared map h; 0 makes h the identity.
    #[arg(long, default_value_t = 0)]
    pa_rank: u64,
    /// How RW's α and β are parametrised.
    #[arg(long, default_value = "softmax", value_parser = NamedValues::<RwParamArg>::new())]
    rw_param: RwParamArg,
    /// Initial values.
    #[arg(long, default_value = "identity", value_parser = NamedValues::<InitArg>::new())]
    init: InitArg,
    /// Seed of random initial values.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Augment projection shortcuts too.
    #[arg(long)]
    include_projection: bool,
    /// Augment only these blocks: STREAM, STREAM:INDEX, STREAM:FROM..TO or a node-name glob, comma-separated.
    #[arg(long, value_name = "SELECT")]
    blocks: Option<String>,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a model on tract and print a summary of each output.
    Run(RunArgs),
    /// Run two models on the same inputs and compare their outputs (exit 1 if they differ).
    Check(CheckArgs),
    /// Print a summary of a model.
    Inspect(InspectArgs),
    /// Fuse a `LAuReL` model for inference: fold its scalars into weights and
    /// norms, merge its low-rank maps, and extract the cheapest equivalent graph.
    Fuse(FuseArgs),
    /// Time models on tract, interleaved (A B C A B C …), against the first one.
    Bench(BenchArgs),
    /// Time every node of a model's plan on tract: where its time goes.
    Profile(ProfileArgs),
}

/// `laurelc profile MODEL`.
#[derive(Debug, Args)]
struct ProfileArgs {
    /// The model.
    model: PathBuf,
    /// Timed runs; each node's time is its median over them.
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// The slowest nodes to list after the ops (0: none).
    #[arg(long, default_value_t = 20)]
    top: usize,
    #[command(flatten)]
    given: InputArgs,
    /// Print the profile as JSON (every node).
    #[arg(long)]
    json: bool,
}

/// `laurelc bench BASELINE OTHER...`.
#[derive(Debug, Args)]
struct BenchArgs {
    /// The baseline model: ratios are to its median.
    baseline: PathBuf,
    /// The models to compare with it; they must have the baseline's inputs.
    #[arg(required = true)]
    others: Vec<PathBuf>,
    /// Timed rounds; each round runs every model once.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed rounds before the timed ones.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Start round r at model r mod N (A B C, B C A, …) instead of always at the baseline.
    #[arg(long)]
    rotate: bool,
    /// Load each model this many times; its runs cycle through the loads, so that its
    /// samples span several memory layouts (a model's time can move by several percent
    /// from one load to the next).
    #[arg(long, default_value_t = 1)]
    loads: usize,
    #[command(flatten)]
    given: InputArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct FuseArgs {
    /// The model.
    model: PathBuf,
    /// Where to write the result.
    #[arg(short, long)]
    output: PathBuf,
    /// Allow OUT to be the input file.
    #[arg(long)]
    force: bool,
    /// Print what fusion did: rules fired, e-graph size and stop reason, cost before and after.
    #[arg(long)]
    explain: bool,
    /// Ops per saturation window (0: the whole graph at once).
    #[arg(long, default_value_t = laurelc::fuse::DEFAULT_WINDOW_OPS)]
    window_ops: usize,
    /// What the result may contain: `onnx`, standard ONNX ops for any runtime; `tract`,
    /// also the `ai.laurel` `LaurelResidual` op that laurel-runtime registers with tract.
    #[arg(long, value_enum, default_value_t = TargetArg::Onnx)]
    target: TargetArg,
    /// The size a symbolic dimension will run at, as NAME=VALUE, for the cost model only
    /// (the result stays symbolic; unknown symbols count 1).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// A constant of the cost model, as NAME=VALUE in microseconds, for another machine or
    /// runtime: overhead, per-element, per-flop, flop-overhead, copy-overhead,
    /// laurel-residual-per-term or epilogue-overhead (defaults: calibrated on tract, see
    /// docs/benchmarks.md).
    #[arg(long = "cost", value_name = "NAME=VALUE")]
    costs: Vec<String>,
}

/// `--target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TargetArg {
    /// Standard ONNX ops (onnxruntime runs the result).
    Onnx,
    /// Standard ops and `ai.laurel::LaurelResidual` (tract through laurel-runtime).
    Tract,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The model.
    model: PathBuf,
    /// Write each output to DIR/<output name>.npy.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    given: InputArgs,
}

/// The inputs of `run`, `bench` and `profile`: given ones, random ones, and the sizes
/// of symbolic dimensions.
#[derive(Debug, Args)]
struct InputArgs {
    /// Seed for random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The value of a symbolic dimension, as NAME=VALUE (default 1).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// The shape of a random input, as NAME=1x3x224x224.
    #[arg(long = "shape", value_name = "NAME=SHAPE")]
    shapes: Vec<String>,
    /// An input from a .npy file, as NAME=FILE.npy; or an .npz file holding inputs by name.
    #[arg(long = "input", value_name = "NAME=FILE|FILE.npz")]
    inputs: Vec<String>,
}

impl InputArgs {
    /// The given inputs (`--input`, a later one replacing an earlier one of the same
    /// name), and the load options of `--dim` and `--shape`.
    fn parse(
        &self,
    ) -> Result<(
        Vec<(String, laurel_runtime::Tensor)>,
        laurel_runtime::LoadOptions,
    )> {
        let given = given_inputs(&self.inputs)?;
        let load = laurel_runtime::LoadOptions {
            dims: parse_dims(&self.dims)?,
            shapes: parse_shapes(&self.shapes)?,
            ..laurel_runtime::LoadOptions::default()
        };
        Ok((given, load))
    }

    /// `model` loaded as `laurelc::check::load` does, and every input of it: the given
    /// ones and seeded random values for the rest.
    fn load(
        &self,
        model: &Path,
    ) -> Result<(
        laurel_runtime::Runnable,
        Vec<(String, laurel_runtime::Tensor)>,
    )> {
        let (given, load) = self.parse()?;
        let runnable = laurelc::check::load(model, &load.dims, &load.shapes, &given)?;
        let inputs = laurelc::check::complete_inputs(&runnable, &given, self.seed)?;
        Ok((runnable, inputs))
    }
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The reference model.
    a: PathBuf,
    /// The model to compare with it.
    b: PathBuf,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-4)]
    rtol: f64,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// Seed for random inputs (run k uses seed + k).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of random input sets.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The value of a symbolic dimension, as NAME=VALUE (default 1).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    dims: Vec<String>,
    /// The shape of a random input, as NAME=1x3x224x224.
    #[arg(long = "shape", value_name = "NAME=SHAPE")]
    shapes: Vec<String>,
    /// An input from a .npy file, as NAME=FILE.npy.
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The model.
    model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Write a Graphviz picture of the residual streams to FILE.
    #[arg(long, value_name = "FILE")]
    dot: Option<PathBuf>,
}

/// An error that means "a check failed" (exit 1) rather than bad input (exit 2).
#[derive(Debug)]
struct CheckFailed;

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outputs differ beyond tolerance")
    }
}
impl std::error::Error for CheckFailed {}

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
        Err(e) if e.is::<CheckFailed>() => {
            eprintln!("laurelc: check failed: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("laurelc: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Run(a)) => run(&a),
        Some(Command::Check(a)) => check(&a),
        Some(Command::Inspect(a)) => inspect(&a),
        Some(Command::Fuse(a)) => fuse(&a),
        Some(Command::Bench(a)) => bench(&a),
        Some(Command::Profile(a)) => profile(&a),
        None => compile(&cli.compile),
    }
}

fn compile(a: &CompileArgs) -> Result<()> {
    let (Some(model), Some(output)) = (&a.model, &a.output) else {
        bail!("usage: laurelc MODEL -o OUT (see --help)");
    };
    let augment = laurelc::augment::AugmentOptions {
        variant: variant_of(a)?,
        init: a.init.0,
        seed: a.seed,
        include_projection: a.include_projection,
        blocks: a
            .blocks
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        ..laurelc::augment::AugmentOptions::default()
    };
    let opts = PipelineOptions {
        no_passes: a.no_passes,
        force: a.force,
        export: ExportOptions {
            external_data: a.external_data,
            ..ExportOptions::default()
        },
        augment,
    };
    if let Some(path) = &a.report_json {
        // Fail before writing the model, not after.
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            bail!("{}: the report's directory does not exist", path.display());
        }
    }
    let report = compile_file(model, output, &opts)?;
    let passes = if report.passes.is_empty() {
        "none".to_string()
    } else {
        report.passes.join(", ")
    };
    println!(
        "{} -> {}: {} ops in, {} ops out, passes: {passes}, {} bytes written",
        model.display(),
        output.display(),
        report.ops_before,
        report.ops_after,
        report.export.model_bytes
    );
    if let Some(aug) = &report.augment {
        #[allow(clippy::cast_precision_loss)]
        let pct = if report.parameters_before == 0 {
            0.0
        } else {
            100.0 * aug.parameters_added as f64 / report.parameters_before as f64
        };
        println!(
            "augmented {} blocks ({}): +{} parameters ({pct:.4}% of {}), +{} FLOPs (estimated, symbolic dims counted as 1); e-graph {} classes / {} nodes, {}",
            aug.blocks.len(),
            aug.variant,
            aug.parameters_added,
            report.parameters_before,
            aug.flops_added,
            aug.egraph.0,
            aug.egraph.1,
            aug.stop
        );
        for (node, why) in &aug.skipped {
            println!("  skipped {node}: {why}");
        }
        if let Some(path) = &a.report_json {
            let json = serde_json::to_string_pretty(aug)?;
            laurelc::fsutil::write_atomically(path, |w| w.write_all(json.as_bytes()))?;
        }
    }
    if let Some(side) = &report.export.external_file {
        println!(
            "external data: {} tensors, {} bytes in {}",
            report.export.external_tensors,
            report.export.external_bytes,
            side.display()
        );
    }
    Ok(())
}

/// The variant `--variant` names, with the parameters of `--rank`,
/// `--pa-window`, `--pa-rank` and `--rw-param` (each checked only where the
/// variant uses it).
fn variant_of(a: &CompileArgs) -> Result<laurel_passes::Variant> {
    let mut v = a.variant.0.with_rw_param(a.rw_param.0);
    if v.lr.is_some() {
        v = v.with_rank(NonZeroU64::new(a.rank).context("--rank must be at least 1")?);
    }
    if v.pa.is_some() {
        v = v.with_pa(laurel_passes::variant::Pa {
            window: NonZeroUsize::new(a.pa_window).context("--pa-window must be at least 1")?,
            h: NonZeroU64::new(a.pa_rank),
        });
    }
    Ok(v)
}

/// A clap value enum over a library type: the values are `$all`, named by
/// `$name` and explained by `$help`, so `--help` lists them and shells
/// complete them; a value that is none of them is refused with `$unknown`'s
/// message (the library's own, e.g. `unknown variant …`), through
/// [`NamedValues`].
macro_rules! value_enum {
    ($(#[$doc:meta])* $arg:ident($ty:ty), $all:expr, $name:expr, $help:expr, $unknown:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        struct $arg($ty);

        impl clap::ValueEnum for $arg {
            fn value_variants<'a>() -> &'a [Self] {
                static ALL: std::sync::LazyLock<Vec<$arg>> =
                    std::sync::LazyLock::new(|| $all.into_iter().map($arg).collect());
                &ALL
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                let name: fn(&$ty) -> &'static str = $name;
                let help: fn(&$ty) -> String = $help;
                Some(clap::builder::PossibleValue::new(name(&self.0)).help(help(&self.0)))
            }
        }

        impl Unknown for $arg {
            fn unknown(value: &str) -> String {
                let unknown: fn(&str) -> String = $unknown;
                unknown(value)
            }
        }

    };
}

/// The message for a value a [`value_enum!`] type does not know.
trait Unknown {
    fn unknown(value: &str) -> String;
}

/// Parses a [`clap::ValueEnum`] by its values' names, listing them for help
/// and completion like clap's own enum parser, with the library's message
/// for anything else.
#[derive(Clone)]
struct NamedValues<T>(std::marker::PhantomData<T>);

impl<T> NamedValues<T> {
    fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T: clap::ValueEnum + Unknown + Clone + Send + Sync + 'static> clap::builder::TypedValueParser
    for NamedValues<T>
{
    type Value = T;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<T, clap::Error> {
        let text = value.to_string_lossy();
        T::value_variants()
            .iter()
            .find(|v| {
                v.to_possible_value()
                    .is_some_and(|p| p.matches(&text, false))
            })
            .cloned()
            .ok_or_else(|| {
                clap::Error::raw(
                    clap::error::ErrorKind::InvalidValue,
                    format!("{}\n", T::unknown(&text)),
                )
            })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            T::value_variants()
                .iter()
                .filter_map(clap::ValueEnum::to_possible_value),
        ))
    }
}

value_enum!(
    /// `--variant`: the seven variants of the paper.
    VariantArg(laurel_passes::Variant),
    laurel_passes::Variant::NAMED,
    |v| v.name(),
    |v| v.equation().to_owned(),
    |s| match s.parse::<laurel_passes::Variant>() {
        Err(e) => e.to_string(),
        Ok(_) => format!(
            "`{s}`: give the variant by name; its parameters come from --rank, --pa-window, --pa-rank and --rw-param"
        ),
    }
);
value_enum!(
    /// `--rw-param`.
    RwParamArg(laurel_passes::RwParam),
    laurel_passes::RwParam::ALL,
    |p| p.name(),
    |p| p.help().to_owned(),
    |s| format!("unknown --rw-param `{s}` (expected raw, softmax, sigmoid or vector)")
);
value_enum!(
    /// `--init`.
    InitArg(laurel_passes::InitMode),
    laurel_passes::InitMode::ALL,
    |m| m.name(),
    |m| match m {
        laurel_passes::InitMode::Identity => {
            "function-preserving values (γ = 0, B = 0, α = β = 1)".to_owned()
        }
        laurel_passes::InitMode::Random => "seeded non-trivial values, for tests".to_owned(),
    },
    |s| format!("unknown --init `{s}` (expected identity or random)")
);

fn fuse(a: &FuseArgs) -> Result<()> {
    laurelc::pipeline::guard_output(&a.model, &a.output, a.force)?;
    let mut model = laurelc::onnx::import_path(&a.model)?;
    let opts = laurelc::fuse::FuseOptions {
        window_ops: a.window_ops,
        target: match a.target {
            TargetArg::Onnx => laurelc::fuse::Target::Onnx,
            TargetArg::Tract => laurelc::fuse::Target::Tract,
        },
        sizes: parse_dims(&a.dims)?
            .into_iter()
            .map(|(k, v)| (k, v.unsigned_abs()))
            .collect(),
        costs: parse_costs(&a.costs)?,
        ..laurelc::fuse::FuseOptions::default()
    };
    let summary = laurelc::fuse::fuse_model(&mut model, &opts)?;
    laurelc::onnx::write_path(&model, &a.output, &ExportOptions::default())?;
    println!(
        "{} -> {}: {} ops in, {} ops out; e-graph: {} classes, {} nodes, {} iterations, {}; cost {:.1} -> {:.1}",
        a.model.display(),
        a.output.display(),
        summary.ops_before,
        summary.ops_after,
        summary.classes,
        summary.nodes,
        summary.iterations,
        summary.stop,
        summary.cost_before,
        summary.cost_after,
    );
    if a.explain {
        println!("{}", laurelc::fuse::explain(&summary));
    }
    if summary.hit_limit {
        eprintln!(
            "warning: a limit stopped saturation before a fixed point ({}): the result is correct but may not be fully fused",
            summary.stop
        );
    }
    Ok(())
}

/// The tensors of `--input` arguments (`NAME=FILE.npy` or `FILE.npz`), a later one
/// replacing an earlier one of the same name.
fn given_inputs(args: &[String]) -> Result<Vec<(String, laurel_runtime::Tensor)>> {
    let mut given: Vec<(String, laurel_runtime::Tensor)> = Vec::new();
    for s in args {
        let loaded = if s.contains('=') {
            laurelc::check::read_inputs(&parse_inputs(std::slice::from_ref(s))?)?
        } else {
            laurel_runtime::read_npz(Path::new(s))?
        };
        for (name, t) in loaded {
            given.retain(|(n, _)| *n != name);
            given.push((name, t));
        }
    }
    Ok(given)
}

/// `laurelc profile`: the time of every node of tract's plan.
fn profile(a: &ProfileArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (model, inputs) = a.given.load(&a.model)?;
    let p = laurel_runtime::profile::profile(&model, &inputs, a.runs, a.warmup)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", p.to_table(a.top));
    }
    Ok(())
}

/// `laurelc bench`: the runtime's interleaved benchmark, printed as a table or JSON.
fn bench(a: &BenchArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (given, load) = a.given.parse()?;
    let opts = laurel_runtime::BenchOptions {
        runs: a.runs,
        warmup: a.warmup,
        seed: a.given.seed,
        rotate: a.rotate,
        loads: a.loads,
    };
    let paths: Vec<&Path> = std::iter::once(a.baseline.as_path())
        .chain(a.others.iter().map(PathBuf::as_path))
        .collect();
    let report = laurel_runtime::bench_files(&paths, &load, &given, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// `NAME=VALUE` given to `flag`, with VALUE a `T` (`what` names it in errors).
fn name_number<'a, T: std::str::FromStr>(
    flag: &str,
    arg: &'a str,
    what: &str,
) -> Result<(&'a str, T)>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let (k, v) = arg
        .split_once('=')
        .with_context(|| format!("{flag} `{arg}`: expected NAME=VALUE"))?;
    let v = v
        .parse()
        .with_context(|| format!("{flag} `{arg}`: `{v}` is not {what}"))?;
    Ok((k, v))
}

fn parse_dims(dims: &[String]) -> Result<BTreeMap<String, i64>> {
    dims.iter()
        .map(|d| {
            let (k, v) = name_number::<i64>("--dim", d, "an integer")?;
            if v < 0 {
                bail!("--dim `{d}`: a dimension cannot be negative");
            }
            Ok((k.to_string(), v))
        })
        .collect()
}

fn parse_costs(costs: &[String]) -> Result<laurel_passes::cost::CostParams> {
    let mut params = laurel_passes::cost::CostParams::default();
    for c in costs {
        let (k, v) = name_number::<f64>("--cost", c, "a number")?;
        params.set(k, v).with_context(|| format!("--cost `{c}`"))?;
    }
    Ok(params)
}

fn parse_shapes(shapes: &[String]) -> Result<BTreeMap<String, Vec<usize>>> {
    shapes
        .iter()
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("--shape `{s}`: expected NAME=1x3x224x224"))?;
            let dims = if v.is_empty() {
                Vec::new() // a scalar
            } else {
                v.split(['x', ','])
                    .map(|d| {
                        d.trim()
                            .parse::<usize>()
                            .with_context(|| format!("--shape `{s}`: `{d}` is not a size"))
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            Ok((k.to_string(), dims))
        })
        .collect()
}

fn parse_inputs(inputs: &[String]) -> Result<Vec<(String, PathBuf)>> {
    inputs
        .iter()
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("--input `{s}`: expected NAME=FILE.npy"))?;
            Ok((k.to_string(), PathBuf::from(v)))
        })
        .collect()
}

/// Output names made safe as file names: anything outside `[A-Za-z0-9_.-]` becomes `_`.
fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

fn run(a: &RunArgs) -> Result<()> {
    let (model, inputs) = a.given.load(&a.model)?;
    let outputs = model.run(inputs)?;
    if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output directory", dir.display()))?;
        let mut stems = std::collections::HashMap::new();
        for (name, _) in &outputs {
            if let Some(other) = stems.insert(file_stem(name), name) {
                bail!(
                    "outputs `{other}` and `{name}` would both be written to {}.npy",
                    file_stem(name)
                );
            }
        }
    }
    for (name, t) in &outputs {
        let s = laurel_runtime::summarize(t);
        println!(
            "{name}\t{}{:?}\tmin={:.6} max={:.6} mean={:.6} std={:.6}{}",
            s.dtype,
            s.shape,
            s.min,
            s.max,
            s.mean,
            s.std,
            if s.nan_count > 0 {
                format!(" nan={}", s.nan_count)
            } else {
                String::new()
            }
        );
        if let Some(dir) = &a.out_dir {
            let path = dir.join(format!("{}.npy", file_stem(name)));
            laurel_runtime::write_npy(&path, t)?;
        }
    }
    Ok(())
}

fn check(a: &CheckArgs) -> Result<()> {
    if !(a.rtol >= 0.0 && a.atol >= 0.0) {
        bail!("--rtol and --atol must be non-negative numbers");
    }
    let opts = CheckOptions {
        rtol: a.rtol,
        atol: a.atol,
        seed: a.seed,
        runs: a.runs,
        dims: parse_dims(&a.dims)?,
        shapes: parse_shapes(&a.shapes)?,
        inputs: parse_inputs(&a.inputs)?,
    };
    let report = check_models(&a.a, &a.b, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{:<40} {:>12} {:>12} {:>10}  status",
            "output", "max_abs", "max_rel", "mismatches"
        );
        for o in &report.outputs {
            let status = if o.ok {
                "ok"
            } else if o.incompatible {
                "INCOMPATIBLE"
            } else {
                "DIFFERS"
            };
            println!(
                "{:<40} {:>12.3e} {:>12.3e} {:>10}  {status}",
                o.name, o.max_abs, o.max_rel, o.mismatches
            );
        }
        println!(
            "{} runs, rtol={}, atol={}: {}",
            report.runs,
            a.rtol,
            a.atol,
            if report.passed { "PASS" } else { "FAIL" }
        );
    }
    if report.passed {
        Ok(())
    } else {
        Err(CheckFailed.into())
    }
}

fn inspect(a: &InspectArgs) -> Result<()> {
    let model = laurelc::onnx::import_path(&a.model)?;
    let s = laurelc::inspect::summarize(&model);
    // The residual analysis needs tract's shape inference; a model tract cannot
    // analyse still gets its summary, with the reason in place of residuals.
    let analysis = laurelc::analysis::analyse_residuals(&model).unwrap_or_else(|e| {
        laurelc::analysis::ResidualAnalysis {
            residuals: Vec::new(),
            shape_strategy: format!("unavailable: {e}"),
        }
    });
    if let Some(dot) = &a.dot {
        laurelc::pipeline::guard_output(&a.model, dot, false)?;
        let name = a
            .model
            .file_stem()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let text = laurelc::analysis::dot::streams_dot(&name, &analysis.residuals);
        laurelc::fsutil::write_atomically(dot, |w| w.write_all(text.as_bytes()))?;
    }
    if a.json {
        let mut j = serde_json::to_value(&s)?;
        j["residuals"] = serde_json::to_value(&analysis.residuals)?;
        j["shape_inference"] = serde_json::Value::from(analysis.shape_strategy.as_str());
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    print_summary(&a.model, &s, &analysis);
    Ok(())
}

/// The text form of `laurelc inspect`.
fn print_summary(
    path: &Path,
    s: &laurelc::inspect::ModelSummary,
    analysis: &laurelc::analysis::ResidualAnalysis,
) {
    println!("model: {}", path.display());
    println!("ir_version: {}", s.ir_version);
    let opsets: Vec<String> = s
        .opsets
        .iter()
        .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
        .collect();
    println!("opsets: {}", opsets.join(", "));
    if !s.producer.is_empty() {
        println!("producer: {}", s.producer);
    }
    let fmt_value = |v: &laurelc::inspect::ValueSummary| {
        let shape = v.shape.as_ref().map_or_else(
            || "unknown rank".to_string(),
            |d| format!("[{}]", d.join(", ")),
        );
        format!("  {} {} {shape}", v.name, v.dtype)
    };
    println!("inputs:");
    s.inputs.iter().for_each(|v| println!("{}", fmt_value(v)));
    println!("outputs:");
    s.outputs.iter().for_each(|v| println!("{}", fmt_value(v)));
    println!(
        "nodes: {} ({} with subgraphs)",
        s.node_count, s.ops_with_subgraphs
    );
    for (op, n) in &s.op_counts {
        println!("  {op}: {n}");
    }
    println!(
        "parameters: {} ({} bytes)",
        s.parameter_count, s.parameter_bytes
    );
    println!("{}", laurelc::inspect::flops_line(s));
    println!(
        "external data: {}",
        if s.external_data { "yes" } else { "no" }
    );
    if !s.laurel_parameters.is_empty() {
        let total: u64 = s.laurel_parameters.values().sum();
        let per_block: Vec<String> = s
            .laurel_parameters
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        println!(
            "LAuReL parameters: {total} in {} blocks ({})",
            s.laurel_parameters.len(),
            per_block.join(", ")
        );
    }
    if s.functions > 0 {
        println!("functions: {}", s.functions);
    }
    let identity = analysis
        .residuals
        .iter()
        .filter(|r| r.kind == laurelc::analysis::ResidualKind::Identity)
        .count();
    println!(
        "residuals: {} ({identity} identity, {} projection; shapes by tract, {})",
        analysis.residuals.len(),
        analysis.residuals.len() - identity,
        analysis.shape_strategy
    );
    for r in &analysis.residuals {
        println!(
            "  stream {} #{}: {} {:?} D={} axis={} skip={} branch={} ({} ops)",
            r.stream,
            r.index,
            r.name,
            r.kind,
            r.channels.map_or_else(|| "?".into(), |d| d.to_string()),
            r.axis,
            r.skip,
            r.branch,
            r.branch_ops
        );
    }
}
