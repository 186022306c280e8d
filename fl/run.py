"""One federated run's server-side state: the float model, the per-round history, the
checkpoint after every completed round and the final report (``--out``).

Independent of Flower: the strategy calls :meth:`FederatedRun.finish_round` with the round's
replies, and the benchmarks call it directly.
"""

import io
import json
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call

from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_bytes, atomic_write_json

from .client import client_arrays
from .server import FedAQTServer
from .settings import FlSettings
from .task import build_model, dataset, evaluate

__all__ = ["CHECKPOINT", "REPORT", "FederatedRun", "quantized_forward"]

CHECKPOINT = "checkpoint.pt"
REPORT = "report.json"
_FORMAT = "wrapkit.fl.checkpoint/1"


def quantized_forward(server):
    """The federated low-bit model as clients and deployment see it: the forward pass on
    the de-quantized broadcast."""
    arrays = client_arrays(server.model, server.broadcast())
    return lambda x: functional_call(server.model, arrays, (x,))


class FederatedRun:
    """Server state of a run, resumed from ``out/checkpoint.pt`` when it exists.

    Raises
    ------
    UserError
        The run folder holds a different run, or a damaged checkpoint.
    """

    def __init__(self, settings: FlSettings, out=None):
        self.settings = settings.check()
        s, t = settings, settings.task
        self.model = build_model(t.model, t.seed)
        if s.init:
            try:
                state = torch.load(s.init, map_location="cpu", weights_only=True)
            except (OSError, RuntimeError, EOFError) as exc:
                raise UserError(f"cannot read --init {s.init}: {exc}; name a state_dict "
                                "file of the same model") from None
            self.model.load_state_dict(state.get("state_dict", state))
        self.server = FedAQTServer(self.model, s.bits, s.algo,
                                   s.lr if s.algo == "fedsgd" else s.server_lr,
                                   relay=s.relay, momentum=s.momentum)
        self.history, self.completed = [], 0
        self.out = None if out is None else Path(out)
        _, test = dataset(t.dataset)
        idx = np.arange(len(test.y))
        if s.eval_subset:
            idx = np.sort(np.random.default_rng(t.seed).permutation(len(idx))[:s.eval_subset])
        self.test = test.x[idx], test.y[idx]
        if self.out is not None and (self.out / CHECKPOINT).exists():
            self._resume(self.out / CHECKPOINT)

    def _resume(self, path):
        try:
            ck = torch.load(path, map_location="cpu", weights_only=False)
            assert ck["format"] == _FORMAT
        except Exception as exc:
            raise UserError(f"damaged checkpoint {path} ({exc}); remove the run folder to "
                            "start again") from None
        if FlSettings.from_dict(ck["settings"]).key() != self.settings.key():
            raise UserError(f"{path.parent} holds a run with other settings; resume with the "
                            "same settings (only --rounds may change) or choose another --out")
        self.server.load_state(ck["server"])
        self.history, self.completed = ck["history"], ck["completed"]

    def evaluate(self):
        """``(accuracy, loss)`` of the quantized global model on the test set."""
        return evaluate(self.model, *self.test, forward=quantized_forward(self.server))

    def finish_round(self, updates, *, clients, sampled, failed, bytes_down, bytes_up,
                     seconds=0.0):
        """Apply a round's replies, evaluate when due, checkpoint; return the history entry."""
        if updates:
            self.server.update(updates)
        self.completed += 1
        r = self.completed
        entry = {"round": r, "sampled": sampled, "reported": len(updates), "failed": failed,
                 "clients": list(clients),
                 "loss": float(np.mean([u.loss for u in updates])) if updates else None,
                 "bytes_down_per_client": bytes_down, "bytes_up_total": bytes_up,
                 "seconds": round(seconds, 3)}
        if r % self.settings.eval_every == 0 or r == self.settings.rounds:
            entry["test_accuracy"], entry["test_loss"] = self.evaluate()
        self.history.append(entry)
        self.save()
        return entry

    def save(self):
        if self.out is None:
            return
        buf = io.BytesIO()
        torch.save({"format": _FORMAT, "settings": self.settings.to_dict(),
                    "completed": self.completed, "server": self.server.state(),
                    "history": self.history}, buf)
        atomic_write_bytes(self.out / CHECKPOINT, buf.getvalue())

    def report(self):
        h = self.history
        last = next((e for e in reversed(h) if "test_accuracy" in e), None)
        return {"settings": self.settings.to_dict(), "rounds_completed": self.completed,
                "complete": self.completed >= self.settings.rounds,
                "client_failures": sum(e["failed"] for e in h),
                "client_replies": sum(e["reported"] for e in h),
                "final_test_accuracy": None if last is None else last["test_accuracy"],
                "history": h}

    def finish(self):
        """The report; written to ``out/report.json`` (and the float model to
        ``out/model.pt``) when the run has a folder."""
        rep = self.report()
        if self.out is not None:
            buf = io.BytesIO()
            torch.save({"format": "wrapkit.fl.model/1", "settings": self.settings.to_dict(),
                        "state_dict": self.model.state_dict()}, buf)
            atomic_write_bytes(self.out / "model.pt", buf.getvalue())
            atomic_write_json(self.out / REPORT, rep)
        return rep
