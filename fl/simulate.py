"""Run a FedAQT federation on Flower's simulation engine (Ray backend) on this machine, or
on an existing Ray cluster (``ray_address``)."""

import logging
import os
import socket
import warnings
from pathlib import Path

from wrapkit.common.errors import UserError

from .settings import FlSettings

__all__ = ["check_ray_address", "simulate"]


def check_ray_address(address, timeout=3.0):
    """Fail fast (instead of Ray's minutes of retries) when no Ray cluster answers at
    ``address`` (``HOST:PORT``, or ``auto``: ``$RAY_ADDRESS`` or this machine's running
    cluster)."""
    fix = "start one with `ray start --head` or fix --ray-address"
    if address == "auto":
        if os.environ.get("RAY_ADDRESS") or Path("/tmp/ray/ray_current_cluster").exists():
            return
        raise UserError(f"--ray-address auto: no running Ray cluster on this machine; {fix}")
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as exc:
        raise UserError(f"--ray-address {address}: no Ray cluster answers ({exc}); "
                        f"{fix}") from None


def simulate(settings: FlSettings, out=None, *, num_cpus=2, ray_address=None):
    """Run ``settings`` with ``settings.task.num_clients`` virtual SuperNodes.

    Parameters
    ----------
    out : path-like, optional
        Run folder: checkpoint per round (resumed when present), ``report.json``, ``model.pt``.
    num_cpus : int
        CPUs Ray may use on this machine; each ClientApp takes one, so this many clients
        train at once.
    ray_address : str, optional
        Address of a running Ray cluster (``auto`` or ``<head-ip>:6379``) instead of a local
        Ray instance; its nodes run the ClientApps (docs/fl.md).

    Returns
    -------
    dict
        The run report (:meth:`wrapkit.fl.run.FederatedRun.report`).

    Raises
    ------
    UserError
        Impossible settings, a run folder of another run, or a Ray that cannot start.
    """
    settings.check()
    if ray_address:
        check_ray_address(ray_address)
    import ray
    from flwr.simulation import run_simulation

    from .flower import client_app, make_server_app

    # address "local": always a fresh Ray instance of our own, never a cluster some other
    # program left running on this machine (Ray would otherwise join it)
    init_args = ({"address": ray_address} if ray_address else
                 {"address": "local", "num_cpus": num_cpus, "num_gpus": 0,
                  "include_dashboard": False})
    init_args.update(logging_level=logging.ERROR, log_to_driver=False)
    backend_config = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                      "init_args": init_args}
    results = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_simulation(server_app=make_server_app(settings, out, results),
                           client_app=client_app, num_supernodes=settings.task.num_clients,
                           backend_config=backend_config)
    except (RuntimeError, ConnectionError, ValueError, SystemExit) as exc:
        if not (results and isinstance(results[0], UserError)):
            why = f"exit code {exc.code}" if isinstance(exc, SystemExit) else str(exc)
            raise UserError(f"Flower's Ray simulation engine could not run ({why}); check "
                            "that Ray can start here (or that --ray-address names a running "
                            "cluster)") from None
    finally:
        if ray.is_initialized():
            ray.shutdown()
    if not results:
        raise UserError("Flower's simulation ended without a result; rerun with the same "
                        "--out to resume from the last completed round")
    if isinstance(results[0], BaseException):
        raise results[0]
    return results[0]
