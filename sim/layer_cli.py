"""``wrapkit cosim layer``: a trained layer's real operands through the RTL MAC.

::

    wrapkit cosim layer model.wkx --layer 2 --images 1 --sim verilator
    wrapkit cosim layer graph.wkx --node attn.qk --images 1 --sim icarus --max-ops 20000
    wrapkit cosim layer model.wkx --layer 2 --images 1 --sim icarus --path driven --max-ops 20000

Registered into ``wrapkit cosim`` by :func:`wrapkit.sim.cli.register` (one hook line), so
the MAC and cyclic subcommands and this one share a parser. ``--datapath mac`` (the default)
runs :mod:`wrapkit.sim.layer_mac`, ``--datapath array`` :mod:`wrapkit.sim.layer_array`.
``--layer N`` picks a layer of a version-1 file; ``--node NAME`` a MAC-type node (conv2d,
depthwise included, linear, matmul) of a graph file of either version.
Imports nothing heavy until it runs. Exit 0: every cycle matched; 1: a mismatch; 2: bad input or a missing tool.
"""

import sys

from wrapkit.common.errors import UserError

__all__ = ["register_layer"]


def register_layer(sub):
    """Add the ``layer`` design to the ``wrapkit cosim`` subparsers ``sub``."""
    from .tools import DEFAULT_SIMULATOR, SIMULATORS

    p = sub.add_parser(
        "layer", help="real operands of a trained layer (from a .wkx export) through the MAC",
        description="Run the integer engine on the first test images up to integer layer N "
                    "of the export, stream that layer's operands (one dot product per output "
                    "neuron: positions, then channels, then the fan-in) through the RTL MAC "
                    "generated for the layer's bit widths, and check every cycle against "
                    "wrapkit.ref and every dot product against the engine.")
    p.add_argument("model", metavar="FILE.wkx", help="export written by `wrapkit export`")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--layer", type=int, metavar="N",
                       help="index of an integer layer of a version-1 file (`wrapkit infer` "
                            "lists them)")
    which.add_argument("--node", metavar="NAME",
                       help="a MAC-type node (conv2d, linear, matmul) of a graph file, "
                            "version 2 or 1 (`wrapkit infer` lists the MAC nodes)")
    p.add_argument("--images", type=int, default=1, metavar="K",
                   help="test images feeding the layer (default 1)")
    p.add_argument("--sim", default=DEFAULT_SIMULATOR, metavar="SIM",
                   help=f"{' or '.join(SIMULATORS)} (default {DEFAULT_SIMULATOR})")
    p.add_argument("--path", default="preloaded", choices=("preloaded", "driven"),
                   help="preloaded: streams in testbench memories, simulator runs free "
                        "(default); driven: cocotb drives every cycle")
    p.add_argument("--max-ops", type=int, default=None, metavar="M",
                   help="stop after the whole dot products within M operations")
    p.add_argument("--dataset", default=None, choices=("fashion-mnist", "digits"),
                   help="test images (default: the export's dataset)")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder")
    p.add_argument("--json", default=None, metavar="FILE", help="write the result as JSON")
    p.add_argument("--save-stream", default=None, metavar="FILE.npz",
                   help="also write the operand stream (arrays a, w, en, clr and the engine's "
                        "per-dot results) for `wrapkit synth DESIGN.json --stimulus FILE.npz`")
    from .layer_array import add_array_flags  # --datapath mac|array

    add_array_flags(p)
    p.set_defaults(func=_run)
    return p


def _run(args):
    if args.json:
        from wrapkit.common.paths import check_output_file
        check_output_file(args.json, "--json", inputs=(args.model,))
    if args.datapath == "array":
        from . import layer_array

        if args.node is None:
            return layer_array.run_cli(args)
        run_node_cli = getattr(layer_array, "run_node_cli", None)
        if run_node_cli is None:
            raise UserError("--datapath array runs version-1 layers only (--layer N); "
                            "cosimulate a graph node on --datapath mac")
        return run_node_cli(args)
    from .tools import check_simulator

    check_simulator(args.sim)
    from wrapkit.common.files import atomic_write_json

    from .layer_mac import cosim_layer, cosim_node

    say = lambda msg: print(f"cosim layer: {msg}", flush=True)  # noqa: E731
    if args.node is not None:
        result = cosim_node(args.model, args.node, images=args.images, sim=args.sim,
                            path=args.path, max_ops=args.max_ops, dataset=args.dataset,
                            data_dir=args.data_dir, progress=say)
    else:
        result = cosim_layer(args.model, args.layer, images=args.images, sim=args.sim,
                             path=args.path, max_ops=args.max_ops, dataset=args.dataset,
                             data_dir=args.data_dir, progress=say)
    r = result
    what = (f"node {r.name} ({r.kind})" if r.layer is None else f"layer {r.layer} ({r.name})")
    print(f"cosim {what} of {r.model} on {r.sim}, {r.path}: "
          f"{r.checked:,} of {r.ops:,} MAC operations checked ({r.dots:,} dot products x "
          f"{r.fan_in}, {r.images} image(s)), {r.mismatches} mismatches, "
          f"{r.final_mismatches} dot products differing from the integer engine")
    how = (f"simulator {r.sim_s:.2f} s, stream I/O {r.io_s:.2f} s, checks {r.check_s:.2f} s, "
           f"overlapping over {r.chunks} run(s)" if r.path == "preloaded" else
           "cocotb drives and checks every cycle")
    print(f"  {r.ops_per_s:,.0f} verified ops/s: {r.wall_s:.2f} s wall for simulation and "
          f"checking ({how}); build {r.build_s:.1f} s and engine {r.engine_s:.1f} s not "
          "counted")
    for e in r.examples[:10]:
        print(f"  mismatch: {e}")
    if args.json:
        try:
            atomic_write_json(args.json, r.to_dict())
        except OSError as exc:
            raise UserError(f"cannot write --json {args.json}: {exc.strerror or exc}") from None
    if args.save_stream:
        _save_stream(args)
    return 0 if r.ok else 1


def _save_stream(args):
    from .layer_mac import layer_operands, node_operation_stream

    if args.node is not None:
        stream = node_operation_stream(args.model, args.node, args.images,
                                       dataset=args.dataset, data_dir=args.data_dir,
                                       max_ops=args.max_ops)[0]
    else:
        _, _, stream, _ = layer_operands(args.model, args.layer, args.images,
                                         dataset=args.dataset, data_dir=args.data_dir,
                                         max_ops=args.max_ops)
    try:
        stream.save(args.save_stream)
    except OSError as exc:
        raise UserError(f"cannot write --save-stream {args.save_stream}: "
                        f"{exc.strerror or exc}") from None
    print(f"cosim layer: operand stream ({len(stream):,} operations) -> {args.save_stream}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run `wrapkit cosim layer ...`")
