"""The layer datapath (hw/array) in Amaranth's simulator, against wrapkit.ref and the cycle
model; its parameter and fitting errors; its Verilog export and `wrapkit rtl array`.

The cocotb runs of the exported Verilog on Icarus and Verilator are tests/test_sim_array.py.
"""

import json
import re

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wrapkit.cli import main
from wrapkit.hw.array.config import DESCRIPTOR, MULT_WIDTH, ArrayConfig, array_ports
from wrapkit.hw.array.cycles import layer_cycles
from wrapkit.hw.array.design import array_design, fold_zero_init
from wrapkit.hw.array.jobs import (
    LayerJob,
    LayerShape,
    check_job,
    descriptor,
    jobs_bytes,
    load_program,
    reference_outputs,
)
from wrapkit.hw.array.pe import ProcessingElement
from wrapkit.hw.array.pysim import run_layers
from wrapkit.hw.array.requant import Requantizer
from random_layers import random_job
from wrapkit.hw.array.top import LayerArray
from wrapkit.hw.manifest import load_manifest
from wrapkit.ref.datapath import MacConfig, encode_weights, mac_stream
from wrapkit.common.errors import UserError
from wrapkit.ref.requant import requantize

WRAPNET = MacConfig(3, False, "binary", None, 8, 2)


def _cfg(rows, cols, mac=WRAPNET, **kw):
    params = dict(out_bits=4, act_depth=512, weight_depth=1024, out_depth=512, max_channels=32)
    params.update(kw)
    return ArrayConfig(rows, cols, mac, **params)


# --- processing element -------------------------------------------------------------------

def test_pe_accumulates_forwards_and_captures():
    cfg = MacConfig(4, True, "uniform", 4, 6, None)
    pe = ProcessingElement(cfg)
    rng = np.random.default_rng(3)
    n = 300
    a = rng.integers(-8, 8, n)
    w = rng.integers(0, 16, n)
    en = rng.random(n) < 0.85
    # Dot products of random length back to back (clr on the first, last on the final op).
    clr = np.zeros(n, bool)
    last = np.zeros(n, bool)
    starts = np.sort(rng.choice(np.arange(1, n), 40, replace=False))
    clr[0] = True
    clr[starts] = True
    last[starts - 1] = True
    last[-1] = True
    acc_ref, _ = mac_stream(a, w, en, clr, cfg)
    got_res, fwd = [], []

    async def bench(ctx):
        for i in range(n + 3):
            if i < n:
                ctx.set(pe.a_in, int(a[i]))
                ctx.set(pe.w_in, int(w[i]))
                ctx.set(pe.en_in, int(en[i]))
                ctx.set(pe.clr_in, int(clr[i]))
                ctx.set(pe.last_in, int(last[i]))
            else:
                ctx.set(pe.en_in, 0)
                ctx.set(pe.last_in, 0)
            await ctx.tick()
            fwd.append((ctx.get(pe.a_out), ctx.get(pe.w_out), ctx.get(pe.en_out),
                        ctx.get(pe.clr_out), ctx.get(pe.last_out)))
            got_res.append((ctx.get(pe.cap), ctx.get(pe.res)))

    sim = Simulator(pe)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # Forwarding: one cycle late, unchanged.
    assert fwd[:n] == [(int(a[i]), int(w[i]), int(en[i]), int(clr[i]), int(last[i]))
                       for i in range(n)]
    # res after op i's capture edge (i + 3 edges) holds the dot product ending at i.
    for i in np.flatnonzero(last):
        assert got_res[i + 1][0] == 1                       # cap during cycle i + 2
        assert got_res[i + 2][1] == acc_ref[i], i


def test_pe_signature_and_errors():
    pe = ProcessingElement(WRAPNET)
    Fragment.get(pe, None)
    members = pe.signature.members
    assert [n for n in members] == ["a_in", "w_in", "en_in", "clr_in", "last_in", "a_out",
                                    "w_out", "en_out", "clr_out", "last_out", "res", "cap"]
    assert members["res"].shape.width == 8 and members["res"].shape.signed
    with pytest.raises(TypeError, match=r"^config must be a MacConfig, not 3$"):
        ProcessingElement(3)
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 'x'$"):
        LayerArray("x")


# --- requantizer --------------------------------------------------------------------------

def _run_requantizer(acc_bits, out_bits, ys, ms, bs, ss, qmax):
    dut = Requantizer(acc_bits=acc_bits, out_bits=out_bits)
    got = []

    async def bench(ctx):
        for i in range(len(ys) + 2):
            if i < len(ys):
                ctx.set(dut.y, int(ys[i]))
                ctx.set(dut.m, int(ms[i]))
                ctx.set(dut.b, int(bs[i]))
                ctx.set(dut.shift, int(ss[i]))
                ctx.set(dut.qmax, qmax)
            await ctx.tick()
            got.append(ctx.get(dut.code))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got[Requantizer.LATENCY - 1:len(ys) + Requantizer.LATENCY - 1])


@pytest.mark.parametrize("acc_bits,out_bits", [(8, 3), (32, 8), (12, 1)])
def test_requantizer_matches_ref(acc_bits, out_bits):
    rng = np.random.default_rng(acc_bits)
    n = 400
    half = 1 << (acc_bits - 1)
    ys = np.concatenate([[-half, half - 1, 0, -1], rng.integers(-half, half, n - 4)])
    lim = 1 << (MULT_WIDTH - 1)
    ms = rng.integers(-(1 << 29), (1 << 29) + 1, n)
    ms[:3] = [lim - 1, -lim, 0]
    ss = rng.integers(0, 63, n)
    ss[:4] = [0, 62, 31, 48]
    # Biases as large as check_bounds allows: |y*m| + |b| < 2^62.
    room = (1 << 62) - 1 - np.abs(ms).astype(object) * half
    bs = np.array([int(rng.integers(-r, r + 1)) if r < (1 << 62) else 0 for r in room],
                  dtype=np.int64)
    qmax = (1 << out_bits) - 1
    got = _run_requantizer(acc_bits, out_bits, ys, ms, bs, ss, qmax)
    want = np.array([requantize(np.array([y]), np.array([m]), np.array([b]), np.array([s]),
                                qmax)[0] for y, m, b, s in zip(ys, ms, bs, ss)])
    assert np.array_equal(got, want)
    # Both clamps and the values between are reached.
    assert (want == 0).any() and (want == qmax).any()


def test_requantizer_errors():
    with pytest.raises(ValueError, match=r"^acc_bits must be in \[2, 32\], got 33$"):
        Requantizer(acc_bits=33, out_bits=8)
    with pytest.raises(ValueError, match=r"^out_bits must be in \[1, 8\], got 0$"):
        Requantizer(acc_bits=8, out_bits=0)


# --- the whole array: outputs bit for bit, cycles exactly as the model says --------------

# (array rows, cols, array MAC, layer MAC, layer shape, out_bits or None for raw y, saturate)
CASES = {
    "conv_pad1": (3, 4, WRAPNET, WRAPNET, LayerShape.conv2d(3, 5, 4, 7, 3, 1, 1), 4, False),
    "conv_stride2_overflow": (3, 4, WRAPNET, WRAPNET, LayerShape.conv2d(4, 7, 6, 5, 3, 2, 1),
                              3, True),
    "linear_raw": (3, 4, WRAPNET, WRAPNET, LayerShape.linear(30, 6), None, False),
    # K = 4 < rows*cols = 12: the feed waits for the drain lane.
    "drain_bound": (3, 4, WRAPNET, WRAPNET, LayerShape.conv2d(1, 4, 4, 5, 2, 1, 0), 4, False),
    "1x1_array_pad2": (1, 1, WRAPNET, WRAPNET, LayerShape.conv2d(2, 3, 2, 2, 3, 1, 2), 2, False),
    "wide_rows_small_map": (5, 2, WRAPNET, WRAPNET, LayerShape.conv2d(2, 2, 3, 3, 1, 1, 0),
                            4, False),
    "uniform_narrower_layer": (2, 3, MacConfig(4, True, "uniform", 6, 10, None),
                               MacConfig(3, False, "uniform", 4, 10, None),
                               LayerShape.conv2d(3, 5, 5, 4, 3, 2, 1), 4, True),
    "ternary_k3_raw": (2, 2, MacConfig(3, False, "ternary", None, 6, 3),
                       MacConfig(3, False, "ternary", None, 6, 3),
                       LayerShape.conv2d(2, 4, 4, 3, 3, 1, 1), None, True),
    "acc32_stride3": (4, 2, MacConfig(8, True, "uniform", 8, 32, 4),
                      MacConfig(8, True, "uniform", 8, 32, 4),
                      LayerShape.conv2d(2, 7, 8, 3, 2, 3, 1), 4, False),
}


def _job(case, seed=0):
    rows, cols, amac, lmac, shape, out_bits, saturate = CASES[case]
    rng = np.random.default_rng(seed)
    cfg = _cfg(rows, cols, amac)
    return cfg, random_job(shape, lmac, rng, out_bits=out_bits, name=case, saturate=saturate)


@pytest.mark.parametrize("case", list(CASES))
def test_array_layer_matches_ref_and_cycle_model(case):
    cfg, job = _job(case)
    (res,) = run_layers(cfg, [job])
    ref = reference_outputs(job)
    assert np.array_equal(res["out"], ref["out"]), case
    model = layer_cycles(cfg, job.shape)
    assert res["cycles"] == model.total
    assert res["edges"] == model.total + 1      # done is visible after the counted edge
    assert res["busy"] == (1, 0)
    if CASES[case][-1]:
        # The stimulus really overflows the accumulator (and folds where k is set).
        half = 1 << (job.mac.acc_bits - 1)
        assert ((ref["z"] < -half) | (ref["z"] >= half)).mean() > 0.2
    if job.requant is not None:
        qmax = (1 << job.requant[3]) - 1
        assert (ref["out"] == 0).any() and (ref["out"] == qmax).any()


def test_layers_back_to_back_without_reset():
    """A second layer with fewer outputs and different geometry: nothing of the first
    leaks into it (buffers overwritten, counters and drain restarted); loads while busy
    change nothing."""
    cfg = _cfg(3, 4)
    rng = np.random.default_rng(5)
    jobs = [random_job(LayerShape.conv2d(3, 6, 6, 9, 3, 1, 1), WRAPNET, rng, out_bits=4),
            random_job(LayerShape.conv2d(2, 3, 5, 2, 2, 2, 0), WRAPNET, rng, out_bits=2),
            random_job(LayerShape.linear(7, 13), WRAPNET, rng)]
    # While busy, the testbench scribbles random writes on the load port: all ignored.
    results = run_layers(cfg, jobs, scribble=np.random.default_rng(6))
    for job, res in zip(jobs, results):
        assert np.array_equal(res["out"], reference_outputs(job)["out"])
        assert res["cycles"] == layer_cycles(cfg, job.shape).total


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(1, 4), cols=st.integers(1, 4), cin=st.integers(1, 3),
       cout=st.integers(1, 6), h=st.integers(1, 6), w=st.integers(1, 6),
       kernel=st.integers(1, 3), stride=st.integers(1, 3), pad=st.integers(0, 2),
       seed=st.integers(0, 2**16))
def test_random_shapes_rtl_vs_ref_and_model(rows, cols, cin, cout, h, w, kernel, stride,
                                            pad, seed):
    if h + 2 * pad < kernel or w + 2 * pad < kernel:
        return
    shape = LayerShape.conv2d(cin, h, w, cout, kernel, stride, pad)
    cfg = _cfg(rows, cols)
    job = random_job(shape, WRAPNET, np.random.default_rng(seed), out_bits=4)
    (res,) = run_layers(cfg, [job])
    assert np.array_equal(res["out"], reference_outputs(job)["out"])
    assert res["cycles"] == layer_cycles(cfg, shape).total


# --- cycle model --------------------------------------------------------------------------

def test_cycle_model_worked_example():
    # 8x8 array, a 3x3 conv 32 -> 64 on 14x14 (VGG-7's third conv at width 32):
    # K = 288 >= 64, 25 position tiles x 8 channel tiles, no stalls.
    cfg = ArrayConfig(8, 8, WRAPNET, act_depth=8192, weight_depth=32768, out_depth=16384)
    rep = layer_cycles(cfg, LayerShape.conv2d(32, 14, 14, 64, 3, 1, 1))
    assert (rep.position_tiles, rep.channel_tiles, rep.period, rep.stall_cycles) == \
        (25, 8, 288, 0)
    assert rep.total == 8 + 1 + 199 * 288 + 287 + 1 + 7 + 7 + 3 + 63 + 3 == 57692
    assert rep.macs == 196 * 64 * 288
    assert rep.utilisation == pytest.approx(rep.macs / (64 * 57692))


@given(rows=st.integers(1, 64), cols=st.integers(1, 64), cin=st.integers(1, 512),
       cout=st.integers(1, 512), hw=st.integers(1, 64), kernel=st.integers(1, 7))
def test_cycle_model_bounds(rows, cols, cin, cout, hw, kernel):
    shape = LayerShape.conv2d(cin, hw, hw, cout, kernel, 1, kernel // 2)
    cfg = ArrayConfig(rows, cols, WRAPNET)
    rep = layer_cycles(cfg, shape)
    assert 0 < rep.utilisation <= 1
    assert rep.total >= rep.tiles * shape.fan_in
    assert rep.total == rep.init + rep.tiles * rep.period + rep.fill_drain
    assert rep.stall_cycles == rep.tiles * max(0, rows * cols - shape.fan_in)


# --- parameters and fitting errors --------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,message", [
    ({"rows": 0}, ValueError, r"^rows must be in \[1, 64\], got 0$"),
    ({"cols": 65}, ValueError, r"^cols must be in \[1, 64\], got 65$"),
    ({"rows": 2.0}, TypeError, r"^rows must be an integer, not 2\.0$"),
    ({"mac": "3x1"}, TypeError, r"^mac must be a MacConfig, not '3x1'$"),
    ({"mac": MacConfig(8, True, "uniform", 8, 40, None)}, ValueError,
     r"^acc_bits must be in \[2, 32\] for an array, got 40$"),
    ({"out_bits": 9}, ValueError, r"^out_bits must be in \[1, 8\], got 9$"),
    ({"act_depth": 1}, ValueError, r"^act_depth must be in \[2, 1048576\], got 1$"),
    ({"max_channels": 1 << 17}, ValueError, r"^max_channels must be in \[2, 65536\], got "
                                            r"131072$"),
])
def test_array_config_errors(kwargs, exc, message):
    params = {"rows": 2, "cols": 2, "mac": WRAPNET, **kwargs}
    with pytest.raises(exc, match=message):
        ArrayConfig(**params)


@pytest.mark.parametrize("kwargs,message", [
    ({"kind": "conv3d"}, r"^kind must be one of conv2d, linear, got 'conv3d'$"),
    ({"kernel": 16}, r"^kernel must be in \[1, 15\], got 16$"),
    ({"in_h": 2, "kernel": 5}, r"^kernel 5 with padding 0 does not fit the 2x4 input$"),
    ({"kind": "linear"}, r"^a linear layer has in_h = in_w = kernel = stride = 1 and "
                         r"padding = 0"),
])
def test_layer_shape_errors(kwargs, message):
    params = {"kind": "conv2d", "in_channels": 2, "in_h": 4, "in_w": 4, "out_channels": 3,
              "kernel": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        LayerShape(**params)


def _fit_error(cfg, job):
    with pytest.raises(UserError) as info:
        check_job(cfg, job)
    return str(info.value)


def test_check_job_names_parameter_and_minimum():
    rng = np.random.default_rng(0)
    shape = LayerShape.conv2d(4, 6, 6, 8, 3, 1, 1)   # 144 inputs, 288 weights, 288 outputs
    job = random_job(shape, WRAPNET, rng, out_bits=4, name="conv2")
    where = r"layer conv2 \(conv 3x3/1 pad 1 4->8 @6x6\)"
    cases = [
        (_cfg(2, 2, act_depth=100), rf"^act_depth is 100 but {where} \(in_channels\*H\*W "
                                    r"words\) needs >= 144; regenerate the array with "
                                    r"--act-depth 144$"),
        (_cfg(2, 2, weight_depth=200), r"^weight_depth is 200 but .* needs >= 288; "
                                       r"regenerate the array with --weight-depth 288$"),
        (_cfg(2, 2, out_depth=287), r"^out_depth is 287 but .* needs >= 288;"),
        (_cfg(2, 2, max_channels=4), r"^max_channels is 4 but .* needs >= 8; regenerate "
                                     r"the array with --max-channels 8$"),
        (_cfg(2, 2, out_bits=3), r"^out_bits is 3 but .* \(4-bit output codes\) needs >= 4;"),
        (_cfg(2, 2, MacConfig(2, False, "binary", None, 8, 2)),
         r"^act_bits is 2 but .* \(3-bit unsigned activations\) needs >= 3; regenerate the "
         r"array with --act-bits 3$"),
        (_cfg(2, 2, MacConfig(3, True, "binary", None, 8, 2)),
         r"^act_bits is 3 but .* needs >= 4;"),
        (_cfg(2, 2, MacConfig(3, False, "binary", None, 9, 2)),
         rf"^acc_bits is 9 but {where} accumulates in 8 bits; regenerate the array with "
         r"--acc-bits 8$"),
        (_cfg(2, 2, MacConfig(3, False, "binary", None, 8, None)),
         r"^k is None but .* has k = 2; regenerate the array with --k 2$"),
        (_cfg(2, 2, MacConfig(3, False, "ternary", None, 8, 2)),
         r"^weight_kind is ternary but .* has binary weights; regenerate the array with "
         r"--weight-kind binary$"),
    ]
    for cfg, message in cases:
        assert re.match(message, _fit_error(cfg, job)), (message, _fit_error(cfg, job))
    # Signed layer activations into an unsigned array; narrower uniform weights.
    signed = MacConfig(3, True, "uniform", 4, 8, None)
    sjob = random_job(shape, signed, rng, name="s")
    assert re.match(r"^layer s .* has signed activations but the array's are unsigned; "
                    r"regenerate the array with --act-signed$",
                    _fit_error(_cfg(2, 2, MacConfig(8, False, "uniform", 4, 8, None)), sjob))
    assert re.match(r"^weight_bits is 3 but layer s .* needs >= 4; regenerate the array "
                    r"with --weight-bits 4$",
                    _fit_error(_cfg(2, 2, MacConfig(8, True, "uniform", 3, 8, None)), sjob))
    # A multiplier beyond the array's 31-bit signed requantization multiplier.
    m, b, s, ob = job.requant
    big = LayerJob(shape, WRAPNET, job.codes, job.weight_codes,
                   (np.full_like(m, 1 << 30), np.zeros_like(b), s, ob), "big")
    assert re.match(r"^layer big .*: requantization multiplier 1073741824 does not fit the "
                    r"array's 31-bit signed multiplier", _fit_error(_cfg(2, 2), big))


def test_check_job_descriptor_field_overflow():
    # 64 rows on a 64-wide, 1-high map with stride 8 (8 positions per row): a position tile
    # advances 8 map rows, 4096 buffer words, beyond the 11-bit registers of tiny buffers.
    cfg = ArrayConfig(64, 1, WRAPNET, act_depth=64, weight_depth=2, out_depth=8,
                      max_channels=2)
    job = random_job(LayerShape.conv2d(1, 1, 64, 1, 1, 8, 0), WRAPNET, np.random.default_rng(0))
    assert re.match(r"^layer random \(conv 1x1/8 pad 0 1->1 @1x64\): descriptor field "
                    r"adv_addr = 4096 does not fit its 11-bit register; regenerate the array "
                    r"with larger buffers", _fit_error(cfg, job))


def test_layer_job_errors():
    shape = LayerShape.conv2d(1, 2, 2, 1, 1)
    with pytest.raises(ValueError, match=r"^codes must lie in \[0, 7\] for 3-bit activations$"):
        LayerJob(shape, WRAPNET, [[[0, 8], [1, 1]]], [[0]])
    with pytest.raises(ValueError, match=r"^binary weight codes must lie in \[0, 1\]$"):
        LayerJob(shape, WRAPNET, [[[0, 1], [1, 1]]], [[2]])
    with pytest.raises(ValueError, match=r"^requant m, b, shift must each hold out_channels"):
        LayerJob(shape, WRAPNET, np.zeros((1, 2, 2)), [[0]], ([1, 2], [0, 0], [0, 0], 4))


# --- host driver ----------------------------------------------------------------------------

def test_load_program_layout():
    cfg = _cfg(2, 2, MacConfig(4, True, "uniform", 8, 12, None))
    lmac = MacConfig(3, False, "uniform", 4, 12, None)
    shape = LayerShape.conv2d(2, 2, 3, 3, 1)
    weights = np.array([[-8, 7], [1, -1], [0, 3]])
    job = LayerJob(shape, lmac, np.arange(12).reshape(2, 2, 3) % 8,
                   encode_weights(weights, "uniform", 4))
    sel, addr, data = load_program(cfg, job)
    desc = descriptor(cfg, shape)
    assert list(data[:len(DESCRIPTOR)]) == list(desc.values())
    assert desc["requant"] == 0 and desc["adv_x"] == 2 % 3
    act = data[sel == 0]
    assert list(act) == list(np.arange(12) % 8)
    # Weights go in as j*out_channels + o, re-encoded as 8-bit two's complement.
    w = data[sel == 1]
    assert list(w) == [(-8) & 255, 1, 0, 7, (-1) & 255, 3]
    assert list(addr[sel == 1]) == list(range(6))


# --- Verilog, manifest, CLI -----------------------------------------------------------------

def test_design_manifest_and_reproducible_verilog(tmp_path):
    cfg = _cfg(2, 3)
    d1, d2 = array_design(cfg), array_design(cfg)
    assert d1.verilog == d2.verilog and d1.manifest == d2.manifest
    assert "initial begin" not in d1.verilog         # every buffer's init folded to a loop
    from wrapkit.hw.verilog import write_designs
    write_designs([d1], tmp_path)
    m = load_manifest(tmp_path / f"{cfg.name}.json")
    assert m["design"] == "array" and m["config"] == cfg.to_dict()
    assert [(p["name"], p["direction"], p["width"]) for p in m["ports"][2:]] == \
        [(n, d, w) for n, d, w, _ in array_ports(cfg)]
    assert m["hierarchy"]["grid.pe_1_2.accum"] == "accumulator"
    assert m["hierarchy"]["drain.cyclic"] == "cyclic" and m["latency"] == 1
    assert [f["name"] for f in m["interface"]["descriptor"]] == [f[0] for f in DESCRIPTOR]
    assert m["interface"]["load_targets"]["weight"]["depth"] == 1024
    # A config edited by hand is caught.
    bad = json.loads((tmp_path / f"{cfg.name}.json").read_text())
    bad["config"]["rows"] = 3
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(UserError, match=r"hierarchy .* disagrees with the config"):
        load_manifest(tmp_path / "bad.json")



def _combinational_blocks(verilog):
    """(module, body) of every ``always @*`` block of a Yosys-written Verilog file."""
    blocks = []
    for module in re.split(r"\n(?=module )", verilog):
        name = module.split("(", 1)[0].removeprefix("module").strip()
        for part in re.split(r"\n  always @\* begin", module)[1:]:
            blocks.append((name, part.split("\n  end\n", 1)[0]))
    return blocks


@pytest.mark.parametrize("rows,cols,mac", [
    (1, 1, WRAPNET), (2, 2, MacConfig(8, False, "ternary", None, 12, 2)),
    (3, 2, MacConfig(4, True, "uniform", 6, 10, None))])
def test_every_combinational_block_is_evaluated_by_the_reset(rows, cols, mac):
    """Icarus runs an ``always @*`` block only when one of its inputs changes. A block that
    reads ``rst`` runs when the testbench's reset toggles; one that does not (Amaranth
    writes an Array index as one) keeps x on its outputs for as long as its inputs keep
    their initial values, e.g. the drain lane's result selection while every result is 0."""
    blocks = _combinational_blocks(array_design(_cfg(rows, cols, mac)).verilog)
    assert len(blocks) > 20
    stuck = [(name, body) for name, body in blocks if not re.search(r"\brst\b", body)]
    assert not stuck, stuck[:3]


def test_fold_zero_init_only_folds_complete_zero_blocks():
    block = ("  reg [2:0] mem [2:0];\n  initial begin\n    mem[0] = 3'h0;\n    mem[1] = 3'h0;\n"
             "    mem[2] = 3'h0;\n  end\n")
    assert fold_zero_init(block) == (
        "  reg [2:0] mem [2:0];\n  integer mem__i;\n  initial for (mem__i = 0; mem__i <= 2; "
        "mem__i = mem__i + 1) mem[mem__i] = 3'h0;\n")
    nonzero = block.replace("mem[1] = 3'h0", "mem[1] = 3'h5")
    assert fold_zero_init(nonzero) == nonzero
    partial = block.replace("    mem[2] = 3'h0;\n", "")
    assert fold_zero_init(partial) == partial


def test_cli_rtl_array(tmp_path, capsys):
    rc = main(["rtl", "array", "--rows", "2", "--cols", "2", "--config", "3x1_acc8_k2",
               "--out-bits", "4", "--act-depth", "64", "--weight-depth", "128", "--out-depth",
               "32", "--max-channels", "8", "--out", str(tmp_path)])
    assert rc == 0
    name = "array_r2c2_a3u_wb_acc8_k2_q4_a64_w128_o32_c8"
    assert capsys.readouterr().out.split() == [str(tmp_path / f"{name}.v"),
                                               str(tmp_path / f"{name}.json")]
    assert load_manifest(tmp_path / f"{name}.json")["config"]["act_depth"] == 64


@pytest.mark.parametrize("argv,message", [
    (["--rows", "0", "--cols", "2", "--config", "3x1_acc8_k2"],
     "rows must be in [1, 64], got 0 (fix --rows)"),
    (["--rows", "2", "--cols", "2", "--act-bits", "8", "--weight-kind", "uniform",
      "--weight-bits", "8", "--acc-bits", "40"],
     "acc_bits must be in [2, 32] for an array, got 40 (fix --acc-bits)"),
    (["--rows", "2", "--cols", "2", "--config", "3x1_acc8_k2", "--out-depth", "1"],
     "out_depth must be in [2, 1048576], got 1 (fix --out-depth)"),
    (["--rows", "2", "--cols", "2"], "missing --act-bits, --weight-kind, --acc-bits"),
])
def test_cli_rtl_array_errors(tmp_path, capsys, argv, message):
    assert main(["rtl", "array", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wrapkit rtl: error: {message}")
    assert not any(tmp_path.iterdir())


def test_jobs_round_trip(tmp_path):
    from wrapkit.hw.array.jobs import load_jobs
    _, job = _job("uniform_narrower_layer")
    _, raw = _job("linear_raw")
    path = tmp_path / "jobs.npz"
    path.write_bytes(jobs_bytes([job, raw]))
    back = load_jobs(path)
    assert [j.name for j in back] == ["uniform_narrower_layer", "linear_raw"]
    assert back[0].shape == job.shape and back[0].mac == job.mac and back[1].requant is None
    for a, b in zip(back[0].requant, job.requant):
        assert np.array_equal(a, b)
    assert np.array_equal(reference_outputs(back[0])["out"], reference_outputs(job)["out"])


def test_elaborates_for_every_weight_kind():
    for mac in (WRAPNET, MacConfig(2, False, "ternary", None, 5, None),
                MacConfig(8, True, "uniform", 8, 16, 3)):
        Fragment.get(LayerArray(_cfg(2, 2, mac)), None)
