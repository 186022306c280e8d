"""Training data as torch tensors, on top of the one dataset reader (:mod:`wrapkit.common.datasets`).

Pixels are scaled to [0, 1] and standardised with the training split's mean and standard
deviation (computed, not hard-coded); they feed the full-precision first layer, so this
choice does not touch any integer arithmetic. The export records the same standardisation,
so the integer engine reproduces these tensors from the stored pixels bit for bit.
"""

from dataclasses import dataclass

import numpy as np
import torch

from wrapkit.common.datasets import DATASETS, check_fashion_mnist, load_images

__all__ = ["DATASETS", "Dataset", "batches", "input_standardisation", "load_dataset"]


@dataclass
class Dataset:
    """Images ``x`` (N, C, H, W) float32, standardised; labels ``y`` (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor
    name: str

    def __len__(self):
        return len(self.y)

    def subset(self, n, seed):
        """The first ``n`` samples of a seeded permutation (all of them if n is None)."""
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        idx = idx.sort().values
        return Dataset(self.x[idx], self.y[idx], f"{self.name}[{n}]")


def _unit_range(images):
    # float32 throughout: the engine standardises the same float32 values.
    return images.pixels.astype(np.float32) / float(images.pixel_max)


def input_standardisation(name, data_dir=None):
    """``(mean, std)`` that :func:`load_dataset` standardises ``name`` with (the export
    records them so that the integer engine feeds its first layer the same tensors)."""
    x_train = _unit_range(load_images(name, "train", data_dir))
    return float(x_train.mean()), float(x_train.std())


def load_dataset(name, data_dir=None):
    """``(train, test)`` Datasets of ``name`` ("fashion-mnist" or "digits").

    Raises
    ------
    UserError
        Unknown dataset, missing (all of them named) or damaged files.
    """
    if name == "fashion-mnist":
        data_dir = check_fashion_mnist(data_dir)  # name every missing file at once
    train, test = (load_images(name, split, data_dir) for split in ("train", "test"))
    x_train = _unit_range(train)
    mean = float(x_train.mean())
    std = float(x_train.std())
    return tuple(Dataset(torch.from_numpy((x - mean) / std), torch.from_numpy(images.labels), name)
                 for x, images in ((x_train, train), (_unit_range(test), test)))


def batches(ds: Dataset, batch_size, generator=None):
    """Yield ``(x, y)`` minibatches; shuffled with ``generator`` when one is given."""
    n = len(ds)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        yield ds.x[idx], ds.y[idx]
