"""PostgreSQL binary COPY encoding built with numpy: one structured array per batch, no per-row Python.

Every row of a batch has the same byte size (fixed-width fields, arrays whose shape is fixed within
the batch), so a batch is a numpy structured array whose dtype spells out the wire format: the
16-bit field count, then per field a 32-bit length and the big-endian value. Filling the columns is
a handful of vectorised assignments; the result's raw bytes are the COPY data. See the PostgreSQL
manual, "COPY ... Binary Format", and `array_send`/`array_recv` for the array layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
"""Signature, flags (no OIDs), header-extension length."""
TRAILER = (-1).to_bytes(2, "big", signed=True)

PG_EPOCH_US = 946_684_800_000_000
"""Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's timestamp epoch."""

FLOAT4_OID = 700
FLOAT8_OID = 701

# One binary COPY column: (name, kind, extra). Kinds below.
_SCALARS: dict[str, str] = {
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float4": ">f4",
    "float8": ">f8",
    "timestamptz": ">i8",
    "uuid": "V16",
    "bool": "u1",
}


@dataclass(frozen=True)
class Column:
    """One column of a binary COPY row.

    kind: a key of the scalar table, ``"bytes"`` (text of fixed byte length ``size``, constant
    within a batch), or ``"float4_array"`` with ``shape`` (1-D or 2-D, fixed within a batch).
    """

    name: str
    kind: str
    size: int = 0
    shape: tuple[int, ...] = ()


def _array_dtype(shape: tuple[int, ...]) -> np.dtype[Any]:
    n = int(np.prod(shape)) if shape else 0
    if n == 0:
        # An empty array is sent as ndim=0, no dimensions, no elements.
        return np.dtype([("ndim", ">i4"), ("flags", ">i4"), ("oid", ">i4")])
    fields: list[Any] = [("ndim", ">i4"), ("flags", ">i4"), ("oid", ">i4")]
    for d in range(len(shape)):
        fields.append((f"dim{d}", ">i4"))
        fields.append((f"lb{d}", ">i4"))
    elem = np.dtype([("l", ">i4"), ("v", ">f4")])
    fields.append(("e", elem, (n,)))
    return np.dtype(fields)


def row_dtype(columns: Sequence[Column]) -> np.dtype[Any]:
    """The structured dtype of one binary COPY row with these columns."""
    fields: list[tuple[str, Any]] = [("nfields", ">i2")]
    for c in columns:
        fields.append((f"{c.name}__len", ">i4"))
        if c.kind in _SCALARS:
            fields.append((c.name, _SCALARS[c.kind]))
        elif c.kind == "bytes":
            fields.append((c.name, f"S{c.size}" if c.size else "V0"))
        elif c.kind == "float4_array":
            fields.append((c.name, _array_dtype(c.shape)))
        else:
            raise ValueError(f"unknown column kind {c.kind!r}")
    return np.dtype(fields)


def new_rows(columns: Sequence[Column], n: int) -> npt.NDArray[Any]:
    """An array of ``n`` rows with the field count, lengths and array headers already filled.

    Only the values are left for the caller to assign (``rows[name] = ...``, or
    ``rows[name]["e"]["v"] = ...`` for float arrays).
    """
    dt = row_dtype(columns)
    rows = np.empty(n, dtype=dt)
    rows["nfields"] = len(columns)
    for c in columns:
        if c.kind in _SCALARS:
            rows[f"{c.name}__len"] = np.dtype(_SCALARS[c.kind]).itemsize
        elif c.kind == "bytes":
            rows[f"{c.name}__len"] = c.size
        else:
            sub = rows[c.name]
            rows[f"{c.name}__len"] = sub.dtype.itemsize
            count = int(np.prod(c.shape)) if c.shape else 0
            sub["flags"] = 0
            sub["oid"] = FLOAT4_OID
            if count == 0:
                sub["ndim"] = 0
            else:
                sub["ndim"] = len(c.shape)
                for d, extent in enumerate(c.shape):
                    sub[f"dim{d}"] = extent
                    sub[f"lb{d}"] = 1
                sub["e"]["l"] = 4
            rows[c.name] = sub
    return rows


def us_to_pg(time_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Unix-epoch microseconds to PostgreSQL timestamp microseconds (2000-01-01 epoch)."""
    return np.asarray(time_us, dtype=np.int64) - PG_EPOCH_US


def uuid_bytes(u: Any) -> npt.NDArray[Any]:
    """A UUID as a ``V16`` scalar for assignment into a ``uuid`` column."""
    return np.frombuffer(u.bytes, dtype="V16")[0]  # type: ignore[no-any-return]


def encode(rows: npt.NDArray[Any], *, header: bool = True, trailer: bool = True) -> bytes:
    """The COPY stream bytes for these rows (optionally with file header and trailer)."""
    body = rows.tobytes()
    return (HEADER if header else b"") + body + (TRAILER if trailer else b"")
