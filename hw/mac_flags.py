"""The command-line flags that describe one MAC unit, and the :class:`MacConfig` they give.

Every command that takes a MAC (``wrapkit rtl mac``, ``wrapkit rtl array``) declares its
flags with :func:`add_mac_flags` and reads them with :func:`mac_config_from_flags`, so a flag
means the same thing, and fails with the same message, everywhere::

    --config 8x8_acc8_k2                       # a paper configuration, or:
    --act-bits 8 [--act-signed | --act-unsigned] --weight-kind uniform --weight-bits 8
    --acc-bits 8 [--k 2 | --no-cyclic]
"""

from wrapkit.common.errors import FlagError, UserError
from wrapkit.common.flags import flag_error, flag_name
from wrapkit.ref.configs import PAPER_MACS
from wrapkit.ref.datapath import WEIGHT_KINDS

__all__ = ["MAC_FLAGS", "add_mac_flags", "mac_config_from_flags"]

#: MacConfig parameter -> the flag that sets it.
MAC_FLAGS = {name: flag_name(name)
             for name in ("act_bits", "act_signed", "weight_kind", "weight_bits", "acc_bits", "k")}

# Flags that describe a MAC explicitly; --config replaces all of them.
_EXPLICIT = ("act_bits", "act_signed", "weight_kind", "weight_bits", "acc_bits", "k",
             "no_cyclic")


def add_mac_flags(parser, *, acc_bits_range="2..62"):
    """Declare ``--config`` and the explicit MAC flags on ``parser``.

    ``acc_bits_range`` is the accumulator range the command accepts, for the help text.
    """
    parser.add_argument("--config", metavar="NAME",
                        help=f"the MAC as a paper configuration: {', '.join(PAPER_MACS)}")
    parser.add_argument("--act-bits", type=int, metavar="N", help="activation width, 1..32")
    sign = parser.add_mutually_exclusive_group()
    sign.add_argument("--act-signed", dest="act_signed", action="store_const", const=True,
                      default=None, help="two's-complement activations (the default)")
    sign.add_argument("--act-unsigned", dest="act_signed", action="store_const", const=False,
                      help="unsigned activations (WrapNet's post-ReLU codes)")
    parser.add_argument("--weight-kind", choices=WEIGHT_KINDS, help="weight kind")
    parser.add_argument("--weight-bits", type=int, metavar="N",
                        help="uniform weight width, 2..16 (uniform only)")
    parser.add_argument("--acc-bits", type=int, metavar="N",
                        help=f"accumulator (and every adder) width, {acc_bits_range}")
    cyclic = parser.add_mutually_exclusive_group()
    cyclic.add_argument("--k", type=int, metavar="K", help="cyclic activation slope, >= 1")
    cyclic.add_argument("--no-cyclic", action="store_true",
                        help="no cyclic activation unit (the default without --k)")


def mac_config_from_flags(args):
    """The :class:`~wrapkit.ref.datapath.MacConfig` that ``args`` (from :func:`add_mac_flags`)
    describe.

    Raises
    ------
    UserError
        ``--config`` together with explicit flags, an unknown ``--config``, missing flags.
    FlagError
        A flag whose value ``MacConfig`` rejects; the message quotes the parameter and names
        the flag (``"act_bits must be in [1, 32], got 0 (fix --act-bits)"``).
    """
    from wrapkit.ref.datapath import MacConfig

    if args.config is not None:
        given = [flag_name(p) for p in _EXPLICIT if getattr(args, p) not in (None, False)]
        if given:
            raise FlagError("--config", f"{args.config} already fixes the MAC; drop "
                                        f"{', '.join(given)} or drop --config")
        if args.config not in PAPER_MACS:
            raise UserError(f"unknown --config {args.config!r}; choose one of "
                            f"{', '.join(PAPER_MACS)} or give the parameters as flags")
        return PAPER_MACS[args.config]
    missing = [flag_name(p) for p in ("act_bits", "weight_kind", "acc_bits")
               if getattr(args, p) is None]
    if missing:
        raise UserError(f"missing {', '.join(missing)}; give the MAC parameters or "
                        f"--config NAME")
    if args.weight_kind == "uniform" and args.weight_bits is None:
        raise FlagError("--weight-kind", "uniform needs --weight-bits N (2..16)")
    if args.weight_kind != "uniform" and args.weight_bits is not None:
        raise FlagError("--weight-bits", f"applies to uniform weights only; drop it for "
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
        raise flag_error(exc, MAC_FLAGS, quote_parameter=True) from None
