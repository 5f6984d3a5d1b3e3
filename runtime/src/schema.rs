//! Attribute checks before tract sees a model.
//!
//! tract trusts attributes: a `LayerNormalization` whose `axis` is −115 for
//! a rank-3 input becomes a `usize` near 2⁶⁴, and its shape inference loops
//! over that many axes (laurelc hung, at 12 MB); an axis of 5 for a rank-3
//! input ran and gave zeros; other out-of-range values panic inside tract.
//! [`check`] refuses such a model first, naming the node and the attribute.
//!
//! What is checked, per node, where the attribute is present:
//! - single axes (`axis` of `LayerNormalization`, `Softmax`, `LogSoftmax`,
//!   `Hardmax`, `Concat`, `Gather`, `GatherElements`, `ScatterElements`,
//!   `Split`, `ArgMax`, `ArgMin`, `Flatten`, `Compress`,
//!   `QuantizeLinear`, `DequantizeLinear`) within `[−r, r)` (`Flatten`:
//!   `[−r, r]`) for an input of known rank `r`, and within `[−64, 64)`
//!   otherwise;
//! - axis lists (`axes` of the reductions, `Squeeze`, `Unsqueeze` (against
//!   the output's rank) and `Slice` before opset 10): each in range, none
//!   twice;
//! - `Transpose`'s `perm`: a permutation of `0..n`, `n` the input's rank
//!   where known;
//! - convolutions and pools (`Conv`, `ConvTranspose`, `ConvInteger`,
//!   `QLinearConv`, `MaxPool`, `AveragePool`, `LpPool`): `kernel_shape`
//!   positive; `strides` and `dilations` positive and one per spatial axis;
//!   `pads` non-negative, two per spatial axis; `output_padding`
//!   non-negative, one per spatial axis; `group` positive and dividing the
//!   weight's output channels (a weight initializer's first dimension);
//! - `DepthToSpace`/`SpaceToDepth` `blocksize`, `LRN` `size`: positive;
//!   `Split`'s `split`: non-negative.
//!
//! Ranks come from graph inputs, initializers and `Constant` values (not
//! `value_info`, which can be stale: the loader has a strategy that ignores
//! it) and are carried through the ops whose output rank
//! follows from their inputs' (elementwise ops, broadcasting, norms,
//! convolutions, `MatMul`, `Gemm`, `Flatten`, `Reshape` by a constant shape,
//! `Unsqueeze`, `Squeeze`, `Gather`, reductions); elsewhere a rank is
//! unknown and only the wide bound applies. Subgraphs are checked with
//! what they declare and what they capture.
//!
//! Complexity: O(nodes + attributes), subgraphs included.

use std::collections::HashMap;

use tract_onnx::pb;

/// The widest rank the checks accept where a rank is not known.
pub const MAX_RANK: i64 = 64;

/// Checks every node's attributes (see the module docs); the first problem
/// as one line naming the node, its op and the attribute.
///
/// # Errors
/// That line.
pub fn check(proto: &pb::ModelProto) -> Result<(), String> {
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    if let Some(g) = &proto.graph {
        check_graph(g, &HashMap::new(), opset)?;
    }
    Ok(())
}

fn tensor_rank(t: &pb::TypeProto) -> Option<usize> {
    match &t.value {
        Some(pb::type_proto::Value::TensorType(tt)) => tt.shape.as_ref().map(|s| s.dim.len()),
        _ => None,
    }
}

fn check_graph(
    g: &pb::GraphProto,
    outer: &HashMap<String, usize>,
    opset: i64,
) -> Result<(), String> {
    let mut ranks: HashMap<String, usize> = outer.clone();
    let mut consts: HashMap<String, Vec<i64>> = HashMap::new();
    let mut dims: HashMap<String, Vec<i64>> = HashMap::new();
    for i in &g.initializer {
        ranks.insert(i.name.clone(), i.dims.len());
        dims.insert(i.name.clone(), i.dims.clone());
        if i.data_type == 7 && i.dims.len() == 1 {
            consts.insert(i.name.clone(), int64s(i));
        }
    }
    // Graph inputs' declared shapes are what the loader feeds; `value_info`
    // and output declarations can be stale (the loader has a strategy that
    // ignores them), so they size nothing here.
    for v in &g.input {
        if let Some(r) = v.r#type.as_ref().and_then(tensor_rank) {
            ranks.entry(v.name.clone()).or_insert(r);
        }
    }
    for n in &g.node {
        check_node(n, &ranks, &dims, opset)?;
        if n.op_type == "Constant"
            && let Some(t) = n
                .attribute
                .iter()
                .find(|a| a.name == "value")
                .and_then(|a| a.t.as_ref())
            && let Some(out) = n.output.first()
        {
            ranks.insert(out.clone(), t.dims.len());
            if t.data_type == 7 && t.dims.len() == 1 {
                consts.insert(out.clone(), int64s(t));
            }
        }
        if let Some(r) = output_rank(n, &ranks, &consts) {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                ranks.entry(o.clone()).or_insert(r);
            }
        }
        for a in &n.attribute {
            for sub in a.g.iter().chain(&a.graphs) {
                check_graph(sub, &ranks, opset)?;
            }
        }
    }
    Ok(())
}

/// The values of a 1-D int64 tensor (raw or in `int64_data`).
fn int64s(t: &pb::TensorProto) -> Vec<i64> {
    if t.raw_data.is_empty() {
        t.int64_data.clone()
    } else {
        t.raw_data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect()
    }
}

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn input_rank(n: &pb::NodeProto, i: usize, ranks: &HashMap<String, usize>) -> Option<usize> {
    n.input
        .get(i)
        .filter(|s| !s.is_empty())
        .and_then(|s| ranks.get(s))
        .copied()
}

/// The output rank of `n` where it follows from its inputs' (see the module docs).
#[allow(clippy::too_many_lines)] // one table
fn output_rank(
    n: &pb::NodeProto,
    ranks: &HashMap<String, usize>,
    consts: &HashMap<String, Vec<i64>>,
) -> Option<usize> {
    let r0 = input_rank(n, 0, ranks);
    let ints = |name: &str| attr(n, name).map(|a| a.ints.len());
    let axes_len = |slot: usize| {
        ints("axes").or_else(|| n.input.get(slot).and_then(|s| consts.get(s)).map(Vec::len))
    };
    match n.op_type.as_str() {
        "Relu"
        | "Sigmoid"
        | "Tanh"
        | "Abs"
        | "Neg"
        | "Exp"
        | "Log"
        | "Sqrt"
        | "Erf"
        | "Softmax"
        | "LogSoftmax"
        | "Hardmax"
        | "LayerNormalization"
        | "BatchNormalization"
        | "InstanceNormalization"
        | "GroupNormalization"
        | "RMSNormalization"
        | "Dropout"
        | "Identity"
        | "Cast"
        | "CastLike"
        | "Clip"
        | "LeakyRelu"
        | "HardSigmoid"
        | "HardSwish"
        | "Gelu"
        | "Elu"
        | "Selu"
        | "Softplus"
        | "Softsign"
        | "Mish"
        | "Conv"
        | "ConvTranspose"
        | "ConvInteger"
        | "MaxPool"
        | "AveragePool"
        | "LpPool"
        | "GlobalAveragePool"
        | "GlobalMaxPool"
        | "Transpose"
        | "Slice"
        | "Pad"
        | "Resize"
        | "Upsample"
        | "DepthToSpace"
        | "SpaceToDepth"
        | "Tile"
        | "CumSum"
        | "Reciprocal"
        | "Floor"
        | "Ceil"
        | "Round"
        | "Sign"
        | "Not"
        | "QuantizeLinear"
        | "DequantizeLinear"
        | "DynamicQuantizeLinear"
        | "Split"
        | "Concat"
        | "LRN"
        | "Sin"
        | "Cos"
        | "IsNaN"
        | "IsInf"
        | "ReverseSequence"
        | "Trilu" => r0,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Equal"
        | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "And" | "Or" | "Xor"
        | "Where" | "PRelu" | "Mod" | "BitShift" => {
            let rs: Option<Vec<usize>> = (0..n.input.len())
                .map(|i| input_rank(n, i, ranks))
                .collect();
            rs.and_then(|rs| rs.into_iter().max())
        }
        "MatMul" | "MatMulInteger" => match (r0, input_rank(n, 1, ranks)) {
            (Some(a), Some(b)) if a >= 2 && b >= 2 => Some(a.max(b)),
            _ => None,
        },
        "Gemm" | "Flatten" => Some(2),
        "Shape" => Some(1),
        "Size" => Some(0),
        "Reshape" => n.input.get(1).and_then(|s| consts.get(s)).map(Vec::len),
        "Unsqueeze" => Some(r0? + axes_len(1)?),
        "Squeeze" => r0?.checked_sub(axes_len(1)?),
        "Gather" => (r0? + input_rank(n, 1, ranks)?).checked_sub(1),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => {
            if attr(n, "keepdims").is_none_or(|a| a.i != 0) {
                r0
            } else {
                r0?.checked_sub(axes_len(1)?)
            }
        }
        _ => None,
    }
}

/// `node `name` (Op): …`.
fn problem(n: &pb::NodeProto, what: &str) -> String {
    format!("node `{}` ({}): {what}", n.name, n.op_type)
}

/// Whether `axis` is an axis of a rank-`rank` tensor (`[−r, r)`, or
/// `[−r, r]` with `inclusive`), or, without a rank, within [`MAX_RANK`].
fn axis_problem(axis: i64, rank: Option<usize>, inclusive: bool) -> Option<String> {
    let (r, known) = rank.map_or((MAX_RANK, false), |r| {
        (i64::try_from(r).unwrap_or(MAX_RANK), true)
    });
    let high = if inclusive { r } else { r - 1 };
    if (-r..=high).contains(&axis) {
        return None;
    }
    Some(if known {
        format!(
            "is out of range for its rank-{r} input: expected {} ≤ axis ≤ {high}",
            -r
        )
    } else {
        format!(
            "is beyond any rank laurel-runtime accepts: expected {} ≤ axis ≤ {high}",
            -r
        )
    })
}

fn check_node(
    n: &pb::NodeProto,
    ranks: &HashMap<String, usize>,
    dims: &HashMap<String, Vec<i64>>,
    opset: i64,
) -> Result<(), String> {
    if !(n.domain.is_empty() || n.domain == "ai.onnx") {
        return Ok(());
    }
    let op = n.op_type.as_str();
    let r0 = input_rank(n, 0, ranks);
    check_axes(n, r0, opset)?;
    if op == "Transpose"
        && let Some(p) = attr(n, "perm")
    {
        check_perm(n, &p.ints, r0)?;
    }
    if matches!(
        op,
        "Conv"
            | "ConvTranspose"
            | "ConvInteger"
            | "QLinearConv"
            | "MaxPool"
            | "AveragePool"
            | "LpPool"
    ) {
        check_window(n, ranks, dims)?;
    }
    for (name, applies) in [
        ("blocksize", op == "DepthToSpace" || op == "SpaceToDepth"),
        ("size", op == "LRN"),
    ] {
        if applies
            && let Some(a) = attr(n, name)
            && a.i < 1
        {
            return Err(problem(n, &format!("{name} = {} must be positive", a.i)));
        }
    }
    if op == "Split"
        && let Some(a) = attr(n, "split")
        && a.ints.iter().any(|&s| s < 0)
    {
        return Err(problem(
            n,
            &format!("split = {:?} has a negative size", a.ints),
        ));
    }
    Ok(())
}

/// `axis` and `axes` (see the module docs); `r0` the first input's rank.
fn check_axes(n: &pb::NodeProto, r0: Option<usize>, opset: i64) -> Result<(), String> {
    let op = n.op_type.as_str();
    if let Some(a) = attr(n, "axis")
        && matches!(
            op,
            "LayerNormalization"
                | "Softmax"
                | "LogSoftmax"
                | "Hardmax"
                | "Concat"
                | "Gather"
                | "GatherElements"
                | "ScatterElements"
                | "Split"
                | "ArgMax"
                | "ArgMin"
                | "Flatten"
                | "Compress"
                | "QuantizeLinear"
                | "DequantizeLinear"
        )
        && let Some(why) = axis_problem(a.i, r0, op == "Flatten")
    {
        return Err(problem(n, &format!("axis = {} {why}", a.i)));
    }
    let listed = op.starts_with("Reduce")
        || op == "Squeeze"
        || op == "Unsqueeze"
        || (op == "Slice" && opset < 10);
    let Some(a) = attr(n, "axes").filter(|_| listed) else {
        return Ok(());
    };
    let rank = match op {
        "Unsqueeze" => r0.map(|r| r + a.ints.len()),
        _ => r0,
    };
    for (k, &axis) in a.ints.iter().enumerate() {
        if let Some(why) = axis_problem(axis, rank, false) {
            return Err(problem(n, &format!("axes[{k}] = {axis} {why}")));
        }
    }
    if let Some(r) = rank {
        let norm = |x: i64| {
            if x < 0 {
                x + i64::try_from(r).unwrap_or(0)
            } else {
                x
            }
        };
        let mut seen: Vec<i64> = a.ints.iter().map(|&x| norm(x)).collect();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err(problem(
                n,
                &format!("axes = {:?} names an axis twice", a.ints),
            ));
        }
    }
    Ok(())
}

/// `Transpose`'s `perm`: a permutation of `0..n`, `n` the input's rank.
fn check_perm(n: &pb::NodeProto, perm: &[i64], r0: Option<usize>) -> Result<(), String> {
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if !sorted
        .iter()
        .enumerate()
        .all(|(i, &v)| i64::try_from(i) == Ok(v))
    {
        return Err(problem(
            n,
            &format!("perm = {perm:?} is not a permutation of 0..{}", perm.len()),
        ));
    }
    match r0 {
        Some(r) if r != perm.len() => Err(problem(
            n,
            &format!(
                "perm = {perm:?} has {} entries for a rank-{r} input",
                perm.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// Convolution and pool attributes: kernel, strides, dilations, pads, group.
fn check_window(
    n: &pb::NodeProto,
    ranks: &HashMap<String, usize>,
    dims: &HashMap<String, Vec<i64>>,
) -> Result<(), String> {
    let weight_slot = if n.op_type == "QLinearConv" { 3 } else { 1 };
    let kernel = attr(n, "kernel_shape").map(|a| a.ints.as_slice());
    let spatial = kernel
        .map(<[i64]>::len)
        .or_else(|| {
            input_rank(n, weight_slot, ranks)
                .filter(|_| n.op_type.contains("Conv"))
                .and_then(|r| r.checked_sub(2))
        })
        .or_else(|| input_rank(n, 0, ranks).and_then(|r| r.checked_sub(2)));
    if let Some(k) = kernel
        && k.iter().any(|&v| v < 1)
    {
        return Err(problem(
            n,
            &format!("kernel_shape = {k:?} must be positive"),
        ));
    }
    for (name, per_axis, min) in [
        ("strides", 1, 1),
        ("dilations", 1, 1),
        ("pads", 2, 0),
        ("output_padding", 1, 0),
    ] {
        let Some(a) = attr(n, name) else { continue };
        if let Some(&v) = a.ints.iter().find(|&&v| v < min) {
            let bound = if min == 1 { "positive" } else { "non-negative" };
            return Err(problem(
                n,
                &format!("{name} = {:?} must be {bound} (has {v})", a.ints),
            ));
        }
        if let Some(s) = spatial
            && a.ints.len() != per_axis * s
        {
            return Err(problem(
                n,
                &format!(
                    "{name} = {:?} has {} entries for {s} spatial axes (expected {})",
                    a.ints,
                    a.ints.len(),
                    per_axis * s
                ),
            ));
        }
    }
    if let Some(a) = attr(n, "group") {
        if a.i < 1 {
            return Err(problem(n, &format!("group = {} must be positive", a.i)));
        }
        // Conv's weight is [out, in/group, …] and ConvTranspose's [in, out/group, …]:
        // either way its first dimension is a multiple of the group count.
        if let Some(&first) = n
            .input
            .get(weight_slot)
            .and_then(|w| dims.get(w))
            .and_then(|d| d.first())
            && first % a.i != 0
        {
            return Err(problem(
                n,
                &format!(
                    "group = {} does not divide the weight's first dimension {first}",
                    a.i
                ),
            ));
        }
    }
    Ok(())
}
