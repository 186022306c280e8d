"""The ``wrapkit`` command: one console script, one subcommand per job.

Each subcommand lives beside the code it drives (``wrapkit.hw.cli``, ``wrapkit.sim.cli`` ...)
and exposes ``register(subparsers)``; those modules import nothing heavy at import time, so
``wrapkit --help`` stays fast and a subcommand only pays for torch/amaranth when it runs.
"""

import argparse
import importlib
import sys

from wrapkit import __version__
from wrapkit.common.errors import UserError

__all__ = ["main"]

# Modules that register subcommands, in the order the help lists them.
_COMMAND_MODULES = (
    "wrapkit.hw.cli",       # rtl
    "wrapkit.sim.cli",      # cosim
    "wrapkit.models.cli",   # train
    "wrapkit.models.export_cli",  # export, infer
    "wrapkit.hw.synth.cli", # synth, estimate
    "wrapkit.sim.flow_cli", # flow (demo, its quick preset, is registered with cosim)
    "wrapkit.formal.cli",   # prove
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="wrapkit",
        description="Overflow-tolerant low-precision accumulators (WrapNet): train, generate "
                    "RTL, cosimulate against the bit-exact reference, estimate area and energy.",
    )
    parser.add_argument("--version", action="version", version=f"wrapkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part of wrapkit is not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"wrapkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wrapkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`wrapkit ... | head`): stop quietly, as Unix tools do.
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
