"""The committed rtl/ must be exactly what the generator produces now.

If this fails after a change to hw/ (or to the Amaranth/Yosys versions), run ``make rtl``
and commit the result; the diff of rtl/ then shows what the change did to the hardware.
"""

from pathlib import Path

import pytest

from wrapkit.hw.verilog import paper_designs, write_designs
from wrapkit.hw.manifest import load_manifest
from wrapkit.ref.configs import PAPER_MACS

RTL = Path(__file__).resolve().parent.parent / "rtl"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("rtl")
    write_designs(paper_designs(), out)
    return out


@pytest.mark.parametrize("name", [cfg.name for cfg in PAPER_MACS.values()])
@pytest.mark.parametrize("suffix", [".v", ".json"])
def test_committed_matches_generator(regenerated, name, suffix):
    committed = RTL / f"{name}{suffix}"
    assert committed.exists(), f"rtl/{committed.name} is missing: run `make rtl` and commit rtl/"
    fresh = (regenerated / committed.name).read_bytes()
    assert committed.read_bytes() == fresh, (
        f"rtl/{committed.name} differs from what the generator produces now: run `make rtl` "
        f"and commit rtl/")


@pytest.mark.parametrize("name", [cfg.name for cfg in PAPER_MACS.values()])
def test_committed_manifests_are_valid(name):
    manifest = load_manifest(RTL / f"{name}.json")  # schema, config, ports, Verilog sha256
    assert manifest["top"] == name and manifest["design"] == "mac"
