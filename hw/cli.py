"""``wrapkit rtl``: generate Verilog + manifests for MAC units and cyclic activations.

::

    wrapkit rtl mac --config 8x8_acc8_k2 --out rtl
    wrapkit rtl mac --act-bits 8 --act-signed --weight-kind uniform --weight-bits 8 \\
                    --acc-bits 8 --k 2 --out rtl [--name N]
    wrapkit rtl cyclic --acc-bits 8 --k 2 --out rtl
    wrapkit rtl paper --out rtl          # the paper's six MAC designs
    wrapkit rtl packed-adder --lane-bits 8 --word-bits 32 --out rtl
    wrapkit rtl array --rows 8 --cols 8 ...   # a whole-layer datapath (hw/array/cli.py)

Amaranth is imported only when a subcommand runs.
"""

from wrapkit.common.errors import UserError
from wrapkit.common.flags import flag_error
from wrapkit.ref.configs import PAPER_MACS

from .mac_flags import add_mac_flags, mac_config_from_flags

__all__ = ["register_rtl", "write_and_list"]

# Parameters of the design generators -> the flags that set them. Their errors quote the
# parameter and name the flag: "acc_bits must be in [2, 62], got 1 (fix --acc-bits)".
_DESIGN_FLAGS = {"name": "--name", "acc_bits": "--acc-bits", "k": "--k",
                 "lane_bits": "--lane-bits", "lanes": "--lanes", "word_bits": "--word-bits"}


def _add_out(parser):
    parser.add_argument("--out", default="rtl", metavar="DIR",
                        help="folder for <name>.v and <name>.json (default: rtl)")


def write_and_list(designs, out):
    """Write ``designs`` into the folder ``out`` and print each file written."""
    from .verilog import write_designs
    try:
        paths = write_designs(designs, out)
    except OSError as exc:
        raise UserError(f"cannot write into --out {out}: {exc.strerror or exc}; "
                        f"choose a writable folder") from None
    for path in paths:
        print(path)
    return 0


def _run_mac(args):
    cfg = mac_config_from_flags(args)
    from .verilog import mac_design
    try:
        design = mac_design(cfg, args.name)
    except (TypeError, ValueError) as exc:
        raise flag_error(exc, _DESIGN_FLAGS, quote_parameter=True) from None
    return write_and_list([design], args.out)


def _run_cyclic(args):
    from .verilog import cyclic_design
    try:
        design = cyclic_design(args.acc_bits, args.k, args.name)
    except (TypeError, ValueError) as exc:
        raise flag_error(exc, _DESIGN_FLAGS, quote_parameter=True) from None
    return write_and_list([design], args.out)


def _run_paper(args):
    from .verilog import paper_designs
    return write_and_list(paper_designs(), args.out)


def _run_packed_adder(args):
    from .packed_adder import packed_adder_design
    try:
        design = packed_adder_design(lane_bits=args.lane_bits, lanes=args.lanes,
                                     word_bits=args.word_bits, name=args.name)
    except (TypeError, ValueError) as exc:
        raise flag_error(exc, _DESIGN_FLAGS, quote_parameter=True) from None
    return write_and_list([design], args.out)


def register_rtl(subparsers):
    """Add ``wrapkit rtl`` and its subcommands to the top-level parser."""
    rtl = subparsers.add_parser(
        "rtl", help="generate Verilog + JSON manifests (MAC units, cyclic activation)",
        description="Generate Verilog and a JSON manifest per design with Amaranth.")
    sub = rtl.add_subparsers(dest="rtl_command", metavar="DESIGN", required=True)

    mac = sub.add_parser(
        "mac", help="one MAC unit (a paper --config or explicit parameters)",
        description="One MAC unit: multiplier -> product register -> wrapping accumulator "
                    "-> optional cyclic activation. Give a paper --config or the parameters.")
    add_mac_flags(mac, acc_bits_range="2..62")
    mac.add_argument("--name", metavar="NAME",
                     help="top module / file name (default: derived, e.g. mac_a8s_wu8_acc8_k2)")
    _add_out(mac)
    mac.set_defaults(func=_run_mac)

    cyclic = sub.add_parser(
        "cyclic", help="a standalone cyclic activation (combinational)",
        description="WrapNet's cyclic activation of an acc-bits value with slope k.")
    cyclic.add_argument("--acc-bits", type=int, required=True, metavar="N",
                        help="input/output width, 2..62")
    cyclic.add_argument("--k", type=int, required=True, metavar="K", help="slope, >= 1")
    cyclic.add_argument("--name", metavar="NAME", help="default: cyclic_acc<N>_k<K>")
    _add_out(cyclic)
    cyclic.set_defaults(func=_run_cyclic)

    paper = sub.add_parser("paper", help="the paper's six MAC designs",
                          description=f"Write the six paper MAC designs ({', '.join(PAPER_MACS)}).")
    _add_out(paper)
    paper.set_defaults(func=_run_paper)

    packed = sub.add_parser(
        "packed-adder", help="a packed (SWAR) accumulator: narrow lanes in one word",
        description="A packed accumulator: lanes x lane-bits in one word-bits word, adding "
                    "as a scalar adder (carry), a vector unit (isolated) or with buffer "
                    "bits, chosen per cycle by its mode input.")
    packed.add_argument("--lane-bits", type=int, default=8, metavar="N",
                        help="lane width, guard bit included, 2..word-bits (default: 8)")
    packed.add_argument("--lanes", type=int, metavar="N",
                        help="lanes in the word (default: as many as fit)")
    packed.add_argument("--word-bits", type=int, default=32, metavar="N",
                        help="word width, 32 or 64 (default: 32)")
    packed.add_argument("--name", metavar="NAME",
                        help="default: packed_acc_w<word-bits>_l<lanes>x<lane-bits>")
    _add_out(packed)
    packed.set_defaults(func=_run_packed_adder)

    from .array.cli import add_array_parser

    add_array_parser(sub)
    return rtl

