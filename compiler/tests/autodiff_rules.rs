//! Every gradient rule, checked by central finite differences on its
//! one-node graph, run on tract.
//!
//! Each case is one op with random inputs, every float input an initializer
//! that trains; the step model's loss is the mean squared error against a
//! random target. Along three random directions `v`, the directional
//! derivative `(L(θ + h·v) − L(θ − h·v)) / 2h` of the step's own loss output
//! must equal `Σ ⟨∂L/∂θ, v⟩` from its gradient outputs. Cases run in float64
//! (h = 1e-6, relative tolerance 1e-6) where tract has the kernels, and in
//! float32 otherwise (h = 1e-2, relative tolerance 1e-3), plus the rounding
//! error of the two losses' difference (4 ulps of the loss over 2h).
//! The loss itself is checked against the MSE of the step's own output.
#![allow(clippy::pedantic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use laurel_runtime::{LoadOptions, ModelSource, Tensor};
use laurelc::autodiff::{GradOptions, Loss, TrainSpec, grad_name, training_step};
use onnx_protobuf::{AttributeProto, GraphProto, ModelProto, OperatorSetIdProto, TensorProto};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use laurelc::ir::attr::{make_float, make_int, make_ints, make_string};

/// How an input of a case is made.
#[derive(Clone)]
enum Input {
    /// Random normal floats; trains.
    Param(Vec<i64>),
    /// Random floats in [0.5, 2); trains.
    Positive(Vec<i64>),
    /// Given floats; frozen.
    Frozen(Vec<i64>, Vec<f64>),
    /// Given float32 values whatever the case's precision (`Resize`'s
    /// scales); frozen.
    Scales(Vec<f64>),
    /// Given int64 values; frozen.
    Ints(Vec<i64>, Vec<i64>),
    /// Given booleans; frozen.
    Bools(Vec<i64>, Vec<bool>),
    /// Absent (an optional input left out).
    Absent,
    /// Random normal floats held by a `Constant` node (as Paddle2ONNX
    /// writes weights); trains.
    ConstNode(Vec<i64>),
}

struct Case {
    name: &'static str,
    op: &'static str,
    inputs: Vec<Input>,
    attrs: Vec<AttributeProto>,
    outputs: usize,
    opset: i64,
    f64: bool,
}

fn case(name: &'static str, op: &'static str, inputs: Vec<Input>) -> Case {
    Case {
        name,
        op,
        inputs,
        attrs: Vec::new(),
        outputs: 1,
        opset: 17,
        f64: true,
    }
}

impl Case {
    fn attrs(mut self, a: Vec<AttributeProto>) -> Self {
        self.attrs = a;
        self
    }
    fn opset(mut self, v: i64) -> Self {
        self.opset = v;
        self
    }
    fn outputs(mut self, n: usize) -> Self {
        self.outputs = n;
        self
    }
    fn f32(mut self) -> Self {
        self.f64 = false;
        self
    }
}

use Input::{Absent, Bools, ConstNode, Frozen, Ints, Param, Positive, Scales};

fn p(d: &[i64]) -> Input {
    Param(d.to_vec())
}
fn pos(d: &[i64]) -> Input {
    Positive(d.to_vec())
}
fn ints(d: &[i64], v: &[i64]) -> Input {
    Ints(d.to_vec(), v.to_vec())
}

fn float_tensor(name: &str, dims: &[i64], values: &[f64], f64: bool) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: if f64 { 11 } else { 1 },
        raw_data: if f64 {
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        } else {
            values
                .iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect()
        },
        ..Default::default()
    }
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box–Muller.
    let (u, v): (f64, f64) = (rng.random_range(1e-9..1.0), rng.random_range(0.0..1.0));
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The case's model, and its trainable tensors with their values.
/// A trainable tensor: name, dims, values.
type Trained = (String, Vec<i64>, Vec<f64>);

fn build(c: &Case, rng: &mut StdRng) -> (ModelProto, Vec<Trained>) {
    let mut inits = Vec::new();
    let mut names = Vec::new();
    let mut nodes = Vec::new();
    let mut params = Vec::new();
    for (i, input) in c.inputs.iter().enumerate() {
        let name = format!("in{i}");
        match input {
            ConstNode(d) => {
                let n: i64 = d.iter().product();
                let values: Vec<f64> = (0..n).map(|_| normal(rng)).collect();
                let mut t = float_tensor("", d, &values, c.f64);
                t.name.clear();
                nodes.push(onnx_protobuf::NodeProto {
                    op_type: "Constant".into(),
                    output: vec![name.clone()],
                    attribute: vec![laurelc::ir::attr::make_tensor("value", t)],
                    ..Default::default()
                });
                params.push((name.clone(), d.clone(), values));
            }
            Param(d) | Positive(d) => {
                let n: i64 = d.iter().product();
                let values: Vec<f64> = (0..n)
                    .map(|_| {
                        if matches!(input, Positive(_)) {
                            rng.random_range(0.5..2.0)
                        } else {
                            normal(rng)
                        }
                    })
                    .collect();
                inits.push(float_tensor(&name, d, &values, c.f64));
                params.push((name.clone(), d.clone(), values));
            }
            Frozen(d, v) => inits.push(float_tensor(&name, d, v, c.f64)),
            Scales(v) => inits.push(float_tensor(&name, &[v.len() as i64], v, false)),
            Ints(d, v) => inits.push(TensorProto {
                name: name.clone(),
                dims: d.clone(),
                data_type: 7,
                int64_data: v.clone(),
                ..Default::default()
            }),
            Bools(d, v) => inits.push(TensorProto {
                name: name.clone(),
                dims: d.clone(),
                data_type: 9,
                int32_data: v.iter().map(|&b| i32::from(b)).collect(),
                ..Default::default()
            }),
            Absent => {
                names.push(String::new());
                continue;
            }
        }
        names.push(name);
    }
    let outputs: Vec<String> = (0..c.outputs).map(|k| format!("y{k}")).collect();
    let node = onnx_protobuf::NodeProto {
        op_type: c.op.into(),
        name: c.name.into(),
        input: names,
        output: outputs.clone(),
        attribute: c.attrs.clone(),
        ..Default::default()
    };
    let graph = GraphProto {
        name: c.name.into(),
        node: nodes.into_iter().chain(std::iter::once(node)).collect(),
        initializer: inits,
        output: vec![onnx_protobuf::ValueInfoProto {
            name: outputs[0].clone(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: c.opset,
            ..Default::default()
        }],
        graph: Some(graph).into(),
        ..Default::default()
    };
    (model, params)
}

fn tensor(dims: &[i64], values: &[f64], f64: bool) -> Tensor {
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    if f64 {
        Tensor::from_shape(&shape, values).unwrap()
    } else {
        let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        Tensor::from_shape(&shape, &v).unwrap()
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    if let Ok(s) = t.to_plain_array_view::<f64>() {
        s.iter().copied().collect()
    } else {
        t.to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .map(|&x| f64::from(x))
            .collect()
    }
}

fn check(c: &Case) {
    let mut rng = StdRng::seed_from_u64(7);
    let (proto, params) = build(c, &mut rng);
    let model = laurelc::onnx::import_bytes(&common::bytes(&proto), c.name).unwrap();
    let opts = GradOptions {
        loss: Loss::Mse,
        train: TrainSpec::Globs(params.iter().map(|p| p.0.clone()).collect()),
        ..GradOptions::default()
    };
    let (step, report) = training_step(&model, &opts)
        .unwrap_or_else(|e| panic!("{}: no training step: {e}", c.name));
    let bytes = laurelc::onnx::to_bytes(&step).unwrap();
    if let Some(dir) = std::env::var_os("LAURELC_DUMP_STEPS") {
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{}.onnx", c.name)),
            &bytes,
        )
        .unwrap();
    }
    let runnable = laurel_runtime::load(ModelSource::Bytes(&bytes), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{}: tract cannot load the step: {e}", c.name));
    let target_values: Vec<f64> = (0..report.target.dims.iter().product::<i64>())
        .map(|_| normal(&mut rng))
        .collect();
    let run = |theta: &[Vec<f64>]| -> Vec<(String, Tensor)> {
        let mut inputs = vec![(
            "target".to_owned(),
            tensor(&report.target.dims, &target_values, c.f64),
        )];
        for ((name, dims, _), v) in params.iter().zip(theta) {
            inputs.push((name.clone(), tensor(dims, v, c.f64)));
        }
        runnable
            .run(inputs)
            .unwrap_or_else(|e| panic!("{}: tract cannot run the step: {e}", c.name))
    };
    let theta: Vec<Vec<f64>> = params.iter().map(|p| p.2.clone()).collect();
    let out = run(&theta);
    let get = |out: &[(String, Tensor)], name: &str| -> Vec<f64> {
        values(&out.iter().find(|(n, _)| n == name).unwrap().1)
    };
    // The loss is the MSE of the model's own output.
    let y = get(&out, "y0");
    let mse: f64 = y
        .iter()
        .zip(&target_values)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / y.len() as f64;
    let loss = get(&out, "loss")[0];
    let tol = if c.f64 { 1e-9 } else { 1e-4 };
    assert!(
        (loss - mse).abs() <= tol * (1.0 + mse.abs()),
        "{}: loss {loss} is not the MSE {mse}",
        c.name
    );
    let grads: Vec<Vec<f64>> = params
        .iter()
        .map(|(n, _, _)| get(&out, &grad_name(n)))
        .collect();
    let (h, rtol) = if c.f64 { (1e-6, 1e-6) } else { (1e-2, 1e-3) };
    for direction in 0..3 {
        let v: Vec<Vec<f64>> = theta
            .iter()
            .map(|t| t.iter().map(|_| normal(&mut rng)).collect())
            .collect();
        let shifted = |sign: f64| -> Vec<Vec<f64>> {
            theta
                .iter()
                .zip(&v)
                .map(|(t, d)| t.iter().zip(d).map(|(a, b)| a + sign * h * b).collect())
                .collect()
        };
        let lp = get(&run(&shifted(1.0)), "loss")[0];
        let lm = get(&run(&shifted(-1.0)), "loss")[0];
        let numeric = (lp - lm) / (2.0 * h);
        let analytic: f64 = grads
            .iter()
            .zip(&v)
            .map(|(g, d)| g.iter().zip(d).map(|(a, b)| a * b).sum::<f64>())
            .sum();
        // Relative error, plus the rounding error of the difference of two
        // losses (4 ulps of the loss, divided by 2h).
        let ulp = if c.f64 {
            f64::EPSILON
        } else {
            f64::from(f32::EPSILON)
        };
        let allowed = rtol * numeric.abs().max(analytic.abs()) + 4.0 * ulp * (loss.abs() + 1.0) / h;
        assert!(
            (numeric - analytic).abs() <= allowed,
            "{} direction {direction}: finite difference {numeric}, gradient {analytic}",
            c.name
        );
    }
}

macro_rules! cases {
    ($($test:ident => $case:expr;)*) => {
        $(
            #[test]
            fn $test() {
                check(&$case);
            }
        )*
    };
}

fn conv_attrs(
    k: &[i64],
    strides: &[i64],
    dilations: &[i64],
    pads: &[i64],
    group: i64,
) -> Vec<AttributeProto> {
    vec![
        make_ints("kernel_shape", k),
        make_ints("strides", strides),
        make_ints("dilations", dilations),
        make_ints("pads", pads),
        make_int("group", group),
    ]
}

cases! {
    add_broadcasts_both_ways => case("add", "Add", vec![p(&[2, 3, 4]), p(&[3, 1])]);
    sub_of_a_row => case("sub", "Sub", vec![p(&[2, 3]), p(&[3])]);
    mul_of_a_channel => case("mul", "Mul", vec![p(&[2, 3, 4]), p(&[1, 3, 1])]);
    div_by_a_positive => case("div", "Div", vec![p(&[2, 3]), pos(&[2, 3])]);
    div_by_a_scalar => case("div_scalar", "Div", vec![p(&[2, 3]), pos(&[])]);
    neg => case("neg", "Neg", vec![p(&[5])]);
    sqrt => case("sqrt", "Sqrt", vec![pos(&[2, 3])]);
    reciprocal => case("reciprocal", "Reciprocal", vec![pos(&[2, 3])]);
    exp => case("exp", "Exp", vec![p(&[2, 3])]);
    log => case("log", "Log", vec![pos(&[2, 3])]);
    pow_of_a_trained_exponent => case("pow", "Pow", vec![pos(&[2, 3]), p(&[3])]);
    pow_by_a_constant_two => case("pow_const", "Pow", vec![p(&[2, 3]), Frozen(vec![], vec![2.0])]);
    identity => case("identity", "Identity", vec![p(&[2, 2])]);
    sum_of_three => case("sum", "Sum", vec![p(&[2, 3]), p(&[3]), p(&[2, 1])]);
    relu => case("relu", "Relu", vec![p(&[4, 5])]);
    leaky_relu => case("leaky_relu", "LeakyRelu", vec![p(&[4, 5])]).f32().attrs(vec![make_float("alpha", 0.2)]);
    sigmoid => case("sigmoid", "Sigmoid", vec![p(&[3, 4])]).f32();
    tanh => case("tanh", "Tanh", vec![p(&[3, 4])]).f32();
    erf => case("erf", "Erf", vec![p(&[3, 4])]).f32();
    gelu_exact => case("gelu", "Gelu", vec![p(&[3, 4])]).opset(20).f32();
    gelu_tanh => case("gelu_tanh", "Gelu", vec![p(&[3, 4])]).opset(20).f32().attrs(vec![make_string("approximate", "tanh")]);
    clip_between_inputs => case("clip", "Clip", vec![p(&[4, 5]), Frozen(vec![], vec![-0.5]), Frozen(vec![], vec![0.7])]).opset(13);
    clip_with_only_a_max => case("clip_max", "Clip", vec![p(&[4, 5]), Absent, Frozen(vec![], vec![0.3])]).opset(13);
    clip_with_attributes => case("clip6", "Clip", vec![p(&[4, 5])]).opset(6).attrs(vec![make_float("min", -0.5), make_float("max", 0.5)]);
    matmul_2d => case("matmul", "MatMul", vec![p(&[2, 3]), p(&[3, 4])]);
    matmul_batched_and_broadcast => case("matmul_batched", "MatMul", vec![p(&[2, 1, 3, 4]), p(&[5, 4, 2])]);
    matmul_of_a_vector_on_the_left => case("matmul_vl", "MatMul", vec![p(&[3]), p(&[2, 3, 4])]);
    matmul_of_a_vector_on_the_right => case("matmul_vr", "MatMul", vec![p(&[2, 3]), p(&[3])]);
    gemm_plain => case("gemm", "Gemm", vec![p(&[2, 3]), p(&[3, 4]), p(&[4])]);
    // float32: tract's own float64 Gemm fails when beta is not 1.
    gemm_transposed_and_scaled => case("gemm_t", "Gemm", vec![p(&[3, 2]), p(&[4, 3]), p(&[1, 4])]).f32()
        .attrs(vec![make_int("transA", 1), make_int("transB", 1), make_float("alpha", 0.5), make_float("beta", 2.0)]);
    conv_3x3_padded => case("conv", "Conv", vec![p(&[2, 3, 5, 5]), p(&[4, 3, 3, 3]), p(&[4])])
        .attrs(conv_attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1], 1));
    conv_strided_and_dilated => case("conv_sd", "Conv", vec![p(&[1, 2, 8, 7]), p(&[3, 2, 3, 2])])
        .attrs(conv_attrs(&[3, 2], &[2, 1], &[2, 2], &[1, 0, 2, 1], 1));
    conv_grouped => case("conv_g", "Conv", vec![p(&[2, 4, 6, 6]), p(&[6, 2, 3, 3]), p(&[6])])
        .attrs(conv_attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1, 1, 1], 2));
    conv_depthwise => case("conv_dw", "Conv", vec![p(&[2, 3, 5, 5]), p(&[3, 1, 3, 3])])
        .attrs(conv_attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1], 3));
    conv_same_upper_strided => case("conv_same", "Conv", vec![p(&[1, 2, 7, 7]), p(&[2, 2, 3, 3])])
        .attrs(vec![make_ints("strides", &[2, 2]), make_string("auto_pad", "SAME_UPPER")]);
    // A strided 1×1 convolution on an even size leaves a weight gradient
    // wider than the kernel, cut with Slice's attributes before opset 10.
    conv_strided_weight_cut_at_opset_9 => case("conv_cut9", "Conv", vec![p(&[1, 2, 6, 6]), p(&[3, 2, 1, 1])])
        .opset(9).attrs(conv_attrs(&[1, 1], &[2, 2], &[1, 1], &[0, 0, 0, 0], 1));
    conv_1d => case("conv_1d", "Conv", vec![p(&[2, 3, 9]), p(&[2, 3, 3]), p(&[2])])
        .attrs(conv_attrs(&[3], &[2], &[1], &[1, 1], 1));
    conv_transpose_strided_with_bias => case("convt", "ConvTranspose", vec![p(&[1, 3, 4, 4]), p(&[3, 2, 2, 2]), p(&[2])])
        .attrs(vec![make_ints("kernel_shape", &[2, 2]), make_ints("strides", &[2, 2]), make_ints("pads", &[0, 0, 0, 0])]);
    conv_transpose_padded_with_output_padding => case("convt_op", "ConvTranspose", vec![p(&[2, 2, 3, 3]), p(&[2, 3, 3, 3])])
        .attrs(vec![make_ints("strides", &[2, 2]), make_ints("pads", &[1, 1, 1, 1]), make_ints("output_padding", &[1, 1])]);
    conv_transpose_grouped_and_dilated => case("convt_g", "ConvTranspose", vec![p(&[1, 4, 3, 3]), p(&[4, 1, 2, 2]), p(&[2])])
        .attrs(vec![make_ints("dilations", &[2, 2]), make_int("group", 2), make_ints("pads", &[1, 0, 0, 1])]);
    conv_transpose_1d_valid => case("convt_1d", "ConvTranspose", vec![p(&[2, 2, 5]), p(&[2, 3, 3])])
        .attrs(vec![make_ints("strides", &[3]), make_string("auto_pad", "VALID")]);
    // float32: tract computes a float64 Resize at float32 precision (its
    // output is 4e-8 from the exact one), which drowns h = 1e-6.
    // FPN-style nearest doubling (Paddle2ONNX's PP-OCR detector): a
    // Reshape and a ReduceSum.
    resize_nearest_doubling => case("resize_nn2", "Resize", vec![p(&[1, 2, 3, 4]), Absent, Scales(vec![1.0, 1.0, 2.0, 2.0])]).f32()
        .opset(13).attrs(vec![make_string("mode", "nearest"), make_string("coordinate_transformation_mode", "asymmetric"), make_string("nearest_mode", "floor")]);
    resize_nearest_rounding_up_by_sizes => case("resize_nn_ceil", "Resize", vec![p(&[1, 2, 3, 4]), Absent, Absent, ints(&[4], &[1, 2, 5, 7])]).f32()
        .opset(13).attrs(vec![make_string("mode", "nearest"), make_string("coordinate_transformation_mode", "asymmetric"), make_string("nearest_mode", "round_prefer_ceil")]);
    resize_linear_half_pixel => case("resize_lin", "Resize", vec![p(&[1, 2, 3, 4]), Absent, Scales(vec![1.0, 1.0, 2.0, 1.5])]).f32()
        .opset(13).attrs(vec![make_string("mode", "linear")]);
    resize_linear_align_corners_down => case("resize_lin_ac", "Resize", vec![p(&[2, 1, 6, 5]), Absent, Absent, ints(&[4], &[2, 1, 4, 3])]).f32()
        .opset(13).attrs(vec![make_string("mode", "linear"), make_string("coordinate_transformation_mode", "align_corners")]);
    resize_linear_pytorch_half_pixel_on_a_middle_axis => case("resize_mid", "Resize", vec![p(&[2, 3, 4, 2]), Absent, Scales(vec![1.0, 2.0, 1.0, 1.0])]).f32()
        .opset(13).attrs(vec![make_string("mode", "linear"), make_string("coordinate_transformation_mode", "pytorch_half_pixel")]);
    resize_at_opset_11_with_an_empty_roi => case("resize11", "Resize", vec![p(&[1, 1, 2, 3]), Frozen(vec![0], vec![]), Scales(vec![1.0, 1.0, 2.0, 2.0])]).f32()
        .opset(11).attrs(vec![make_string("mode", "nearest")]);
    batch_norm_frozen => case("bn", "BatchNormalization", vec![
        p(&[2, 3, 4, 4]),
        Frozen(vec![3], vec![1.5, 0.5, -1.0]),
        Frozen(vec![3], vec![0.1, 0.2, 0.3]),
        Frozen(vec![3], vec![0.3, -0.2, 0.0]),
        Frozen(vec![3], vec![1.0, 0.5, 2.0]),
    ]);
    batch_norm_with_trained_parameters_is_lowered => case("bn_lowered", "BatchNormalization", vec![
        p(&[2, 3, 4, 4]), p(&[3]), p(&[3]),
        Frozen(vec![3], vec![0.3, -0.2, 0.0]),
        Frozen(vec![3], vec![1.0, 0.5, 2.0]),
    ]);
    // float32: tract computes a float64 LayerNormalization at float32 precision
    // (it agrees with onnxruntime to 3e-7 only), which drowns h = 1e-6.
    layer_norm_last_axis => case("ln", "LayerNormalization", vec![p(&[2, 3, 6]), p(&[6]), p(&[6])]).f32();
    layer_norm_two_axes_without_bias => case("ln2", "LayerNormalization", vec![p(&[2, 3, 4]), p(&[3, 4])]).f32()
        .attrs(vec![make_int("axis", 1), make_float("epsilon", 1e-3)]);
    reduce_mean_attribute_axes => case("rmean", "ReduceMean", vec![p(&[2, 3, 4])])
        .opset(13).attrs(vec![make_ints("axes", &[1]), make_int("keepdims", 0)]);
    reduce_mean_input_axes => case("rmean18", "ReduceMean", vec![p(&[2, 3, 4]), ints(&[2], &[0, -1])]).opset(18);
    reduce_sum_every_axis => case("rsum", "ReduceSum", vec![p(&[2, 3])]).attrs(vec![make_int("keepdims", 0)]);
    reduce_sum_input_axes => case("rsum_axes", "ReduceSum", vec![p(&[2, 3, 4]), ints(&[1], &[2])]);
    global_average_pool => case("gap", "GlobalAveragePool", vec![p(&[2, 3, 4, 5])]);
    softmax_one_axis => case("softmax", "Softmax", vec![p(&[2, 3, 4])]).attrs(vec![make_int("axis", 1)]);
    softmax_before_opset_13_flattens => case("softmax11", "Softmax", vec![p(&[2, 3, 4])]).opset(11).attrs(vec![make_int("axis", 1)]);
    log_softmax => case("log_softmax", "LogSoftmax", vec![p(&[3, 5])]);
    reshape => case("reshape", "Reshape", vec![p(&[2, 3, 4]), ints(&[2], &[4, -1])]);
    flatten => case("flatten", "Flatten", vec![p(&[2, 3, 4])]).attrs(vec![make_int("axis", 2)]);
    squeeze => case("squeeze", "Squeeze", vec![p(&[2, 1, 3]), ints(&[1], &[1])]);
    unsqueeze => case("unsqueeze", "Unsqueeze", vec![p(&[2, 3]), ints(&[2], &[0, 3])]);
    transpose => case("transpose", "Transpose", vec![p(&[2, 3, 4])]).attrs(vec![make_ints("perm", &[2, 0, 1])]);
    transpose_default_reverses => case("transpose_rev", "Transpose", vec![p(&[2, 3, 4])]);
    expand => case("expand", "Expand", vec![p(&[3, 1]), ints(&[3], &[2, 3, 4])]);
    concat => case("concat", "Concat", vec![p(&[2, 3]), p(&[2, 1]), p(&[2, 2])]).attrs(vec![make_int("axis", -1)]);
    // The loss reads the first output: the others' gradients are zeros.
    split_by_sizes => case("split", "Split", vec![p(&[2, 7]), ints(&[3], &[2, 4, 1])])
        .outputs(3).attrs(vec![make_int("axis", -1)]);
    split_evenly_at_opset_11 => case("split11", "Split", vec![p(&[6, 2])]).opset(11).outputs(3);
    slice_with_negative_bounds => case("slice", "Slice", vec![p(&[4, 5]), ints(&[2], &[1, -4]), ints(&[2], &[-1, 100]), ints(&[2], &[0, 1])]);
    where_broadcasts => case("where", "Where", vec![
        Bools(vec![2, 3], vec![true, false, true, false, false, true]), p(&[2, 3]), p(&[3])
    ]);
    gather_repeated_and_negative_indices => case("gather", "Gather", vec![p(&[3, 4, 2]), ints(&[2, 2], &[0, -1, 3, 0])])
        .opset(16).attrs(vec![make_int("axis", 1)]);
    max_pool_before_opset_16_by_masks => case("maxpool11", "MaxPool", vec![p(&[1, 2, 5, 5])])
        .opset(11).attrs(vec![make_ints("kernel_shape", &[3, 3]), make_ints("strides", &[2, 2]), make_ints("pads", &[1, 1, 1, 1])]);
    max_pool_at_opset_9_by_masks => case("maxpool9", "MaxPool", vec![p(&[2, 2, 4, 4])])
        .opset(9).attrs(vec![make_ints("kernel_shape", &[2, 2]), make_ints("strides", &[2, 2])]);
    gather_before_opset_16_by_a_one_hot_product => case("gather13", "Gather", vec![p(&[5, 3]), ints(&[3], &[4, -1, 1])])
        .opset(13);
    max_of_three => case("max", "Max", vec![p(&[2, 3]), p(&[3]), p(&[2, 1])]);
    min_of_two => case("min", "Min", vec![p(&[2, 3]), p(&[2, 3])]);
    reduce_max => case("rmax", "ReduceMax", vec![p(&[2, 3, 4])]).attrs(vec![make_ints("axes", &[2]), make_int("keepdims", 0)]);
    reduce_min => case("rmin", "ReduceMin", vec![p(&[2, 3, 4])]).attrs(vec![make_ints("axes", &[0, 1])]);
    global_max_pool => case("gmp", "GlobalMaxPool", vec![p(&[2, 3, 3, 4])]);
    hard_sigmoid => case("hsig", "HardSigmoid", vec![p(&[4, 5])]).f32().attrs(vec![make_float("alpha", 0.3), make_float("beta", 0.4)]);
    hard_swish => case("hswish", "HardSwish", vec![p(&[4, 5])]).opset(14).f32();
    conv_with_weights_in_constant_nodes => case("conv_const", "Conv", vec![p(&[1, 2, 5, 5]), ConstNode(vec![3, 2, 3, 3]), ConstNode(vec![3])])
        .attrs(conv_attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1], 1));
    max_pool_strided => case("maxpool", "MaxPool", vec![p(&[2, 2, 4, 4])])
        .opset(16).attrs(vec![make_ints("kernel_shape", &[2, 2]), make_ints("strides", &[2, 2])]);
    max_pool_overlapping_padded => case("maxpool_pad", "MaxPool", vec![p(&[1, 2, 5, 5])])
        .opset(16).attrs(vec![make_ints("kernel_shape", &[3, 3]), make_ints("pads", &[1, 1, 1, 1])]);
    average_pool_excluding_pads => case("avgpool", "AveragePool", vec![p(&[1, 2, 5, 5])])
        .attrs(vec![make_ints("kernel_shape", &[3, 3]), make_ints("strides", &[2, 2]), make_ints("pads", &[1, 1, 1, 1])]);
    average_pool_including_pads => case("avgpool_inc", "AveragePool", vec![p(&[1, 2, 4, 4])])
        .attrs(vec![make_ints("kernel_shape", &[2, 2]), make_ints("pads", &[1, 1, 0, 0]), make_int("count_include_pad", 1)]);
}

#[test]
fn an_op_without_a_rule_is_an_error_naming_it() {
    let c = case("hardmax", "Hardmax", vec![p(&[2, 3])]);
    let mut rng = StdRng::seed_from_u64(1);
    let (proto, _) = build(&c, &mut rng);
    let model = laurelc::onnx::import_bytes(&common::bytes(&proto), "hardmax").unwrap();
    let opts = GradOptions {
        loss: Loss::Mse,
        train: TrainSpec::Globs(vec!["in0".into()]),
        ..GradOptions::default()
    };
    let err = training_step(&model, &opts).unwrap_err().to_string();
    assert!(err.contains("Hardmax") && err.contains("hardmax"), "{err}");
}

/// A confident prediction (logits 500 apart) has a cross-entropy near 0 and a
/// finite gradient: the loss is a stable log-softmax, and the class picked
/// by `Where`, not by multiplying log-probabilities by a one-hot (where
/// log 0 = −∞ times 0 would be NaN). Regression: fine-tuning the digits CNN
/// stopped on a NaN loss once it was this sure of itself.
#[test]
fn a_confident_prediction_has_a_finite_loss_and_gradient() {
    use laurel_runtime::{LoadOptions, ModelSource, load};
    let graph = onnx_protobuf::GraphProto {
        name: "confident".into(),
        node: vec![common::node("Identity", "id", &["w"], &["logits"])],
        initializer: vec![common::f32_tensor("w", &[1, 3], &[0.0, -200.0, 300.0])],
        output: vec![common::value("logits", &[1, 3])],
        ..onnx_protobuf::GraphProto::default()
    };
    let model =
        laurelc::onnx::import_bytes(&common::bytes(&common::model(graph)), "confident").unwrap();
    for loss in [Loss::Ce, Loss::Kd] {
        let opts = GradOptions {
            loss,
            train: TrainSpec::All,
            ..GradOptions::default()
        };
        let (step, _) = training_step(&model, &opts).unwrap();
        let bytes = laurelc::onnx::to_bytes(&step).unwrap();
        let run = load(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
        let w = tensor(&[1, 3], &[0.0, -200.0, 300.0], false);
        let target = match loss {
            Loss::Ce => Tensor::from_shape(&[1], &[2i64]).unwrap(),
            _ => tensor(&[1, 3], &[0.0, 0.0, 1.0], false),
        };
        let out = run
            .run(vec![("w".into(), w), ("target".into(), target)])
            .unwrap();
        for (name, t) in &out {
            let v = values(t);
            assert!(v.iter().all(|x| x.is_finite()), "{loss:?}: {name} = {v:?}");
        }
        let l = values(&out.iter().find(|(n, _)| n == "loss").unwrap().1)[0];
        assert!(l.abs() < 1e-6, "{loss:?}: loss {l}");
    }
}

/// `--train all` leaves a `Resize`'s scales alone even in a `Constant` node,
/// as Paddle2ONNX writes them: they fix the output's shape, they are no
/// weight. Regression: the PP-OCR detector's step had no static shapes.
#[test]
fn train_all_leaves_resize_scales_frozen() {
    let scales = common::f32_tensor("", &[4], &[1.0, 1.0, 2.0, 2.0]);
    let graph = onnx_protobuf::GraphProto {
        name: "upsample".into(),
        node: vec![
            onnx_protobuf::NodeProto {
                op_type: "Constant".into(),
                output: vec!["scales".into()],
                attribute: vec![laurelc::ir::attr::make_tensor("value", scales)],
                ..Default::default()
            },
            common::node("Mul", "scale", &["x", "w"], &["xw"]),
            common::node("Resize", "up", &["xw", "", "scales"], &["y"]),
        ],
        initializer: vec![common::f32_tensor("w", &[1, 2, 1, 1], &[0.5, -1.0])],
        input: vec![common::value("x", &[1, 2, 3, 3])],
        output: vec![common::value("y", &[1, 2, 6, 6])],
        ..onnx_protobuf::GraphProto::default()
    };
    let model =
        laurelc::onnx::import_bytes(&common::bytes(&common::model(graph)), "upsample").unwrap();
    let opts = GradOptions {
        loss: Loss::Mse,
        train: TrainSpec::All,
        ..GradOptions::default()
    };
    let (_, report) = training_step(&model, &opts).unwrap();
    let names: Vec<&str> = report.trainable.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["w"]);
}
