"""A whole exported network on the RTL layer array (`wrapkit cosim network --datapath array`)."""

import json

import pytest

from wrapkit.common.errors import UserError
from wrapkit.sim.network_array import cosim_network


def test_tiny_network_on_the_array(tiny_export, sim):
    _, wkx, _ = tiny_export
    r = cosim_network(wkx, images=1, sim=sim, rows=2, cols=2)
    assert r.ok, (r.examples, r.cycle_errors)
    assert r.mismatches == 0 and r.chain_mismatches == 0 and r.predictions_equal == 1
    assert r.cycles_per_inference == r.model_cycles_per_inference > 0
    assert len(r.layers) == 6 and all(l["mismatches"] == 0 for l in r.layers)
    assert r.outputs_checked > 0


def test_cli_cosim_network(tiny_export, tmp_path, capsys):
    from wrapkit.cli import main

    _, wkx, _ = tiny_export
    out = tmp_path / "net.json"
    rc = main(["cosim", "network", str(wkx), "--datapath", "array", "--images", "1",
               "--sim", "icarus", "--rows", "2", "--cols", "2", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "0 mismatches against the engine" in text and "predictions equal 1/1" in text
    assert json.loads(out.read_text())["ok"] is True


def test_cli_cosim_network_bad_input(tmp_path, capsys):
    from wrapkit.cli import main

    assert main(["cosim", "network", str(tmp_path / "missing.wkx"), "--sim", "icarus"]) == 2
    assert "missing.wkx" in capsys.readouterr().err
    with pytest.raises(UserError, match="--images must be an integer >= 1"):
        cosim_network(tmp_path / "missing.wkx", images=0)


def test_fast_array_harness_runs_the_network(tiny_export):
    """The Verilator C++ harness (benchmarks/array_network_throughput.py): every layer of the
    tiny network for two images, layer-major (the second image reuses the loaded weights),
    outputs equal to wrapkit.ref, cycles equal to the model."""
    import numpy as np

    from wrapkit.hw.array.cycles import layer_cycles
    from wrapkit.hw.array.jobs import check_job, reference_outputs, words_to_outputs
    from wrapkit.hw.manifest import load_manifest, verilog_path
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.engine import Engine
    from wrapkit.ref.wkx import read_export
    from wrapkit.sim.cosim_array import array_rtl
    from wrapkit.sim.fast_array import build_fast_array, run_fast_array
    from wrapkit.sim.layer_array import layer_jobs
    from wrapkit.sim.network_array import network_array_config

    _, wkx, _ = tiny_export
    engine = Engine(read_export(wkx))
    layers = list(engine.integer_layers)
    pixels = load_images("digits", "test").first(2).pixels
    cfg = network_array_config(layers, 2, 2)
    path = array_rtl(cfg)
    manifest = load_manifest(path)
    exe = build_fast_array(manifest, verilog_path(path, manifest))
    jobs = [job for lay in layers for job in layer_jobs(lay, engine.layer_input(pixels,
                                                                                 lay.index))]
    for job in jobs:
        check_job(cfg, job)
    run = run_fast_array(exe, cfg, jobs)
    assert len(run.words) == len(jobs) == 2 * len(layers)
    for job, words, cycles in zip(jobs, run.words, run.cycles):
        assert cycles == layer_cycles(cfg, job.shape).total
        assert np.array_equal(words_to_outputs(cfg, job, words), reference_outputs(job)["out"])
    assert run.compute_s > 0
