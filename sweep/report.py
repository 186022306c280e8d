"""A sweep's outputs: Pareto fronts, sensitivity plots, ``pareto.md`` and ``report.html``.

Everything is computed from the table rows (``points.jsonl``), so the outputs can be rebuilt
at any time. The fronts are the points no other point beats on both axes: higher integer-
engine accuracy at lower (or equal) energy per inference, and at lower array area.
``report.html`` is one self-contained page (plots embedded as base64 PNG, inline style).
"""

import base64
import html
from pathlib import Path

from wrapkit.common.files import atomic_write_json, atomic_write_text

__all__ = ["OBJECTIVES", "pareto_front", "write_outputs"]

#: (row key, axis label, plot file) of each cost the accuracy is traded against.
OBJECTIVES = (("energy_per_inference_nj", "energy per inference (nJ)", "pareto_energy.png"),
              ("array_area_mm2", "array area (mm²)", "pareto_area.png"))


def pareto_front(rows, cost):
    """Rows on the front of accuracy (higher is better) against ``cost`` (lower is better),
    in order of increasing cost."""
    ok = sorted((r for r in rows if r["status"] == "ok"),
                key=lambda r: (r[cost], -r["accuracy"]))
    front, best = [], -1.0
    for r in ok:
        if r["accuracy"] > best:
            front.append(r)
            best = r["accuracy"]
    return front


def _label(row, varied):
    return ", ".join(f"{a}={row[a]}" for a in varied if row.get(a) is not None) or row["run"]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    from wrapkit.common.files import atomic_write_bytes
    atomic_write_bytes(path, buf.getvalue())


def _pareto_plot(rows, cost, xlabel, varied, path):
    plt = _pyplot()
    ok = [r for r in rows if r["status"] == "ok"]
    front = pareto_front(rows, cost)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter([r[cost] for r in ok], [100 * r["accuracy"] for r in ok], color="0.6",
               s=22, label="all points")
    ax.step([r[cost] for r in front], [100 * r["accuracy"] for r in front], where="post",
            color="C3", lw=1.2)
    ax.scatter([r[cost] for r in front], [100 * r["accuracy"] for r in front], color="C3",
               s=36, zorder=3, label="Pareto front")
    for r in front:
        ax.annotate(_label(r, varied), (r[cost], 100 * r["accuracy"]), fontsize=7,
                    xytext=(4, -10), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel + " (log scale)")
    ax.set_ylabel("integer-engine test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def _sensitivity_plot(rows, axis, values, path):
    """Accuracy and a cost against one parameter: every point, and the mean per value. The
    cost is the energy per inference, or the array area for the array's rows and cols (which
    change area and latency, not energy)."""
    plt = _pyplot()
    ok = [r for r in rows if r["status"] == "ok"]
    labels = [str(v) for v in values]
    cost = (("array_area_mm2", "array area (mm²)") if axis in ("rows", "cols")
            else ("energy_per_inference_nj", "energy per inference (nJ)"))
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
    for ax, key, ylabel, scale in ((axes[0], "accuracy", "accuracy (%)", 100),
                                   (axes[1], *cost, 1)):
        means = []
        for i, label in enumerate(labels):
            ys = [scale * r[key] for r in ok if str(r[axis]) == label]
            ax.scatter([i] * len(ys), ys, color="C0", alpha=0.6, s=18)
            means.append(sum(ys) / len(ys) if ys else float("nan"))
        ax.plot(range(len(labels)), means, color="C3", marker="_", ms=14, lw=1,
                label="mean over the other parameters")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(axis)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"sensitivity to {axis}", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _fmt(v, spec):
    return "–" if v is None else format(v, spec)


def _table(rows, varied, *, with_status=False):
    head = (["point"] + (["status"] if with_status else [])
            + ["accuracy (%)", "PyTorch (%)", "energy/inference (nJ)", "array area (mm²)",
               "MAC", "widest act. bits", "latency (µs)"])
    lines = ["| " + " | ".join(head) + " |", "|---|" + ("---|" if with_status else "")
             + "---:|" * 4 + "---|---:|---:|"]
    for r in rows:
        cells = [_label(r, varied)] + ([r["status"]] if with_status else [])
        if r["status"] == "ok":
            cells += [_fmt(100 * r["accuracy"], ".2f"), _fmt(100 * r["pytorch_accuracy"], ".2f"),
                      _fmt(r["energy_per_inference_nj"], ".4g"),
                      _fmt(r["array_area_mm2"], ".4g"), f"`{r['design']}`",
                      str(r["max_act_bits"]), _fmt(r["latency_us"], ".3g")]
        else:
            cells += [(r.get("error") or "").replace("|", "/")[:120]] + [""] * 6
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _markdown(spec, rows, varied, plots):
    ok = [r for r in rows if r["status"] == "ok"]
    area_note = ("synthesized layer arrays (memories as registers)" if spec.hardware["array_synth"]
                 else "the PEs' MAC cells only (MAC area × rows × cols; no buffers or control)")
    out = [f"# Sweep {spec.sweep['name'] or ''}".rstrip(), "",
           f"{len(rows)} points ({len(ok)} finished, "
           f"{sum(r['status'] == 'failed' for r in rows)} failed, "
           f"{sum(r['status'] == 'pending' for r in rows)} pending) in {len(spec.runs)} "
           f"training runs; {spec.training['dataset']}, model(s) "
           f"{', '.join(map(str, spec.space.get('model', ['vgg7'])))}. Accuracy: the exported "
           f"network on the integer engine ({ok[0]['test_images'] if ok else '?'} test images). "
           f"Energy: the MAC datapath only, from real operands of "
           f"{spec.hardware['energy_images']} test images "
           f"({spec.hardware['energy_ops']} operations per layer). Area: {area_note}. "
           f"OSU 0.18 µm cells: compare ratios, not absolute numbers.", ""]
    for cost, label, png in OBJECTIVES:
        out += [f"## Pareto front: accuracy against {label}", "", f"![{label}](plots/{png})",
                ""] + _table(pareto_front(rows, cost), varied) + [""]
    if plots:
        out += ["## Sensitivity", ""] + [f"![{a}](plots/{p})" for a, p in plots] + [""]
    out += ["## All points", ""] + _table(rows, varied, with_status=True) + [""]
    return "\n".join(out)


def _inline(text):
    import re
    text = html.escape(text)
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", text)


def _html(markdown, folder):
    """The markdown above as one self-contained HTML page (headings, tables, images)."""
    import re
    body, table = [], []

    def flush():
        if table:
            rows = [[c.strip() for c in line.strip("|").split("|")] for line in table
                    if not re.fullmatch(r"\|[-:|]+\|", line)]
            cells = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
            body.append(f"<table><tr>{cells}</tr>" + "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                for r in rows[1:]) + "</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        image = re.fullmatch(r"!\[([^]]*)]\(([^)]*)\)", line)
        if line.startswith("## "):
            body.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{_inline(line[2:])}</h1>")
        elif image:
            data = base64.b64encode((folder / image.group(2)).read_bytes()).decode("ascii")
            body.append(f"<figure><img alt=\"{html.escape(image.group(1))}\" "
                        f"src=\"data:image/png;base64,{data}\"></figure>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
             "figure{display:inline-block;margin:0.5em}")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>wrapkit sweep</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def write_outputs(spec, rows, folder):
    """Plots, ``pareto.md``, ``pareto.json`` and ``report.html`` of ``rows`` into ``folder``."""
    folder = Path(folder)
    varied = spec.varied
    ok = [r for r in rows if r["status"] == "ok"]
    (folder / "plots").mkdir(exist_ok=True)
    plots = []
    if ok:
        for cost, label, png in OBJECTIVES:
            _pareto_plot(rows, cost, label, varied, folder / "plots" / png)
        for axis in varied:
            values = ["none" if v is None else v for v in spec.space[axis]]
            if any(r[axis] is None for r in rows):
                values.append(None)  # k and p of points without a cyclic activation
            png = f"sensitivity_{axis}.png"
            _sensitivity_plot(rows, axis, values, folder / "plots" / png)
            plots.append((axis, png))
    markdown = _markdown(spec, rows, varied, plots)
    if not ok:
        markdown = "\n".join(l for l in markdown.splitlines() if not l.startswith("!["))
    atomic_write_text(folder / "pareto.md", markdown)
    atomic_write_json(folder / "pareto.json", {
        "schema": "wrapkit.sweep.pareto/1",
        **{cost: [r["point"] for r in pareto_front(rows, cost)] for cost, _, _ in OBJECTIVES},
        "varied": varied, "spec": spec.to_dict()})
    atomic_write_text(folder / "report.html", _html(markdown, folder))
    return markdown
