"""The one dataset reader: raw images as uint8 pixels, numpy only (no torch, no torchvision).

Training (:mod:`wrapkit.models.data`) and the integer engine both read their images here, so
they see the same images in the same order: training scales the pixels to [0, 1] and
standardises them in float; the engine starts from the stored pixels and applies the
standardisation the export recorded (``header["input"]``).

* ``fashion-mnist``: the four IDX files of the Debian package ``dataset-fashion-mnist``
  (installed by ``make setup`` into ``/usr/share/datasets/fashion-mnist``); pixels 0..255.
  The IDX format (LeCun's MNIST format) is: 2 zero bytes, a type byte (0x08 = unsigned byte),
  a byte with the number of dimensions, one big-endian uint32 per dimension, then the data.
* ``digits``: scikit-learn's 8×8 digits with a fixed 80/20 split (``RandomState(0)``
  permutation, independent of any training seed); pixels 0..16.
"""

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wrapkit.common.errors import UserError

__all__ = [
    "DATASETS",
    "DEBIAN_PACKAGE",
    "DEFAULT_DATA_DIR",
    "FASHION_MNIST_FILES",
    "SPLITS",
    "Images",
    "check_fashion_mnist",
    "load_images",
    "read_idx",
]

DATASETS = ("fashion-mnist", "digits")
SPLITS = ("train", "test")
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
#: split -> (images file, labels file) in the Fashion-MNIST folder.
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_UBYTE = 0x08


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


def read_idx(path):
    """Read an IDX file (gzip-compressed or plain) of unsigned bytes into a numpy array.

    Raises
    ------
    UserError
        The file cannot be read, is not an IDX file of unsigned bytes, or is truncated.
    """
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


def check_fashion_mnist(data_dir=None, splits=SPLITS):
    """The Fashion-MNIST folder, after checking that the files of ``splits`` are all there.

    Raises
    ------
    UserError
        Naming every missing file and how to install them.
    """
    folder = Path(data_dir or DEFAULT_DATA_DIR)
    needed = [n for split in splits for n in FASHION_MNIST_FILES[split]]
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise UserError(
            f"Fashion-MNIST not found in {folder}: missing {', '.join(missing)}; install "
            f"the Debian package {DEBIAN_PACKAGE} (apt-get install {DEBIAN_PACKAGE}) or pass "
            f"--data-dir")
    return folder


def _fashion_mnist(split, data_dir):
    folder = check_fashion_mnist(data_dir, (split,))
    img_name, lbl_name = FASHION_MNIST_FILES[split]
    pixels = read_idx(folder / img_name)
    labels = read_idx(folder / lbl_name)
    if pixels.ndim != 3 or labels.ndim != 1 or len(pixels) != len(labels):
        raise UserError(f"{folder}: {img_name} {pixels.shape} and {lbl_name} {labels.shape} "
                        "do not match (N×28×28 images, N labels)")
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise UserError(f"{folder / lbl_name}: label {int(labels[bad[0]])} of item {int(bad[0])} "
                        "is outside the 10 classes 0..9; the file is corrupt")
    return Images(pixels[:, None].copy(), labels.astype(np.int64), 255,
                  f"fashion-mnist/{split}")


def _digits(split):
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.RandomState(0).permutation(len(d.target))
    n_test = len(d.target) // 5
    idx = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
    pixels = d.images[idx][:, None].astype(np.uint8)  # values 0..16, exact
    return Images(pixels, d.target[idx].astype(np.int64), 16, f"digits/{split}")


def load_images(name, split="test", data_dir=None):
    """Load a split of a dataset as uint8 pixels.

    Parameters
    ----------
    name : "fashion-mnist" | "digits"
    split : "train" | "test"
    data_dir : str or Path, optional
        Fashion-MNIST folder (default :data:`DEFAULT_DATA_DIR`); unused for digits.

    Raises
    ------
    UserError
        Unknown dataset or split, missing or damaged files (the message names the fix).
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose train or test")
    if name == "fashion-mnist":
        return _fashion_mnist(split, data_dir)
    if name == "digits":
        return _digits(split)
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
