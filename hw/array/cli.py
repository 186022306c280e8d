"""``wrapkit rtl array``: generate the layer datapath (registered by ``wrapkit.hw.cli``).

::

    wrapkit rtl array --rows 8 --cols 8 --act-bits 3 --act-unsigned --weight-kind binary \\
                      --acc-bits 8 --k 2 --out-bits 8 --act-depth 8192 --out rtl
    wrapkit rtl array --rows 4 --cols 4 --config 3x1_acc8_k2 --out rtl

Amaranth is imported only when the command runs.
"""

__all__ = ["add_array_parser"]

_DEFAULTS = {"out_bits": 8, "act_depth": 4096, "weight_depth": 4096, "out_depth": 4096,
             "max_channels": 256}


def add_array_parser(sub, mac_config, user_error, write):
    """Add ``array`` to the ``wrapkit rtl`` subparsers ``sub``.

    ``mac_config(args)``, ``user_error(exc)`` and ``write(designs, out)`` are
    ``wrapkit.hw.cli``'s helpers, so the MAC flags mean exactly what they mean for
    ``wrapkit rtl mac``.
    """
    from wrapkit.ref.configs import PAPER_MACS

    p = sub.add_parser(
        "array", help="a layer datapath: rows x cols MAC array, buffers, controller",
        description="An output-stationary rows x cols array of WrapNet MACs (acc-bits-wide "
                    "wrapping adders) with one cyclic activation and one requantizer on its "
                    "drain lane, activation/weight/output buffers and a controller that runs "
                    "one conv2d or linear layer. Give the MAC as for `wrapkit rtl mac`.")
    p.add_argument("--rows", type=int, required=True, metavar="R",
                   help="output positions in parallel, 1..64")
    p.add_argument("--cols", type=int, required=True, metavar="C",
                   help="output channels in parallel, 1..64")
    p.add_argument("--config", metavar="NAME",
                   help=f"the MAC as a paper configuration: {', '.join(PAPER_MACS)}")
    p.add_argument("--act-bits", type=int, metavar="N", help="activation width, 1..32")
    sign = p.add_mutually_exclusive_group()
    sign.add_argument("--act-signed", dest="act_signed", action="store_const", const=True,
                      default=None, help="two's-complement activations (the default)")
    sign.add_argument("--act-unsigned", dest="act_signed", action="store_const", const=False,
                      help="unsigned activations (WrapNet's post-ReLU codes)")
    p.add_argument("--weight-kind", choices=("binary", "ternary", "uniform"))
    p.add_argument("--weight-bits", type=int, metavar="N", help="uniform weight width, 2..16")
    p.add_argument("--acc-bits", type=int, metavar="N",
                   help="accumulator (and every adder) width, 2..32")
    cyc = p.add_mutually_exclusive_group()
    cyc.add_argument("--k", type=int, metavar="K", help="cyclic activation slope, >= 1")
    cyc.add_argument("--no-cyclic", action="store_true", help="no cyclic activation")
    p.add_argument("--out-bits", type=int, default=_DEFAULTS["out_bits"], metavar="N",
                   help=f"requantized output code width, 1..8 (default {_DEFAULTS['out_bits']})")
    for name, what in (("act_depth", "activation buffer words"),
                       ("weight_depth", "weight buffer words"),
                       ("out_depth", "output buffer words"),
                       ("max_channels", "requantization table entries (output channels)")):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=_DEFAULTS[name],
                       metavar="N", help=f"{what} (default {_DEFAULTS[name]})")
    p.add_argument("--name", metavar="NAME", help="top module / file name (default: derived)")
    p.add_argument("--out", default="rtl", metavar="DIR",
                   help="folder for <name>.v and <name>.json (default: rtl)")
    p.set_defaults(func=lambda args: _run(args, mac_config, user_error, write))
    return p


def _run(args, mac_config, user_error, write):
    mac = mac_config(args)
    from .config import ArrayConfig
    try:
        cfg = ArrayConfig(rows=args.rows, cols=args.cols, mac=mac, out_bits=args.out_bits,
                          act_depth=args.act_depth, weight_depth=args.weight_depth,
                          out_depth=args.out_depth, max_channels=args.max_channels)
    except (TypeError, ValueError) as exc:
        raise user_error(exc) from None
    from .design import array_design
    try:
        design = array_design(cfg, args.name)
    except (TypeError, ValueError) as exc:
        raise user_error(exc) from None
    return write([design], args.out)
