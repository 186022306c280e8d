"""``wrapkit fl``: FedAQT (quantized federated learning) on Flower's simulation engine.

::

    wrapkit fl --clients 8 --per-round 4 --rounds 5 --bits 4 --algo fedsgd --out runs/fl
    wrapkit fl ... --out runs/fl --rounds 10      # resume: continue from the last round

Nothing heavy (torch, Flower, Ray) is imported until the command runs.
"""

import json
import sys

from wrapkit.common.errors import FlagError, UserError

__all__ = ["register_fl"]


def register_fl(subparsers):
    """Add ``wrapkit fl``."""
    p = subparsers.add_parser(
        "fl", help="quantized federated learning (FedAQT) on Flower's simulation engine",
        description="Train with clients that receive only integer weight codes and scales "
                    "(seed 002 ch. 3): a Flower FedAvg-derived strategy broadcasts int8 codes, "
                    "aggregates the clients' float replies and applies the gradient relay "
                    "and the server update; clients run on Flower's simulation engine (Ray). "
                    "See docs/fl.md (also for the deployment engine and Ray clusters).")
    p.add_argument("--clients", type=int, default=8, metavar="N", help="clients (SuperNodes)")
    p.add_argument("--per-round", type=int, default=4, metavar="K",
                   help="clients sampled per round (default 4)")
    p.add_argument("--rounds", type=int, default=3, metavar="R", help="rounds (default 3)")
    p.add_argument("--bits", default="8", metavar="B",
                   help="broadcast codes: 8, 4, binary, ternary or float (default 8)")
    p.add_argument("--algo", default="fedsgd", metavar="ALGO",
                   help="fedsgd (one batch, no local update) or fedavg (local steps on codes)")
    p.add_argument("--dropout", type=float, default=0.0, metavar="F",
                   help="fraction of the sampled clients that fail each round (default 0)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run folder: checkpoint per round (an interrupted run resumes from "
                        "it), report.json, model.pt")
    p.add_argument("--model", default="digits-mlp", metavar="NAME",
                   help="digits-mlp, digits-cnn (8×8 digits) or vgg7 (Fashion-MNIST)")
    p.add_argument("--partition", default="iid", metavar="KIND", help="iid or dirichlet")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    p.add_argument("--per-client", type=int, default=None, metavar="N",
                   help="samples per client (default: the pool split evenly)")
    p.add_argument("--holdout", type=int, default=0, metavar="N",
                   help="training samples kept out of every client (pre-training subset)")
    p.add_argument("--batch-size", type=int, default=2, metavar="B", help="client batch (2)")
    p.add_argument("--local-steps", type=int, default=1, metavar="S", help="FedAvg local steps")
    p.add_argument("--lr", type=float, default=0.1,
                   help="FedSGD: server learning rate; FedAvg: client learning rate")
    p.add_argument("--server-lr", type=float, default=1.0, help="FedAvg server learning rate")
    p.add_argument("--no-relay", action="store_true", help="FedSGD without the gradient relay")
    p.add_argument("--init", default=None, metavar="FILE",
                   help="start from this model's state_dict (e.g. a pre-trained model.pt)")
    p.add_argument("--eval-subset", type=int, default=None, metavar="N",
                   help="evaluate on N test images (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpus", type=int, default=2, metavar="N",
                   help="CPUs the local Ray instance may use: clients trained at once (2)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run the clients on an existing Ray cluster (auto or HOST:6379)")
    p.add_argument("--engine", default="simulation", metavar="ENGINE",
                   help="simulation (Flower's Ray simulation engine, default) or deployment "
                        "(a local SuperLink and one SuperNode per client, then flwr run)")
    p.set_defaults(func=_run_fl)
    return p


def _settings(args):
    from .settings import FlSettings
    from .task import FlTask

    if args.model not in ("digits-mlp", "digits-cnn", "vgg7"):
        raise FlagError("--model", f"must be digits-mlp, digits-cnn or vgg7, got {args.model!r}")
    if args.partition not in ("iid", "dirichlet"):
        raise FlagError("--partition", f"must be iid or dirichlet, got {args.partition!r}")
    if not args.alpha > 0:
        raise FlagError("--alpha", f"must be positive, got {args.alpha}")
    if args.engine not in ("simulation", "deployment"):
        raise FlagError("--engine", f"must be simulation or deployment, got {args.engine!r}")
    if args.cpus < 1:
        raise FlagError("--cpus", f"must be at least 1, got {args.cpus}")
    for flag, value in (("--per-client", args.per_client), ("--holdout", args.holdout),
                        ("--eval-subset", args.eval_subset)):
        if value is not None and value < (0 if flag == "--holdout" else 1):
            raise FlagError(flag, f"must be positive, got {value}")
    task = FlTask(model=args.model, dataset="fashion-mnist" if args.model == "vgg7" else "digits",
                  num_clients=args.clients, partition=args.partition, alpha=args.alpha,
                  per_client=args.per_client, holdout=args.holdout, seed=args.seed)
    return FlSettings(task=task, per_round=args.per_round, rounds=args.rounds,
                      bits=str(args.bits), algo=args.algo, relay=not args.no_relay,
                      lr=args.lr, server_lr=args.server_lr, batch_size=args.batch_size,
                      local_steps=args.local_steps, dropout=args.dropout,
                      eval_subset=args.eval_subset, init=args.init).check()


def _run_fl(args):
    settings = _settings(args)
    import contextlib

    from wrapkit.common.locking import exclusive_output

    import tempfile

    from .deploy import deploy_local
    from .simulate import simulate

    with contextlib.ExitStack() as stack:
        out = args.out
        if out:
            stack.enter_context(exclusive_output(out, what=f"run folder {out}"))
        if args.engine == "deployment":
            out = out or stack.enter_context(tempfile.TemporaryDirectory(prefix="wrapkit-fl-"))
            report = deploy_local(settings, out)
        else:
            report = simulate(settings, out, num_cpus=args.cpus, ray_address=args.ray_address)
    summary = {k: report[k] for k in ("rounds_completed", "client_replies", "client_failures",
                                      "final_test_accuracy")}
    print(json.dumps(summary), file=sys.stdout)
    if not report["complete"]:
        raise UserError(f"the run stopped after round {report['rounds_completed']}; rerun "
                        "with the same --out to resume")
    return 0
