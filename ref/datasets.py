"""Raw test images as the integer engine sees them: uint8 pixels, no torch.

The training code (``wrapkit.models.data``) reads the same files and standardises them in
float; the engine starts from the stored pixels instead and applies the standardisation the
export recorded (``header["input"]``). Both readers must pick the same images in the same
order: ``tests/test_export_engine.py`` checks that standardising these pixels reproduces the
training code's tensors bit for bit.

* ``fashion-mnist``: the IDX files of the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``); pixels 0..255.
* ``digits``: scikit-learn's 8×8 digits with the training code's fixed 80/20 split
  (``RandomState(0)`` permutation); pixels 0..16.
"""

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wrapkit.common.errors import UserError

__all__ = ["DATASETS", "DEFAULT_DATA_DIR", "Images", "load_images"]

DATASETS = ("fashion-mnist", "digits")
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@dataclass
class Images:
    """``pixels`` (N, C, H, W) uint8, ``labels`` (N,) int64, ``pixel_max`` (255 or 16)."""

    pixels: np.ndarray
    labels: np.ndarray
    pixel_max: int
    name: str

    def __len__(self):
        return len(self.labels)

    def first(self, n):
        """The first ``n`` images (all of them when ``n`` is None or larger)."""
        if n is None or n >= len(self):
            return self
        return Images(self.pixels[:n], self.labels[:n], self.pixel_max, f"{self.name}[:{n}]")


def _read_idx(path):
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise UserError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims, dtype=np.int64)):
        raise UserError(f"{path} is truncated: {len(body)} data bytes for shape {dims}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load_images(name, split="test", data_dir=None):
    """Load a split of a dataset as uint8 pixels.

    Raises
    ------
    UserError
        Unknown dataset or split, missing or damaged files (the message names the fix).
    """
    if split not in _FILES:
        raise UserError(f"unknown split {split!r}; choose train or test")
    if name == "fashion-mnist":
        folder = Path(data_dir or DEFAULT_DATA_DIR)
        img_name, lbl_name = _FILES[split]
        missing = [n for n in (img_name, lbl_name) if not (folder / n).is_file()]
        if missing:
            raise UserError(f"Fashion-MNIST not found in {folder}: missing {', '.join(missing)}; "
                            "install the Debian package dataset-fashion-mnist or pass --data-dir")
        pixels = _read_idx(folder / img_name)
        labels = _read_idx(folder / lbl_name)
        if pixels.ndim != 3 or labels.ndim != 1 or len(pixels) != len(labels):
            raise UserError(f"{folder}: {img_name} {pixels.shape} and {lbl_name} {labels.shape} "
                            "do not match")
        return Images(pixels[:, None].copy(), labels.astype(np.int64), 255, f"{name}/{split}")
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        perm = np.random.RandomState(0).permutation(len(d.target))
        n_test = len(d.target) // 5
        idx = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
        pixels = d.images[idx][:, None].astype(np.uint8)  # values 0..16, exact
        return Images(pixels, d.target[idx].astype(np.int64), 16, f"{name}/{split}")
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
