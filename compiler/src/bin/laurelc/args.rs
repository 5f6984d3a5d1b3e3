//! What several commands share: the value enums over the libraries' types,
//! the inputs of a run (`--input`, `--seed`, `--dim`, `--shape`), and the
//! `NAME=VALUE` parsers.

use std::collections::BTreeMap;
use std::path::Path;

use std::io::Write as _;

use anyhow::{Context, Result, bail};
use clap::Args;
use laurel_runtime::{InputSource, LoadOptions, Runnable, Tensor};

/// A clap value enum over a library type: the values are `$all`, named by
/// `$name` and explained by `$help`, so `--help` lists them and shells
/// complete them. Parsing ([`NamedValues`]) takes a value's name; anything
/// else goes to the type's own `FromStr`, whose message says what is wrong
/// (`unknown variant …`).
macro_rules! value_enum {
    ($(#[$doc:meta])* $arg:ident($ty:ty), $all:expr, $name:expr, $help:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $arg(pub $ty);

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
                match value.parse::<$ty>() {
                    Err(e) => e.to_string(),
                    Ok(_) => format!(
                        "`{value}`: give it by name; its parameters come from their own flags"
                    ),
                }
            }
        }
    };
}

/// Why a value a [`value_enum!`] type lists is not this one: the library's
/// own parser's message.
pub trait Unknown {
    /// What is wrong with `value`.
    fn unknown(value: &str) -> String;
}

/// Parses a [`clap::ValueEnum`] by its values' names, listing them for help
/// and completion like clap's own enum parser, with the library's message
/// for anything else.
#[derive(Clone)]
pub struct NamedValues<T>(std::marker::PhantomData<T>);

impl<T> NamedValues<T> {
    /// The parser.
    pub fn new() -> Self {
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
    |v| v.equation().to_owned()
);
value_enum!(
    /// `--rw-param`.
    RwParamArg(laurel_passes::RwParam),
    laurel_passes::RwParam::ALL,
    |p| p.name(),
    |p| p.help().to_owned()
);
value_enum!(
    /// `--init`.
    InitArg(laurel_passes::InitMode),
    laurel_passes::InitMode::ALL,
    |m| m.name(),
    |m| m.help().to_owned()
);
value_enum!(
    /// `--loss`.
    LossArg(laurelc::autodiff::Loss),
    laurelc::autodiff::Loss::ALL,
    |l| l.name(),
    |l| l.help().to_owned()
);
value_enum!(
    /// `--optimizer`.
    OptimizerArg(laurel_runtime::train::OptimizerKind),
    laurel_runtime::train::OptimizerKind::ALL,
    |k| k.name(),
    |k| k.help().to_owned()
);
value_enum!(
    /// `--schedule`.
    ScheduleArg(laurel_runtime::train::ScheduleKind),
    laurel_runtime::train::ScheduleKind::ALL,
    |k| k.name(),
    |k| k.help().to_owned()
);
value_enum!(
    /// `--target`.
    TargetArg(laurelc::fuse::Target),
    laurelc::fuse::Target::ALL,
    |t| t.name(),
    |t| t.help().to_owned()
);

/// The inputs of `run`, `check`, `bench` and `profile`: given ones, random
/// ones, and the sizes of symbolic dimensions.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Seed for random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The value of a symbolic dimension, as NAME=VALUE (default 1).
    #[arg(long = "dim", value_name = "NAME=VALUE")]
    pub dims: Vec<String>,
    /// The shape of a random input, as NAME=1x3x224x224.
    #[arg(long = "shape", value_name = "NAME=SHAPE")]
    pub shapes: Vec<String>,
    /// An input from a .npy file, as NAME=FILE.npy; or an .npz file holding inputs by name.
    #[arg(long = "input", value_name = "NAME=FILE|FILE.npz")]
    pub inputs: Vec<InputSource>,
}

impl InputArgs {
    /// The given inputs (`--input`, a later one replacing an earlier one of
    /// the same name), and the load options of `--dim` and `--shape`.
    pub fn parse(&self) -> Result<(Vec<(String, Tensor)>, LoadOptions)> {
        let given = laurel_runtime::inputs::read_given(&self.inputs)?;
        let load = LoadOptions {
            dims: parse_dims(&self.dims)?,
            shapes: parse_shapes(&self.shapes)?,
            ..LoadOptions::default()
        };
        Ok((given, load))
    }

    /// `model` loaded and sized by the given inputs, and every input of it:
    /// the given ones and seeded random values for the rest.
    pub fn load(&self, model: &Path) -> Result<(Runnable, Vec<(String, Tensor)>)> {
        let (given, load) = self.parse()?;
        let runnable = laurel_runtime::inputs::load_sized(model, &load, &given)?;
        note_chosen_sizes(model, &runnable);
        let inputs = laurel_runtime::inputs::complete(&runnable, &given, self.seed)?;
        Ok((runnable, inputs))
    }
}

/// Says on stderr which sizes the loader chose for symbols left unset, when
/// the model does not load with them at 1 or computes empty outputs there.
pub fn note_chosen_sizes(model: &Path, runnable: &Runnable) {
    let sizes = runnable.chosen_sizes();
    if !sizes.is_empty() {
        eprintln!(
            "note: {} does not load, or computes empty outputs, with its symbolic sizes at 1; running it at {} (set them with --dim NAME=SIZE, `?` ones with --shape)",
            model.display(),
            laurel_runtime::sizes_text(sizes)
        );
    }
}

/// How a model is trained: the optimizer, its schedule, and the run's
/// length, shared by `train` and `distill` (where every round trains so).
#[derive(Debug, Args)]
pub struct OptimArgs {
    /// The optimizer.
    #[arg(long, default_value = "adamw", value_parser = NamedValues::<OptimizerArg>::new())]
    pub optimizer: OptimizerArg,
    /// The (peak) learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// SGD's momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// The learning-rate schedule.
    #[arg(long, default_value = "constant", value_parser = NamedValues::<ScheduleArg>::new())]
    pub schedule: ScheduleArg,
    /// Warm-up updates of the cosine schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Clip the gradients' global L2 norm to this.
    #[arg(long, value_name = "NORM")]
    pub clip_norm: Option<f32>,
    /// Epochs (of each round, for `distill`).
    #[arg(long, default_value_t = 10)]
    pub epochs: u64,
    /// Examples per update (default: the model's fixed batch axis, else 32).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// The seed of the shuffle (and of `distill`'s selection).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Refuses a flag's value that is not a positive finite number.
///
/// # Errors
/// When `v` is not one.
pub fn positive(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        bail!("{name} {v}: expected a positive number")
    }
}

impl OptimArgs {
    /// The runtime's options of the run, the flags checked.
    ///
    /// # Errors
    /// A rate, norm or decay out of range, momentum outside [0, 1), 0 epochs.
    pub fn run_options(&self) -> Result<laurel_runtime::train::TrainOptions> {
        use laurel_runtime::train::{Optimizer, OptimizerKind, Schedule, ScheduleKind};
        positive("--lr", f64::from(self.lr))?;
        if let Some(c) = self.clip_norm {
            positive("--clip-norm", f64::from(c))?;
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            bail!(
                "--weight-decay {}: expected a non-negative number",
                self.weight_decay
            );
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("--momentum {}: expected a number in [0, 1)", self.momentum);
        }
        if self.epochs == 0 {
            bail!("--epochs 0: expected at least one epoch");
        }
        Ok(laurel_runtime::train::TrainOptions {
            epochs: self.epochs,
            seed: self.seed,
            optimizer: match self.optimizer.0 {
                OptimizerKind::AdamW => Optimizer::adamw(self.weight_decay),
                OptimizerKind::Sgd => Optimizer::Sgd {
                    momentum: self.momentum,
                    weight_decay: self.weight_decay,
                },
            },
            lr: self.lr,
            schedule: match self.schedule.0 {
                ScheduleKind::Constant => Schedule::Constant,
                ScheduleKind::Cosine => Schedule::Cosine {
                    warmup: self.warmup,
                },
            },
            clip_norm: self.clip_norm,
            columns: Vec::new(),
            prediction: None,
            float_loss: laurel_runtime::train::metrics::FloatLoss::default(),
            step: String::new(),
        })
    }
}

/// Refuses a report path whose directory does not exist, before the work
/// whose report it would hold.
///
/// # Errors
/// When the directory is missing.
pub fn check_report_dir(path: Option<&Path>) -> Result<()> {
    if let Some(path) = path {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            bail!("{}: the report's directory does not exist", path.display());
        }
    }
    Ok(())
}

/// What a training step differentiates, shared by `grad` and `train`.
#[derive(Debug, Args)]
pub struct StepArgs {
    /// The loss.
    #[arg(long, default_value = "ce", value_parser = NamedValues::<LossArg>::new())]
    pub loss: LossArg,
    /// The temperature of the kd loss.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Which tensors train: `laurel` (the `LAuReL` parameters), `all` (every float weight but
    /// batch-norm statistics), or name globs (`*`, `?`); repeat for several globs.
    #[arg(
        long = "train",
        value_name = "laurel|all|GLOB",
        default_value = "laurel"
    )]
    pub train: Vec<String>,
    /// The model output the loss reads (default: the first).
    #[arg(long = "prediction", value_name = "OUTPUT")]
    pub prediction: Option<String>,
}

/// `NAME=VALUE` given to `flag`, with VALUE a `T` (`what` names it in errors).
pub fn name_number<'a, T: std::str::FromStr>(
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

/// `--input NAME=KEY`s: a model input and the data key it reads.
pub fn parse_input_keys(values: &[String]) -> Result<Vec<(String, String)>> {
    values
        .iter()
        .map(|s| match s.split_once('=') {
            Some((name, key)) if !name.is_empty() && !key.is_empty() => {
                Ok((name.to_owned(), key.to_owned()))
            }
            _ => anyhow::bail!("--input `{s}`: expected NAME=KEY"),
        })
        .collect()
}

/// `--dim NAME=VALUE`s.
pub fn parse_dims(dims: &[String]) -> Result<BTreeMap<String, i64>> {
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

/// `--cost NAME=VALUE`s over the calibrated constants.
pub fn parse_costs(costs: &[String]) -> Result<laurel_passes::cost::CostParams> {
    let mut params = laurel_passes::cost::CostParams::default();
    for c in costs {
        let (k, v) = name_number::<f64>("--cost", c, "a number")?;
        params.set(k, v).with_context(|| format!("--cost `{c}`"))?;
    }
    Ok(params)
}

/// `--shape NAME=1x3x224x224`s (`NAME=` for a scalar).
pub fn parse_shapes(shapes: &[String]) -> Result<BTreeMap<String, Vec<usize>>> {
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

/// Standard output went away (`laurelc inspect m.onnx | head`): the command
/// stops, and laurelc exits quietly.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `text` to standard output (every command prints through this, so a
/// closed pipe is an error the command returns, not a panic).
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                anyhow::Error::new(StdoutClosed)
            } else {
                anyhow::Error::new(e).context("writing to standard output")
            }
        })
}

/// [`emit`] with a newline.
pub fn emit_line(text: &str) -> Result<()> {
    emit(&format!("{text}\n"))
}
