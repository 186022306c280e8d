"""``wrapkit rtl``: generate Verilog + manifests for MAC units and cyclic activations.

::

    wrapkit rtl mac --config 8x8_acc8_k2 --out rtl
    wrapkit rtl mac --act-bits 8 --act-signed --weight-kind uniform --weight-bits 8 \\
                    --acc-bits 8 --k 2 --out rtl [--name N]
    wrapkit rtl cyclic --acc-bits 8 --k 2 --out rtl
    wrapkit rtl paper --out rtl          # the paper's six MAC designs
    wrapkit rtl packed-adder --lane-bits 8 --word-bits 32 --out rtl
    wrapkit rtl array --rows 8 --cols 8 ...   # a whole-layer datapath (hw/array/cli.py)
    wrapkit rtl import my_mac.v --top my_mac --config 8x8_acc32 --out build/byo
    wrapkit rtl check rtl/mac_a8s_wu8_acc8_k2.v   # accumulation-path widths (hw/width_check.py)

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


def _run_import(args):
    cfg = mac_config_from_flags(args)
    from .imported import import_design, parse_port_map

    result = import_design(args.verilog, args.top, cfg, args.out, name=args.name,
                           port_map=parse_port_map(args.map), latency=args.latency,
                           reset_active=args.reset_active)
    print(result.verilog)
    print(result.manifest)
    mapping = ", ".join(f"{role}={port}" for role, port in result.port_map.items())
    print(f"ports: {mapping} (reset active {result.reset_active}); latency "
          f"{result.latency} ({'measured by the Icarus probe' if result.latency_source == 'probe' else 'from --latency'})")
    return 0


def _add_import_parser(sub):
    imp = sub.add_parser(
        "import", help="wrap a hand-written MAC so cosim and synth read it (docs/byo-rtl.md)",
        description="Read your own Verilog MAC with pyverilog, map its ports to wrapkit's MAC "
                    "roles (clk rst a w en clr acc [y]), check their widths against the MAC "
                    "flags, measure its latency with an Icarus probe, and write <name>.v (your "
                    "files unchanged + a wrapper) and <name>.json (a 'mac' manifest).")
    imp.add_argument("verilog", nargs="+", metavar="FILE.v", help="the design's Verilog files")
    imp.add_argument("--top", required=True, metavar="MODULE", help="the design's top module")
    imp.add_argument("--map", metavar="ROLE=PORT,...",
                     help="port of each MAC role (clk, rst, a, w, en, clr, acc, y); roles left "
                          "out are matched by name when that is unambiguous")
    imp.add_argument("--latency", type=int, metavar="N",
                     help="clock edges from an operation to acc (default: measured)")
    imp.add_argument("--reset-active", choices=("high", "low"),
                     help="reset polarity (default: low for names like rst_n, else high)")
    add_mac_flags(imp, acc_bits_range="2..62")
    imp.add_argument("--name", metavar="NAME",
                     help="wrapper module / file name (default: <top>_wrapkit)")
    imp.add_argument("--out", required=True, metavar="DIR",
                     help="folder for <name>.v and <name>.json")
    imp.set_defaults(func=_run_import)


def _run_check(args):
    from .width_check import check_file

    report = check_file(args.verilog, manifest=args.manifest, top=args.top,
                        acc_bits=args.acc_bits)
    print(report.text())
    return 0 if report.ok else 1


def _add_check_parser(sub):
    check = sub.add_parser(
        "check", help="structural width check of the accumulation path (exit 1 on failure)",
        description="Find every accumulator (a register fed back through an adder whose other "
                    "operand comes from a multiplier) with pyverilog's dataflow analysis, print "
                    "the path with its widths, and check that every adder on it keeps exactly "
                    "acc-bits bits and no wider register feeds it.")
    check.add_argument("verilog", metavar="FILE.v", help="a design's Verilog")
    check.add_argument("--manifest", metavar="JSON",
                       help="its manifest (default: FILE.json beside it); gives top and acc-bits")
    check.add_argument("--top", metavar="MODULE", help="top module (default: the manifest's)")
    check.add_argument("--acc-bits", type=int, metavar="N",
                       help="expected accumulator width (default: the manifest's)")
    check.set_defaults(func=_run_check)


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
    _add_import_parser(sub)
    _add_check_parser(sub)
    return rtl

