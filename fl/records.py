"""FedAQT payloads as Flower records: what actually travels between server and clients.

A broadcast becomes one ArrayRecord: for every quantized weight its int8 codes under the
weight's name and its float32 per-channel scales under ``<name>::scale``; every other tensor
(biases, frozen BatchNorm) as float32. Replies carry float32 tensors.
"""

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from .codes import QuantizedTensor

__all__ = ["SCALE_SUFFIX", "broadcast_record", "read_broadcast", "read_tensors", "record_bytes",
           "tensors_record"]

SCALE_SUFFIX = "::scale"


def broadcast_record(broadcast):
    """ArrayRecord of a broadcast (codes as int8, scales and floats as float32)."""
    arrays = {}
    for name, t in broadcast.items():
        if isinstance(t, QuantizedTensor):
            arrays[name] = Array(t.codes.numpy().astype(np.int8))
            arrays[name + SCALE_SUFFIX] = Array(t.scales.numpy().astype(np.float32))
        else:
            arrays[name] = Array(t.detach().numpy().astype(np.float32))
    return ArrayRecord(arrays)


def read_broadcast(record, dtype=torch.float32):
    """Inverse of :func:`broadcast_record` (scales and floats in ``dtype``)."""
    out = {}
    for name, arr in record.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        value = torch.from_numpy(arr.numpy().copy())
        scale = record.get(name + SCALE_SUFFIX)
        if scale is not None:
            out[name] = QuantizedTensor(value, torch.from_numpy(scale.numpy().copy()).to(dtype))
        else:
            out[name] = value.to(dtype)
    return out


def tensors_record(tensors):
    return ArrayRecord({n: Array(t.detach().numpy().astype(np.float32))
                        for n, t in tensors.items()})


def read_tensors(record):
    return {n: torch.from_numpy(a.numpy().copy()) for n, a in record.items()}


def record_bytes(record):
    """Payload bytes of an ArrayRecord: array data only (elements × item size), without
    the .npy headers and message framing Flower adds."""
    return sum(int(np.prod(a.shape, dtype=np.int64)) * np.dtype(a.dtype).itemsize
               for a in record.values())
