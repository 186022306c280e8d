"""Datasets without torchvision: Fashion-MNIST from its IDX .gz files, scikit-learn's digits.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` (installed by
``make setup``), which puts the four original files in ``/usr/share/datasets/fashion-mnist``.
The IDX format (LeCun's MNIST format) is: 2 zero bytes, a type byte (0x08 = unsigned byte),
a byte with the number of dimensions, one big-endian uint32 per dimension, then the data.

Images are scaled to [0, 1] and standardised with the training set's mean and standard
deviation (computed, not hard-coded); they feed the full-precision first layer, so this
choice does not touch any integer arithmetic.
"""

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wrapkit.common.errors import UserError

__all__ = [
    "DATASETS",
    "DEBIAN_PACKAGE",
    "DEFAULT_DATA_DIR",
    "FASHION_MNIST_FILES",
    "Dataset",
    "batches",
    "load_dataset",
    "read_idx",
]

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DATASETS = ("fashion-mnist", "digits")
_IDX_UBYTE = 0x08


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


def read_idx(path):
    """Read an IDX file (gzip-compressed or plain) of unsigned bytes into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UserError(f"{path} is not an IDX file (bad magic number)")
    if data[2] != _IDX_UBYTE:
        raise UserError(f"{path}: IDX type 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated (header)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        raise UserError(f"{path} holds {len(data) - header} data bytes, its header "
                        f"{'x'.join(map(str, dims))} says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _fashion_mnist(data_dir):
    data_dir = Path(data_dir)
    needed = [n for pair in FASHION_MNIST_FILES.values() for n in pair]
    missing = [n for n in needed if not (data_dir / n).is_file()]
    if missing:
        raise UserError(
            f"Fashion-MNIST not found in {data_dir}: missing {', '.join(missing)}; install "
            f"the Debian package {DEBIAN_PACKAGE} (apt-get install {DEBIAN_PACKAGE}) or pass "
            f"--data-dir")
    out = {}
    for split, (img_name, lbl_name) in FASHION_MNIST_FILES.items():
        images = read_idx(data_dir / img_name)
        labels = read_idx(data_dir / lbl_name)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"{data_dir}: {img_name} {images.shape} and {lbl_name} "
                            f"{labels.shape} do not match (N×28×28 images, N labels)")
        out[split] = (images[:, None].astype(np.float32) / 255.0, labels.astype(np.int64))
    return out


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:, None] / 16.0).astype(np.float32)  # 8×8, values 0..16
    y = d.target.astype(np.int64)
    # Fixed split (20 % test), independent of the training seed so every run sees the same.
    perm = np.random.RandomState(0).permutation(len(y))
    n_test = len(y) // 5
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}


def load_dataset(name, data_dir=None):
    """``(train, test)`` Datasets of ``name`` ("fashion-mnist" or "digits")."""
    if name == "fashion-mnist":
        raw = _fashion_mnist(data_dir or DEFAULT_DATA_DIR)
    elif name == "digits":
        raw = _digits()
    else:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    mean = float(raw["train"][0].mean())
    std = float(raw["train"][0].std())
    return tuple(Dataset(torch.from_numpy((x - mean) / std), torch.from_numpy(y), name)
                 for x, y in (raw["train"], raw["test"]))


def batches(ds: Dataset, batch_size, generator=None):
    """Yield ``(x, y)`` minibatches; shuffled with ``generator`` when one is given."""
    n = len(ds)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        yield ds.x[idx], ds.y[idx]
