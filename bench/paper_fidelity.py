#!/usr/bin/env python3
"""Paper fidelity: the parameters LAuReL adds to a torchvision ResNet-50,
against the paper's Table 1 (+0.003 % RW, +1.68 % RW+LR r = 16, +2.40 %
RW+LR+PA).

Needs Debian's python3-torch and python3-torchvision (run with
/usr/bin/python3): exports `torchvision.models.resnet50(weights=None)` at
opset 17 into a temporary directory, runs `laurelc MODEL -o OUT` for each
variant with and without --include-projection, and prints a markdown table
of the parameters added, as a share of PyTorch's parameter count (what the
paper's percentages are of) and of the exported file's (batch norms folded).

    /usr/bin/python3 bench/paper_fidelity.py [--laurelc target/release/laurelc]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"rw": 0.003, "rw+lr": 1.68, "rw+lr+pa": 2.40}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--laurelc", type=Path, default=ROOT / "target" / "release" / "laurelc")
    args = ap.parse_args()
    import torch
    import torchvision

    model = torchvision.models.resnet50(weights=None).eval()
    torch_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), opset_version=17,
                          input_names=["input"], output_names=["logits"], do_constant_folding=True)
        inspect = json.loads(subprocess.run([str(args.laurelc), "inspect", str(path), "--json"], check=True,
                                            capture_output=True, text=True).stdout)
        onnx_params = inspect["parameter_count"]
        print(f"torchvision {torchvision.__version__}, torch {torch.__version__}: {torch_params:,} parameters "
              f"in PyTorch, {onnx_params:,} in the export (batch norms folded); "
              f"{len(inspect['residuals'])} residuals")
        print()
        print("| variant | blocks | parameters added | % of PyTorch's | % of the export's | paper |")
        print("|---|---|---|---|---|---|")
        for variant in PAPER:
            for projection in (False, True):
                report = Path(tmp) / "report.json"
                flags = ["--variant", variant, "--rank", "16", "--report-json", str(report)]
                if projection:
                    flags.append("--include-projection")
                subprocess.run([str(args.laurelc), str(path), "-o", str(Path(tmp) / "out.onnx"), *flags, "-q"],
                               check=True, capture_output=True)
                r = json.loads(report.read_text())
                added = r["parameters_added"]
                blocks = f"{len(r['blocks'])}" + (" (with projections)" if projection else "")
                print(f"| {variant} | {blocks} | {added:,} | {100 * added / torch_params:.4f} % | "
                      f"{100 * added / onnx_params:.4f} % | {PAPER[variant]} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
