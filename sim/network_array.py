"""``wrapkit cosim network m.wkx --datapath array``: a whole exported network through the RTL
layer array, image by image.

One array design serves every integer layer: its MAC is the network's (activation width the
widest of the layers', the common weight kind, accumulator and ``k``), its buffers fit the
largest layer. For every test image, every integer layer (conv2d and linear) runs on the
array in one simulator session (cocotb, Icarus or Verilator; :func:`~.cosim_array.
cosim_array`); pooling and the float first and last layers run on the host. Checked:

* every layer's array outputs against the integer engine (codes before pooling, ``y`` for
  the last integer layer, which the engine dequantizes in float);
* the chain: each layer's pooled array codes are exactly the input codes the next layer was
  loaded with, so the array ran the network, not layers fed from elsewhere;
* the prediction: the host runs the float layers after the last integer layer on the
  array's own outputs, and its class must equal the engine's;
* cycles: each layer's ``cycles`` port equals the cycle model, and cycles per inference are
  their sum.

Exit 0: everything equal; 1: any mismatch; 2: bad input.
"""

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from wrapkit.common.errors import UserError
from wrapkit.common.flags import flag_error

from .layer_array import ARRAY_SIZE_FLAGS
from .tools import check_simulator

__all__ = ["NetworkCosimResult", "cosim_network", "network_array_config", "register_network"]


@dataclass
class NetworkCosimResult:
    """Outcome of :func:`cosim_network`."""

    model: str
    sim: str
    design: str
    images: int
    rows: int
    cols: int
    layers: list = field(default_factory=list)       # per layer: name, macs, cycles, mismatches
    outputs_checked: int = 0
    mismatches: int = 0
    chain_mismatches: int = 0
    predictions_equal: int = 0
    cycles_per_inference: int = 0
    model_cycles_per_inference: int = 0
    macs_per_inference: int = 0
    sim_wall_s: float = 0.0
    compute_s: float = 0.0
    examples: list = field(default_factory=list)
    cycle_errors: list = field(default_factory=list)

    @property
    def ok(self):
        return (self.mismatches == 0 and self.chain_mismatches == 0 and not self.cycle_errors
                and self.predictions_equal == self.images and self.outputs_checked > 0
                and self.cycles_per_inference == self.model_cycles_per_inference)

    def to_dict(self):
        return {**asdict(self), "ok": self.ok}


def network_array_config(layers, rows, cols):
    """One :class:`ArrayConfig` that fits every integer layer in ``layers``."""
    from wrapkit.hw.array.config import ArrayConfig

    from .layer_array import array_for_layer

    cfgs = [array_for_layer(lay, rows, cols) for lay in layers]
    widest = max(cfgs, key=lambda c: c.mac.act_bits)
    for c in cfgs:
        same = (c.mac.weight_kind, c.mac.weight_bits, c.mac.acc_bits, c.mac.k,
                c.mac.act_signed)
        ref = (widest.mac.weight_kind, widest.mac.weight_bits, widest.mac.acc_bits,
               widest.mac.k, widest.mac.act_signed)
        if same != ref:
            raise UserError(f"the network's integer layers use different MACs ({c.mac.name} "
                            f"and {widest.mac.name}); one array runs layers of one weight "
                            f"kind, accumulator width and k")
    try:
        return ArrayConfig(rows, cols, widest.mac, out_bits=max(c.out_bits for c in cfgs),
                           act_depth=max(c.act_depth for c in cfgs),
                           weight_depth=max(c.weight_depth for c in cfgs),
                           out_depth=max(c.out_depth for c in cfgs),
                           max_channels=max(c.max_channels for c in cfgs))
    except (TypeError, ValueError) as exc:
        raise flag_error(exc, ARRAY_SIZE_FLAGS, quote_parameter=True) from None


def _host_tail(engine, last_index, y_last):
    """Logits from the last integer layer's MAC outputs ``y`` (engine layout), through the
    layer's own dequantization and the float layers after it."""
    lay = engine.layer(last_index)
    x = lay.output(y_last)
    for later in engine.layers[last_index + 1:]:
        x = later.forward(x, None)
    return x


def cosim_network(model, *, images=1, sim="icarus", rows=8, cols=8, dataset=None,
                  data_dir=None, progress=None):
    """Run every integer layer of ``model`` on the RTL array (module docstring)."""
    check_simulator(sim)
    say = progress or (lambda msg: None)
    from wrapkit.hw.array.cycles import layer_cycles
    from wrapkit.common.datasets import load_images
    from wrapkit.ref.engine import Engine
    from wrapkit.ref.wkx import read_export

    from .cosim_array import array_rtl, cosim_array
    from .layer_array import _nchw, _pool, layer_jobs, layer_shape

    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise UserError(f"--images must be an integer >= 1, got {images!r}")
    engine = Engine(read_export(model))
    layers = list(engine.integer_layers)
    if not layers:
        raise UserError(f"{model} has no integer layers to run on the array")
    indices = [l.index for l in layers]
    if indices != list(range(indices[0], indices[-1] + 1)):
        raise UserError(f"{model}'s integer layers ({indices}) are not consecutive; the "
                        f"network cosimulation chains consecutive integer layers")
    for lay in layers:
        layer_shape(lay)                       # refuses kinds the array does not run
    test = load_images(dataset or engine.export.header["input"].get("dataset"), "test",
                       data_dir).first(images)
    n = len(test)
    cfg = network_array_config(layers, rows, cols)
    say(f"design: {rows}x{cols} array for {len(layers)} integer layers ({cfg.name})")
    manifest = array_rtl(cfg)
    res = NetworkCosimResult(str(model), sim, cfg.name, n, rows, cols)

    # Engine: every integer layer's input codes and outputs for the images.
    inputs = {l.index: engine.layer_input(test.pixels, l.index) for l in layers}
    forwards = {l.index: engine.layer_forward(l.index, _nchw(inputs[l.index])) for l in layers}
    logits = engine.run(test.pixels)

    jobs = []               # image-major: image 0's layers, then image 1's ...
    for i in range(n):
        for lay in layers:
            jobs.append(layer_jobs(lay, inputs[lay.index][i:i + 1])[0])
    say(f"simulate: {n} image(s) x {len(layers)} layers on {sim}")
    t0 = time.perf_counter()
    cos = cosim_array(manifest, jobs, sim)
    res.sim_wall_s = time.perf_counter() - t0
    if not cos.sim_result.ok and not cos.layers:
        res.cycle_errors.append(cos.sim_result.summary())
        return res
    res.mismatches += cos.mismatches
    res.examples += list(cos.examples)
    res.cycle_errors += list(cos.cycle_errors)

    per_layer = {l.index: {"layer": l.name, "shape": layer_shape(l).describe(),
                           "macs": layer_shape(l).macs,
                           "model_cycles": layer_cycles(cfg, layer_shape(l)).total,
                           "cycles": [], "mismatches": 0} for l in layers}
    for i in range(n):
        for k, lay in enumerate(layers):
            slot = i * len(layers) + k
            rep = cos.layers[slot]
            got = cos.outputs[slot]
            unresolved = cos.unresolved[slot]                  # x/z words: never equal
            shape = layer_shape(lay)
            info = per_layer[lay.index]
            info["cycles"].append(int(rep["cycles"]))
            res.compute_s += rep["wall_s"]["compute"]
            if got is None or unresolved is None:
                res.cycle_errors.append(f"image {i} layer {lay.name}: no outputs")
                continue
            fwd = forwards[lay.index]
            if lay.kind == "conv2d":
                got = got.reshape(1, shape.out_channels, shape.out_h, shape.out_w)
            else:
                got = got.reshape(1, shape.out_channels)
            unresolved = unresolved.reshape(got.shape)
            if lay.out_kind == "requant":
                y = fwd["y"][i:i + 1]
                y_last = y.transpose(0, 2, 3, 1) if y.ndim == 4 else y
                pre = lay.output(y_last)
                want = pre.transpose(0, 3, 1, 2) if pre.ndim == 4 else pre
            else:
                want = fwd["y"][i:i + 1]
            bad = int(np.count_nonzero((got != want.astype(np.int64)) | unresolved))
            res.outputs_checked += got.size
            res.mismatches += bad
            info["mismatches"] += bad
            if bad:
                res.examples.append(f"image {i} layer {lay.name}: {bad} of {got.size} outputs "
                                    f"differ from the engine")
            if lay.out_kind == "requant":
                # Chain: what this layer hands on (pooled on the host) is what the next
                # layer was loaded with.
                handed = _pool(got) if lay.pool else got
                nxt = jobs[slot + 1].codes if k + 1 < len(layers) else None
                if nxt is not None:
                    chained = np.asarray(handed, dtype=np.int64).reshape(-1)
                    if chained.size != nxt.size or np.any(chained != nxt.reshape(-1)):
                        res.chain_mismatches += 1
                        res.examples.append(f"image {i}: layer {lay.name}'s pooled array "
                                            f"output is not layer {layers[k + 1].name}'s input")
            else:
                y_nhwc = got.transpose(0, 2, 3, 1) if got.ndim == 4 else got
                host = _host_tail(engine, lay.index, y_nhwc)
                if int(np.argmax(host[0])) == int(np.argmax(logits[i])):
                    res.predictions_equal += 1
                else:
                    res.examples.append(f"image {i}: prediction from the array's outputs "
                                        f"{int(np.argmax(host[0]))}, engine "
                                        f"{int(np.argmax(logits[i]))}")
    for info in per_layer.values():
        for c in info["cycles"]:
            if c != info["model_cycles"]:
                res.cycle_errors.append(f"layer {info['layer']}: {c} cycles, model "
                                        f"{info['model_cycles']}")
    res.layers = list(per_layer.values())
    res.model_cycles_per_inference = sum(l["model_cycles"] for l in res.layers)
    res.cycles_per_inference = (sum(sum(l["cycles"]) for l in res.layers) // n
                                if all(l["cycles"] for l in res.layers) else 0)
    res.macs_per_inference = sum(l["macs"] for l in res.layers)
    return res


def _run(args):
    if args.datapath != "array":
        raise UserError("--datapath must be 'array': a whole network runs on the layer array")
    from wrapkit.common.files import atomic_write_json

    r = cosim_network(args.model, images=args.images, sim=args.sim, rows=args.rows,
                      cols=args.cols, dataset=args.dataset, data_dir=args.data_dir,
                      progress=lambda msg: print(f"cosim network: {msg}", flush=True))
    for l in r.layers:
        print(f"  {l['layer']:<14} {l['shape']:<32} {l['macs']:>9,} MACs  cycles "
              f"{l['cycles'][0] if l['cycles'] else 0:>8,} (model {l['model_cycles']:,})  "
              f"mismatches {l['mismatches']}")
    print(f"cosim network {r.model} on {r.sim}, {r.rows}x{r.cols} array: {r.images} image(s), "
          f"{r.outputs_checked:,} outputs, {r.mismatches} mismatches against the engine, "
          f"{r.chain_mismatches} chain breaks, predictions equal {r.predictions_equal}/"
          f"{r.images}; cycles per inference {r.cycles_per_inference:,} (model "
          f"{r.model_cycles_per_inference:,}), {r.macs_per_inference:,} MACs")
    if r.compute_s > 0:
        print(f"  wall: compute {r.compute_s:.2f} s "
              f"({r.macs_per_inference * r.images / r.compute_s:,.0f} verified MAC/s), "
              f"simulator run {r.sim_wall_s:.1f} s")
    for line in (r.examples + r.cycle_errors)[:10]:
        print(f"  mismatch: {line}")
    if args.json:
        atomic_write_json(args.json, r.to_dict())
    return 0 if r.ok else 1


def register_network(sub):
    """Add ``wrapkit cosim network`` to the ``cosim`` subparsers."""
    from wrapkit.common.flags import positive_int

    p = sub.add_parser(
        "network", help="every integer layer of an exported network on the RTL layer array",
        description="Run every integer layer of an export on one RTL layer array, image by "
                    "image (pooling and float layers on the host); check every layer's "
                    "outputs, the chain between layers and the prediction against the "
                    "integer engine, and cycles against the cycle model. Exit 1 on any "
                    "mismatch.")
    p.add_argument("model", help="the export (.wkx)")
    p.add_argument("--datapath", default="array", choices=("array",),
                   help="the datapath (array: the layer array)")
    p.add_argument("--images", type=positive_int, default=1, help="test images (default 1)")
    p.add_argument("--sim", default="icarus", help="icarus or verilator (default icarus)")
    p.add_argument("--rows", type=positive_int, default=8, help="PE rows (default 8)")
    p.add_argument("--cols", type=positive_int, default=8, help="PE columns (default 8)")
    p.add_argument("--dataset", default=None, help="dataset (default: the export's)")
    p.add_argument("--data-dir", default=None, help="dataset folder")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the result")
    p.set_defaults(func=_run)
    return p
