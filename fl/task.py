"""What a federation trains: the model, the dataset and how it is split among clients.

Everything is derived from a :class:`FlTask` (plain settings) so that the server, every
ClientApp (in any process or on any machine) and the benchmarks rebuild the same model
template and the same client shards from the same few values.
"""

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from wrapkit.models.data import load_dataset
from wrapkit.models.nets import VGG7, VGG7Config
from wrapkit.models.qconfig import WeightQuant

from .partition import dirichlet_partition, iid_partition

__all__ = ["MODELS", "PARTITIONS", "FlTask", "build_model", "client_batch", "client_batches", "client_indices", "holdout_indices",
           "dataset", "evaluate", "freeze_batchnorm"]

MODELS = ("digits-mlp", "digits-cnn", "vgg7")
PARTITIONS = ("iid", "dirichlet")


@dataclass(frozen=True)
class FlTask:
    """Settings a federation's participants share.

    Parameters
    ----------
    model : str
        ``digits-mlp`` / ``digits-cnn`` (8×8 digits, seconds) or ``vgg7`` (Fashion-MNIST).
    dataset : str
        ``digits`` or ``fashion-mnist``.
    num_clients : int
    partition : {"iid", "dirichlet"}
    alpha : float
        Dirichlet concentration (``dirichlet`` only).
    per_client : int or None
        Samples per client (IID); None splits the whole pool.
    holdout : int
        The first ``holdout`` samples of a seeded permutation of the training set are kept
        out of every client's shard (the disjoint pre-training subset).
    seed : int
    """

    model: str = "digits-mlp"
    dataset: str = "digits"
    num_clients: int = 8
    partition: str = "iid"
    alpha: float = 0.5
    per_client: int | None = None
    holdout: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.partition not in PARTITIONS:
            raise ValueError(f"partition must be one of {', '.join(PARTITIONS)}, "
                             f"got {self.partition!r}")

    def to_dict(self):
        return asdict(self)


def freeze_batchnorm(model):
    """BatchNorm frozen: affine parameters fixed and running statistics used (clients train
    in eval mode). Client batches of 2 make batch statistics meaningless, and frozen
    statistics keep FedSGD's mean of per-client gradients equal to one batch's gradient."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for p in m.parameters():
                p.requires_grad_(False)
    return model


def build_model(name, seed=0):
    """A fresh model template with seeded initial weights (BatchNorm frozen)."""
    torch.manual_seed(seed)
    if name == "digits-mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    elif name == "digits-cnn":
        model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(8 * 16, 10))
    elif name == "vgg7":
        model = VGG7(VGG7Config(weight_quant=WeightQuant("float")))
    else:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {name!r}")
    return freeze_batchnorm(model)


@lru_cache(maxsize=2)
def dataset(name):
    """``(train, test)`` of :func:`wrapkit.models.data.load_dataset`, loaded once per process."""
    return load_dataset(name)


@lru_cache(maxsize=8)
def _shards(task):
    train, _ = dataset(task.dataset)
    order = np.random.default_rng(task.seed + 7919).permutation(len(train))
    pool = np.sort(order[task.holdout:])
    if task.partition == "iid":
        parts = iid_partition(len(pool), task.num_clients, task.seed, task.per_client)
    else:
        parts = dirichlet_partition(train.y.numpy()[pool], task.num_clients, task.alpha,
                                    task.seed)
    return tuple(pool[p] for p in parts)


def holdout_indices(task):
    """Training-set indices reserved for pre-training (disjoint from every client)."""
    train, _ = dataset(task.dataset)
    order = np.random.default_rng(task.seed + 7919).permutation(len(train))
    return np.sort(order[:task.holdout])


def client_indices(task, cid):
    """Training-set indices of client ``cid``."""
    return _shards(task)[cid]


def client_batches(task, cid, server_round, batch_size, steps=1):
    """``steps`` minibatches of client ``cid`` in ``server_round``, each ``batch_size`` of
    its samples drawn without replacement by a generator seeded with (seed, round, client)
    (FedSGD uses the first; FedAvg one per local step)."""
    idx = client_indices(task, cid)
    rng = np.random.default_rng([task.seed, server_round, cid])
    train, _ = dataset(task.dataset)
    out = []
    for _ in range(steps):
        pick = np.sort(rng.choice(idx, size=min(batch_size, len(idx)), replace=False))
        out.append((train.x[pick], train.y[pick]))
    return out


def client_batch(task, cid, server_round, batch_size):
    """The FedSGD batch of client ``cid`` in ``server_round`` (first of
    :func:`client_batches`)."""
    return client_batches(task, cid, server_round, batch_size)[0]


@torch.no_grad()
def evaluate(model, x, y, batch_size=1000, forward=None):
    """``(accuracy, mean loss)`` of ``model`` (or of ``forward(x)``) on ``(x, y)``."""
    model.eval()
    forward = forward or model
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch_size):
        out = forward(x[i:i + batch_size])
        correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
        loss += float(nn.functional.cross_entropy(out, y[i:i + batch_size], reduction="sum"))
    return correct / len(y), loss / len(y)
