"""What a manifest of each design kind must say: one validator per ``design`` value.

A validator checks a manifest's ``config`` (and any block only its kind has) against what the
generator derives from it, and returns the ports that config implies. It raises
:class:`ManifestProblem` with the problem alone; :func:`wrapkit.hw.manifest.load_manifest`
adds the file name and the fix. No Amaranth import (the packed adder's mode codes are read
from its generator only when such a manifest is checked).
"""

from wrapkit.ref.datapath import MacConfig, cyclic_threshold

__all__ = ["VALIDATORS", "ManifestProblem", "check_array", "check_cyclic", "check_mac",
           "check_packed_adder"]


class ManifestProblem(ValueError):
    """One thing wrong with a manifest, worded without the file name (e.g. ``"invalid
    config (k must be >= 1, got 0)"``)."""


def _derived(config_dict, build, to_dict):
    """``build(config_dict)``, refusing a config the generator would not write."""
    try:
        config = build(config_dict)
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestProblem(f"invalid config ({exc})") from None
    if to_dict(config) != config_dict:
        raise ManifestProblem(f"config {config_dict} disagrees with the derived "
                              f"{to_dict(config)}")
    return config


def check_mac(manifest):
    """A MAC unit (:func:`wrapkit.hw.verilog.mac_design`): ``config`` is a ``MacConfig``,
    and the manifest carries its ``weight_encoding``."""
    if "weight_encoding" not in manifest:
        raise ManifestProblem("missing key(s) weight_encoding")
    c = _derived(manifest["config"], MacConfig.from_dict, MacConfig.to_dict)
    ports = [("a", "input", c.act_bits, bool(c.act_signed)),
             ("w", "input", c.weight_code_bits, False),
             ("en", "input", 1, False),
             ("clr", "input", 1, False),
             ("acc", "output", c.acc_bits, True)]
    if c.k is not None:
        ports.append(("y", "output", c.acc_bits, True))
    return ports


def check_cyclic(manifest):
    """A standalone cyclic activation (:func:`wrapkit.hw.verilog.cyclic_design`):
    ``config`` is ``{"acc_bits", "k", "threshold"}`` with the threshold the reference
    derives."""
    cfg = manifest["config"]
    try:
        threshold = cyclic_threshold(cfg["acc_bits"], cfg["k"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestProblem(f"invalid config ({exc})") from None
    if cfg.get("threshold") != threshold:
        raise ManifestProblem(f"config threshold {cfg.get('threshold')!r} disagrees with the "
                              f"derived {threshold}")
    return [("m", "input", cfg["acc_bits"], True), ("y", "output", cfg["acc_bits"], True)]


def check_array(manifest):
    """A layer array (:func:`wrapkit.hw.array.design.array_design`): ``config`` is an
    ``ArrayConfig`` and ``hierarchy`` lists exactly its processing elements and units."""
    from .array.config import ArrayConfig, array_hierarchy, array_ports

    acfg = _derived(manifest["config"], ArrayConfig.from_dict, ArrayConfig.to_dict)
    if manifest["hierarchy"] != array_hierarchy(acfg, manifest["top"]):
        raise ManifestProblem(f"hierarchy ({len(manifest['hierarchy'])} instances) disagrees "
                              f"with the config ({acfg.rows}x{acfg.cols} PEs)")
    return array_ports(acfg)


def check_packed_adder(manifest):
    """A packed accumulator (:func:`wrapkit.hw.packed_adder.packed_adder_design`):
    ``config`` is a ``PackSpec`` plus the ``mode`` input's codes of this wrapkit."""
    from wrapkit.ref.bitpack import PackSpec

    from .packed_adder import MODE_CODES

    cfg = manifest["config"]
    try:
        spec = PackSpec(cfg["lane_bits"], cfg["lanes"], cfg["word_bits"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestProblem(f"invalid config ({exc})") from None
    if cfg.get("mode_codes") != MODE_CODES:
        raise ManifestProblem(f"mode_codes {cfg.get('mode_codes')} differ from this "
                              f"wrapkit's {MODE_CODES}")
    return [("x", "input", spec.word_bits, False), ("en", "input", 1, False),
            ("clr", "input", 1, False), ("mode", "input", 2, False),
            ("acc", "output", spec.word_bits, False), ("flags", "output", spec.lanes, False),
            ("total", "output", spec.lane_bits, True)]


#: ``design`` value -> its validator, in the order error messages list them.
VALIDATORS = {"mac": check_mac, "cyclic": check_cyclic, "array": check_array,
              "packed_adder": check_packed_adder}
