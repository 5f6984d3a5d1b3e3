#!/usr/bin/env python3
"""Deep synthetic baseline chains for `laurelc fuse` (and augmentation) scaling runs.

    .venv/bin/python bench/chains.py --kind resnet|preln --blocks N --out FILE [--variant-free] [--seed S]

Writes one ONNX model (opset 18, static shapes) to FILE; nothing is committed.

- ``resnet``: input f32[1,8,8,8]; N identity basic blocks
  ``x = Relu(Add(x, Conv3x3(Relu(Conv3x3(x)))))`` (8 channels, Conv with bias), then
  GlobalAveragePool, Flatten, Gemm to ``logits`` f32[1,10].
- ``preln``: input f32[1,4,16]; N pre-LN blocks
  ``x = Add(x, MatMul(Relu(MatMul(LayerNormalization(x), W1)), W2))`` (16 -> 32 -> 16, no
  biases), then a final LayerNormalization to ``y`` f32[1,4,16].

They are plain baselines: their residual adds are ordinary ``Add(x, f)``; laurelc
augments them itself (``laurelc FILE -o AUG --variant rw``) before ``laurelc fuse AUG``.
``--variant-free`` is that default made explicit (no LAuReL variant is ever written
here); it changes nothing in the output.

Each branch's last weight (and bias) is scaled by 0.1 so activations stay bounded over
hundreds of blocks. Weights come from ``numpy.random.default_rng(seed)`` in a fixed order
and names are stable, so the same arguments give a byte-identical file. The model
builder is fixtures/generate.py's ``GraphBuilder``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

REPO = Path(__file__).resolve().parents[1]
FLOAT = TensorProto.FLOAT
OPSET = 18
BRANCH_SCALE = 0.1  # scale of each branch's last weight and bias


def _fixture_generator():
    spec = importlib.util.spec_from_file_location("laurelc_fixture_generate",
                                                  REPO / "fixtures" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _fixture_generator()


def resnet_chain(blocks: int, seed: int = 0, channels: int = 8, spatial: int = 8) -> onnx.ModelProto:
    c = channels
    g = gen.GraphBuilder(f"resnet_chain_{blocks}", seed=seed)
    h = g.input("input", FLOAT, [1, c, spatial, spatial])
    for i in range(blocks):
        p = f"block{i}"
        f = g.conv(h, f"{p}/conv1", c, c, 3, bias=True)
        f = g.node("Relu", [f], f"{p}/relu1")
        w = g.f32(f"{p}/conv2.weight",
                  g.rng.standard_normal((c, c, 3, 3)) * (BRANCH_SCALE * math.sqrt(2.0 / (9 * c))))
        b = g.f32(f"{p}/conv2.bias", g.rng.standard_normal(c) * (0.1 * BRANCH_SCALE))
        f = g.node("Conv", [f, w, b], f"{p}/conv2", kernel_shape=[3, 3], strides=[1, 1],
                   pads=[1, 1, 1, 1], dilations=[1, 1], group=1)
        h = g.node("Add", [h, f], f"{p}/add")
        h = g.node("Relu", [h], f"{p}/relu_out")
    h = g.node("GlobalAveragePool", [h], "head/gap")
    h = g.node("Flatten", [h], "head/flatten", axis=1)
    w = g.weight("head/fc.weight", (10, c), fan_in=c)
    b = g.bias("head/fc.bias", 10)
    g.node("Gemm", [h, w, b], "head/fc", outputs=["logits"], alpha=1.0, beta=1.0, transB=1)
    g.output("logits", FLOAT, [1, 10])
    return g.model(f"Synthetic ResNet-like chain: {blocks} basic blocks Relu(x + Conv(Relu(Conv(x)))), "
                   f"{c} channels {spatial}x{spatial}, GAP, Flatten, Gemm. Baseline for laurelc "
                   f"(bench/chains.py, seed {seed}).", opset=OPSET)


def preln_chain(blocks: int, seed: int = 0, seq: int = 4, d: int = 16, ff: int = 32) -> onnx.ModelProto:
    g = gen.GraphBuilder(f"preln_chain_{blocks}", seed=seed)
    x = g.input("x", FLOAT, [1, seq, d])
    for i in range(blocks):
        p = f"block{i}"
        h = g.layernorm(x, f"{p}/ln", d)
        h = g.linear(h, f"{p}/fc1", d, ff, bias=False)
        h = g.node("Relu", [h], f"{p}/relu")
        w2 = g.weight(f"{p}/fc2.weight", (ff, d), fan_in=ff, gain=BRANCH_SCALE)
        h = g.node("MatMul", [h, w2], f"{p}/fc2/matmul")
        x = g.node("Add", [x, h], f"{p}/residual")
    g.node("LayerNormalization", [x, g.f32("final_ln.gamma", np.ones(d)), g.f32("final_ln.beta", np.zeros(d))],
           "final_ln", outputs=["y"], axis=-1, epsilon=1e-5)
    g.output("y", FLOAT, [1, seq, d])
    return g.model(f"Synthetic pre-LN chain: {blocks} blocks x + MatMul(Relu(MatMul(LN(x)))), "
                   f"[1,{seq},{d}], hidden {ff}, final LayerNormalization. Baseline for laurelc "
                   f"(bench/chains.py, seed {seed}).", opset=OPSET)


KINDS = {"resnet": resnet_chain, "preln": preln_chain}


def build(kind: str, blocks: int, seed: int = 0, check: bool = True) -> bytes:
    if blocks < 1:
        raise ValueError("--blocks must be at least 1")
    model = KINDS[kind](blocks, seed=seed)
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString(deterministic=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=sorted(KINDS), required=True)
    ap.add_argument("--blocks", type=int, required=True, help="number of residual blocks (>= 1)")
    ap.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    ap.add_argument("--variant-free", action="store_true",
                    help="plain baseline with no LAuReL variant (the default; accepted for explicitness)")
    ap.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    ap.add_argument("--no-check", action="store_true", help="skip onnx.checker full_check (huge N)")
    args = ap.parse_args(argv)
    if args.blocks < 1:
        ap.error("--blocks must be at least 1")
    data = build(args.kind, args.blocks, seed=args.seed, check=not args.no_check)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({args.kind}, {args.blocks} blocks, {len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
