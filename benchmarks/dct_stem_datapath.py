"""The integer DCT stem on the generic graph tools: `wrapkit cosim layer --node stem` on the RTL
MAC and `wrapkit estimate` counting the stem beside the network's other MAC nodes.

The stem's operands do not depend on training (fixed DCT weights, pixels − 128), so an
untrained DCTStemNet with calibrated activation ranges gives the stem's real figures; the two
quantized convolutions after it are untrained here and only show that the estimate counts every
integer node. The stem register is 16 bits (the DC coefficient wraps); the baseline is 32 bits.

Usage::

    .venv/bin/python benchmarks/dct_stem_datapath.py [--out docs/results] [--images 2]

Writes dct_stem_datapath.{md,json} into --out (cosimulation on Verilator, estimate on OSU018).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from wrapkit.common.datasets import load_images
from wrapkit.common.files import atomic_write_json, atomic_write_text
from wrapkit.models.dct_stem import DCTStemNet
from wrapkit.models.graph_nets import calibrate_ranges
from wrapkit.models.qconfig import Accumulator
from wrapkit.models.trace import trace_model
from wrapkit.ref.graph import write_graph

WRAPKIT = str(Path(sys.executable).with_name("wrapkit"))


def _export(path, acc_bits):
    torch.manual_seed(0)
    pixels = load_images("fashion-mnist", "test").pixels[:64]
    x = torch.from_numpy(pixels.astype(np.float32)) / 255
    spec = {"shape": list(pixels.shape[1:]), "pixel_max": 255, "mean": 0.0, "std": 1.0,
            "dataset": "fashion-mnist"}
    model = DCTStemNet(None, stem_accumulator=Accumulator(acc_bits), factor=2, width=8).eval()
    calibrate_ranges(model, x)
    traced = trace_model(model, input_spec=spec)
    write_graph(path, traced.graph, input=spec, num_classes=10,
                source={"run": "benchmarks/dct_stem_datapath.py (untrained after the stem)"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--images", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "stem16.wkx"
        _export(model, 16)
        cosim_json, est_json, est_md = (Path(tmp) / n for n in ("cosim.json", "est.json",
                                                                  "est.md"))
        subprocess.run([WRAPKIT, "cosim", "layer", str(model), "--node", "stem", "--sim",
                        "verilator", "--images", str(args.images), "--json", str(cosim_json)],
                       check=True)
        subprocess.run([WRAPKIT, "estimate", str(model), "--images", str(args.images),
                        "--ops", "4000", "--json", str(est_json), "--markdown", str(est_md)],
                       check=True)
        cosim = json.loads(cosim_json.read_text())
        est = json.loads(est_json.read_text())
        table = est_md.read_text()
    stem = next(r for r in est["layers"] if r["layer"] == "stem")
    doc = {"cosim": {k: cosim.get(k) for k in ("name", "sim", "checked", "mismatches",
                                                 "final_mismatches", "images")},
           "stem": {k: stem.get(k) for k in ("mac", "baseline_mac", "macs", "overflow_rate",
                                             "datapath_energy_fj_per_mac",
                                             "baseline_energy_fj_per_mac")},
           "gains": est.get("gains"), "command": "benchmarks/dct_stem_datapath.py"}
    out = Path(args.out)
    atomic_write_json(out / "dct_stem_datapath.json", doc)
    c = doc["cosim"]
    atomic_write_text(out / "dct_stem_datapath.md", (
        "# The integer DCT stem on the generic graph tools\n\n"
        "`wrapkit cosim layer stem16.wkx --node stem --sim verilator`: "
        f"{c['checked']:,} MAC operations of {c['images']} Fashion-MNIST test image(s), "
        f"{c['mismatches']} mismatches, {c['final_mismatches']} dot products differing from "
        "the integer engine.\n\n"
        "`wrapkit estimate stem16.wkx` (OSU 180 nm; the stem's 16-bit wrapping register "
        "against a 32-bit one; the convolutions after the stem already have 32-bit "
        "accumulators, so they are their own baseline; single run, untrained after the "
        "stem — the stem's operands do not depend on training):\n\n"
        + table.split("\n", 2)[2]))
    print(f"dct stem datapath -> {out}/dct_stem_datapath.md")


if __name__ == "__main__":
    main()
