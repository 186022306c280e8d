"""The ``wrapkit`` command: one console script, one subcommand per job.

Each top-level command is registered by one function that lives beside the code it drives
and is listed in :data:`_REGISTRATIONS`, in the order the help lists them. Those modules import
nothing heavy at import time, so ``wrapkit --help`` stays fast and a command only pays for
torch/amaranth when it runs.
"""

import argparse
import os
import sys

from wrapkit import __version__
from wrapkit.common.errors import (ExternalToolError, UserError, VerificationMismatch,
                                   environment_message)
from wrapkit.common.processes import (Terminated, install_signal_handlers,
                                      restore_signal_handlers)
from wrapkit.fl.cli import register_fl
from wrapkit.flow.cli import register_demo, register_flow
from wrapkit.formal.cli import register_prove
from wrapkit.hw.cli import register_rtl
from wrapkit.hw.synth.cli import register_synth
from wrapkit.hw.synth.estimate_cli import register_estimate
from wrapkit.interop.cli import register_import, register_onnx_check
from wrapkit.models.cli import register_train
from wrapkit.models.export_cli import register_export, register_infer
from wrapkit.sim.cli import register_cosim
from wrapkit.sweep.cli import register_sweep

__all__ = ["build_parser", "main"]

# One function per top-level command, in the order the help lists them.
_REGISTRATIONS = (
    register_rtl,        # wrapkit rtl
    register_cosim,      # wrapkit cosim
    register_train,      # wrapkit train
    register_fl,         # wrapkit fl
    register_export,     # wrapkit export
    register_infer,      # wrapkit infer
    register_onnx_check,  # wrapkit onnx-check
    register_import,     # wrapkit import
    register_synth,      # wrapkit synth
    register_estimate,   # wrapkit estimate
    register_prove,      # wrapkit prove
    register_flow,       # wrapkit flow
    register_demo,       # wrapkit demo (the flow's quick preset)
    register_sweep,      # wrapkit sweep
)


def build_parser():
    """The ``wrapkit`` argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="wrapkit",
        description="Overflow-tolerant low-precision accumulators (WrapNet): train, generate "
                    "RTL, cosimulate against the bit-exact reference, estimate area and energy.",
    )
    parser.add_argument("--version", action="version", version=f"wrapkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _REGISTRATIONS:
        register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = install_signal_handlers()
    try:
        return _run(args)
    finally:
        restore_signal_handlers(previous)


def _run(args):
    """Run the chosen command; every failure that is not a bug becomes one line and the exit
    status it means (2 input or environment, 1 mismatch, 130 Ctrl-C, 143 SIGTERM)."""
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"wrapkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except VerificationMismatch as exc:
        first = str(exc).strip().splitlines()
        print(f"wrapkit {args.command}: mismatch: {first[0] if first else ''}", file=sys.stderr)
        return 1
    except ExternalToolError as exc:
        first = str(exc).strip().splitlines()
        print(f"wrapkit {args.command}: error: {first[0] if first else type(exc).__name__}",
              file=sys.stderr)
        return 2
    except MemoryError:
        print(f"wrapkit {args.command}: error: out of memory; ask for less (fewer operations, "
              "images or a smaller network)", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`wrapkit ... | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        line = environment_message(exc)
        if line is None or os.environ.get("WRAPKIT_DEBUG"):
            raise
        print(f"wrapkit {args.command}: error: {line}", file=sys.stderr)
        return 2
    except Terminated as exc:
        print(f"wrapkit {args.command}: terminated ({exc})", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"wrapkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
