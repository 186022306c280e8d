"""The settings of one federated run, validated before anything starts."""

import json
from dataclasses import asdict, dataclass, field, fields

from wrapkit.common.errors import FlagError

from .codes import BITS
from .server import ALGOS
from .task import MODELS, PARTITIONS, FlTask, dataset, holdout_indices

__all__ = ["FlSettings"]


@dataclass(frozen=True)
class FlSettings:
    """One federated run: the task plus the schedule (see ``wrapkit fl --help``).

    ``flag_error`` messages name the command-line flag of the offending field.
    """

    task: FlTask = field(default_factory=FlTask)
    per_round: int = 4
    rounds: int = 3
    bits: str = "8"
    algo: str = "fedsgd"
    relay: bool = True
    lr: float = 0.1             # FedSGD server SGD; FedAvg: client SGD
    server_lr: float = 1.0      # FedAvg: applied to the mean delta
    momentum: float = 0.0       # FedSGD server momentum
    batch_size: int = 2
    local_steps: int = 1        # FedAvg local SGD steps per round
    dropout: float = 0.0
    eval_every: int = 1
    eval_subset: int | None = None
    init: str | None = None     # state_dict file of a pre-trained model

    def to_dict(self):
        return {**asdict(self), "task": self.task.to_dict()}

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        d["task"] = FlTask(**d["task"])
        return cls(**d)

    def key(self):
        """What must match for a run folder to be resumed (everything but ``rounds``)."""
        d = self.to_dict()
        d.pop("rounds")
        return json.dumps(d, sort_keys=True)

    def check(self):
        """Raise :class:`FlagError` for impossible settings; return self."""
        t = self.task
        if t.num_clients < 1:
            raise FlagError("--clients", f"must be at least 1, got {t.num_clients}")
        if not 1 <= self.per_round <= t.num_clients:
            raise FlagError("--per-round", f"must be in [1, --clients={t.num_clients}], "
                                           f"got {self.per_round}")
        if self.rounds < 1:
            raise FlagError("--rounds", f"must be at least 1, got {self.rounds}")
        if str(self.bits) not in BITS:
            raise FlagError("--bits", f"must be one of {', '.join(BITS)}, got {self.bits!r}")
        if self.algo not in ALGOS:
            raise FlagError("--algo", f"must be one of {', '.join(ALGOS)}, got {self.algo!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise FlagError("--dropout", f"must be in [0, 1), got {self.dropout}")
        if self.per_round - round(self.dropout * self.per_round) < 1:
            raise FlagError("--dropout", f"{self.dropout} drops all {self.per_round} clients "
                                         "of a round; lower it or raise --per-round")
        if self.batch_size < 1 or self.local_steps < 1 or self.eval_every < 1:
            raise FlagError("--batch-size", "batch size, local steps and evaluation interval "
                                            "must be at least 1")
        if not self.lr > 0 or not self.server_lr > 0:
            raise FlagError("--lr", f"must be positive, got {self.lr}")
        if t.model not in MODELS or t.partition not in PARTITIONS:
            raise FlagError("--model", f"unknown model {t.model!r} or partition {t.partition!r}")
        train, _ = dataset(t.dataset)
        pool = len(train) - len(holdout_indices(t))
        per = t.per_client or pool // t.num_clients
        if per < 1 or per * t.num_clients > pool:
            raise FlagError("--clients", f"{t.num_clients} clients × {per} samples do not fit "
                                         f"in the {pool} training samples of {t.dataset}")
        return self

    def replace(self, **changes):
        known = {f.name for f in fields(self)}
        return type(self)(**{**{k: getattr(self, k) for k in known}, **changes})
