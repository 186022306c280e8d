"""``wrapkit rtl``: generate Verilog + manifests for MAC units and cyclic activations.

::

    wrapkit rtl mac --config 8x8_acc8_k2 --out rtl
    wrapkit rtl mac --act-bits 8 --act-signed --weight-kind uniform --weight-bits 8 \\
                    --acc-bits 8 --k 2 --out rtl [--name N]
    wrapkit rtl cyclic --acc-bits 8 --k 2 --out rtl
    wrapkit rtl paper --out rtl          # the paper's six MAC designs
    wrapkit rtl packed-adder --lane-bits 8 --lanes 4 --word-bits 32 --out rtl

Amaranth is imported only when a subcommand runs.
"""

import re

from wrapkit.ref.configs import PAPER_MACS
from wrapkit.common.errors import UserError

__all__ = ["register"]

_WEIGHT_KINDS = ("binary", "ternary", "uniform")
# Flags that describe a MAC explicitly; --config replaces all of them.
_MAC_FLAGS = ("act_bits", "act_signed", "weight_kind", "weight_bits", "acc_bits", "k",
              "no_cyclic")


def _flag(param):
    return "--" + param.replace("_", "-")


def _user_error(exc):
    """A constructor's ValueError/TypeError ("act_bits must be in [1, 32], got 0") as a
    one-line UserError that names the flag to fix."""
    message = str(exc).splitlines()[0]
    match = re.match(r"(\w+) must", message)
    hint = f" (fix {_flag(match.group(1))})" if match else ""
    return UserError(message + hint)


def _add_out(parser):
    parser.add_argument("--out", default="rtl", metavar="DIR",
                        help="folder for <name>.v and <name>.json (default: rtl)")


def _write(designs, out):
    from .verilog import write_designs
    try:
        paths = write_designs(designs, out)
    except OSError as exc:
        raise UserError(f"cannot write into --out {out}: {exc.strerror or exc}; "
                        f"choose a writable folder") from None
    for path in paths:
        print(path)
    return 0


def _mac_config(args):
    from wrapkit.ref.datapath import MacConfig
    if args.config is not None:
        given = [_flag(p) for p in _MAC_FLAGS if getattr(args, p) not in (None, False)]
        if given:
            raise UserError(f"--config {args.config} already fixes the MAC; drop "
                            f"{', '.join(given)} or drop --config")
        if args.config not in PAPER_MACS:
            raise UserError(f"unknown --config {args.config!r}; choose one of "
                            f"{', '.join(PAPER_MACS)} or give the parameters as flags")
        return PAPER_MACS[args.config]
    missing = [_flag(p) for p in ("act_bits", "weight_kind", "acc_bits")
               if getattr(args, p) is None]
    if missing:
        raise UserError(f"missing {', '.join(missing)}; give the MAC parameters or "
                        f"--config NAME")
    if args.weight_kind == "uniform" and args.weight_bits is None:
        raise UserError("--weight-kind uniform needs --weight-bits N (2..16)")
    if args.weight_kind != "uniform" and args.weight_bits is not None:
        raise UserError(f"--weight-bits applies to uniform weights only; drop it for "
                        f"{args.weight_kind} weights")
    try:
        return MacConfig(
            act_bits=args.act_bits,
            act_signed=True if args.act_signed is None else args.act_signed,
            weight_kind=args.weight_kind,
            weight_bits=args.weight_bits,
            acc_bits=args.acc_bits,
            k=None if args.no_cyclic else args.k,
        )
    except (TypeError, ValueError) as exc:
        raise _user_error(exc) from None


def _run_mac(args):
    cfg = _mac_config(args)
    from .verilog import mac_design
    try:
        design = mac_design(cfg, args.name)
    except (TypeError, ValueError) as exc:
        raise _user_error(exc) from None
    return _write([design], args.out)


def _run_cyclic(args):
    from .verilog import cyclic_design
    try:
        design = cyclic_design(args.acc_bits, args.k, args.name)
    except (TypeError, ValueError) as exc:
        raise _user_error(exc) from None
    return _write([design], args.out)


def _run_paper(args):
    from .verilog import paper_designs
    return _write(paper_designs(), args.out)


def _run_packed_adder(args):
    from .packed_adder import packed_adder_design
    try:
        design = packed_adder_design(lane_bits=args.lane_bits, lanes=args.lanes,
                                     word_bits=args.word_bits, name=args.name)
    except (TypeError, ValueError) as exc:
        raise _user_error(exc) from None
    return _write([design], args.out)


def register(subparsers):
    """Add ``wrapkit rtl`` and its subcommands to the top-level parser."""
    rtl = subparsers.add_parser(
        "rtl", help="generate Verilog + JSON manifests (MAC units, cyclic activation)",
        description="Generate Verilog and a JSON manifest per design with Amaranth.")
    sub = rtl.add_subparsers(dest="rtl_command", metavar="DESIGN", required=True)

    mac = sub.add_parser(
        "mac", help="one MAC unit (a paper --config or explicit parameters)",
        description="One MAC unit: multiplier -> product register -> wrapping accumulator "
                    "-> optional cyclic activation. Give a paper --config or the parameters.")
    mac.add_argument("--config", metavar="NAME",
                     help=f"a paper configuration: {', '.join(PAPER_MACS)}")
    mac.add_argument("--act-bits", type=int, metavar="N", help="activation width, 1..32")
    sign = mac.add_mutually_exclusive_group()
    sign.add_argument("--act-signed", dest="act_signed", action="store_const", const=True,
                      default=None, help="two's-complement activations (default)")
    sign.add_argument("--act-unsigned", dest="act_signed", action="store_const", const=False,
                      help="unsigned activations (WrapNet's post-ReLU codes)")
    mac.add_argument("--weight-kind", choices=_WEIGHT_KINDS, help="weight kind")
    mac.add_argument("--weight-bits", type=int, metavar="N",
                     help="uniform weight width, 2..16 (uniform only)")
    mac.add_argument("--acc-bits", type=int, metavar="N", help="accumulator width, 2..62")
    cyc = mac.add_mutually_exclusive_group()
    cyc.add_argument("--k", type=int, metavar="K", help="cyclic activation slope, >= 1")
    cyc.add_argument("--no-cyclic", action="store_true",
                     help="no cyclic activation unit (the default without --k)")
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

    from .array.cli import add_array_parser  # `wrapkit rtl array` (hw/array, issue 5)
    add_array_parser(sub, _mac_config, _user_error, _write)
    return rtl

