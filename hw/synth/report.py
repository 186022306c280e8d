"""Reports in the layout of the paper's Tables 2.11-2.13 and Fig. 2.2: one design, or the six
paper configurations side by side with the paper's 28 nm figures.

The paper (WrapNet, App. 2.6.3) synthesized its MACs in TSMC 28 nm with Synopsys Design
Compiler and Cadence Innovus (placed and routed, 0.9 V, typical corner) and simulated them with
operands of a ResNet-18 layer. This flow uses open tools and the OSU 0.18 um library at 1.8 V
with random operands, so absolute numbers differ by the technology (roughly 6x the feature
size, 2x the supply, no placement or wiring); the comparisons that carry over are the ratios --
above all 8-bit against 32-bit accumulators.
"""

from pathlib import Path

from wrapkit.ref.configs import PAPER_MACS
from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_json, atomic_write_text

from .evaluate import GROUP_ORDER

__all__ = ["PAPER_28NM", "design_markdown", "gains", "paper_markdown", "paper_table",
           "write_plots"]

_LABEL = {"multiplier": "Multiplier", "accumulator": "Accumulator", "cyclic": "Cyclic act.",
          "auxiliary": "Auxiliary"}

#: The paper's Tables 2.11-2.13 (28 nm), by the short names of wrapkit.ref.configs.PAPER_MACS.
#: Groups missing from a design (no cyclic unit with a 32-bit accumulator) are None.
PAPER_28NM = {
    "8x8_acc32": {"cycle_ns": 0.31, "gops": 6.5, "area_um2": 1298, "power_mw": 2.78,
                  "area_eff": (96, 91, None, 12, 199), "energy": (144, 173, None, 111, 428)},
    "3x1_acc32": {"cycle_ns": 0.29, "gops": 7.0, "area_um2": 732, "power_mw": 1.90,
                  "area_eff": (3, 93, None, 9, 105), "energy": (10, 197, None, 64, 271)},
    "8x8_acc8_k2": {"cycle_ns": 0.24, "gops": 8.3, "area_um2": 521, "power_mw": 1.60,
                    "area_eff": (31, 12, 10, 10, 63), "energy": (48, 29, 17, 98, 192)},
    "8x8_acc8_k4": {"cycle_ns": 0.25, "gops": 8.1, "area_um2": 523, "power_mw": 1.64,
                    "area_eff": (33, 12, 8, 12, 65), "energy": (53, 28, 17, 105, 203)},
    "3x1_acc8_k2": {"cycle_ns": 0.24, "gops": 8.3, "area_um2": 290, "power_mw": 0.93,
                    "area_eff": (2, 17, 15, 3, 37), "energy": (8, 42, 23, 42, 115)},
    "3x1_acc8_k4": {"cycle_ns": 0.24, "gops": 8.3, "area_um2": 285, "power_mw": 0.87,
                    "area_eff": (2, 18, 12, 3, 35), "energy": (6, 42, 24, 33, 105)},
}

TECHNOLOGY_NOTE = (
    "Technology: this flow maps onto the OSU 0.18 um standard cells (Debian "
    "qflow-tech-osu018, 1.8 V, typical corner) with Yosys/ABC, times with OpenSTA and "
    "simulates the mapped netlist in Icarus with SDF cell delays -- no placement, routing or "
    "clock tree. The paper used TSMC 28 nm at 0.9 V with Synopsys DC and Cadence Innovus "
    "(post-layout power). The feature size differs by 6.4x and the supply voltage by 2x, so "
    "absolute area, delay and energy are not comparable; compare the ratios between designs "
    "and the group shares.")


def _spread(results, ours, paper):
    vals = [ours(results[n]) / paper(PAPER_28NM[n]) for n in results]
    return f"{min(vals):.0f}-{max(vals):.0f}x"


def _cfg_cells(cfg):
    w = {"binary": "1", "ternary": "2"}.get(cfg.weight_kind, str(cfg.weight_bits))
    return [str(cfg.act_bits), w, str(cfg.acc_bits), str(cfg.k) if cfg.k else "-"]


def _fmt(x, digits=0):
    if x is None:
        return "-"
    if digits == 0:
        return f"{x:,.0f}".replace(",", " ")
    return f"{x:.{digits}f}"


def _with_pct(values, total):
    return [("-" if v is None else f"{_fmt(v)} ({100 * v / total:.0f}%)") for v in values]


def _groups(d, order=GROUP_ORDER):
    return [d.get(g) for g in order]


def _report_groups(report):
    """The paper's groups, then any other group the design has (``imported`` for a design
    from ``wrapkit rtl import``, whose hierarchy is not the paper's)."""
    return list(GROUP_ORDER) + [g for g in report["area_um2"]
                                if g not in GROUP_ORDER and g != "total"]


def design_markdown(report):
    """Markdown summary of one design's :func:`~wrapkit.hw.synth.evaluate.evaluate` report."""
    e = report["energy"]
    sb = e["stimulus_based"]
    groups = _report_groups(report)
    lines = [
        f"# {report['design']}",
        "",
        f"Library `{Path(report['liberty']).name}`, mapping goal `{report['goal']}`; "
        f"{report['registers']} flip-flops.",
        "",
        "| Cycle time (ns) | Throughput (Gops) | Cell area (um^2) | Power (mW) |",
        "|---:|---:|---:|---:|",
        f"| {report['cycle_time_ns']:.3f} | {report['throughput_gops']:.3f} | "
        f"{_fmt(report['area_um2']['total'])} | {sb['power_mw']['total']:.2f} |",
        "",
        f"Critical path: {report['critical_path']['start']} -> "
        f"{report['critical_path']['end']}.",
        "",
        "| | " + " | ".join(_LABEL.get(g, g.capitalize()) for g in groups) + " | Total |",
        "|---|" + "---:|" * (len(groups) + 1),
    ]
    rows = [
        ("Cell area (um^2)", report["area_um2"]),
        ("Area efficiency (um^2/Gops)", report["area_efficiency_um2_per_gops"]),
        ("Energy, stimulus (fJ/op)", sb["energy_fj_per_op"]),
        ("Energy, glitch-free (fJ/op)", e["glitch_free"]["energy_fj_per_op"]),
        ("Energy, activity 0.1 (fJ/op)", e["default_activity_0.1"]["energy_fj_per_op"]),
    ]
    for label, d in rows:
        lines.append(f"| {label} | " + " | ".join(_with_pct(_groups(d, groups), d["total"]))
                     + f" | {_fmt(d['total'])} |")
    lines += [
        "",
        f"Stimulus: {e['stimulus']}, {e['ops']} operations ({e['simulation']}, clock "
        f"{e['simulated_period_ns']:.2f} ns); {e['check']}. Glitches are "
        f"{100 * e['glitch_share_of_toggles']:.0f}% of all net transitions.",
        "",
    ]
    return "\n".join(lines)


def gains(results):
    """8-bit vs 32-bit accumulator ratios (32-bit figure / 8-bit figure), ours and the paper's.

    ``results`` maps paper short names to evaluate() reports.
    """
    out = []
    for mult in ("8x8", "3x1"):
        for k in (2, 4):
            wide, narrow = f"{mult}_acc32", f"{mult}_acc8_k{k}"
            if wide not in results or narrow not in results:
                continue
            rw, rn = results[wide], results[narrow]
            sw, sn = PAPER_28NM[wide], PAPER_28NM[narrow]
            out.append({
                "multiplier": mult, "k": k, "wide": wide, "narrow": narrow,
                "area_efficiency_gain": rw["area_efficiency_um2_per_gops"]["total"]
                / rn["area_efficiency_um2_per_gops"]["total"],
                "energy_gain": rw["energy"]["stimulus_based"]["energy_fj_per_op"]["total"]
                / rn["energy"]["stimulus_based"]["energy_fj_per_op"]["total"],
                "energy_gain_glitch_free":
                    rw["energy"]["glitch_free"]["energy_fj_per_op"]["total"]
                    / rn["energy"]["glitch_free"]["energy_fj_per_op"]["total"],
                "cycle_time_ratio": rw["cycle_time_ns"] / rn["cycle_time_ns"],
                "area_ratio": rw["area_um2"]["total"] / rn["area_um2"]["total"],
                "paper_area_efficiency_gain": sw["area_eff"][-1] / sn["area_eff"][-1],
                "paper_energy_gain": sw["energy"][-1] / sn["energy"][-1],
            })
    return out


def paper_markdown(results, settings):
    """The six-configuration report (markdown) in the paper's table layout."""
    names = [n for n in PAPER_MACS if n in results]
    head = "| Act. | Weight | Acc. | k | "
    lines = [
        "# MAC synthesis: the paper's six configurations (Tables 2.11-2.13, Fig. 2.2)",
        "",
        f"Produced by `{settings['command']}` ({settings['ops']} random operations per design, "
        f"seed {settings['seed']}, mapping goal `{settings['goal']}`, library "
        f"`{Path(settings['liberty']).name}`). Each row pair gives this flow (OSU 180 nm) "
        f"and the paper (28 nm). Throughput counts 2 operations per cycle (the paper's "
        f"convention); area and energy efficiency are area and power divided by throughput.",
        "",
        TECHNOLOGY_NOTE + " In this run the 180 nm designs have "
        + _spread(results, lambda r: r["area_um2"]["total"], lambda s: s["area_um2"])
        + " the paper's cell area, "
        + _spread(results, lambda r: r["cycle_time_ns"], lambda s: s["cycle_ns"])
        + " its cycle time and "
        + _spread(results, lambda r: r["energy"]["stimulus_based"]["energy_fj_per_op"]["total"],
                  lambda s: s["energy"][-1])
        + " its energy per operation.",
        "",
        "## Implementation results (Table 2.11)",
        "",
        head + "Source | Cycle time (ns) | Throughput (Gops) | Cell area (um^2) | "
        "Power (mW) |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for n in names:
        r, s = results[n], PAPER_28NM[n]
        cfg = _cfg_cells(PAPER_MACS[n])
        lines.append("| " + " | ".join(cfg) + f" | 180 nm | {r['cycle_time_ns']:.2f} | "
                     f"{r['throughput_gops']:.2f} | {_fmt(r['area_um2']['total'])} | "
                     f"{r['energy']['stimulus_based']['power_mw']['total']:.2f} |")
        lines.append("| | | | | paper 28 nm | " f"{s['cycle_ns']:.2f} | {s['gops']:.1f} | "
                     f"{_fmt(s['area_um2'])} | {s['power_mw']:.2f} |")
    for title, key, paper_key, unit in (
            ("Area breakdown (Table 2.12)", "area_efficiency_um2_per_gops", "area_eff",
             "Cell area efficiency (um^2/Gops)"),
            ("Energy breakdown (Table 2.13)", None, "energy", "Energy efficiency (fJ/op)")):
        lines += ["", f"## {title}", "", unit + ", share of the total in brackets.", "",
                  head + "Source | " + " | ".join(_LABEL[g] for g in GROUP_ORDER)
                  + " | Total |",
                  "|---:|---:|---:|---:|---|" + "---:|" * (len(GROUP_ORDER) + 1)]
        for n in names:
            r = results[n]
            d = (r[key] if key else r["energy"]["stimulus_based"]["energy_fj_per_op"])
            paper = PAPER_28NM[n][paper_key]
            cfg = _cfg_cells(PAPER_MACS[n])
            lines.append("| " + " | ".join(cfg) + " | 180 nm | "
                         + " | ".join(_with_pct(_groups(d), d["total"]))
                         + f" | {_fmt(d['total'])} |")
            lines.append("| | | | | paper 28 nm | "
                         + " | ".join(_with_pct(list(paper[:4]), paper[4]))
                         + f" | {_fmt(paper[4])} |")
    lines += ["", "## 8-bit vs 32-bit accumulator", "",
              "Gain = figure of the 32-bit design / figure of the 8-bit design with the same "
              "multiplier (higher is better for the 8-bit design). Targets for 8x8: area "
              "efficiency >= 2.5x, energy >= 2x.", "",
              "| Multiplier | 8-bit design | Area eff. gain | paper | Energy gain | paper | "
              "Energy gain, glitch-free | Cycle-time ratio | Area ratio |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for g in gains(results):
        lines.append(f"| {g['multiplier']} | k={g['k']} | {g['area_efficiency_gain']:.2f}x | "
                     f"{g['paper_area_efficiency_gain']:.2f}x | {g['energy_gain']:.2f}x | "
                     f"{g['paper_energy_gain']:.2f}x | {g['energy_gain_glitch_free']:.2f}x | "
                     f"{g['cycle_time_ratio']:.2f} | {g['area_ratio']:.2f} |")
    lines += ["", "## Energy under other activity assumptions (fJ/op, total)", "",
              "Stimulus-based counts every transition of the SDF-timed simulation (glitches "
              "included); glitch-free counts one change per net and cycle at most; activity "
              "0.1 is the vectorless default (every net toggles in 10% of cycles, the clock "
              "twice per cycle).", "",
              "| Design | Stimulus-based | Glitch-free | Activity 0.1 | Glitch share of "
              "transitions | Critical path |",
              "|---|---:|---:|---:|---:|---|"]
    for n in names:
        e = results[n]["energy"]
        cp = results[n]["critical_path"]
        lines.append(
            f"| {n} | {_fmt(e['stimulus_based']['energy_fj_per_op']['total'])} | "
            f"{_fmt(e['glitch_free']['energy_fj_per_op']['total'])} | "
            f"{_fmt(e['default_activity_0.1']['energy_fj_per_op']['total'])} | "
            f"{100 * e['glitch_share_of_toggles']:.0f}% | "
            f"{cp['start'].split(' ')[0]} -> {cp['end'].split(' ')[0]} |")
    lines += ["", "Every design's gate-level outputs equal `wrapkit.ref.mac_stream` for all "
              "simulated operations. Method and caveats: docs/estimation.md.", ""]
    return "\n".join(lines)


def write_plots(results, path):
    """Stacked bars of area efficiency and energy per group, this flow vs the paper (Fig. 2.2).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in PAPER_MACS if n in results]
    colors = {"multiplier": "#4c72b0", "accumulator": "#dd8452", "cyclic": "#e5c443",
              "auxiliary": "#8c8c8c"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [
        (axes[0, 0], "Area efficiency (um^2/Gops), OSU 180 nm",
         lambda n: _groups(results[n]["area_efficiency_um2_per_gops"])),
        (axes[0, 1], "Area efficiency (um^2/Gops), paper 28 nm",
         lambda n: list(PAPER_28NM[n]["area_eff"][:4])),
        (axes[1, 0], "Energy (fJ/op), OSU 180 nm",
         lambda n: _groups(results[n]["energy"]["stimulus_based"]["energy_fj_per_op"])),
        (axes[1, 1], "Energy (fJ/op), paper 28 nm",
         lambda n: list(PAPER_28NM[n]["energy"][:4])),
    ]
    for ax, title, values in panels:
        bottom = [0.0] * len(names)
        for gi, g in enumerate(GROUP_ORDER):
            heights = [(values(n)[gi] or 0.0) for n in names]
            ax.bar(range(len(names)), heights, bottom=bottom, color=colors[g], label=_LABEL[g])
            bottom = [b + h for b, h in zip(bottom, heights)]
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.replace("_", "\n", 1) for n in names], fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("MAC area and energy breakdown: this flow (left) vs the paper (right)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def paper_table(rtl_dir, out_dir, *, evaluate_fn, settings, stem="mac_synthesis",
               progress=None):
    """Evaluate the six paper designs in ``rtl_dir`` and write ``<stem>.{md,json,png}``.

    ``evaluate_fn(manifest_path)`` returns one design's report; ``settings`` (ops, seed, goal,
    liberty, command) is recorded with the results.
    """
    rtl_dir = Path(rtl_dir)
    results = {}
    missing = [n for n, cfg in PAPER_MACS.items() if not (rtl_dir / f"{cfg.name}.json").is_file()]
    if missing:
        raise UserError(f"{rtl_dir} lacks the paper design(s) "
                        f"{', '.join(PAPER_MACS[n].name for n in missing)}; generate them with "
                        f"`wrapkit rtl paper --out {rtl_dir}` (or `make rtl`)")
    for n, cfg in PAPER_MACS.items():
        if progress:
            progress(n)
        results[n] = evaluate_fn(rtl_dir / f"{cfg.name}.json")
    out_dir = Path(out_dir)
    md = paper_markdown(results, settings)
    doc = {"schema": "wrapkit.synth-paper/1", "settings": settings,
           "technology_note": TECHNOLOGY_NOTE, "paper_28nm": PAPER_28NM,
           "gains_8bit_vs_32bit": gains(results),
           "designs": {n: {k: v for k, v in r.items() if k != "cache_entry"}
                       for n, r in results.items()}}
    atomic_write_text(out_dir / f"{stem}.md", md)
    atomic_write_json(out_dir / f"{stem}.json", doc)
    write_plots(results, out_dir / f"{stem}.png")
    return results, md
