"""Network-level estimation over layer records (the export wires real layers to it)."""

from pathlib import Path

import numpy as np
import pytest

from wrapkit.hw.synth.activity import random_stimulus
from wrapkit.ref.opstream import MacOpStream
from wrapkit.hw.synth.estimate import (LayerRecord, estimate_layers,
                                       stimulus_from_toggle_rates, write_layer_plot)
from wrapkit.ref.configs import PAPER_MACS
from wrapkit.ref.datapath import encode_weights

ROOT = Path(__file__).resolve().parents[1]


def test_toggle_rate_stream_has_the_requested_statistics():
    cfg = PAPER_MACS["8x8_acc8_k2"]
    p_a = [0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0, 0.25]
    p_w = [0.1] * 8
    stim = stimulus_from_toggle_rates(cfg, {"a": p_a, "w": p_w}, 20000, seed=2).check(cfg)
    codes = stim.a & 0xFF
    flips = ((codes[1:] ^ codes[:-1])[:, None] >> np.arange(8)) & 1
    assert flips.mean(axis=0) == pytest.approx(p_a, abs=0.015)
    assert stim.a.min() < 0 < stim.a.max()        # signed values, not raw codes
    with pytest.raises(ValueError, match=r"^bit_toggle\['w'\] must hold 8 probabilities"):
        stimulus_from_toggle_rates(cfg, {"a": p_a, "w": [0.1]}, 10)


def test_layer_record_validation():
    with pytest.raises(ValueError, match=r"^macs must be an integer >= 0, got -1$"):
        LayerRecord("conv", -1, float_only=True)
    with pytest.raises(ValueError, match=r"^layer 'conv' needs operands or bit_toggle"):
        LayerRecord("conv", 10)


def test_network_estimate(tmp_path, cache_dir):
    cfg = PAPER_MACS["3x1_acc8_k4"]
    rng = np.random.default_rng(0)
    sparse_a = np.where(rng.random((8, 25)) < 0.8, 0, rng.integers(0, 8, (8, 25)))
    sparse_w = encode_weights(np.where(rng.random((8, 25)) < 0.5, 1, -1), "binary")
    layers = [
        LayerRecord("conv1", 10_000, float_only=True),
        LayerRecord("conv2", 200_000, operands=random_stimulus(cfg, 200, seed=1)),
        LayerRecord("conv3", 100_000, operands=MacOpStream.from_dot_products(sparse_a, sparse_w)),
        LayerRecord("fc", 5_000, bit_toggle={"a": [0.3, 0.3, 0.3], "w": [0.5]}),
    ]
    est = estimate_layers(layers, ROOT / "rtl" / f"{cfg.name}.json",
                          baseline_manifest=ROOT / "rtl" / f"{PAPER_MACS['3x1_acc32'].name}.json",
                          array_macs=16, n_ops=200)
    d, b = est["datapath"], est["baseline"]
    assert d["design"] == cfg.name and b["design"] == "mac_a3u_wb_acc32"
    rows = {r["layer"]: r for r in est["layers"]}
    assert rows["conv1"]["datapath_energy_nj"] == 0
    assert d["macs_per_inference"] == 305_000
    assert d["energy_per_inference_nj"] == pytest.approx(
        sum(r["datapath_energy_fj_per_mac"] * r["macs"] * 1e-6 for r in rows.values()))
    # Sparse operands cost less per MAC than uniform random ones, on both datapaths.
    for role in ("datapath", "baseline"):
        assert rows["conv3"][f"{role}_energy_fj_per_mac"] < rows["conv2"][f"{role}_energy_fj_per_mac"]
    assert d["array_area_mm2"] == pytest.approx(16 * d["mac_area_um2"] * 1e-6)
    assert d["latency_us"] == pytest.approx(305_000 / 16 * d["cycle_time_ns"] * 1e-3)
    # The 8-bit accumulator wins on energy, area and speed.
    assert est["gains"]["energy"] > 1.5 and est["gains"]["area"] > 1.5
    assert est["gains"]["latency"] > 1
    plot = write_layer_plot(est, tmp_path / "layers.png")
    assert plot.stat().st_size > 1000
