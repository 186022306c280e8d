"""``summary.json``: every figure of a finished run, and the consistency checks.

The report (:mod:`wrapkit.flow.report`) shows these figures and nothing else, so
``summary.json`` (schema :data:`SCHEMA`) is what scripts and comparisons between runs read.
"""

from pathlib import Path

from wrapkit import __version__

__all__ = ["AREA_GROUPS", "SCHEMA", "build_summary", "checks"]

SCHEMA = "wrapkit.flow.summary/1"
#: The paper's area and energy groups of a MAC, in the order the tables and plots show them.
AREA_GROUPS = ("multiplier", "accumulator", "cyclic", "auxiliary")


def _energy_groups(est, role):
    """Energy per inference (nJ) per area group of ``est[role]``, summed over the layers."""
    out = dict.fromkeys(AREA_GROUPS, 0.0)
    for row in est["layers"]:
        groups = row.get(f"{role}_energy_groups_fj_per_mac")
        if row["float_only"] or not groups:
            continue
        for g, v in groups.items():
            out[g] = out.get(g, 0.0) + v * row["macs"] * 1e-6
    return out


def _configs(synth):
    """The three energy configurations: (label, estimate, role)."""
    w, b = synth["wrapnet"], synth["baseline"]
    return [
        (f"WrapNet on {w['datapath']['design']}", w, "datapath"),
        (f"WrapNet operands on {w['baseline']['design']}", w, "baseline"),
        (f"32-bit baseline on {b['datapath']['design']}", b, "datapath"),
    ]


def checks(summary):
    """The consistency checks summary.json records (all True on a good run)."""
    eng = summary["engine"]["networks"]
    syn = summary["synth"]
    return {k: bool(v) for k, v in {
        "cosim_mismatches_zero": summary["cosim"]["mismatches"] == 0
        and summary["cosim"]["checked"] > 0,
        "engine_matches_pytorch_within_0.1_points": all(
            abs(n["engine_minus_pytorch_points"]) <= 0.1 for n in eng.values()),
        "area_8bit_below_32bit": syn["datapath_8"]["mac_area_um2"]
        < syn["datapath_32"]["mac_area_um2"],
        "energy_8bit_below_32bit": syn["energy_per_inference_nj"]["wrapnet_8bit"]
        < syn["energy_per_inference_nj"]["baseline_32bit"],
        "energy_8bit_below_32bit_same_operands": syn["energy_per_inference_nj"]["wrapnet_8bit"]
        < syn["energy_per_inference_nj"]["wrapnet_operands_32bit"],
    }.items()}


def build_summary(cfg, run_dir, results, state):
    """Every figure of the run as one JSON-able dict."""
    train, export, rtl, cosim, synth = (results[s] for s in
                                        ("train", "export", "rtl", "cosim", "synth"))
    w, b = synth["wrapnet"], synth["baseline"]

    def datapath(e):
        return {k: e[k] for k in ("design", "cycle_time_ns", "mac_area_um2",
                                  "mac_area_groups_um2", "array_macs", "array_area_mm2",
                                  "macs_per_inference", "energy_per_inference_nj",
                                  "latency_us")}

    layers = []
    for row_w, row_b in zip(w["layers"], b["layers"]):
        layers.append({
            "name": row_w["layer"], "geometry": row_w.get("geometry"),
            "precision": row_w.get("precision"), "macs_per_inference": row_w["macs"],
            "wrapnet_8bit_fj_per_mac": row_w.get("datapath_energy_fj_per_mac"),
            "wrapnet_operands_32bit_fj_per_mac": row_w.get("baseline_energy_fj_per_mac"),
            "baseline_32bit_fj_per_mac": row_b.get("datapath_energy_fj_per_mac"),
            "wrapnet_8bit_nj": row_w.get("datapath_energy_nj"),
            "wrapnet_operands_32bit_nj": row_w.get("baseline_energy_nj"),
            "baseline_32bit_nj": row_b.get("datapath_energy_nj"),
        })
    stages = state.get("stages", {})
    summary = {
        "schema": SCHEMA,
        "wrapkit": __version__,
        "run": Path(run_dir).name,
        "preset": cfg.preset,
        "config": cfg.to_dict(),
        "stage_seconds": {s: stages.get(s, {}).get("seconds") for s in
                          ("train", "export", "rtl", "cosim", "synth")},
        "training": {name: {k: r[k] for k in ("method", "test_accuracy", "mean_overflow_rate",
                                               "act_bits", "epochs", "train_seconds",
                                               "stage_results", "dir")}
                     for name, r in train["runs"].items()},
        "train_images": train["train_images"],
        "engine": {
            "test_images": export["test_images"],
            "networks": {n: {k: v for k, v in e.items() if k != "layers"}
                         | {"layers": _layer_rows(e)} for n, e in export["networks"].items()},
            "forced_plain_accumulator": {n: {k: v for k, v in e.items() if k != "layers"}
                                         | {"layers": _layer_rows(e)}
                                         for n, e in export["forced"].items()},
            "accuracy_vs_acc_bits": export["sweep"],
            "sweep_images": export["sweep_images"],
        },
        "rtl": rtl,
        "cosim": {"checked": cosim["checked"], "mismatches": cosim["mismatches"],
                  "runs": [{k: v for k, v in r.items() if k != "examples"}
                           for r in cosim["runs"]]},
        "synth": {
            "liberty": synth["liberty"],
            "datapath_8": datapath(w["datapath"]),
            "datapath_32": datapath(b["datapath"]),
            "energy_per_inference_nj": {
                "wrapnet_8bit": w["datapath"]["energy_per_inference_nj"],
                "wrapnet_operands_32bit": w["baseline"]["energy_per_inference_nj"],
                "baseline_32bit": b["datapath"]["energy_per_inference_nj"],
            },
            "energy_groups_nj": {label: _energy_groups(est, role)
                                 for label, (_, est, role) in
                                 zip(("wrapnet_8bit", "wrapnet_operands_32bit",
                                      "baseline_32bit"), _configs(synth))},
            "ratios_32_over_8": synth["ratios"],
            "layers": layers,
            "estimate_images": w["images"],
            "ops_per_layer": cfg.estimate_ops,
        },
    }
    summary["checks"] = checks(summary)
    return summary


def _layer_rows(ev):
    return [{"index": r["index"], "name": r["name"], "layer": r["layer"],
             "mac": _mac_name(r["mac"]), "macs_per_image": r["macs_per_image"],
             "overflow_rate": r["overflow_rate"], "cyclic_fold_rate": r["cyclic_fold_rate"],
             "max_abs_preactivation": r["max_abs_preactivation"]} for r in ev["layers"]]


def _mac_name(mac):
    from wrapkit.ref.datapath import MacConfig
    return MacConfig.from_dict(mac).name
