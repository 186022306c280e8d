"""``wrapkit cosim``: cosimulate generated RTL against wrapkit.ref.

::

    wrapkit cosim mac 8x8_acc8_k2 --sim verilator --ops 20000 --seed 1 [--rtl-dir rtl]
    wrapkit cosim mac path/to/design.json --sim icarus
    wrapkit cosim cyclic --sim icarus --acc-bits 4-10 --k 1-4
    wrapkit cosim paper [--ops 20000] [--sims icarus,verilator]

Exit status: 0 all checks passed, 1 a mismatch (or a failing testbench), 2 bad input or a
missing tool. cocotb and Amaranth are imported only when a subcommand runs.
"""

import sys
import time

from wrapkit.common.errors import FlagError, UserError
from wrapkit.common.flags import check_flag_count
from wrapkit.ref.configs import PAPER_MACS

from .tools import DEFAULT_SIMULATOR, SIMULATORS, check_simulator

__all__ = ["register_cosim"]

_PAPER_OPS = 20000


def _int_range(flag, text, lo):
    """``"4-10"`` or ``"4,6,8"`` or ``"5"`` -> sorted list of ints >= lo."""
    values = set()
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)
                values.update(range(int(a), int(b) + 1))
            else:
                values.add(int(part))
    except ValueError:
        raise FlagError(flag, f"{text!r} is not a list of integers like 4-10 or 4,6,8") from None
    if not values or min(values) < lo:
        raise FlagError(flag, f"values must be integers >= {lo}, got {text!r}")
    return sorted(values)


def _print_failure(result):
    for line in result.examples[:10]:
        print(f"  mismatch: {line}")
    if result.mismatches > len(result.examples[:10]):
        print(f"  ... {result.mismatches - len(result.examples[:10])} more")
    if not result.sim_result.ok:
        print(result.sim_result.summary())


def _run_cosim_mac(args):
    check_simulator(args.sim)
    from .cosim import DRIVEN_LIMIT_WHY, MAX_DRIVEN_OPS, cosim_mac

    check_flag_count("--ops", args.ops, hi=MAX_DRIVEN_OPS, why=DRIVEN_LIMIT_WHY)

    t0 = time.perf_counter()
    result = cosim_mac(args.config, args.sim, ops=args.ops, seed=args.seed,
                       rtl_dir=args.rtl_dir, full_width=not args.no_full_width)
    wall = time.perf_counter() - t0
    print(f"cosim {result.design} on {args.sim} (seed {args.seed}): {result.checked} ops "
          f"checked, {result.mismatches} mismatches, {result.ops_per_s:,.0f} ops/s simulated "
          f"({wall:.1f} s in all, build included)")
    for outcome in result.sim_result.outcomes:
        rep = outcome.report or {}
        if outcome.name == "test_full_width_accumulation" and rep:
            runs = ", ".join(f"{r['cycles']} x {r['product']}" for r in rep["runs"])
            print(f"  full-width accumulation: held {runs}; wrap reached "
                  f"{'/'.join('yes' if x else 'no' for x in rep['wrap_reached'])}; "
                  f"{rep['ops_checked']} samples checked, {rep['mismatches']} mismatches")
        if outcome.name == "test_random_ops" and rep.get("coverage"):
            c = rep["coverage"]
            print(f"  coverage: {c['accumulator_wraps']} accumulator wraps, "
                  f"{c['clears']} clears ({c['back_to_back_clears']} back to back), "
                  f"{c['enabled']} enabled ops, {c['resets']} resets, longest run without "
                  f"clear {c['longest_run_without_clear']}, weight codes "
                  f"{c['weight_codes_enabled']}/{c['weight_codes_total']}")
    if not result.ok:
        _print_failure(result)
        return 1
    return 0


def _run_cosim_cyclic(args):
    check_simulator(args.sim)
    widths = _int_range("--acc-bits", args.acc_bits, 2)
    ks = _int_range("--k", args.k, 1)
    from .cosim import cosim_cyclic

    t0 = time.perf_counter()
    result = cosim_cyclic(args.sim, widths, ks, seed=args.seed)
    wall = time.perf_counter() - t0
    print(f"cosim cyclic on {args.sim}: {len(widths) * len(ks)} designs (acc_bits "
          f"{args.acc_bits}, k {args.k}), {result.checked} inputs checked exhaustively, "
          f"{result.mismatches} mismatches, {result.ops_per_s:,.0f} inputs/s simulated "
          f"({wall:.1f} s in all, generation and build included)")
    if not result.ok:
        _print_failure(result)
        return 1
    return 0


def _run_cosim_paper(args):
    sims = [check_simulator(s.strip()) for s in args.sims.split(",") if s.strip()]
    if not sims:
        raise FlagError("--sims", f"needs at least one of {', '.join(SIMULATORS)}")
    from .cosim import DRIVEN_LIMIT_WHY, MAX_DRIVEN_OPS

    check_flag_count("--ops", args.ops, hi=MAX_DRIVEN_OPS, why=DRIVEN_LIMIT_WHY)
    from .tools import prepare_simulator

    for sim in sims:  # fail on a missing tool before spending time on generation
        prepare_simulator(sim)
    from wrapkit.hw.verilog import paper_designs, write_designs

    from .cosim import cosim_mac
    from .designs import default_rtl_dir

    rtl_dir = args.rtl_dir or default_rtl_dir()
    print(f"cosim paper: generating the {len(PAPER_MACS)} paper MAC designs into {rtl_dir}",
          flush=True)
    try:
        write_designs(paper_designs(), rtl_dir)
    except OSError as exc:
        raise UserError(f"cannot write into --rtl-dir {rtl_dir}: {exc.strerror or exc}; "
                        "choose a writable folder") from None
    rows = []
    jobs = [(name, sim) for name in PAPER_MACS for sim in sims]
    for i, (name, sim) in enumerate(jobs, 1):
        print(f"cosim paper: [{i}/{len(jobs)}] cosimulating {name} on {sim} "
              f"({args.ops} random ops + full-width accumulation)", flush=True)
        t0 = time.perf_counter()
        result = cosim_mac(name, sim, ops=args.ops, seed=args.seed, rtl_dir=rtl_dir)
        rows.append((name, result, time.perf_counter() - t0))
        if not result.ok:
            _print_failure(result)
    header = f"{'config':<12} {'design':<22} {'sim':<10} {'ops':>7} {'mismatches':>10} " \
             f"{'ops/s':>8} {'wall s':>7}"
    print("\n" + header + "\n" + "-" * len(header))
    for name, r, wall in rows:
        print(f"{name:<12} {r.design:<22} {r.sim:<10} {r.checked:>7} {r.mismatches:>10} "
              f"{r.ops_per_s:>8,.0f} {wall:>7.1f}")
    bad = [f"{name} on {r.sim}" for name, r, _ in rows if not r.ok]
    print(f"\ncosim paper: {len(rows) - len(bad)}/{len(rows)} cosimulations passed"
          + (f"; FAILED: {', '.join(bad)}" if bad else " with zero mismatches"))
    return 1 if bad else 0


def register_cosim(subparsers):
    """Add ``wrapkit cosim`` (mac, cyclic, layer, paper)."""
    cosim = subparsers.add_parser(
        "cosim", help="cosimulate generated RTL against the bit-exact reference (cocotb)",
        description="Run a cocotb testbench on Icarus or Verilator and compare every output "
                    "with wrapkit.ref. Exit 1 on any mismatch.")
    sub = cosim.add_subparsers(dest="cosim_command", metavar="DESIGN", required=True)

    mac = sub.add_parser(
        "mac", help="random MAC operations with clear/enable/reset and extreme operands",
        description="Cosimulate a MAC design: seeded random operations (clear/enable "
                    "sequences, extreme operands, resets) plus held-input runs to the "
                    "accumulator's full-width wrap.")
    mac.add_argument("config", help=f"a paper configuration ({', '.join(PAPER_MACS)}) or a "
                                    "path to a manifest .json")
    _add_sim(mac)
    mac.add_argument("--ops", type=int, default=20000, metavar="N",
                     help="random operations (default 20000)")
    mac.add_argument("--seed", type=int, default=1, metavar="S", help="stimulus seed (default 1)")
    mac.add_argument("--rtl-dir", metavar="DIR",
                     help="where paper designs are looked up (default: the checkout's rtl/)")
    mac.add_argument("--no-full-width", action="store_true",
                     help="skip the held-input full-width accumulation test")
    mac.set_defaults(func=_run_cosim_mac)

    cyc = sub.add_parser(
        "cyclic", help="every input of CyclicActivation for a sweep of widths and slopes",
        description="Generate CyclicActivation(acc_bits, k) for every pair of the sweep and "
                    "check all 2^acc_bits inputs of each.")
    _add_sim(cyc)
    cyc.add_argument("--acc-bits", default="4-10", metavar="LIST",
                     help="widths, e.g. 4-10 or 4,8 (default 4-10)")
    cyc.add_argument("--k", default="1-4", metavar="LIST", help="slopes (default 1-4)")
    cyc.add_argument("--seed", type=int, default=1, metavar="S",
                     help="input visiting order seed (default 1)")
    cyc.set_defaults(func=_run_cosim_cyclic)

    from .layer_cli import register_layer
    from .network_array import register_network

    register_layer(sub)
    register_network(sub)

    # The six paper MACs on both simulators: the MAC datapath's regression in one command.
    paper = sub.add_parser(
        "paper", help="generate the six paper MAC designs and cosimulate each on both simulators",
        description="Write the paper's six MAC designs into rtl/ and cosimulate each on "
                    "Icarus and Verilator; prints a summary table. Exit 1 on any mismatch.")
    paper.add_argument("--ops", type=int, default=_PAPER_OPS, metavar="N",
                      help=f"random operations per design and simulator (default {_PAPER_OPS})")
    paper.add_argument("--seed", type=int, default=1, metavar="S", help="stimulus seed")
    paper.add_argument("--sims", default=",".join(SIMULATORS), metavar="LIST",
                      help=f"comma-separated simulators (default {','.join(SIMULATORS)})")
    paper.add_argument("--rtl-dir", metavar="DIR",
                      help="where to write the designs (default: the checkout's rtl/)")
    paper.set_defaults(func=_run_cosim_paper)

    return cosim


def _add_sim(parser):
    parser.add_argument("--sim", default=DEFAULT_SIMULATOR, metavar="SIM",
                        help=f"simulator: {' or '.join(SIMULATORS)} (default {DEFAULT_SIMULATOR})")


if __name__ == "__main__":  # pragma: no cover - use the `wrapkit` console script
    sys.exit("run `wrapkit cosim ...`")
