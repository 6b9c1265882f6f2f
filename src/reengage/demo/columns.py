"""Arrays of numbers turned into CSV-ready Arrow columns, without a Python loop per value.

Timestamps, ids and amounts are written tens of millions of times for a large shop, so they are
formatted as fixed-width bytes with numpy and wrapped as Arrow strings without copying.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DAY = 86_400
_DIGIT0 = ord("0")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) for days since 1970-01-01 (H. Hinnant's algorithm, proleptic)."""
    z = days.astype(np.int64) + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def _put_digits(out: np.ndarray, col: int, values: np.ndarray, width: int) -> None:
    """The last `width` decimal digits of non-negative values, as ASCII, into out[:, col:]."""
    # Unsigned 32-bit division is markedly faster than 64-bit, and most values fit.
    small = not len(values) or int(values.max()) < 2**32
    values = values.astype(np.uint32 if small else np.uint64)
    for j in range(width):
        quotient = values // 10
        out[:, col + width - 1 - j] = values - quotient * 10 + _DIGIT0
        values = quotient


def _strings(matrix: np.ndarray) -> pa.StringArray:
    """Rows of a uint8 matrix as an Arrow string array, sharing the bytes."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def iso_timestamps(seconds: np.ndarray) -> pa.StringArray:
    """Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`."""
    seconds = seconds.astype(np.int64)
    days, rest = np.divmod(seconds, DAY)
    year, month, day = civil_from_days(days)
    out = np.empty((len(seconds), 20), dtype=np.uint8)
    out[:, [4, 7]] = ord("-")
    out[:, 10] = ord("T")
    out[:, [13, 16]] = ord(":")
    out[:, 19] = ord("Z")
    _put_digits(out, 0, year, 4)
    _put_digits(out, 5, month, 2)
    _put_digits(out, 8, day, 2)
    _put_digits(out, 11, rest // 3600, 2)
    _put_digits(out, 14, rest // 60 % 60, 2)
    _put_digits(out, 17, rest % 60, 2)
    return _strings(out)


def iso_dates(days: np.ndarray) -> pa.StringArray:
    """Days since 1970-01-01 as `YYYY-MM-DD`."""
    year, month, day = civil_from_days(days)
    out = np.empty((len(days), 10), dtype=np.uint8)
    out[:, [4, 7]] = ord("-")
    _put_digits(out, 0, year, 4)
    _put_digits(out, 5, month, 2)
    _put_digits(out, 8, day, 2)
    return _strings(out)


def prefixed_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.StringArray:
    """`C0000042`: a prefix and a zero-padded number (numbers must fit in width digits)."""
    if len(numbers) and (numbers.min() < 0 or numbers.max() >= 10**width):
        raise ValueError(f"numbers for {prefix!r} ids do not fit in {width} digits")
    head = prefix.encode("ascii")
    out = np.empty((len(numbers), len(head) + width), dtype=np.uint8)
    out[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    _put_digits(out, len(head), numbers.astype(np.int64), width)
    return _strings(out)


def hex_ids(prefix: str, values: np.ndarray, width: int = 16) -> pa.StringArray:
    """`a-3f9c...`: a prefix and the low `width` hex digits of unsigned 64-bit values."""
    head = prefix.encode("ascii")
    out = np.empty((len(values), len(head) + width), dtype=np.uint8)
    out[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    v = values.astype(np.uint64)
    for j in range(width):
        out[:, len(head) + width - 1 - j] = _HEX[(v & np.uint64(15)).astype(np.intp)]
        v = v >> np.uint64(4)
    return _strings(out)


def scramble(values: np.ndarray, key: int) -> np.ndarray:
    """A bijection on uint64 (splitmix64's finaliser): distinct inputs give distinct outputs."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(key % 2**64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def money(cents: np.ndarray) -> pa.Array:
    """Whole cents as a two-place decimal column, which the CSV writer prints as `12.50`."""
    cents = cents.astype(np.int64)
    # decimal128 is a little-endian 128-bit integer: low word, then the sign-extended high word.
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = cents >> 63
    return pa.Array.from_buffers(pa.decimal128(14, 2), len(cents), [None, pa.py_buffer(words)])


def money_text(cents: np.ndarray) -> pa.Array:
    """Whole cents as `12.50` strings, for use inside JSON properties."""
    return pc.cast(money(cents), pa.string())


def pick(vocabulary: Sequence[str], index: np.ndarray) -> pa.Array:
    """vocabulary[index] as a string column; a negative index means an empty (null) value."""
    indices = pa.array(index.astype(np.int32), mask=index < 0)
    return pc.take(pa.array(list(vocabulary), type=pa.string()), indices)


def take(strings: pa.Array, index: np.ndarray) -> pa.Array:
    """strings[index]; a negative index means an empty (null) value."""
    return pc.take(strings, pa.array(index.astype(np.int64), mask=index < 0))


def scatter(n: int, parts: Sequence[tuple[np.ndarray, pa.Array]]) -> pa.Array:
    """A column of n nulls with parts[k][1] written at rows parts[k][0]."""
    index = np.full(n, -1, dtype=np.int64)
    offset = 0
    for rows, _ in parts:
        index[rows] = offset + np.arange(len(rows))
        offset += len(rows)
    if offset == 0:
        return pa.nulls(n, type=pa.string())
    pool = pa.concat_arrays([pc.cast(values, pa.string()) for _, values in parts])
    return take(pool, index)
