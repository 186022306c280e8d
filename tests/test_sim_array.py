"""The exported layer array on Icarus and Verilator (cocotb): whole layers end to end,
outputs bit for bit against wrapkit.ref, cycles exactly as the cycle model says.

The testbench is wrapkit.sim.tb_array; each design is generated and compiled once per
machine (sim/cosim_array.py and the runner cache them).
"""

import json
import re
import shutil

import numpy as np
import pytest

from wrapkit.hw.array.config import ArrayConfig
from wrapkit.hw.array.cycles import layer_cycles
from wrapkit.hw.array.jobs import LayerShape
from random_layers import random_job
from wrapkit.ref.datapath import MacConfig
from wrapkit.common.errors import UserError
from wrapkit.sim.cosim_array import array_rtl, cosim_array

WRAPNET = MacConfig(3, False, "binary", None, 8, 2)
# WrapNet's MAC (3-bit unsigned x binary, 8-bit accumulator, k = 2) on 3 x 4 PEs.
CFG_A = ArrayConfig(3, 4, WRAPNET, out_bits=4, act_depth=512, weight_depth=1024,
                    out_depth=512, max_channels=32)
# Signed uniform operands wider than the layer's, a 10-bit accumulator, no cyclic unit.
CFG_B = ArrayConfig(2, 3, MacConfig(4, True, "uniform", 6, 10, None), out_bits=8,
                    act_depth=256, weight_depth=512, out_depth=256, max_channels=16)


def _jobs_a():
    rng = np.random.default_rng(11)
    return [
        random_job(LayerShape.conv2d(4, 6, 5, 7, 3, 1, 1), WRAPNET, rng, out_bits=4,
                   name="conv_pad1"),
        random_job(LayerShape.conv2d(3, 7, 6, 5, 3, 2, 0), WRAPNET, rng, out_bits=3,
                   name="conv_stride2_overflow", saturate=True),
        random_job(LayerShape.linear(40, 9), WRAPNET, rng, name="linear_raw_y"),
        random_job(LayerShape.conv2d(1, 5, 5, 6, 2, 1, 0), WRAPNET, rng, out_bits=4,
                   name="drain_bound"),   # K = 4 < 12 PEs: the feed waits for the drain
    ]


def _jobs_b():
    rng = np.random.default_rng(12)
    layer = MacConfig(3, False, "uniform", 4, 10, None)
    return [
        random_job(LayerShape.conv2d(3, 5, 4, 4, 3, 1, 1), layer, rng, out_bits=8,
                   name="uniform_conv", saturate=True),
        random_job(LayerShape.conv2d(2, 6, 6, 5, 2, 2, 0), layer, rng, name="uniform_raw_y"),
    ]


def _check(result, cfg, jobs):
    assert result.ok, (result.sim_result.summary() + "\n" + "\n".join(result.examples)
                       + "\n".join(result.cycle_errors))
    assert result.checked == sum(j.shape.out_channels * j.shape.positions for j in jobs)
    for job, layer, out in zip(jobs, result.layers, result.outputs):
        model = layer_cycles(cfg, job.shape)
        assert layer["cycles"] == layer["cycles_by_sim_time"] == model.total
        assert layer["mismatches"] == 0 and out.shape == (job.shape.out_channels,
                                                          job.shape.positions)


@pytest.mark.sim
def test_array_wrapnet_layers(sim):
    jobs = _jobs_a()
    result = cosim_array(array_rtl(CFG_A), jobs, sim)
    _check(result, CFG_A, jobs)
    # The overflow layer really wraps the 8-bit accumulators.
    from wrapkit.hw.array.jobs import reference_outputs
    z = reference_outputs(jobs[1])["z"]
    assert (np.abs(z) >= 128).mean() > 0.5


@pytest.mark.sim
def test_array_uniform_no_cyclic(sim):
    jobs = _jobs_b()
    result = cosim_array(array_rtl(CFG_B), jobs, sim)
    _check(result, CFG_B, jobs)


@pytest.mark.sim
def test_wrong_slope_is_caught(tmp_path):
    """The Verilog folds with k = 2, the manifest claims k = 4: outputs of folded dot
    products differ and are counted and reported, one line each."""
    src = array_rtl(CFG_A)
    manifest = json.loads(src.read_text())
    manifest["config"]["mac"]["k"] = 4
    shutil.copy(src.with_suffix(".v"), tmp_path / src.with_suffix(".v").name)
    path = tmp_path / src.name
    path.write_text(json.dumps(manifest))
    rng = np.random.default_rng(3)
    k4 = MacConfig(3, False, "binary", None, 8, 4)
    job = random_job(LayerShape.conv2d(4, 6, 6, 8, 3, 1, 1), k4, rng, name="k4",
                     saturate=True)
    result = cosim_array(path, [job], "icarus")
    assert not result.ok and not result.sim_result.ok
    assert 0 < result.mismatches < result.checked == 8 * 36
    assert len(result.examples) == min(20, result.mismatches)
    for line in result.examples:
        assert re.match(r"^k4: output \(channel \d+, y \d+, x \d+\) expected -?\d+ "
                        r"\(0x[0-9a-f]+\) got -?\d+ \(0x[0-9a-f]+\) \(dot product -?\d+, MAC "
                        r"output -?\d+\)$", line), line



# A depthwise layer on 2 x 2 PEs, as the trained `dw` node of an 8-wide depthwise network.
CFG_DW = ArrayConfig(2, 2, MacConfig(8, False, "ternary", None, 12, 2), out_bits=8,
                     act_depth=512, weight_depth=128, out_depth=512, max_channels=8)


@pytest.mark.sim
def test_first_results_equal_to_the_reset_values(sim):
    """The first tile's dot products all 0 (a blank image border), so every PE result keeps
    its reset value until the drain lane selects it: the selection must still be defined.
    Icarus evaluates an ``always @*`` block only when one of its inputs changes, so a result
    multiplexer built as one would hand the drain lane an unresolved value here."""
    rng = np.random.default_rng(21)
    mac = CFG_DW.mac
    jobs = []
    for name, shape, blank_rows in (
            ("dw_blank_border", LayerShape.conv2d(8, 8, 8, 8, 3, 1, 1, groups=8), 2),
            ("dense_all_zero", LayerShape.conv2d(2, 4, 4, 3, 3, 1, 1), 4)):
        job = random_job(shape, mac, rng, name=name)
        job.codes[:, :blank_rows, :] = 0
        jobs.append(job)
    from wrapkit.hw.array.jobs import reference_outputs
    assert all((reference_outputs(j)["z"][:, :2] == 0).all() for j in jobs)
    result = cosim_array(array_rtl(CFG_DW), jobs, sim)
    _check(result, CFG_DW, jobs)
    for job, out in zip(jobs, result.outputs):
        np.testing.assert_array_equal(out, reference_outputs(job)["out"], err_msg=job.name)


def test_cosim_refuses_a_layer_that_does_not_fit():
    job = random_job(LayerShape.conv2d(9, 8, 8, 4, 3, 1, 1), WRAPNET, np.random.default_rng(0),
                     out_bits=4, name="big")
    with pytest.raises(UserError, match=r"^act_depth is 512 but layer big \(conv 3x3/1 pad 1 "
                                        r"9->4 @8x8\) \(in_channels\*H\*W words\) needs >= "
                                        r"576; regenerate the array with --act-depth 576$"):
        cosim_array(array_rtl(CFG_A), [job], "icarus")


# --- `wrapkit cosim layer --datapath array` on an export -----------------------------------

def _tiny_export(path):
    """A hand-made, valid export of a 3-layer integer network for 8x8 digits: conv 3x3
    1->4 + 2x2 pool (3-bit inputs, 4-bit outputs), conv 3x3/2 4->6 (4-bit inputs), linear
    24->10 dequantized to the logits; binary weights, 8-bit accumulators, k = 2. (Trained
    exports are exercised by benchmarks/array_layer.py; this one keeps the test fast.)"""
    from wrapkit.ref.datapath import encode_weights
    from wrapkit.ref.requant import fixed_point
    from wrapkit.ref.wkx import SCHEMA, write_export

    rng = np.random.default_rng(7)
    tensors, layers = {}, []

    def integer(name, kind, geo, in_shape, out_shape, cout, fan_in, bits, out_bits, pool):
        mac = MacConfig(bits, False, "binary", None, 8, 2)
        w = rng.choice([-1, 1], (cout, fan_in))
        shape = (cout, *in_shape[:1], geo["kernel"], geo["kernel"]) if kind == "conv2d" \
            else (cout, fan_in)
        tensors[f"{name}.weight_codes"] = encode_weights(w, "binary").astype(np.uint8).reshape(
            shape)
        tensors[f"{name}.weight_scale"] = np.full(cout, 0.1, np.float32)
        spec = {"name": name, "kind": kind, "precision": "integer", "in_shape": in_shape,
                "out_shape": out_shape, "pool": pool, **geo,
                "input_quant": {"step": 0.5, "bits": bits},
                "weights": {"kind": "binary", "bits": None, "code_bits": 1},
                "accumulator": {"bits": 8, "k": 2}, "mac": mac.to_dict()}
        if out_bits:
            qmax = (1 << out_bits) - 1
            m_real = rng.uniform(0.05, 0.2, cout) * rng.choice([-1, 1], cout, p=[0.2, 0.8])
            c_real = rng.uniform(0, qmax, cout)
            m, b, s = fixed_point(m_real, c_real, qmax=qmax, acc_bits=8)
            tensors.update({f"{name}.requant_multiplier": m, f"{name}.requant_bias": b,
                            f"{name}.requant_shift": s,
                            f"{name}.requant_scale_real": m_real.astype(np.float64),
                            f"{name}.requant_offset_real": c_real.astype(np.float64)})
            spec["output"] = {"kind": "requant", "bits": out_bits, "clamp": [0, qmax]}
        else:
            tensors[f"{name}.dequant_scale"] = np.full(cout, 0.05, np.float32)
            tensors[f"{name}.dequant_shift"] = np.zeros(cout, np.float32)
            spec["output"] = {"kind": "dequant", "relu": True}
        layers.append(spec)

    pool = {"kind": "max", "size": 2, "stride": 2}
    integer("conv1", "conv2d", {"kernel": 3, "stride": 1, "padding": 1, "out_channels": 4},
            [1, 8, 8], [4, 4, 4], 4, 9, 3, 4, pool)
    integer("conv2", "conv2d", {"kernel": 3, "stride": 2, "padding": 1, "out_channels": 6},
            [4, 4, 4], [6, 2, 2], 6, 36, 4, 4, None)
    integer("fc", "linear", {"in_features": 24, "out_features": 10}, [6, 2, 2], [10], 10, 24,
            4, None, None)
    header = {"schema": SCHEMA, "generator": "tests", "source": {},
              "input": {"shape": [1, 8, 8], "pixel_max": 16, "mean": 0.3, "std": 0.4,
                        "dataset": "digits"},
              "num_classes": 10, "layers": layers}
    write_export(path, header, tensors)
    return path


@pytest.mark.sim
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_cli_cosim_layer_datapath_array(tmp_path, capsys, layer):
    from wrapkit.cli import main

    model = _tiny_export(tmp_path / "tiny.wkx")
    out = tmp_path / "result.json"
    rc = main(["cosim", "layer", str(model), "--layer", str(layer), "--datapath", "array",
               "--rows", "3", "--cols", "2", "--images", "2", "--sim", "icarus",
               "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    r = json.loads(out.read_text())
    assert r["ok"] and r["mismatches"] == 0 and r["testbench_mismatches"] == 0
    assert r["outputs"] == 2 * [256, 24, 10][layer] and r["images"] == 2
    assert r["cycles"] == r["model_cycles"] > 0 and 0 < r["utilisation"] <= 1
    assert (r["pooled_checked"] == 2 * 64) == (layer == 0) and r["pooled_mismatches"] == 0
    assert re.search(r"cycles per image [\d,]+ \(cycle model [\d,]+\), [\d,]+ MACs per image, "
                     r"MAC utilisation [\d.]+%", printed)


def test_cli_cosim_layer_array_errors(tmp_path, capsys):
    from wrapkit.cli import main

    model = _tiny_export(tmp_path / "tiny.wkx")
    # CFG_A's activations are 3 bits; conv2 takes 4-bit codes.
    rc = main(["cosim", "layer", str(model), "--layer", "1", "--datapath", "array",
               "--array", str(array_rtl(CFG_A))])
    assert rc == 2
    assert re.match(r"^wrapkit cosim: error: act_bits is 3 but layer conv2\[image 0\] \(conv "
                    r"3x3/2 pad 1 4->6 @4x4\) \(4-bit unsigned activations\) needs >= 4; "
                    r"regenerate the array with --act-bits 4$", capsys.readouterr().err)
    assert main(["cosim", "layer", str(model), "--layer", "0", "--datapath", "array",
                 "--rows", "0"]) == 2
    assert re.match(r"^wrapkit cosim: error: rows must be in \[1, 64\], got 0 \(fix --rows\)$",
                    capsys.readouterr().err)
    assert main(["cosim", "layer", str(model), "--layer", "0", "--datapath", "array",
                 "--max-ops", "10"]) == 2
    assert "--max-ops applies to --datapath mac" in capsys.readouterr().err
