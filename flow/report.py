"""The flow's report: ``report.md``, a self-contained ``report.html``, ``summary.json``, plots.

The report is built once as a list of blocks (headings, paragraphs, tables, figures) and
rendered twice: markdown with the plots as files beside it (``plots/*.png``), and HTML with
the same plots embedded as base64 data URIs and its style inline, so ``report.html`` can be
mailed or archived alone. ``summary.json`` (:mod:`wrapkit.flow.summary`) holds every figure
the report shows, plus the consistency checks.
"""

import base64
import html

from wrapkit.common.files import atomic_write_json, atomic_write_text

from .summary import AREA_GROUPS, build_summary

__all__ = ["stage_report", "write_report"]

_GROUP_COLORS = {"multiplier": "#4c72b0", "accumulator": "#dd8452", "cyclic": "#55a868",
                 "auxiliary": "#8c8c8c"}


# -- plots ------------------------------------------------------------------------------------

def _save(fig, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def _plots(summary, folder):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = {}
    cfg = summary["config"]
    eng = summary["engine"]
    # 1. accuracy vs accumulator width
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    for name, label, style in (("baseline", "32-bit baseline, plain b-bit register", "o-"),
                               ("wrapnet", "WrapNet, plain b-bit register (no cyclic)", "s--")):
        pts = [p for p in eng["accuracy_vs_acc_bits"][name] if p["accuracy"] is not None]
        ax.plot([p["acc_bits"] for p in pts], [100 * p["accuracy"] for p in pts], style,
                label=label)
    for p in eng["accuracy_vs_acc_bits"]["wrapnet_cyclic"]:
        ax.plot([p["acc_bits"]], [100 * p["accuracy"]], "*", markersize=14, color="#c44e52",
                label=f"WrapNet, {p['acc_bits']}-bit with cyclic k={p['k']} (as trained)")
    ax.set_xlabel("accumulator width b (bits)")
    ax.set_ylabel(f"test accuracy (%), {eng['sweep_images']} images")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, folder / "accuracy_vs_acc_bits.png")
    plt.close(fig)
    out["accuracy"] = ("plots/accuracy_vs_acc_bits.png",
                       "Integer-engine accuracy against accumulator width.")
    # 2. per-layer overflow rates
    series = [("WrapNet, 8-bit + cyclic (as trained)", eng["networks"]["wrapnet"]),
              ("WrapNet forced to plain 8-bit", eng["forced_plain_accumulator"]["wrapnet"]),
              ("32-bit baseline forced to plain 8-bit",
               eng["forced_plain_accumulator"]["baseline"])]
    names = [r["name"] for r in series[0][1]["layers"]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 3.8))
    width = 0.8 / len(series)
    for i, (label, ev) in enumerate(series):
        ax.bar(x + (i - 1) * width, [100 * r["overflow_rate"] for r in ev["layers"]], width,
               label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"overflow rate of {cfg['acc_bits']}-bit register (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    _save(fig, folder / "overflow_per_layer.png")
    plt.close(fig)
    out["overflow"] = ("plots/overflow_per_layer.png",
                       "Pre-activations outside the 8-bit register, per layer, whole test set.")
    syn = summary["synth"]
    # 3. area breakdown
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    bars = [(syn["datapath_8"]["design"], syn["datapath_8"]["mac_area_groups_um2"]),
            (syn["datapath_32"]["design"], syn["datapath_32"]["mac_area_groups_um2"])]
    _stacked(ax, bars, "MAC cell area (um^2)")
    _save(fig, folder / "area_breakdown.png")
    plt.close(fig)
    out["area"] = ("plots/area_breakdown.png", "MAC cell area per group (synthesized).")
    # 4. energy breakdown per inference
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    labels = {"wrapnet_8bit": "WrapNet\n8-bit", "wrapnet_operands_32bit":
              "WrapNet operands\n32-bit", "baseline_32bit": "baseline\n32-bit"}
    _stacked(ax, [(labels[k], v) for k, v in syn["energy_groups_nj"].items()],
             "MAC energy per inference (nJ)")
    _save(fig, folder / "energy_breakdown.png")
    plt.close(fig)
    out["energy_breakdown"] = ("plots/energy_breakdown.png",
                               "MAC datapath energy per inference, per group.")
    # 5. energy per inference, per layer, 8 vs 32 bit
    rows = [r for r in syn["layers"] if r["precision"] == "integer"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) + 2), 3.8))
    keys = (("wrapnet_8bit_nj", "WrapNet, 8-bit datapath", "wrapnet_8bit"),
            ("wrapnet_operands_32bit_nj", "WrapNet operands, 32-bit datapath",
             "wrapnet_operands_32bit"),
            ("baseline_32bit_nj", "32-bit baseline, 32-bit datapath", "baseline_32bit"))
    width = 0.8 / len(keys)
    for i, (key, label, total) in enumerate(keys):
        ax.bar(x + (i - 1) * width, [r[key] for r in rows], width,
               label=f"{label}: {syn['energy_per_inference_nj'][total]:,.0f} nJ in all")
    ax.set_xticks(x)
    ax.set_xticklabels([r["name"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("MAC energy per inference (nJ)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    _save(fig, folder / "energy_per_inference.png")
    plt.close(fig)
    out["energy"] = ("plots/energy_per_inference.png",
                     "Energy per inference, per layer: 8-bit vs 32-bit accumulator.")
    return out


def _stacked(ax, bars, ylabel):
    import numpy as np

    x = np.arange(len(bars))
    bottom = np.zeros(len(bars))
    for g in AREA_GROUPS:
        vals = np.array([groups.get(g, 0.0) for _, groups in bars])
        if not vals.any():
            continue
        ax.bar(x, vals, 0.55, bottom=bottom, label=g, color=_GROUP_COLORS[g])
        bottom += vals
    for xi, total in zip(x, bottom):
        ax.text(xi, total, f"{total:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([label for label, _ in bars], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, bottom.max() * 1.15 if bottom.max() > 0 else 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


# -- the document -------------------------------------------------------------------------------

def _pct(x, digits=2):
    return "-" if x is None else f"{100 * x:.{digits}f} %"


def _accumulation_path(design):
    """The checked accumulator and adder width of one design, e.g. "8 bits, checked"."""
    check = design.get("accumulation_path")
    if check is None:
        return "not checked"
    widths = "/".join(str(w) for w in check["path_widths"]) or "-"
    return (f"{widths} bits, checked" if check["ok"]
            else f"**{widths} bits, expected {check['acc_bits']}: check failed**")


def _blocks(summary, plots):
    cfg = summary["config"]
    eng = summary["engine"]
    syn = summary["synth"]
    tr = summary["training"]
    e = syn["energy_per_inference_nj"]
    r = syn["ratios_32_over_8"]
    d8, d32 = syn["datapath_8"], syn["datapath_32"]
    chk = summary["checks"]
    net = eng["networks"]
    blocks = [
        ("h1", f"wrapkit flow report: {summary['run']} ({summary['preset']} preset)"),
        ("p", f"WrapNet (binary weights, {cfg['acc_bits']}-bit accumulator with cyclic "
              f"activation k={cfg['k']}) against the same VGG-7 "
              f"({'-'.join(map(str, cfg['widths']))}"
              f" channels) trained with a {cfg['baseline_acc_bits']}-bit accumulator, on "
              f"{cfg['dataset']} ({summary['train_images']:,} training images, "
              f"{eng['test_images']:,} test images). Generated by wrapkit {summary['wrapkit']}; "
              f"every figure is in summary.json."),
        ("h2", "Summary"),
        ("table", ["", "WrapNet, 8-bit", "baseline, 32-bit", "32-bit / 8-bit"], [
            ["PyTorch test accuracy", _pct(tr["wrapnet"]["test_accuracy"]),
             _pct(tr["baseline"]["test_accuracy"]), ""],
            ["integer-engine test accuracy", _pct(net["wrapnet"]["accuracy"]),
             _pct(net["baseline"]["accuracy"]), ""],
            [f"forced to plain {cfg['acc_bits']}-bit wrap-around (no cyclic)",
             _pct(eng["forced_plain_accumulator"]["wrapnet"]["accuracy"]),
             _pct(eng["forced_plain_accumulator"]["baseline"]["accuracy"]), ""],
            ["MAC design", f"`{d8['design']}`", f"`{d32['design']}`", ""],
            ["MAC cell area (um^2)", f"{d8['mac_area_um2']:,.0f}", f"{d32['mac_area_um2']:,.0f}",
             f"{r['area']:.2f}x"],
            ["cycle time (ns)", f"{d8['cycle_time_ns']:.2f}", f"{d32['cycle_time_ns']:.2f}",
             f"{r['cycle_time']:.2f}x"],
            ["area efficiency (um^2 per Gops, 2 ops per MAC and cycle)",
             f"{_area_eff(d8):,.0f}", f"{_area_eff(d32):,.0f}",
             f"{_area_eff(d32) / _area_eff(d8):.2f}x"],
            [f"array of {d8['array_macs']} MACs (mm^2)", f"{d8['array_area_mm2']:.3f}",
             f"{d32['array_area_mm2']:.3f}", f"{r['area']:.2f}x"],
            ["MAC energy per inference (nJ)", f"{e['wrapnet_8bit']:,.1f}",
             f"{e['baseline_32bit']:,.1f}", f"{r['energy_each_network']:.2f}x"],
            ["latency per inference (us)", f"{d8['latency_us']:,.1f}", f"{d32['latency_us']:,.1f}",
             f"{d32['latency_us'] / d8['latency_us']:.2f}x"],
            ["cosimulated MAC operations, mismatches",
             f"{summary['cosim']['checked']:,}, {summary['cosim']['mismatches']}", "", ""],
        ], "lrrr"),
        ("p", "Checks: " + ", ".join(f"{k.replace('_', ' ')}: {'yes' if v else 'NO'}"
                                      for k, v in chk.items()) + "."),
        ("p", f"Technology: {syn['liberty']} standard cells (Yosys, OpenSTA, Icarus gate-level "
              "simulation with SDF delays). The paper synthesized in 28 nm with commercial tools; "
              "absolute numbers differ, the 8-bit/32-bit ratios are what carries over. For its "
              "closest configuration, 3-bit activations x binary weights, the paper reports "
              "105 vs 37 um^2/Gops (2.8x) and 271 vs 115 fJ/op (2.4x) for a 32-bit vs an 8-bit "
              "(k=2) accumulator, with stimuli from a ResNet-18 layer. Energy here counts the MAC "
              "datapath only (multiplier, accumulator, cyclic activation, their registers), not "
              "memories or requantization."),
        ("h2", "1. Training"),
        ("table", ["network", "method", "epochs", "train time (s)", "PyTorch accuracy",
                   "activation bits per layer", "mean overflow (own register)"],
         [[name, t["method"], str(t["epochs"]), f"{t['train_seconds']:.0f}",
           _pct(t["test_accuracy"]),
           ", ".join("float" if b is None else str(b) for b in t["act_bits"]),
           _pct(t["mean_overflow_rate"])] for name, t in tr.items()], "llrrrlr"),
        ("h2", "2. Integer engine (whole test set)"),
        ("table", ["network", "accumulator", "engine accuracy", "PyTorch accuracy",
                   "engine - PyTorch (points)", "mean overflow rate"], [
            *[[n, f"{_acc_label(ev)}", _pct(ev["accuracy"]), _pct(ev.get("pytorch_accuracy")),
               f"{ev['engine_minus_pytorch_points']:+.2f}", _pct(ev["mean_overflow_rate"])]
              for n, ev in net.items()],
            *[[n, f"plain {ev['acc_bits']}-bit (forced)", _pct(ev["accuracy"]),
               _pct(ev.get("pytorch_accuracy")),
               "-" if ev.get("engine_minus_pytorch_points") is None
               else f"{ev['engine_minus_pytorch_points']:+.2f}", _pct(ev["mean_overflow_rate"])]
              for n, ev in eng["forced_plain_accumulator"].items()],
        ], "llrrrr"),
        ("table", ["layer", "geometry", "MAC", "MACs/image", "WrapNet overflow",
                   "WrapNet cyclic fold", "WrapNet forced plain", "baseline forced 8-bit"],
         [[a["name"], a["layer"], f"`{a['mac']}`", f"{a['macs_per_image']:,}",
           _pct(a["overflow_rate"]), _pct(a["cyclic_fold_rate"]), _pct(f["overflow_rate"]),
           _pct(b["overflow_rate"])]
          for a, f, b in zip(net["wrapnet"]["layers"],
                             eng["forced_plain_accumulator"]["wrapnet"]["layers"],
                             eng["forced_plain_accumulator"]["baseline"]["layers"])],
         "lllrrrrr"),
        ("fig",) + plots["accuracy"],
        ("fig",) + plots["overflow"],
        ("h2", "3. RTL"),
        ("table", ["design", "used as", "Verilog", "lines", "sha256",
                   "accumulation path (`wrapkit rtl check`)"],
         [[f"`{d['name']}`", "; ".join(d["roles"]), f"`{d['verilog']}`", str(d["verilog_lines"]),
           f"`{d['verilog_sha256'][:16]}`", _accumulation_path(d)]
          for d in summary["rtl"]["designs"]], "lllrll"),
        ("h2", "4. Cosimulation (real operands, preloaded path)"),
        ("table", ["network", "layer", "design", "simulator", "operations checked",
                   "mismatches", "dot products vs engine", "ops/s"],
         [[c["network"], f"{c['layer_name']} ({c['geometry']})", f"`{c['design']}`", c["sim"],
           f"{c['checked']:,} of {c['layer_ops']:,}", str(c["mismatches"]),
           f"{c['dots'] - c['final_mismatches']:,}/{c['dots']:,} equal",
           f"{c['ops_per_s'] or 0:,.0f}"] for c in summary["cosim"]["runs"]], "lllllrrr"),
        ("h2", "5. Synthesis and energy"),
        ("table", ["group", f"`{d8['design']}` (um^2)", f"`{d32['design']}` (um^2)"],
         [[g, f"{d8['mac_area_groups_um2'].get(g, 0):,.0f}",
           f"{d32['mac_area_groups_um2'].get(g, 0):,.0f}"] for g in AREA_GROUPS
          if g in d8["mac_area_groups_um2"] or g in d32["mac_area_groups_um2"]]
         + [["total", f"{d8['mac_area_um2']:,.0f}", f"{d32['mac_area_um2']:,.0f}"]], "lrr"),
        ("fig",) + plots["area"],
        ("p", f"Energy from real operands: {syn['ops_per_layer']} MAC operations per layer "
              f"sampled from {syn['estimate_images']} test images (runs of consecutive dot "
              "products in the datapath's streaming order), simulated on each synthesized "
              "MAC; per-layer energy = energy per MAC x MACs per inference. 'WrapNet operands "
              "on 32-bit' feeds the very same operands to the 32-bit datapath, isolating the "
              "accumulator."),
        ("table", ["layer", "MACs/inference", "WrapNet 8-bit (fJ/MAC)",
                   "WrapNet operands 32-bit (fJ/MAC)", "baseline 32-bit (fJ/MAC)",
                   "WrapNet 8-bit (nJ)", "baseline 32-bit (nJ)"],
         [[L["name"], f"{L['macs_per_inference']:,}",
           *[("float" if L["precision"] != "integer" else f"{L[k]:,.0f}")
             for k in ("wrapnet_8bit_fj_per_mac", "wrapnet_operands_32bit_fj_per_mac",
                       "baseline_32bit_fj_per_mac")],
           *[("-" if L["precision"] != "integer" else f"{L[k]:,.2f}")
             for k in ("wrapnet_8bit_nj", "baseline_32bit_nj")]] for L in syn["layers"]]
         + [["total", f"{d8['macs_per_inference']:,}", "", "", "",
             f"{e['wrapnet_8bit']:,.1f}", f"{e['baseline_32bit']:,.1f}"]], "lrrrrrr"),
        ("fig",) + plots["energy_breakdown"],
        ("fig",) + plots["energy"],
        ("h2", "Stage times"),
        ("table", ["stage", "wall time (s)"],
         [[s, "-" if v is None else f"{v:.1f}"] for s, v in summary["stage_seconds"].items()],
         "lr"),
        ("p", f"Reproduce: `wrapkit flow --preset {summary['preset']}` (settings in "
              f"flow.json). Machine load changes the times, not the figures."),
    ]
    return blocks


def _area_eff(d):
    """um^2 per Gops: cell area over throughput (2 operations per cycle, the paper's unit)."""
    return d["mac_area_um2"] / (2 / d["cycle_time_ns"])


def _acc_label(ev):
    layers = ev["layers"]
    mac = layers[0]["mac"] if layers else ""
    # MacConfig names end in _acc<b>[_k<k>]
    tail = mac.split("_acc", 1)[1] if "_acc" in mac else mac
    bits, _, k = tail.partition("_k")
    return f"{bits}-bit" + (f" + cyclic k={k}" if k else "")


def _markdown(blocks):
    lines = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2"):
            lines += [("# " if kind == "h1" else "## ") + b[1], ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "table":
            _, head, rows, align = b
            sep = ["---:" if a == "r" else "---" for a in align]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join(sep) + "|")
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
        elif kind == "fig":
            _, src, caption = b
            lines += [f"![{caption}]({src})", "", f"*{caption}*", ""]
    return "\n".join(lines)


def _inline(text):
    """Escape, then turn `code` spans into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}
td.r,th.r{text-align:right}code{background:#f5f5f5;padding:0 3px;font-size:0.95em}
figure{margin:1em 0}figcaption{font-size:0.85em;color:#555}img{max-width:100%}
"""


def _html(blocks, folder):
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{html.escape(blocks[0][1])}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{_inline(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "table":
            _, head, rows, align = b
            cls = [" class=\"r\"" if a == "r" else "" for a in align]
            out.append("<table><thead><tr>" + "".join(
                f"<th{c}>{_inline(h)}</th>" for h, c in zip(head, cls)) + "</tr></thead><tbody>")
            for r in rows:
                out.append("<tr>" + "".join(f"<td{c}>{_inline(v)}</td>"
                                            for v, c in zip(r, cls)) + "</tr>")
            out.append("</tbody></table>")
        elif kind == "fig":
            _, src, caption = b
            data = base64.b64encode((folder / src).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt=\"{html.escape(caption)}\" "
                       f"src=\"data:image/png;base64,{data}\"><figcaption>{_inline(caption)}"
                       "</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(ctx):
    """Write plots, report.md, report.html and summary.json into the run folder; returns
    their paths relative to it."""
    run_dir = ctx.run_dir
    summary = build_summary(ctx.cfg, run_dir, ctx.results, ctx.state)
    plots = _plots(summary, run_dir / "plots")
    blocks = _blocks(summary, plots)
    summary["plots"] = {k: v[0] for k, v in plots.items()}
    atomic_write_text(run_dir / "report.md", _markdown(blocks))
    atomic_write_text(run_dir / "report.html", _html(blocks, run_dir))
    atomic_write_json(run_dir / "summary.json", summary)
    return ["report.md", "report.html", "summary.json"] + [v[0] for v in plots.values()]


def stage_report(ctx):
    """The report stage: write the report files and list them."""
    files = write_report(ctx)
    for f in files:
        ctx.say(f"wrote {f}")
    return {"files": files}
