"""Customer histories for the BTYD models: checks, weighted unique rows, summary of transactions.

`rfm_summary` turns transactions into the per-customer (x, t_x, T, m) the models take, exactly
as lifetimes' summary_data_from_transaction_data does; the rest are the checks and the row
compression `reengage.analytics.btyd` applies to its inputs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


def refuse(bad: np.ndarray, message: str) -> None:
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{message} ({int(bad.sum())} of {bad.size} customers, first at {first})")


def floats(**named: npt.ArrayLike) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """Broadcast the arrays together, flatten them and check they are finite and not empty."""
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in named.values()))
    shape = arrays[0].shape
    flat = [v.ravel() for v in arrays]
    if flat[0].size == 0:
        raise ValueError(f"no customers: {', '.join(named)} are empty")
    for name, v in zip(named, flat, strict=True):
        refuse(~np.isfinite(v), f"{name} must be finite")
        refuse(v < 0, f"{name} must not be negative")
    return flat, shape


def histories(
    x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike, **more: npt.ArrayLike
) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """Validated (x, t_x, T[, more]) broadcast together and flattened, and their common shape."""
    arrays, shape = floats(x=x, t_x=t_x, T=T, **more)
    xa, ta, Ta = arrays[:3]
    refuse(xa != np.floor(xa), "x (repeat purchases) must be whole numbers")
    refuse(ta > Ta, "t_x (time of the last purchase since the first) must not exceed T (age)")
    # Catches the common mix-up of t_x with "time since the last purchase".
    refuse((xa == 0) & (ta != 0), "t_x must be 0 for customers with no repeat purchase (x = 0)")
    return arrays, shape


def unique_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Distinct rows of the stacked columns (sorted), the inverse index and the counts.

    The same answer as np.unique(np.column_stack(columns), axis=0, return_inverse=True,
    return_counts=True), about seven times faster on a million rows: np.unique compares rows as
    opaque byte strings, lexsort compares numbers column by column.
    """
    n = columns[0].size
    order = np.lexsort(columns[::-1])
    ordered = [c[order] for c in columns]
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = np.logical_or.reduce([c[1:] != c[:-1] for c in ordered])
    starts = np.flatnonzero(new)
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    counts = np.diff(np.append(starts, n))
    return [c[starts] for c in ordered], inverse, counts


@dataclass(frozen=True)
class RFMSummary:
    """Per-customer inputs of the models, in customer_id order (time in units of unit_days)."""

    customer_id: np.ndarray
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    m: np.ndarray


def _utc_naive(value: object) -> object:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _days(values: npt.ArrayLike) -> np.ndarray:
    """Days since 1970-01-01 (UTC days for zone-aware datetimes) of datetimes, dates or ISO text."""
    arr = np.asarray(values)
    if arr.dtype.kind == "O":
        arr = np.array([_utc_naive(v) for v in arr.ravel()], dtype="datetime64[us]")
    elif arr.dtype.kind != "M":
        arr = arr.astype("datetime64[us]")
    days = arr.astype("datetime64[D]")
    refuse(np.isnat(days), "timestamps must not be missing")
    return days.astype(np.int64)


def rfm_summary(
    customer_ids: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    as_of: dt.date | dt.datetime | np.datetime64 | str,
    unit_days: float = 7.0,
) -> RFMSummary:
    """Per-customer (x, t_x, T, m) from transactions, as lifetimes' summary function computes them.

    That is summary_data_from_transaction_data with freq="D", times then divided by unit_days:
    transactions after the as_of day are dropped; purchases on the same day are one purchase
    whose value is their sum; x is the number of purchase days after the first, t_x the days
    from the first to the last and T from the first to as_of, over unit_days; m is the mean
    value of the repeat purchase days (the first is left out, as the models assume), 0 when
    x = 0. Days are UTC days for zone-aware timestamps, calendar days of naive ones.
    """
    if not unit_days > 0:
        raise ValueError(f"unit_days must be positive, not {unit_days}")
    ids = np.asarray(customer_ids).ravel()
    days = _days(timestamps).ravel()
    (spend,), _ = floats(values=values)
    if not ids.size == days.size == spend.size:
        raise ValueError(
            f"customer_ids, timestamps and values differ in length "
            f"({ids.size}, {days.size}, {spend.size})"
        )
    end = int(_days(np.array([as_of], dtype=object))[0])
    kept = days <= end
    if not kept.any():
        raise ValueError(f"no transactions on or before as_of ({as_of})")
    customer_id, customer = np.unique(ids[kept], return_inverse=True)
    # One row per (customer, day), sorted by customer then day: both fit in one int64 key.
    day = days[kept]
    start = day.min()
    span = day.max() - start + 1
    keys, row = np.unique(customer.ravel() * span + (day - start), return_inverse=True)
    who, day = np.divmod(keys, span)
    day += start
    day_value = np.bincount(row, weights=spend[kept], minlength=who.size)
    first = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
    last = np.r_[first[1:] - 1, who.size - 1]
    x = (last - first).astype(np.float64)
    day_value[first] = 0.0
    repeat_value = np.add.reduceat(day_value, first)
    return RFMSummary(
        customer_id=customer_id,
        x=x,
        t_x=(day[last] - day[first]) / unit_days,
        T=(end - day[first]) / unit_days,
        m=np.where(x > 0, repeat_value / np.maximum(x, 1.0), 0.0),
    )
