"""The exported-network file (``.wkx``): a safetensors container with a wrapkit header.

A trained network leaves PyTorch as one file that the integer engine (:mod:`.engine`), the
cosimulation and the hardware generators read without torch. The container is the
safetensors layout, written and read here with the standard library and numpy only::

    8 bytes       N, little-endian uint64: length of the JSON index
    N bytes       JSON index: {"__metadata__": {...}, "<tensor>": {"dtype", "shape",
                  "data_offsets": [begin, end]}, ...}, padded with spaces to a multiple of 8
    rest          the tensors' bytes, little-endian, C order, back to back

``__metadata__`` (string values only, as safetensors requires) holds ``"format":
"wrapkit.export"``, ``"header"``: the wrapkit header as a JSON string (schema
:data:`SCHEMA`, layer graph, quantizers; see docs/export.md) and ``"sha256"``: the content
checksum::

    sha256( b"wrapkit.export\\0" + header_utf8 + b"\\0"
            + for each tensor in sorted name order:
                  name + b"\\0" + dtype + b"\\0" + json(shape) + b"\\0" + data )

so any change to the header or to a tensor's name, type, shape or bytes is detected. The
reader checks the container (size, index, offsets), then the checksum, then the schema
version, then every layer's shapes and value ranges (:func:`read_export`). Any problem is a
:class:`~wrapkit.common.errors.UserError` naming the file, the layer and what is wrong.
"""

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wrapkit.common.errors import UserError
from wrapkit.common.files import atomic_write_bytes

__all__ = ["FORMAT", "GRAPH_SCHEMA", "SCHEMA", "SCHEMAS", "ExportFile", "checksum", "decode",
           "encode", "read_bytes", "read_export", "write_export"]

#: ``__metadata__["format"]`` of every wrapkit export.
FORMAT = "wrapkit.export"
#: Header schema of a layer chain (version 1); bump the number when a field's meaning changes.
SCHEMA = "wrapkit.export/1"
#: Header schema of an integer graph (version 2, :mod:`wrapkit.ref.graph`, docs/graph.md).
GRAPH_SCHEMA = "wrapkit.export/2"
#: Every schema the container reader accepts.
SCHEMAS = (SCHEMA, GRAPH_SCHEMA)

# safetensors dtype names <-> numpy dtypes (little-endian).
_DTYPES = {"U8": "<u1", "I8": "<i1", "I16": "<i2", "I32": "<i4", "I64": "<i8",
           "F32": "<f4", "F64": "<f8", "BOOL": "|b1"}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
# A header longer than this is not a wrapkit export (real ones are a few tens of kB).
_MAX_INDEX = 64 << 20


@dataclass
class ExportFile:
    """A read (or about to be written) export: the wrapkit header and the named tensors."""

    header: dict
    tensors: dict
    path: str = "<memory>"
    sha256: str = ""


def _dtype_name(arr, name):
    try:
        return _NAMES[np.dtype(arr.dtype.str.replace(">", "<"))]
    except KeyError:
        raise ValueError(f"tensor {name!r} has dtype {arr.dtype}, which the export format "
                         f"does not store (use one of {', '.join(_DTYPES)})") from None


def checksum(header_text, tensors):
    """Content checksum (hex sha256) of a header string and ``{name: ndarray}``."""
    h = hashlib.sha256()
    h.update(FORMAT.encode() + b"\0" + header_text.encode("utf-8") + b"\0")
    for name in sorted(tensors):
        arr = tensors[name]
        dtype = _dtype_name(arr, name)
        h.update(name.encode("utf-8") + b"\0" + dtype.encode() + b"\0"
                 + json.dumps(list(arr.shape)).encode() + b"\0")
        h.update(np.ascontiguousarray(arr, dtype=_DTYPES[dtype]).tobytes())
    return h.hexdigest()


def encode(header, tensors):
    """The bytes of an export file holding ``header`` (a JSON-able dict) and ``tensors``."""
    header_text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    digest = checksum(header_text, tensors)
    index = {"__metadata__": {"format": FORMAT, "header": header_text, "sha256": digest}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        dtype = _dtype_name(arr, name)
        data = np.ascontiguousarray(arr, dtype=_DTYPES[dtype]).tobytes()
        index[name] = {"dtype": dtype, "shape": list(arr.shape),
                       "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(index, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def write_export(path, header, tensors):
    """Write an export file atomically (nothing half-written); returns the path."""
    return atomic_write_bytes(path, encode(header, tensors))


def _bad(path, problem):
    raise UserError(f"{path}: {problem}")


def decode(data, path="<bytes>"):
    """Parse and verify the container (index, offsets, checksum); returns an ExportFile.

    Layer-level validation is :func:`wrapkit.ref.validate.validate`'s job (called by
    :func:`read_export`).
    """
    not_ours = "is not a wrapkit export (expected a .wkx file written by `wrapkit export`)"
    if len(data) < 8:
        _bad(path, f"{not_ours}: only {len(data)} bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_INDEX or n < 2:
        _bad(path, f"{not_ours}: no safetensors index at the start")
    if 8 + n > len(data):
        _bad(path, f"truncated: the index needs {n} bytes, the file holds {len(data) - 8} "
                   "after its length field; export it again")
    try:
        index = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        _bad(path, f"{not_ours}: its index is not JSON")
    meta = index.pop("__metadata__", None) if isinstance(index, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        _bad(path, f"{not_ours}: a safetensors index without __metadata__.format = {FORMAT!r}")
    if not isinstance(meta.get("header"), str) or not isinstance(meta.get("sha256"), str):
        _bad(path, "corrupted: __metadata__ lacks the header or the sha256 checksum")
    buf = memoryview(data)[8 + n:]
    tensors, spans = {}, []
    for name, spec in index.items():
        try:
            dtype = _DTYPES[spec["dtype"]]
            shape = tuple(int(s) for s in spec["shape"])
            begin, end = (int(v) for v in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            _bad(path, f"corrupted: the index entry of tensor {name!r} is malformed")
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if min(shape, default=0) < 0 or end - begin != size or begin < 0:
            _bad(path, f"corrupted: tensor {name!r} has shape {list(shape)} but "
                       f"{end - begin} bytes")
        if end > len(buf):
            _bad(path, f"truncated: tensor {name!r} ends at byte {end} of the data, the file "
                       f"holds {len(buf)}; export it again")
        tensors[name] = np.frombuffer(buf[begin:end], dtype=dtype).reshape(shape)
        spans.append((begin, end))
    covered = sum(e - b for b, e in spans)
    spans.sort()
    if any(b2 < e1 for (_, e1), (b2, _) in zip(spans, spans[1:])) or covered != len(buf):
        _bad(path, f"corrupted: the tensors cover {covered} of the {len(buf)} data bytes")
    digest = checksum(meta["header"], tensors)
    if digest != meta["sha256"]:
        _bad(path, f"checksum mismatch (content sha256 {digest[:12]}..., recorded "
                   f"{meta['sha256'][:12]}...): the file is corrupted; export it again")
    try:
        header = json.loads(meta["header"])
    except json.JSONDecodeError:
        _bad(path, "corrupted: the wrapkit header is not JSON")
    schema = header.get("schema") if isinstance(header, dict) else None
    if schema not in SCHEMAS:
        _bad(path, f"schema {schema!r} is not supported (this wrapkit reads "
                   f"{' and '.join(map(repr, SCHEMAS))}); export the run again with this "
                   "wrapkit")
    return ExportFile(header, {k: np.array(v) for k, v in tensors.items()}, str(path), digest)


def read_bytes(path):
    """The bytes of an export file (UserError if missing, a directory or unreadable)."""
    path = Path(path)
    if path.is_dir():
        _bad(path, "is a directory; give the .wkx file written by `wrapkit export`")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; write it with `wrapkit export RUN_DIR -o "
                        f"{path.name}`") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def read_export(path):
    """Read, verify and validate a version-1 export file (a layer chain).

    Graph exports (version 2) are read by :func:`wrapkit.ref.graph.read_graph`, which also
    reads version 1 files; this reader refuses them with a pointer there.

    Returns
    -------
    ExportFile

    Raises
    ------
    UserError
        Missing, unreadable, truncated, corrupted (checksum), wrong type, unsupported schema,
        or a layer whose shapes or values do not fit its description.
    """
    exp = decode(read_bytes(path), path)
    if exp.header["schema"] != SCHEMA:
        _bad(path, f"is an integer-graph export ({exp.header['schema']}); this command reads "
                   f"layer chains ({SCHEMA}) only: run it with `wrapkit infer`, or export "
                   "a VGG-7 run with `wrapkit export --format 1`")
    from .validate import validate

    validate(exp)
    return exp
