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
