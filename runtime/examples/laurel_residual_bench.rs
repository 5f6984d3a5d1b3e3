//! Microbenchmark of the two implementations of `ai.laurel::LaurelResidual`
//! (`laurel_runtime::ops::laurel_residual::Implementation`): the expansion into tract
//! core ops, the single-pass kernel, and `auto`, which picks one of them per node. Results and the command are in
//! docs/laurel-op.md, "Measurements".
//!
//! ```text
//! cargo run --release -p laurel-runtime --example laurel_residual_bench -- [--runs N] [--warmup N] [--graph] [--type f16|f32|f64]
//! ```
//!
//! For every scenario, every implementation loads the same model the way
//! `laurel_runtime::load`'s default strategy does (concrete shapes, decluttered and
//! optimised), their outputs are compared with the expansion's (a difference is
//! reported), then they run in
//! interleaved rounds (each round runs each implementation once, round `r` starting
//! with implementation `r mod N`); each run is timed alone. It prints, per scenario,
//! the median time of each implementation and the median over rounds of its time over
//! the expansion's time in the same round. `--graph` also prints the optimised ops of
//! each plan.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use laurel_runtime::ops::laurel_residual::{self, Implementation};
use laurel_runtime::tract_onnx::pb;
use laurel_runtime::tract_onnx::pb::tensor_proto::DataType;
use laurel_runtime::tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use laurel_runtime::tract_onnx::prelude::{
    DatumType, Framework, InferenceModelExt, IntoRunnable, IntoTValue, TValue, TVec, Tensor,
    TractResult, TypedSimplePlan,
};
use laurel_runtime::tract_onnx::tract_hir::internal::bail;
use prost::Message;

fn value_info(name: &str, elem: DataType, dims: &[usize]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| pb::tensor_shape_proto::Dimension {
            value: Some(DimValue::DimValue(i64::try_from(d).unwrap_or(i64::MAX))),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, domain: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.to_owned()],
        name: format!("{op}_{output}"),
        op_type: op.to_owned(),
        domain: domain.to_owned(),
        ..Default::default()
    }
}

/// Deterministic values in [-1, 1).
fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // 24 random bits, exactly representable.
            #[allow(clippy::cast_precision_loss)]
            let u = (state >> 40) as f32 / 16_777_216.0;
            2.0 * u - 1.0
        })
        .collect()
}

/// The f32 weight `W` as the model's element type: `W` itself, or a `Cast` of it
/// (appended to `nodes`).
fn cast_weight(nodes: &mut Vec<pb::NodeProto>, elem: DataType) -> String {
    if elem == DataType::Float {
        return "W".to_owned();
    }
    let mut cast = node("Cast", "", &["W"], "Wc");
    cast.attribute.push(pb::AttributeProto {
        name: "to".into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: elem as i64,
        ..Default::default()
    });
    nodes.push(cast);
    "Wc".to_owned()
}

fn weight(name: &str, dims: &[usize], seed: u64) -> pb::TensorProto {
    let len = dims.iter().product();
    pb::TensorProto {
        name: name.to_owned(),
        dims: dims
            .iter()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect(),
        data_type: DataType::Float as i32,
        float_data: data(len, seed),
        ..Default::default()
    }
}

/// How the residual branch `f` is produced.
#[derive(Clone, Copy)]
enum Producer {
    /// `f` is a model input: the op alone.
    Input,
    /// `f = MatMul(a, W)`, `W` of shape `[D, D]`, `a` of the output's shape.
    MatMul,
    /// `f = Conv(a, W)`, 3×3, padding 1, `C → C` channels, NCHW.
    Conv,
}

struct Scenario {
    name: &'static str,
    shape: &'static [usize],
    /// The shape of `h`, when not `shape`.
    h_shape: Option<&'static [usize]>,
    producer: Producer,
    coefficients: Option<&'static [f32]>,
}

const RW: &[f32] = &[0.7, 1.3, 0.25];
const F_ONLY: &[f32] = &[0.7, 1.0, 1.0];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "MatMul→LR(f,x,h) c=[.7,1.3,.25]",
        shape: &[1, 128, 384],
        h_shape: None,
        producer: Producer::MatMul,
        coefficients: Some(RW),
    },
    Scenario {
        name: "MatMul→LR(f,x,h) c=[.7,1.3,.25]",
        shape: &[8, 128, 384],
        h_shape: None,
        producer: Producer::MatMul,
        coefficients: Some(RW),
    },
    Scenario {
        name: "MatMul→LR(f,x,h) c=[.7,1,1]",
        shape: &[8, 128, 384],
        h_shape: None,
        producer: Producer::MatMul,
        coefficients: Some(F_ONLY),
    },
    Scenario {
        name: "MatMul→LR(f,x,h) no coefficients",
        shape: &[8, 128, 384],
        h_shape: None,
        producer: Producer::MatMul,
        coefficients: None,
    },
    Scenario {
        name: "LR(f,x,h) alone c=[.7,1.3,.25]",
        shape: &[1, 128, 384],
        h_shape: None,
        producer: Producer::Input,
        coefficients: Some(RW),
    },
    Scenario {
        name: "LR(f,x,h) alone c=[.7,1.3,.25]",
        shape: &[8, 128, 384],
        h_shape: None,
        producer: Producer::Input,
        coefficients: Some(RW),
    },
    Scenario {
        name: "LR(f,x,h[384]) alone c=[.7,1.3,.25]",
        shape: &[8, 128, 384],
        h_shape: Some(&[384]),
        producer: Producer::Input,
        coefficients: Some(RW),
    },
    Scenario {
        name: "LR(f,x,h) alone c=[.7,1.3,.25]",
        shape: &[1, 64, 56, 56],
        h_shape: None,
        producer: Producer::Input,
        coefficients: Some(RW),
    },
    Scenario {
        name: "LR(f,x,h) alone c=[.7,1,1]",
        shape: &[1, 64, 56, 56],
        h_shape: None,
        producer: Producer::Input,
        coefficients: Some(F_ONLY),
    },
    Scenario {
        name: "LR(f,x,h) alone no coefficients",
        shape: &[1, 64, 56, 56],
        h_shape: None,
        producer: Producer::Input,
        coefficients: None,
    },
    Scenario {
        name: "Conv3x3→LR(f,x,h) c=[.7,1.3,.25]",
        shape: &[1, 64, 56, 56],
        h_shape: None,
        producer: Producer::Conv,
        coefficients: Some(RW),
    },
];

impl Scenario {
    fn label(&self) -> String {
        let shape: Vec<String> = self.shape.iter().map(ToString::to_string).collect();
        format!("{} [{}]", self.name, shape.join(","))
    }

    fn model(&self, elem: DataType) -> Vec<u8> {
        let shape = self.shape;
        let mut nodes = vec![];
        let mut initializers = vec![];
        let branch = match self.producer {
            Producer::Input => "a",
            Producer::MatMul => {
                let d = shape[shape.len() - 1];
                initializers.push(weight("W", &[d, d], 7));
                let w = cast_weight(&mut nodes, elem);
                nodes.push(node("MatMul", "", &["a", &w], "f"));
                "f"
            }
            Producer::Conv => {
                let c = shape[1];
                initializers.push(weight("W", &[c, c, 3, 3], 7));
                let w = cast_weight(&mut nodes, elem);
                let mut conv = node("Conv", "", &["a", &w], "f");
                conv.attribute.push(pb::AttributeProto {
                    name: "pads".into(),
                    r#type: pb::attribute_proto::AttributeType::Ints as i32,
                    ints: vec![1, 1, 1, 1],
                    ..Default::default()
                });
                nodes.push(conv);
                "f"
            }
        };
        let mut lr = node("LaurelResidual", "ai.laurel", &[branch, "x", "h"], "y");
        if let Some(c) = self.coefficients {
            lr.attribute.push(pb::AttributeProto {
                name: "coefficients".into(),
                r#type: pb::attribute_proto::AttributeType::Floats as i32,
                floats: c.to_vec(),
                ..Default::default()
            });
        }
        nodes.push(lr);
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![
                pb::OperatorSetIdProto {
                    domain: String::new(),
                    version: 13,
                },
                pb::OperatorSetIdProto {
                    domain: "ai.laurel".into(),
                    version: 1,
                },
            ],
            graph: Some(pb::GraphProto {
                node: nodes,
                name: "bench".into(),
                initializer: initializers,
                input: vec![
                    value_info("a", elem, shape),
                    value_info("x", elem, shape),
                    value_info("h", elem, self.h_shape.unwrap_or(shape)),
                ],
                output: vec![value_info("y", elem, shape)],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn inputs(&self, dt: DatumType) -> TractResult<TVec<TValue>> {
        let shapes = [self.shape, self.shape, self.h_shape.unwrap_or(self.shape)];
        (1..=3)
            .zip(shapes)
            .map(|(seed, shape)| {
                let len = shape.iter().product();
                let t = Tensor::from_shape(shape, &data(len, seed))?;
                Ok(t.cast_to_dt(dt)?.into_owned().into_tvalue())
            })
            .collect()
    }
}

fn plan(bytes: &[u8], imp: Implementation) -> TractResult<Arc<TypedSimplePlan>> {
    let proto = pb::ModelProto::decode(bytes)?;
    let mut onnx = laurel_runtime::tract_onnx::onnx();
    laurel_residual::register(&mut onnx, imp);
    onnx.model_for_proto_model(&proto)?
        .into_optimized()?
        .into_runnable()
}

fn time(plan: &Arc<TypedSimplePlan>, inputs: &TVec<TValue>) -> TractResult<Duration> {
    let inputs = inputs.clone();
    let start = Instant::now();
    let out = plan.run(inputs)?;
    let elapsed = start.elapsed();
    drop(out);
    Ok(elapsed)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

struct Options {
    runs: usize,
    warmup: usize,
    graph: bool,
    elem: DataType,
    dt: DatumType,
}

fn options() -> TractResult<Options> {
    let mut o = Options {
        runs: 30,
        warmup: 3,
        graph: false,
        elem: DataType::Float,
        dt: DatumType::F32,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => o.runs = args.next().unwrap_or_default().parse()?,
            "--warmup" => o.warmup = args.next().unwrap_or_default().parse()?,
            "--graph" => o.graph = true,
            "--type" => {
                (o.elem, o.dt) = match args.next().unwrap_or_default().as_str() {
                    "f16" => (DataType::Float16, DatumType::F16),
                    "f32" => (DataType::Float, DatumType::F32),
                    "f64" => (DataType::Double, DatumType::F64),
                    t => bail!("unknown --type `{t}` (known: f16, f32, f64)"),
                }
            }
            _ => bail!(
                "unknown argument `{a}` (known: --runs N, --warmup N, --graph, --type f16|f32|f64)"
            ),
        }
    }
    Ok(o)
}

fn main() -> TractResult<()> {
    let o = options()?;
    let imps = Implementation::ALL;
    let n = imps.len();
    println!(
        "{:?}; {} rounds after {} warm-up rounds, each round running {} in rotating order; \
         times are medians in ms; ratios are medians over rounds of the time over the \
         expansion's time in the same round",
        o.dt,
        o.runs,
        o.warmup,
        imps.map(Implementation::name).join(", ")
    );
    let mut header = "| scenario |".to_owned();
    let mut rule = "|---|".to_owned();
    for imp in imps {
        write!(header, " {imp} (ms) |")?;
        rule += "---:|";
    }
    for imp in &imps[1..] {
        write!(header, " {imp} / expansion |")?;
        rule += "---:|";
    }
    println!("{header}\n{rule}");
    for s in SCENARIOS {
        let bytes = s.model(o.elem);
        let plans = imps
            .iter()
            .map(|&imp| plan(&bytes, imp))
            .collect::<TractResult<Vec<_>>>()?;
        let inputs = s.inputs(o.dt)?;
        let reference = plans[0].run(inputs.clone())?;
        let reference = &reference[0];
        for (imp, p) in imps.iter().zip(&plans) {
            let out = p.run(inputs.clone())?;
            if out[0].datum_type() != o.dt
                || out[0].shape() != reference.shape()
                || out[0].as_bytes() != reference.as_bytes()
            {
                println!(
                    "  {}: {imp} is not bit-identical to the expansion",
                    s.label()
                );
            }
            if o.graph {
                let ops: Vec<String> = p
                    .model()
                    .nodes()
                    .iter()
                    .map(|n| n.op.name().to_string())
                    .filter(|name| !name.starts_with("Source") && !name.starts_with("Const"))
                    .collect();
                println!("  {} {imp}: {}", s.label(), ops.join(" → "));
            }
        }
        for round in 0..o.warmup {
            for k in 0..n {
                time(&plans[(round + k) % n], &inputs)?;
            }
        }
        let mut samples = vec![vec![]; n];
        let mut ratios = vec![vec![]; n];
        for round in 0..o.runs {
            let mut t = vec![0.0; n];
            for k in 0..n {
                let ix = (round + k) % n;
                t[ix] = time(&plans[ix], &inputs)?.as_secs_f64() * 1e3;
                samples[ix].push(t[ix]);
            }
            for ix in 0..n {
                ratios[ix].push(t[ix] / t[0]);
            }
        }
        let mut row = format!("| {} |", s.label());
        for v in &mut samples {
            write!(row, " {:.3} |", median(v))?;
        }
        for r in &mut ratios[1..] {
            write!(row, " {:.2} |", median(r))?;
        }
        println!("{row}");
    }
    Ok(())
}
