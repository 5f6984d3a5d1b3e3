//! The `ai.laurel::LaurelResidual` custom op (docs/laurel-op.md): results against a
//! naive reading of the definition, bit for bit, for every implementation and loader
//! path; equivalence with ONNX `Sum` and with the standard-ONNX decomposition; and
//! every malformed node refused with a load error.
// Test code: panicking helpers and exact float comparisons are intended.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_cmp,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::too_many_lines
)]

use laurel_runtime::ops::laurel_residual::{self, Implementation};
use laurel_runtime::tract_onnx::pb;
use laurel_runtime::tract_onnx::pb::tensor_proto::DataType;
use laurel_runtime::tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use laurel_runtime::tract_onnx::prelude::{
    Datum, Framework, InferenceModelExt, IntoRunnable, IntoTValue, IntoTensor, Tensor, TractResult,
    TypedModel, f16,
};
use laurel_runtime::{LoadOptions, ModelSource, RuntimeError, load, load_with_strategy};
use prost::Message;

// ---------------------------------------------------------------------------------
// Model building.

/// A declared dimension.
#[derive(Clone, Copy)]
enum D {
    V(i64),
    P(&'static str),
}

fn value_info(name: &str, elem: DataType, dims: &[D]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| pb::tensor_shape_proto::Dimension {
            value: Some(match d {
                D::V(v) => DimValue::DimValue(*v),
                D::P(p) => DimValue::DimParam((*p).to_owned()),
            }),
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

fn fixed(shape: &[usize]) -> Vec<D> {
    shape.iter().map(|&d| D::V(d as i64)).collect()
}

fn node(op: &str, domain: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: outputs.iter().map(|s| (*s).to_owned()).collect(),
        name: format!("{op}_{}", outputs.first().copied().unwrap_or("")),
        op_type: op.to_owned(),
        domain: domain.to_owned(),
        ..Default::default()
    }
}

fn floats_attr(name: &str, values: &[f32]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_owned(),
        r#type: pb::attribute_proto::AttributeType::Floats as i32,
        floats: values.to_vec(),
        ..Default::default()
    }
}

/// A `LaurelResidual` node in domain `ai.laurel`.
fn laurel(inputs: &[&str], output: &str, coefficients: Option<&[f32]>) -> pb::NodeProto {
    let mut n = node("LaurelResidual", "ai.laurel", inputs, &[output]);
    if let Some(c) = coefficients {
        n.attribute.push(floats_attr("coefficients", c));
    }
    n
}

fn opset(domain: &str, version: i64) -> pb::OperatorSetIdProto {
    pb::OperatorSetIdProto {
        domain: domain.to_owned(),
        version,
    }
}

/// The usual imports: ONNX 13 and `ai.laurel` 1.
fn opsets() -> Vec<pb::OperatorSetIdProto> {
    vec![opset("", 13), opset("ai.laurel", 1)]
}

fn model(
    nodes: Vec<pb::NodeProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    initializers: Vec<pb::TensorProto>,
    opset_import: Vec<pb::OperatorSetIdProto>,
) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 8,
        opset_import,
        producer_name: "laurel-runtime-tests".into(),
        graph: Some(pb::GraphProto {
            node: nodes,
            name: "laurel_op".into(),
            initializer: initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A model whose only node is `node`, over inputs `t0, t1, …` of `shapes` and element
/// type `elem`, with output `y` (declared without a shape).
fn single_node_model(
    node: pb::NodeProto,
    elem: DataType,
    shapes: &[Vec<usize>],
    opset_import: Vec<pb::OperatorSetIdProto>,
) -> Vec<u8> {
    let inputs = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| value_info(&format!("t{i}"), elem, &fixed(s)))
        .collect();
    model(
        vec![node],
        inputs,
        vec![value_info("y", elem, &[])],
        vec![],
        opset_import,
    )
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i}")).collect()
}

fn refs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------
// Element types, data and the naive reference.

/// The float types the op takes, as the tests need them.
trait Float: Datum + Copy + std::fmt::Debug + PartialEq {
    const ELEM: DataType;
    fn from_f64(v: f64) -> Self;
    fn from_coefficient(c: f32) -> Self;
    fn bits(self) -> u64;
    fn zero() -> Self;
    fn one() -> Self;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
}

impl Float for f32 {
    const ELEM: DataType = DataType::Float;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn from_coefficient(c: f32) -> Self {
        c
    }
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
    fn zero() -> Self {
        0.0
    }
    fn one() -> Self {
        1.0
    }
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn mul(self, o: Self) -> Self {
        self * o
    }
}

impl Float for f64 {
    const ELEM: DataType = DataType::Double;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn from_coefficient(c: f32) -> Self {
        f64::from(c)
    }
    fn bits(self) -> u64 {
        self.to_bits()
    }
    fn zero() -> Self {
        0.0
    }
    fn one() -> Self {
        1.0
    }
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn mul(self, o: Self) -> Self {
        self * o
    }
}

impl Float for f16 {
    const ELEM: DataType = DataType::Float16;
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn from_coefficient(c: f32) -> Self {
        f16::from_f32(c)
    }
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
    fn zero() -> Self {
        f16::ZERO
    }
    fn one() -> Self {
        f16::ONE
    }
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn mul(self, o: Self) -> Self {
        self * o
    }
}

/// Deterministic values in about [-4, 4) with varied mantissas, some exactly zero.
fn data<T: Float>(len: usize, seed: u64) -> Vec<T> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            if i % 17 == 5 {
                return T::from_f64(0.0);
            }
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            T::from_f64(8.0 * u - 4.0)
        })
        .collect()
}

fn broadcast_shape(shapes: &[Vec<usize>]) -> Vec<usize> {
    let rank = shapes.iter().map(Vec::len).max().unwrap_or(0);
    (0..rank)
        .map(|axis| {
            let mut d = 1;
            for s in shapes {
                let k = (axis + s.len()).checked_sub(rank);
                if let Some(k) = k
                    && s[k] != 1
                {
                    assert!(
                        d == 1 || d == s[k],
                        "test shapes {shapes:?} do not broadcast"
                    );
                    d = s[k];
                }
            }
            d
        })
        .collect()
}

/// The element of a tensor of `shape` (row-major `data`) that broadcasts to the
/// output index `index`.
fn at<T: Copy>(data: &[T], shape: &[usize], index: &[usize]) -> T {
    let offset = index.len() - shape.len();
    let mut flat = 0;
    for (k, &dim) in shape.iter().enumerate() {
        let i = if dim == 1 { 0 } else { index[offset + k] };
        flat = flat * dim + i;
    }
    data[flat]
}

/// The definition, read naively: per output element, left to right, each coefficient
/// converted to the element type, 0 drops the term, 1 multiplies nothing; the first
/// kept term starts the sum; no kept term gives +0.
fn naive<T: Float>(inputs: &[(Vec<usize>, Vec<T>)], coefficients: &[f32]) -> (Vec<usize>, Vec<T>) {
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|(s, _)| s.clone()).collect();
    let out_shape = broadcast_shape(&shapes);
    let len: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(len);
    let mut index = vec![0; out_shape.len()];
    for flat in 0..len {
        let mut rest = flat;
        for axis in (0..out_shape.len()).rev() {
            index[axis] = rest % out_shape[axis];
            rest /= out_shape[axis];
        }
        let mut acc: Option<T> = None;
        for ((shape, values), &c) in inputs.iter().zip(coefficients) {
            let c = T::from_coefficient(c);
            if c == T::zero() {
                continue;
            }
            let t = at(values, shape, &index);
            let term = if c == T::one() { t } else { c.mul(t) };
            acc = Some(acc.map_or(term, |a| a.add(term)));
        }
        out.push(acc.unwrap_or_else(T::zero));
    }
    (out_shape, out)
}

fn values<T: Float>(t: &Tensor) -> Vec<T> {
    t.to_plain_array_view::<T>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn assert_bits_eq<T: Float>(what: &str, got: &Tensor, shape: &[usize], want: &[T]) {
    assert_eq!(got.datum_type(), T::datum_type(), "{what}: element type");
    assert_eq!(got.shape(), shape, "{what}: shape");
    let got = values::<T>(got);
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.bits() == w.bits(),
            "{what}: element {i}: got {g:?}, want {w:?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// Running.

/// How a model is run: the registered op through `laurel_runtime::load`, or one
/// implementation on tract directly, optimised or only typed.
#[derive(Clone, Copy, Debug)]
enum Path {
    Load,
    Tract(Implementation, bool),
}

fn paths() -> Vec<Path> {
    let mut p = vec![Path::Load];
    for imp in Implementation::ALL {
        p.push(Path::Tract(imp, true));
        p.push(Path::Tract(imp, false));
    }
    p
}

fn tract_model(bytes: &[u8], imp: Implementation, optimize: bool) -> TractResult<TypedModel> {
    let proto = pb::ModelProto::decode(bytes)?;
    let mut onnx = laurel_runtime::tract_onnx::onnx();
    laurel_residual::register(&mut onnx, imp);
    let model = onnx.model_for_proto_model(&proto)?;
    if optimize {
        model.into_optimized()
    } else {
        model.into_typed()
    }
}

/// Runs a model on tensors named `t0, t1, …`; returns output `y`.
fn run(bytes: &[u8], inputs: &[Tensor], path: Path) -> Tensor {
    match path {
        Path::Load => {
            let r = load(ModelSource::Bytes(bytes), &LoadOptions::default()).unwrap();
            assert_eq!(r.load_strategy(), "default");
            let named = inputs
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("t{i}"), t.clone()))
                .collect();
            let mut out = r.run(named).unwrap();
            assert_eq!(out.len(), 1);
            out.remove(0).1
        }
        Path::Tract(imp, optimize) => {
            let plan = tract_model(bytes, imp, optimize)
                .unwrap()
                .into_runnable()
                .unwrap();
            let mut out = plan
                .run(inputs.iter().map(|t| t.clone().into_tvalue()).collect())
                .unwrap();
            out.remove(0).into_tensor()
        }
    }
}

/// Builds one `LaurelResidual` node over inputs of `shapes`, runs it every way, and
/// checks each result against [`naive`] bit for bit.
fn check_case<T: Float>(case: &str, shapes: &[Vec<usize>], coefficients: Option<&[f32]>) {
    let n = shapes.len();
    let input_names = names(n);
    let bytes = single_node_model(
        laurel(&refs(&input_names), "y", coefficients),
        T::ELEM,
        shapes,
        opsets(),
    );
    let inputs: Vec<(Vec<usize>, Vec<T>)> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), data::<T>(s.iter().product(), i as u64 + 1)))
        .collect();
    let ones = vec![1.0; n];
    let (shape, want) = naive(&inputs, coefficients.unwrap_or(&ones));
    let tensors: Vec<Tensor> = inputs
        .iter()
        .map(|(s, v)| Tensor::from_shape(s, v).unwrap())
        .collect();
    for path in paths() {
        let got = run(&bytes, &tensors, path);
        let what = format!("{case} ({:?}, {path:?})", T::datum_type());
        assert_bits_eq(&what, &got, &shape, &want);
    }
}

/// [`check_case`] for f32 and f64 (and f16).
fn check_all_types(case: &str, shapes: &[Vec<usize>], coefficients: Option<&[f32]>) {
    check_case::<f32>(case, shapes, coefficients);
    check_case::<f64>(case, shapes, coefficients);
    check_case::<f16>(case, shapes, coefficients);
}

// ---------------------------------------------------------------------------------
// Results.

#[test]
fn two_inputs_without_coefficients() {
    check_all_types("2 inputs", &[vec![2, 3], vec![2, 3]], None);
}

#[test]
fn two_inputs_with_coefficients() {
    check_all_types("2 inputs, c", &[vec![2, 3], vec![2, 3]], Some(&[0.5, -2.0]));
}

#[test]
fn three_inputs_without_coefficients() {
    check_all_types("3 inputs", &vec![vec![2, 3, 4]; 3], None);
}

#[test]
fn three_inputs_with_coefficients() {
    // A coefficient that f16 cannot hold exactly, a negative one, one of exactly 1.
    check_all_types(
        "3 inputs, c",
        &vec![vec![2, 3, 4]; 3],
        Some(&[1.0, 0.1, -3.0]),
    );
}

#[test]
fn five_inputs_without_coefficients() {
    check_all_types("5 inputs", &vec![vec![3, 5]; 5], None);
}

#[test]
fn five_inputs_with_coefficients() {
    check_all_types(
        "5 inputs, c",
        &vec![vec![3, 5]; 5],
        Some(&[0.7, 1.3, 0.25, -1.0, 1e-3]),
    );
}

#[test]
fn broadcasting_without_coefficients() {
    check_all_types("broadcast", &[vec![4, 1, 5], vec![3, 5], vec![5]], None);
}

#[test]
fn broadcasting_five_inputs_with_coefficients() {
    // Ranks 0 to 3, the residual branch itself broadcast.
    check_all_types(
        "broadcast 5, c",
        &[vec![2, 1, 4], vec![3, 1], vec![4], vec![2, 3, 4], vec![]],
        Some(&[2.0, 0.5, -0.75, 1.0, 3.5]),
    );
}

#[test]
fn zero_coefficient_drops_its_term() {
    // The dropped term is the one that gives the output its shape, and holds
    // infinities and NaNs, which a multiplication by 0 would let through.
    let shapes = [vec![3, 1], vec![1, 4], vec![2, 3, 4]];
    check_all_types("zero c", &shapes, Some(&[1.5, 1.0, 0.0]));
    check_all_types("-0 c", &shapes, Some(&[0.0, -0.0, 2.0]));

    let bytes = single_node_model(
        laurel(&["t0", "t1"], "y", Some(&[1.0, 0.0])),
        DataType::Float,
        &[vec![3], vec![3]],
        opsets(),
    );
    let f = Tensor::from_shape(&[3], &[1.0f32, -0.0, 2.0]).unwrap();
    let h = Tensor::from_shape(&[3], &[f32::INFINITY, f32::NAN, -5.0]).unwrap();
    for path in paths() {
        let got = run(&bytes, &[f.clone(), h.clone()], path);
        assert_bits_eq(&format!("{path:?}"), &got, &[3], &[1.0f32, -0.0, 2.0]);
    }
}

#[test]
fn all_coefficients_zero_give_positive_zeros() {
    check_all_types("all zero", &[vec![2, 1], vec![3]], Some(&[0.0, -0.0]));
}

#[test]
fn coefficient_rounding_to_one_or_zero_in_f16() {
    // 1.0001 is 1 in f16 and 1e-8 is 0: the definition converts first.
    check_case::<f16>(
        "f16 rounding",
        &[vec![4], vec![4], vec![4]],
        Some(&[1.0001, 1e-8, 3.0]),
    );
}

#[test]
fn long_tensors_cross_chunk_boundaries() {
    // Longer than the kernel's chunk and not a multiple of it.
    check_case::<f32>(
        "long",
        &[vec![3, 5001], vec![3, 5001], vec![3, 5001]],
        Some(&[0.7, 1.3, 0.25]),
    );
    check_case::<f64>("long", &[vec![9001], vec![9001]], None);
}

#[test]
fn empty_tensors() {
    check_all_types("empty", &[vec![0, 3], vec![3]], Some(&[2.0, 1.0]));
}

#[test]
fn inputs_may_repeat_and_be_initializers() {
    // y = 2·t0 + t0 + 0.5·k, k an initializer.
    let k = pb::TensorProto {
        name: "k".into(),
        dims: vec![3],
        data_type: DataType::Float as i32,
        float_data: vec![1.0, -2.0, 4.0],
        ..Default::default()
    };
    let bytes = model(
        vec![laurel(&["t0", "t0", "k"], "y", Some(&[2.0, 1.0, 0.5]))],
        vec![value_info("t0", DataType::Float, &[D::V(2), D::V(3)])],
        vec![value_info("y", DataType::Float, &[])],
        vec![k],
        opsets(),
    );
    let t0 = Tensor::from_shape(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let want: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .zip([1.0f32, -2.0, 4.0].iter().cycle())
        .map(|(&t, &k)| 2.0 * t + t + 0.5 * k)
        .collect();
    for path in paths() {
        let got = run(&bytes, std::slice::from_ref(&t0), path);
        assert_bits_eq(&format!("{path:?}"), &got, &[2, 3], &want);
    }
}

#[test]
fn symbolic_batch_dimension() {
    // y = c0·f + c1·x with f, x of shape [batch, 4], loaded with batch = 3, and with
    // the symbol left to tract at run time; with scaled terms (the kernel, for the
    // registered op) and without (the expansion).
    let f = data::<f32>(12, 1);
    let x = data::<f32>(12, 2);
    for c in [[0.5f32, 2.0], [1.0, 1.0]] {
        let bytes = model(
            vec![laurel(&["t0", "t1"], "y", Some(&c))],
            vec![
                value_info("t0", DataType::Float, &[D::P("batch"), D::V(4)]),
                value_info("t1", DataType::Float, &[D::P("batch"), D::V(4)]),
            ],
            vec![value_info("y", DataType::Float, &[D::P("batch"), D::V(4)])],
            vec![],
            opsets(),
        );
        let (_, want) = naive(&[(vec![12], f.clone()), (vec![12], x.clone())], &c);
        let opts = LoadOptions::with_dims([("batch", 3)]);
        for strategy in ["default", "symbolic-then-concretize", "symbolic-at-runtime"] {
            let r = load_with_strategy(ModelSource::Bytes(&bytes), &opts, strategy).unwrap();
            let out = r
                .run(vec![
                    ("t0".into(), Tensor::from_shape(&[3, 4], &f).unwrap()),
                    ("t1".into(), Tensor::from_shape(&[3, 4], &x).unwrap()),
                ])
                .unwrap();
            assert_bits_eq(&format!("{c:?} {strategy}"), &out[0].1, &[3, 4], &want);
        }
    }
}

#[test]
fn shapes_are_inferred() {
    let bytes = single_node_model(
        laurel(&["t0", "t1", "t2"], "y", Some(&[1.0, 2.0, 3.0])),
        DataType::Double,
        &[vec![2, 1, 5], vec![4, 1], vec![5]],
        opsets(),
    );
    let inferred =
        laurel_runtime::infer_shapes(ModelSource::Bytes(&bytes), &LoadOptions::default()).unwrap();
    assert_eq!(inferred.error, None);
    let y = &inferred.values["y"];
    assert_eq!(y.datum, Some(laurel_runtime::DatumKind::F64));
    assert_eq!(
        y.shape,
        Some(
            [2, 4, 5]
                .iter()
                .map(|&d| laurel_runtime::DimSpec::Fixed(d))
                .collect()
        )
    );
}

// ---------------------------------------------------------------------------------
// Equivalences.

/// `y = op(f, x, h)` with `f = MatMul(a, W)`, `W` an initializer: what the op follows
/// in a transformer block, so that tract's matmul fusions are exercised.
fn matmul_model(op_node: pb::NodeProto, initializers: Vec<pb::TensorProto>) -> Vec<u8> {
    let w: Vec<f32> = data::<f32>(8 * 6, 7);
    let mut inits = vec![pb::TensorProto {
        name: "W".into(),
        dims: vec![8, 6],
        data_type: DataType::Float as i32,
        float_data: w,
        ..Default::default()
    }];
    inits.extend(initializers);
    model(
        vec![node("MatMul", "", &["t0", "W"], &["f"]), op_node],
        vec![
            value_info("t0", DataType::Float, &fixed(&[2, 5, 8])),
            value_info("t1", DataType::Float, &fixed(&[2, 5, 6])),
            value_info("t2", DataType::Float, &fixed(&[5, 6])),
        ],
        vec![value_info("y", DataType::Float, &[])],
        inits,
        opsets(),
    )
}

fn matmul_inputs() -> Vec<Tensor> {
    vec![
        Tensor::from_shape(&[2, 5, 8], &data::<f32>(80, 11)).unwrap(),
        Tensor::from_shape(&[2, 5, 6], &data::<f32>(60, 12)).unwrap(),
        Tensor::from_shape(&[5, 6], &data::<f32>(30, 13)).unwrap(),
    ]
}

fn assert_same_bits(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape(), b.shape(), "{what}: shape");
    let a = values::<f32>(a);
    let b = values::<f32>(b);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            x.to_bits() == y.to_bits(),
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

#[test]
fn all_ones_equals_onnx_sum() {
    let sum = matmul_model(node("Sum", "", &["f", "t1", "t2"], &["y"]), vec![]);
    let implicit = matmul_model(laurel(&["f", "t1", "t2"], "y", None), vec![]);
    let explicit = matmul_model(
        laurel(&["f", "t1", "t2"], "y", Some(&[1.0, 1.0, 1.0])),
        vec![],
    );
    let inputs = matmul_inputs();
    let want = run(&sum, &inputs, Path::Load);
    // A non-trivial result, so that equality means something.
    assert!(values::<f32>(&want).iter().any(|v| v.abs() > 1.0));
    for path in paths() {
        assert_same_bits(
            &format!("no coefficients, {path:?}"),
            &run(&implicit, &inputs, path),
            &want,
        );
        assert_same_bits(
            &format!("coefficients 1, {path:?}"),
            &run(&explicit, &inputs, path),
            &want,
        );
    }
}

#[test]
fn equals_its_standard_onnx_decomposition() {
    // y = 0.7·f + 1.3·x + 0.25·h, and as in docs/laurel-op.md with Mul and Add.
    let c = |name: &str, v: f32| pb::TensorProto {
        name: name.into(),
        dims: vec![],
        data_type: DataType::Float as i32,
        float_data: vec![v],
        ..Default::default()
    };
    let decomposed = matmul_model(
        node("Mul", "", &["f", "c0"], &["p0"]),
        vec![c("c0", 0.7), c("c1", 1.3), c("c2", 0.25)],
    );
    // matmul_model takes one node after the MatMul; add the rest by hand.
    let mut proto = pb::ModelProto::decode(decomposed.as_slice()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    graph.node.extend([
        node("Mul", "", &["t1", "c1"], &["p1"]),
        node("Add", "", &["p0", "p1"], &["s1"]),
        node("Mul", "", &["t2", "c2"], &["p2"]),
        node("Add", "", &["s1", "p2"], &["y"]),
    ]);
    let decomposed = proto.encode_to_vec();
    let fused = matmul_model(
        laurel(&["f", "t1", "t2"], "y", Some(&[0.7, 1.3, 0.25])),
        vec![],
    );
    let inputs = matmul_inputs();
    let want = run(&decomposed, &inputs, Path::Load);
    for path in paths() {
        assert_same_bits(&format!("{path:?}"), &run(&fused, &inputs, path), &want);
    }
}

#[test]
fn f16_after_a_matmul_rounds_every_operation() {
    // The definition rounds every product and sum to f16. tract's f16 MatMul epilogue
    // does not: the optimised expansion (like the standard-ONNX Mul and Add it is made
    // of) keeps the scaled sum in a wider type until the end, so it is left out here;
    // the registered op must use the kernel for f16.
    let shape = [1usize, 16, 32];
    let w = pb::TensorProto {
        name: "W".into(),
        dims: vec![32, 32],
        data_type: DataType::Float as i32,
        float_data: data::<f32>(32 * 32, 7),
        ..Default::default()
    };
    let mut cast = node("Cast", "", &["W"], &["Wc"]);
    cast.attribute.push(pb::AttributeProto {
        name: "to".into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: DataType::Float16 as i64,
        ..Default::default()
    });
    let inputs_info: Vec<_> = (0..3)
        .map(|i| value_info(&format!("t{i}"), DataType::Float16, &fixed(&shape)))
        .collect();
    let output_info = vec![value_info("y", DataType::Float16, &[])];
    let c = [0.7f32, 1.3, 0.25];
    let fused = model(
        vec![
            cast.clone(),
            node("MatMul", "", &["t0", "Wc"], &["f"]),
            laurel(&["f", "t1", "t2"], "y", Some(&c)),
        ],
        inputs_info.clone(),
        output_info.clone(),
        vec![w.clone()],
        opsets(),
    );
    let matmul_only = model(
        vec![cast, node("MatMul", "", &["t0", "Wc"], &["y"])],
        inputs_info,
        output_info,
        vec![w],
        opsets(),
    );
    let n: usize = shape.iter().product();
    let inputs: Vec<Tensor> = (0..3)
        .map(|i| Tensor::from_shape(&shape, &data::<f16>(n, i + 20)).unwrap())
        .collect();
    let f = run(&matmul_only, &inputs, Path::Load);
    let terms: Vec<(Vec<usize>, Vec<f16>)> = [&f, &inputs[1], &inputs[2]]
        .iter()
        .map(|t| (shape.to_vec(), values::<f16>(t)))
        .collect();
    let (_, want) = naive(&terms, &c);
    for path in paths() {
        if matches!(path, Path::Tract(Implementation::Expansion, true)) {
            continue;
        }
        let got = run(&fused, &inputs, path);
        assert_bits_eq(&format!("{path:?}"), &got, &shape, &want);
    }
}

// ---------------------------------------------------------------------------------
// Errors.

/// Loads `bytes` with the registered op and with each implementation; every one must
/// fail, and the registered load's message must contain `needle`.
fn assert_load_error(bytes: &[u8], needle: &str) {
    match load(ModelSource::Bytes(bytes), &LoadOptions::default()) {
        Ok(_) => panic!("loaded a model that should fail with `{needle}`"),
        Err(e) => {
            assert!(matches!(e, RuntimeError::Load { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(msg.contains(needle), "`{needle}` not in: {msg}");
            assert!(!msg.contains("panicked"), "tract panicked: {msg}");
        }
    }
    for imp in Implementation::ALL {
        for optimize in [false, true] {
            let e = tract_model(bytes, imp, optimize)
                .err()
                .unwrap_or_else(|| panic!("{imp} loaded a model that should fail"));
            let msg = format!("{e:#}");
            assert!(msg.contains(needle), "{imp}: `{needle}` not in: {msg}");
        }
    }
}

fn f32_model(node: pb::NodeProto, shapes: &[Vec<usize>]) -> Vec<u8> {
    single_node_model(node, DataType::Float, shapes, opsets())
}

#[test]
fn fewer_than_two_inputs_is_an_error() {
    assert_load_error(
        &f32_model(laurel(&["t0"], "y", None), &[vec![3]]),
        "at least 2 inputs",
    );
    assert_load_error(
        &f32_model(laurel(&["t0"], "y", Some(&[1.0])), &[vec![3]]),
        "at least 2 inputs",
    );
    assert_load_error(&f32_model(laurel(&[], "y", None), &[]), "at least 2 inputs");
}

#[test]
fn coefficient_count_must_match_inputs() {
    let shapes = [vec![3], vec![3], vec![3]];
    for c in [&[][..], &[1.0, 2.0], &[1.0, 2.0, 3.0, 4.0]] {
        assert_load_error(
            &f32_model(laurel(&["t0", "t1", "t2"], "y", Some(c)), &shapes),
            &format!("has {} values for 3 inputs", c.len()),
        );
    }
}

#[test]
fn coefficients_must_be_floats() {
    let mut n = laurel(&["t0", "t1"], "y", None);
    n.attribute.push(pb::AttributeProto {
        name: "coefficients".into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: vec![1, 2],
        ..Default::default()
    });
    assert_load_error(&f32_model(n, &[vec![3], vec![3]]), "coefficients");
}

#[test]
fn unknown_or_repeated_attributes_are_errors() {
    let mut n = laurel(&["t0", "t1"], "y", None);
    n.attribute.push(floats_attr("coefficient", &[1.0, 2.0]));
    assert_load_error(
        &f32_model(n, &[vec![3], vec![3]]),
        "unknown attribute `coefficient`",
    );
    let mut n = laurel(&["t0", "t1"], "y", Some(&[1.0, 2.0]));
    n.attribute.push(floats_attr("coefficients", &[1.0, 2.0]));
    assert_load_error(&f32_model(n, &[vec![3], vec![3]]), "more than once");
}

#[test]
fn non_float_inputs_are_errors() {
    for elem in [DataType::Int64, DataType::Int32, DataType::Bool] {
        let bytes = single_node_model(
            laurel(&["t0", "t1"], "y", None),
            elem,
            &[vec![3], vec![3]],
            opsets(),
        );
        assert_load_error(&bytes, "must be f16, f32 or f64");
    }
}

#[test]
fn mixed_float_types_are_errors() {
    let bytes = model(
        vec![laurel(&["t0", "t1"], "y", None)],
        vec![
            value_info("t0", DataType::Float, &[D::V(3)]),
            value_info("t1", DataType::Double, &[D::V(3)]),
        ],
        vec![value_info("y", DataType::Float, &[])],
        vec![],
        opsets(),
    );
    assert_load_error(&bytes, "same element type");
}

#[test]
fn shapes_that_do_not_broadcast_are_errors() {
    assert_load_error(
        &f32_model(laurel(&["t0", "t1"], "y", None), &[vec![2, 3], vec![4]]),
        "do not broadcast",
    );
    assert_load_error(
        &f32_model(
            laurel(&["t0", "t1", "t2"], "y", Some(&[1.0, 1.0, 0.0])),
            &[vec![2, 3], vec![3], vec![2, 2]],
        ),
        "do not broadcast",
    );
}

#[test]
fn foreign_domains_are_errors() {
    let shapes = [vec![3], vec![3]];
    let mut n = laurel(&["t0", "t1"], "y", None);
    n.domain = String::new();
    assert_load_error(&f32_model(n, &shapes), "default ONNX domain");
    let mut n = laurel(&["t0", "t1"], "y", None);
    n.domain = "com.example".into();
    assert_load_error(&f32_model(n, &shapes), "domain `com.example`");
}

#[test]
fn the_domain_must_be_imported_at_version_1() {
    let n = || laurel(&["t0", "t1"], "y", None);
    let shapes = [vec![3], vec![3]];
    let bytes = single_node_model(n(), DataType::Float, &shapes, vec![opset("", 13)]);
    assert_load_error(&bytes, "does not import the `ai.laurel` opset");
    let bytes = single_node_model(
        n(),
        DataType::Float,
        &shapes,
        vec![opset("", 13), opset("ai.laurel", 2)],
    );
    assert_load_error(&bytes, "imports `ai.laurel` version 2");
}

#[test]
fn empty_inputs_and_wrong_outputs_are_errors() {
    let shapes = [vec![3], vec![3]];
    assert_load_error(
        &f32_model(laurel(&["t0", "", "t1"], "y", None), &shapes),
        "input 1 is empty",
    );
    let n = node("LaurelResidual", "ai.laurel", &["t0", "t1"], &["y", "z"]);
    assert_load_error(&f32_model(n, &shapes), "exactly one output");
}

// ---------------------------------------------------------------------------------
// Low-rank products (`low_rank` attribute).

fn int_attr(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_owned(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// `Σ cᵢ·tᵢ + Σ cⱼ·(pⱼ·Bⱼ)` in f64 from f32 data: the terms broadcast as numpy does,
/// each product is `[rows, r] · [r, d]` over the flattened leading dimensions of `p`.
fn naive_low_rank(
    terms: &[(Vec<usize>, Vec<f32>)],
    products: &[(Vec<usize>, Vec<f32>, Vec<f32>)],
    coefficients: &[f32],
) -> (Vec<usize>, Vec<f64>) {
    let terms64: Vec<(Vec<usize>, Vec<f64>)> = terms
        .iter()
        .map(|(s, v)| (s.clone(), v.iter().map(|&x| f64::from(x)).collect()))
        .collect();
    let (shape, mut out) = naive::<f64>(&terms64, &coefficients[..terms.len()]);
    for ((p_shape, p, b), &c) in products.iter().zip(&coefficients[terms.len()..]) {
        let r = *p_shape.last().unwrap();
        let d = *shape.last().unwrap();
        // p's leading dimensions are trailing ones of the output's (numpy broadcast).
        let p_rows = p.len() / r;
        for (row, chunk) in out.chunks_mut(d).enumerate() {
            let pr = row % p_rows;
            for (j, o) in chunk.iter_mut().enumerate() {
                let s: f64 = (0..r)
                    .map(|k| f64::from(p[pr * r + k]) * f64::from(b[k * d + j]))
                    .sum();
                *o += f64::from(c) * s;
            }
        }
    }
    (shape, out)
}

/// One `LaurelResidual` with terms of `term_shapes` and products `pⱼ` of `p_shapes`
/// by `Bⱼ` of `[r, d]` (initializers when `constant_b`), run every way, against
/// [`naive_low_rank`] to rounding.
#[allow(clippy::many_single_char_names)] // the definition's names: n terms, k products, d wide
fn check_low_rank(
    case: &str,
    term_shapes: &[Vec<usize>],
    p_shapes: &[Vec<usize>],
    d: usize,
    coefficients: Option<&[f32]>,
    constant_b: bool,
) {
    let n = term_shapes.len();
    let k = p_shapes.len();
    let mut names_in: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let mut shapes: Vec<Vec<usize>> = term_shapes.to_vec();
    let mut initializers = Vec::new();
    let mut products = Vec::new();
    let mut tensors: Vec<Tensor> = Vec::new();
    let terms: Vec<(Vec<usize>, Vec<f32>)> = term_shapes
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), data::<f32>(s.iter().product(), i as u64 + 1)))
        .collect();
    for (s, v) in &terms {
        tensors.push(Tensor::from_shape(s, v).unwrap());
    }
    for (j, ps) in p_shapes.iter().enumerate() {
        let r = *ps.last().unwrap();
        let p = data::<f32>(ps.iter().product(), 100 + j as u64);
        let b = data::<f32>(r * d, 200 + j as u64);
        let (pn, bn) = (format!("t{}", shapes.len()), format!("B{j}"));
        names_in.push(pn);
        shapes.push(ps.clone());
        tensors.push(Tensor::from_shape(ps, &p).unwrap());
        if constant_b {
            initializers.push(pb::TensorProto {
                name: bn.clone(),
                dims: vec![r as i64, d as i64],
                data_type: DataType::Float as i32,
                float_data: b.clone(),
                ..Default::default()
            });
        } else {
            let bn_input = format!("t{}", shapes.len());
            shapes.push(vec![r, d]);
            tensors.push(Tensor::from_shape(&[r, d], &b).unwrap());
            names_in.push(bn_input);
            products.push((ps.clone(), p, b));
            continue;
        }
        names_in.push(bn);
        products.push((ps.clone(), p, b));
    }
    let mut op = laurel(&refs(&names_in), "y", coefficients);
    op.attribute.push(int_attr("low_rank", k as i64));
    let inputs = shapes
        .iter()
        .enumerate()
        .filter(|(i, _)| names_in.contains(&format!("t{i}")))
        .map(|(i, s)| value_info(&format!("t{i}"), DataType::Float, &fixed(s)))
        .collect();
    let bytes = model(
        vec![op],
        inputs,
        vec![value_info("y", DataType::Float, &[])],
        initializers,
        opsets(),
    );
    let ones = vec![1.0; n + k];
    let (shape, want) = naive_low_rank(&terms, &products, coefficients.unwrap_or(&ones));
    for path in paths() {
        let got = run(&bytes, &tensors, path);
        let what = format!("{case} ({path:?})");
        assert_eq!(got.shape(), shape.as_slice(), "{what}: shape");
        for (i, (&g, &w)) in values::<f32>(&got).iter().zip(&want).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{what}: element {i} is {g}, want {w}"
            );
        }
    }
}

#[test]
fn low_rank_products_are_added_to_the_terms() {
    // f + x + p·B, the shape of a LAuReL-LR block; then with coefficients, three
    // products of different ranks (PA), and a row count off the kernel's tiles.
    check_low_rank(
        "lr",
        &[vec![2, 5, 33], vec![2, 5, 33]],
        &[vec![2, 5, 4]],
        33,
        None,
        true,
    );
    check_low_rank(
        "pa",
        &[vec![3, 7, 40], vec![3, 7, 40]],
        &[vec![3, 7, 16], vec![3, 7, 1], vec![3, 7, 17]],
        40,
        Some(&[0.5, 2.0, 1.0, -0.25, 3.0]),
        true,
    );
    // One term and one product.
    check_low_rank("one term", &[vec![9, 16]], &[vec![9, 16]], 16, None, true);
    // B a graph input rather than an initializer.
    check_low_rank(
        "B input",
        &[vec![4, 8], vec![4, 8]],
        &[vec![4, 3]],
        8,
        None,
        false,
    );
}

#[test]
fn low_rank_products_broadcast_with_the_terms() {
    // A term smaller than the products (a bias), and products whose leading
    // dimensions the terms broadcast over: both take the MatMul path.
    check_low_rank("bias", &[vec![6], vec![2, 6]], &[vec![2, 4]], 6, None, true);
    check_low_rank(
        "lead",
        &[vec![2, 3, 6], vec![2, 3, 6]],
        &[vec![3, 4]],
        6,
        None,
        true,
    );
}

#[test]
fn a_zero_coefficient_drops_a_product() {
    check_low_rank(
        "zero",
        &[vec![5, 8], vec![5, 8]],
        &[vec![5, 2], vec![5, 3]],
        8,
        Some(&[1.0, 1.0, 0.0, 1.0]),
        true,
    );
    // Every term dropped: the products alone, added to +0.
    check_low_rank(
        "no terms",
        &[vec![5, 8], vec![5, 8]],
        &[vec![5, 2]],
        8,
        Some(&[0.0, 0.0, 2.0]),
        true,
    );
}

#[test]
fn low_rank_products_in_f64_take_the_matmul_path() {
    // y = t0 + p·B in f64: no low-rank kernel (f32 only), the same values.
    let p = [1.0f64, 2.0, -1.0, 0.5, 3.0, -2.0]; // [2, 3]
    let b = [0.25f64, -1.0, 2.0, 1.0, 0.0, 0.5]; // [3, 2]
    let t0 = [10.0f64, 20.0, 30.0, 40.0]; // [2, 2]
    let mut op = laurel(&["t0", "t1", "B"], "y", None);
    op.attribute.push(int_attr("low_rank", 1));
    let bytes = model(
        vec![op],
        vec![
            value_info("t0", DataType::Double, &fixed(&[2, 2])),
            value_info("t1", DataType::Double, &fixed(&[2, 3])),
        ],
        vec![value_info("y", DataType::Double, &[])],
        vec![pb::TensorProto {
            name: "B".into(),
            dims: vec![3, 2],
            data_type: DataType::Double as i32,
            double_data: b.to_vec(),
            ..Default::default()
        }],
        opsets(),
    );
    // p·B = [[1·.25 + 2·2 − 1·0, −1 + 2 − 0.5], [.5·.25 + 3·2 − 2·0, −.5 + 3 − 1]]
    let want = [14.25f64, 20.5, 36.125, 41.5];
    let tensors = [
        Tensor::from_shape(&[2, 2], &t0).unwrap(),
        Tensor::from_shape(&[2, 3], &p).unwrap(),
    ];
    for path in paths() {
        let got = run(&bytes, &tensors, path);
        assert_bits_eq(&format!("f64 ({path:?})"), &got, &[2, 2], &want);
    }
    for imp in Implementation::ALL {
        let m = tract_model(&bytes, imp, true).unwrap();
        let kernels = m
            .nodes()
            .iter()
            .filter(|n| n.op_as::<laurel_residual::LowRankAccumulate>().is_some())
            .count();
        assert_eq!(kernels, 0, "{imp}");
    }
}

#[test]
fn bad_low_rank_attributes_are_errors() {
    let shapes = [vec![2, 3], vec![2, 4], vec![4, 3]];
    let with = |k: i64, inputs: &[&str], c: Option<&[f32]>| {
        let mut n = laurel(inputs, "y", c);
        n.attribute.push(int_attr("low_rank", k));
        n
    };
    assert_load_error(
        &f32_model(with(-1, &["t0", "t1", "t2"], None), &shapes),
        "must be ≥ 0",
    );
    assert_load_error(
        &f32_model(with(2, &["t0", "t1", "t2"], None), &shapes),
        "leave a term",
    );
    // x + p·B has 2 summands: coefficients count them, not the 3 inputs.
    assert_load_error(
        &f32_model(
            with(1, &["t0", "t1", "t2"], Some(&[1.0, 1.0, 1.0])),
            &shapes,
        ),
        "has 3 values for 2 summands",
    );
    // One term and nothing else.
    assert_load_error(
        &f32_model(with(1, &["t0", "t1"], None), &[vec![2, 3], vec![2, 3]]),
        "leave a term",
    );
    // B must be a matrix whose rows are p's last dimension.
    let bad = [vec![2, 3], vec![2, 4], vec![5, 3]];
    assert_load_error(
        &f32_model(with(1, &["t0", "t1", "t2"], None), &bad),
        "low-rank product",
    );
}

#[test]
fn the_low_rank_kernel_takes_products_that_fit_it() {
    // f + x + p·B with B an initializer: one `LowRankAccumulate` for the kernel and
    // auto implementations, none for the expansion (a MatMul and Adds), nor when the
    // terms together are smaller than the product (a bias and a row).
    let build = |t0: &[usize], t1: &[usize]| {
        let mut op = laurel(&["t0", "t1", "t2", "B"], "y", None);
        op.attribute.push(int_attr("low_rank", 1));
        model(
            vec![op],
            vec![
                value_info("t0", DataType::Float, &fixed(t0)),
                value_info("t1", DataType::Float, &fixed(t1)),
                value_info("t2", DataType::Float, &fixed(&[4, 2])),
            ],
            vec![value_info("y", DataType::Float, &[])],
            vec![pb::TensorProto {
                name: "B".into(),
                dims: vec![2, 8],
                data_type: DataType::Float as i32,
                float_data: data::<f32>(16, 3),
                ..Default::default()
            }],
            opsets(),
        )
    };
    let low_rank_ops = |bytes: &[u8], imp: Implementation| {
        let model = tract_model(bytes, imp, true).unwrap();
        let ops: Vec<&laurel_residual::LowRankAccumulate> = model
            .nodes()
            .iter()
            .filter_map(|n| n.op_as::<laurel_residual::LowRankAccumulate>())
            .collect();
        // B is an initializer: packed when the op is wired.
        assert!(ops.iter().all(|op| op.packed() == [true]));
        ops.len()
    };
    let fits = build(&[4, 8], &[4, 8]);
    assert_eq!(low_rank_ops(&fits, Implementation::Auto), 1);
    assert_eq!(low_rank_ops(&fits, Implementation::Kernel), 1);
    assert_eq!(low_rank_ops(&fits, Implementation::Expansion), 0);
    // A bias among the terms is broadcast by the terms' sum: still the kernel.
    assert_eq!(low_rank_ops(&build(&[8], &[4, 8]), Implementation::Auto), 1);
    assert_eq!(low_rank_ops(&build(&[8], &[1, 8]), Implementation::Auto), 0);
}
