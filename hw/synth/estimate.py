"""Network-level estimates: per-layer MACs x activity-specific energy per MAC.

A network is a list of :class:`LayerRecord` -- one per layer that runs on the MAC datapath
(float-only layers are listed but cost nothing here). Each record carries the layer's MAC count
per inference and what its operands look like, either

* ``operands``: a sample of the layer's real operand stream (a
  :class:`~wrapkit.ref.opstream.MacOpStream`, e.g. from
  :func:`~wrapkit.hw.synth.network.sample_stream` on im2col patches), or
* ``bit_toggle``: per-bit toggle probabilities of activations and weight codes between
  consecutive operations (the export's operand statistics), from which
  :func:`stimulus_from_toggle_rates` draws a stream with the same statistics.

Each layer's operands are simulated on the synthesized MAC, so every layer gets its own
energy per MAC (a sparse layer is cheaper than a dense one); results are cached by operand
content. :func:`estimate_layers` does this for a datapath and for a baseline (normally the
same multiplier with a 32-bit accumulator) and sums per inference; ``wrapkit estimate`` wires
it to the trained-network export.
"""

from dataclasses import dataclass, field

import numpy as np

from wrapkit.ref.datapath import MacConfig, operand_range

from wrapkit.ref.opstream import MacOpStream

from .evaluate import OPS_PER_CYCLE, run_energy, synthesize_design

__all__ = ["LayerRecord", "estimate_layers", "stimulus_from_toggle_rates", "write_layer_plot"]


@dataclass(frozen=True)
class LayerRecord:
    """One layer of a network, as the estimator needs it.

    Attributes
    ----------
    name : str
    macs : int
        Multiply-accumulates per inference.
    operands : MacOpStream or None
        A sample of the layer's operand stream.
    bit_toggle : dict or None
        ``{"a": [p_bit0, p_bit1, ...], "w": [...]}``: probability that each bit of the
        activation / weight code changes between consecutive operations; optional
        ``"dot_len"`` (operations per dot product). Used when ``operands`` is None.
    float_only : bool
        The layer stays in floating point (first/last layer): not on the MAC array.
    """

    name: str
    macs: int
    operands: MacOpStream | None = None
    bit_toggle: dict | None = field(default=None)
    float_only: bool = False

    def __post_init__(self):
        if isinstance(self.macs, bool) or not isinstance(self.macs, (int, np.integer)) \
                or self.macs < 0:
            raise ValueError(f"macs must be an integer >= 0, got {self.macs!r}")
        if not self.float_only and self.operands is None and self.bit_toggle is None:
            raise ValueError(f"layer {self.name!r} needs operands or bit_toggle statistics "
                             f"(or float_only=True)")


def stimulus_from_toggle_rates(cfg: MacConfig, bit_toggle, n_ops, *, seed=0, dot_len=None):
    """An operand stream whose bits toggle with the given per-bit probabilities.

    Each bit of the activation and weight code is an independent two-state Markov chain that
    flips with probability ``p`` between consecutive operations -- the statistic that decides
    switching energy at the MAC inputs. Activations outside the configured range (possible for
    signed codes only through the sign bit) cannot occur: codes are taken modulo the width.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for key, bits in (("a", cfg.act_bits), ("w", cfg.weight_code_bits)):
        p = np.asarray(bit_toggle.get(key, []), dtype=float)
        if p.shape != (bits,) or np.any((p < 0) | (p > 1)):
            raise ValueError(f"bit_toggle[{key!r}] must hold {bits} probabilities in [0, 1], "
                             f"got {p.tolist()}")
        flips = rng.random((n_ops, bits)) < p
        start = rng.integers(0, 2, bits).astype(bool)
        states = np.logical_xor.accumulate(np.vstack([start, flips[1:]]), axis=0)
        out[key] = (states.astype(np.int64) << np.arange(bits)).sum(axis=1)
    a = out["a"]
    if cfg.act_signed:
        lo, _ = operand_range(cfg.act_bits, True)
        a = np.where(a >= -lo, a + 2 * lo, a)          # two's-complement code -> value
    dot_len = int(dot_len or bit_toggle.get("dot_len", 64))
    clr = (np.arange(n_ops) % dot_len) == 0
    return MacOpStream(a, out["w"], np.ones(n_ops, dtype=bool), clr,
                       source=f"toggle statistics seed={seed}")


def _layer_stimulus(layer, cfg, n_ops, seed):
    if layer.operands is not None:
        stim = layer.operands
        if len(stim) > n_ops:
            stim = stim.segment(0, n_ops)
        return stim
    return stimulus_from_toggle_rates(cfg, layer.bit_toggle, n_ops, seed=seed)


def _per_layer(flow, layers, n_ops, seed, timed, use_cache, progress):
    cfg = MacConfig.from_dict(flow.manifest["config"])
    rows = []
    for layer in layers:
        if layer.float_only:
            rows.append({"layer": layer.name, "macs": int(layer.macs), "float_only": True,
                         "energy_fj_per_mac": 0.0, "energy_nj": 0.0})
            continue
        if progress:
            progress(f"{flow.manifest['top']}: layer {layer.name}")
        energy = run_energy(flow, _layer_stimulus(layer, cfg, n_ops, seed), timed=timed,
                            use_cache=use_cache)
        per_mac = (energy["stimulus_based"]["energy_fj_per_op"]["total"] * OPS_PER_CYCLE)
        groups = energy["stimulus_based"]["energy_fj_per_op"]
        rows.append({"layer": layer.name, "macs": int(layer.macs), "float_only": False,
                     "stimulus": energy["stimulus"],
                     "energy_fj_per_mac": per_mac,
                     "groups_fj_per_mac": {g: v * OPS_PER_CYCLE for g, v in groups.items()
                                           if g != "total"},
                     "energy_nj": per_mac * layer.macs * 1e-6})
    return rows


def estimate_layers(layers, manifest_path, *, baseline_manifest=None, array_macs=64,
                    liberty=None, cell_models=None, goal="delay", n_ops=1000, seed=0,
                    timed=True, use_cache=True, progress=None):
    """Energy per inference and array area for a network on a datapath (and a baseline).

    Parameters
    ----------
    layers : list of LayerRecord
    manifest_path : path
        The datapath's MAC design (``rtl/<name>.json``).
    baseline_manifest : path, optional
        The comparison MAC (e.g. the same multiplier with a 32-bit accumulator).
    array_macs : int
        MAC units in the array (area and inference latency scale with it).
    n_ops : int
        Operations simulated per layer (a prefix of its operand sample).

    Returns
    -------
    dict
        ``{"datapath": {...}, "baseline": {...} or None, "layers": [...]}`` where each
        datapath entry has the design, cycle time, energy per inference (nJ), array area
        (mm^2) and inference latency (us), and each layer row both datapaths' energies.
    """
    if isinstance(array_macs, bool) or not isinstance(array_macs, int) or array_macs < 1:
        raise ValueError(f"array_macs must be an integer >= 1, got {array_macs!r}")
    layers = list(layers)
    if not layers:
        raise ValueError("layers must list at least one LayerRecord, got none")
    out = {"layers": [dict(layer=r.name, macs=int(r.macs), float_only=r.float_only)
                      for r in layers]}
    for role, path in (("datapath", manifest_path), ("baseline", baseline_manifest)):
        if path is None:
            out[role] = None
            continue
        flow = synthesize_design(path, liberty=liberty, cell_models=cell_models, goal=goal,
                                 use_cache=use_cache, progress=progress)
        rows = _per_layer(flow, layers, n_ops, seed, timed, use_cache, progress)
        macs = sum(r["macs"] for r in rows if not r["float_only"])
        area = flow.result["area"]["total"]
        out[role] = {
            "design": flow.manifest["top"],
            "cycle_time_ns": flow.period * 1e9,
            "mac_area_um2": area,
            "mac_area_groups_um2": dict(flow.result["area"]["groups"]),
            "array_macs": array_macs,
            "array_area_mm2": area * array_macs * 1e-6,
            "macs_per_inference": macs,
            "energy_per_inference_nj": sum(r["energy_nj"] for r in rows),
            "latency_us": macs / array_macs * flow.period * 1e6,
        }
        for row, r in zip(out["layers"], rows):
            row[f"{role}_energy_fj_per_mac"] = r["energy_fj_per_mac"]
            row[f"{role}_energy_nj"] = r["energy_nj"]
            # Per area group (multiplier, accumulator, cyclic, auxiliary); None for float layers.
            row[f"{role}_energy_groups_fj_per_mac"] = r.get("groups_fj_per_mac")
    if out["baseline"]:
        d, b = out["datapath"], out["baseline"]
        out["gains"] = {
            "energy": b["energy_per_inference_nj"] / d["energy_per_inference_nj"],
            "area": b["array_area_mm2"] / d["array_area_mm2"],
            "latency": b["latency_us"] / d["latency_us"],
        }
    return out


def write_layer_plot(estimate, path):
    """Per-layer energy per inference (nJ), datapath vs baseline, as a bar chart."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path

    rows = [r for r in estimate["layers"] if not r["float_only"]]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(rows) + 2), 3.6))
    roles = [r for r in ("datapath", "baseline") if estimate.get(r)]
    width = 0.8 / len(roles)
    for i, role in enumerate(roles):
        ax.bar(x + (i - (len(roles) - 1) / 2) * width, [r[f"{role}_energy_nj"] for r in rows],
               width, label=f"{role}: {estimate[role]['design']}")
    ax.set_xticks(x)
    ax.set_xticklabels([r["layer"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("energy per inference (nJ)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
