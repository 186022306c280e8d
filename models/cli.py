"""``wrapkit train``: train a network with WrapNet or one of its baselines.

Imports only the standard library at import time; torch is imported when the command runs.
"""

import argparse

from wrapkit.common.flags import flag_error, flag_name

__all__ = ["register_train"]

_EPILOG = """\
methods:
  fp32     full-precision network
  qw       quantized weights (BWN/TWN), float activations, 32-bit accumulator
  qa       quantized weights and --act-bits activations, --acc-bits accumulator, no cyclic
  wrapnet  step sizes for overflow rate --p, cyclic warm-up, quantized fine-tuning with R^o

example:
  wrapkit train --method fp32 --epochs 6 --out runs/fp32
  wrapkit train --method qw --init runs/fp32 --out runs/bwn
  wrapkit train --method wrapnet --init runs/bwn --acc-bits 8 --k 2 --p 5 --out runs/wrapnet
"""


def _ints(text):
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def register_train(subparsers):
    """Add ``wrapkit train``."""
    p = subparsers.add_parser(
        "train", help="train a WrapNet (or baseline) network",
        description="Train on Fashion-MNIST (or scikit-learn's digits) with quantized weights, "
                    "quantized activations and a modelled low-bit accumulator. Writes "
                    "RUN_DIR/metrics.json, RUN_DIR/checkpoint.pt (every epoch) and "
                    "RUN_DIR/model.pt.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in RUN_DIR (same settings)")
    p.add_argument("--method", default="wrapnet",
                   choices=("fp32", "qw", "qa", "wrapnet", "a2q", "a2q+"))
    p.add_argument("--model", default="vgg7", choices=("vgg7", "resnet20"))
    p.add_argument("--widths", type=_ints, default=None,
                   help="three stage widths, e.g. 32,64,128 (default: the model's)")
    p.add_argument("--weights", default="binary", choices=("binary", "ternary", "uniform"))
    p.add_argument("--weight-bits", type=int, default=None, help="uniform weights: 2..8")
    p.add_argument("--act-bits", type=int, default=3, help="qa: activation bits, 1..8 (3)")
    p.add_argument("--max-act-bits", type=int, default=8,
                   help="wrapnet: widest activation the step selection may pick (8)")
    p.add_argument("--acc-bits", type=int, default=8, help="accumulator bits, 2..32 (8)")
    p.add_argument("--k", type=int, default=2, help="cyclic activation slope, 1..64 (2)")
    p.add_argument("--p", type=float, default=5.0,
                   help="wrapnet: target overflow rate in percent (5)")
    p.add_argument("--ro", type=float, default=0.01,
                   help="wrapnet: overflow penalty coefficient R^o (0.01; 0 disables)")
    p.add_argument("--overflow-limit", default="register", choices=("register", "fold"),
                   help="what --p and R^o count: overflows of the register (the paper) or "
                        "everything beyond the cyclic fold threshold k·2^(b-1)/(k+1) (register)")
    p.add_argument("--ro-warmup", action="store_true",
                   help="apply R^o in the warm-up stage too (the paper's ImageNet recipe)")
    p.add_argument("--epochs", type=int, default=3, help="main stage epochs (3)")
    p.add_argument("--warmup-epochs", type=int, default=2, help="wrapnet warm-up epochs (2)")
    p.add_argument("--pretrain-epochs", type=int, default=0,
                   help="qa/wrapnet: quantized-weight pre-training epochs before calibration "
                        "(0: use --init)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "digits"))
    p.add_argument("--data-dir", default=None,
                   help="folder with the Fashion-MNIST IDX .gz files "
                        "(default /usr/share/datasets/fashion-mnist)")
    p.add_argument("--train-subset", type=int, default=None,
                   help="train on this many images (seeded choice; default all)")
    p.add_argument("--calib-images", type=int, default=512)
    p.add_argument("--eval-acc-bits", type=_ints, default=(),
                   help="also evaluate the final model with plain b-bit accumulators, e.g. 8")
    p.add_argument("--init", default=None, metavar="RUN_DIR|model.pt",
                   help="start from a trained run (same --model and --widths)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_handler)
    return p


_FIELDS = ("method", "model", "widths", "weights", "weight_bits", "act_bits", "max_act_bits",
           "acc_bits", "k", "p", "ro", "overflow_limit", "ro_warmup", "epochs", "warmup_epochs",
           "pretrain_epochs", "lr", "batch_size", "dataset", "data_dir", "train_subset",
           "calib_images", "eval_acc_bits", "init", "seed", "threads")
# TrainConfig fields -> the flags that set them (every field has a flag of its own name).
_FLAGS = {name: flag_name(name) for name in _FIELDS}


def _handler(args):
    from .train import TrainConfig, train

    try:
        cfg = TrainConfig(**{name: getattr(args, name) for name in _FIELDS})
    except (TypeError, ValueError) as exc:
        raise flag_error(exc, _FLAGS) from None
    metrics = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    final = metrics["final"]
    if cfg.method in ("a2q", "a2q+"):
        print(f"test accuracy {final['test_accuracy']:.4f}; integer graph "
              f"{args.out}/model.wkx")
        return 0
    print(f"test accuracy {final['test_accuracy']:.4f}; mean overflow rate "
          f"{final['mean_overflow_rate']:.4f}; activation bits per layer "
          f"{[row['act_bits'] for row in final['layers']]}")
    return 0
