"""``wrapkit rtl array``: generate the layer datapath (registered by ``wrapkit.hw.cli``).

::

    wrapkit rtl array --rows 8 --cols 8 --act-bits 3 --act-unsigned --weight-kind binary \\
                      --acc-bits 8 --k 2 --out-bits 8 --act-depth 8192 --out rtl
    wrapkit rtl array --rows 4 --cols 4 --config 3x1_acc8_k2 --out rtl

Amaranth is imported only when the command runs.
"""

from wrapkit.common.flags import flag_error, flag_name

from ..mac_flags import add_mac_flags, mac_config_from_flags

__all__ = ["add_array_parser"]

_DEFAULTS = {"out_bits": 8, "act_depth": 4096, "weight_depth": 4096, "out_depth": 4096,
             "max_channels": 256}

# ArrayConfig parameters -> the flags that set them (acc_bits: the array's own, narrower range).
_ARRAY_FLAGS = {name: flag_name(name) for name in ("rows", "cols", "acc_bits", "name", *_DEFAULTS)}


def add_array_parser(sub):
    """Add ``array`` to the ``wrapkit rtl`` subparsers ``sub``; its MAC flags are those of
    ``wrapkit rtl mac`` (:mod:`wrapkit.hw.mac_flags`)."""
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
    add_mac_flags(p, acc_bits_range="2..32")
    p.add_argument("--out-bits", type=int, default=_DEFAULTS["out_bits"], metavar="N",
                   help=f"requantized output code width, 1..8 (default {_DEFAULTS['out_bits']})")
    for name, what in (("act_depth", "activation buffer words"),
                       ("weight_depth", "weight buffer words"),
                       ("out_depth", "output buffer words"),
                       ("max_channels", "requantization table entries (output channels)")):
        p.add_argument(flag_name(name), type=int, default=_DEFAULTS[name],
                       metavar="N", help=f"{what} (default {_DEFAULTS[name]})")
    p.add_argument("--name", metavar="NAME", help="top module / file name (default: derived)")
    p.add_argument("--out", default="rtl", metavar="DIR",
                   help="folder for <name>.v and <name>.json (default: rtl)")
    p.set_defaults(func=_run)
    return p


def _run(args):
    from wrapkit.hw.cli import write_and_list

    from .config import ArrayConfig

    mac = mac_config_from_flags(args)
    try:
        cfg = ArrayConfig(rows=args.rows, cols=args.cols, mac=mac, out_bits=args.out_bits,
                          act_depth=args.act_depth, weight_depth=args.weight_depth,
                          out_depth=args.out_depth, max_channels=args.max_channels)
        from .design import array_design  # Amaranth, once the parameters are known good

        design = array_design(cfg, args.name)
    except (TypeError, ValueError) as exc:
        raise flag_error(exc, _ARRAY_FLAGS, quote_parameter=True) from None
    return write_and_list([design], args.out)
