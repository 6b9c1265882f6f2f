"""Read a delimited text file into columns of strings, keeping each record's line number.

Structure is checked here (encoding, field count); values are checked by `fields`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from reengage.errors import InputError

DELIMITERS = (",", ";", "\t", "|")
LINE_COLUMN = "__line"

csv.field_size_limit(16 * 1024 * 1024)


@dataclass
class Rejected:
    line: int
    reason: str
    fields: list[str]


@dataclass
class RawTable:
    """The records of a file: a string column per header name, plus `__line`."""

    header: list[str]
    table: pa.Table
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def read(self) -> int:
        return self.table.num_rows + len(self.rejected)


def read_text(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}, line {line}: not UTF-8 text (save the file as UTF-8 and import it again)"
        ) from None


def sniff_delimiter(first_line: str) -> str:
    """The candidate that splits the header into the most fields (quotes respected)."""
    best, best_count = ",", 0
    for candidate in DELIMITERS:
        count = len(next(csv.reader([first_line], delimiter=candidate), []))
        if count > best_count:
            best, best_count = candidate, count
    return best


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record starts, fields); blank lines are skipped."""
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter, strict=False)
    previous_end = 0
    for fields in reader:
        start = previous_end + 1
        previous_end = reader.line_num
        if fields and not (len(fields) == 1 and not fields[0].strip()):
            yield start, fields


def read_delimited(path: Path, delimiter: str | None = None) -> RawTable:
    """A CSV file with a header row: wrong field counts are rejected, the rest kept."""
    text = read_text(path)
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise InputError(f"{path}: the file is empty or its first line (the header) is blank")
    if delimiter is None:
        delimiter = sniff_delimiter(first)
    elif len(delimiter) != 1:
        raise InputError(f"--delimiter must be one character, not {delimiter!r}")
    return _read_fast(text, delimiter) or _read_exact(text, delimiter)


def _header(first_line: str, delimiter: str) -> list[str]:
    return [h.strip().lower() for h in next(csv.reader([first_line], delimiter=delimiter))]


def _read_exact(text: str, delimiter: str) -> RawTable:
    """Record by record with Python's csv module: slower, right for any quoting."""
    records = _records(text, delimiter)
    _, header = next(records)
    header = [h.strip().lower() for h in header]
    width = len(header)
    lines: list[int] = []
    rows: list[list[str]] = []
    rejected: list[Rejected] = []
    for line, fields in records:
        if len(fields) == width:
            lines.append(line)
            rows.append(fields)
        else:
            rejected.append(Rejected(line, f"expected {width} fields, found {len(fields)}", fields))
    return RawTable(header, columns_table(header, rows, lines), rejected)


def _read_fast(text: str, delimiter: str) -> RawTable | None:
    """Arrow's C++ reader, for files whose every record is one line; None for the others.

    Arrow reports a bad record's text but not its line, so each is found again in the file,
    in order; the good records take the remaining non-blank lines, in order.
    """
    first, _, body = text.partition("\n")
    header = _header(first.rstrip("\r"), delimiter)
    names = [f"c{i}" for i in range(len(header))]
    bad: list[str] = []

    def keep_bad(row: pacsv.InvalidRow) -> str:
        bad.append(row.text)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(body.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=keep_bad
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None
    if any(pc.any(pc.match_substring(table[n], "\n")).as_py() for n in names):
        return None  # a record spans lines: line numbers need the exact reader
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    blank = [not line.strip() for line in lines]
    candidates = [i for i, b in enumerate(blank) if not b]
    if len(candidates) != table.num_rows + sum(1 for b in bad if b.strip()):
        return None
    rejected: list[Rejected] = []
    taken: set[int] = set()
    pos = 0
    for row_text in bad:
        if not row_text.strip():
            continue  # a line of spaces is a blank line, as the exact reader sees it
        while pos < len(candidates) and lines[candidates[pos]].rstrip("\r") != row_text:
            pos += 1
        if pos == len(candidates):
            return None
        index = candidates[pos]
        taken.add(index)
        fields = next(csv.reader([row_text], delimiter=delimiter), [])
        rejected.append(
            Rejected(index + 2, f"expected {len(header)} fields, found {len(fields)}", fields)
        )
        pos += 1
    good_lines = [i + 2 for i in candidates if i not in taken]
    columns: dict[str, pa.Array] = {LINE_COLUMN: pa.array(good_lines, type=pa.int64())}
    for name, column in zip(header, names, strict=True):
        if name and name not in columns:
            columns[name] = table[column]
    return RawTable(header, pa.table(columns), rejected)


def read_whitespace(path: Path, names: list[str], widths: tuple[int, ...]) -> RawTable:
    """A header-less file of whitespace-separated fields (CDNOW); a header line is skipped.

    `widths` lists the field counts accepted; shorter records are padded with empty fields.
    """
    text = read_text(path)
    lines: list[int] = []
    rows: list[list[str]] = []
    rejected: list[Rejected] = []
    width = len(names)
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if number == 1 and not fields[0].isdigit():
            continue  # a header row, as in the copies that ship with `lifetimes`
        if len(fields) not in widths:
            expected = " or ".join(str(w) for w in widths)
            rejected.append(
                Rejected(number, f"expected {expected} fields, found {len(fields)}", fields)
            )
            continue
        lines.append(number)
        rows.append(fields + [""] * (width - len(fields)))
    return RawTable(names, columns_table(names, rows, lines), rejected)


def columns_table(header: list[str], rows: list[list[str]], lines: list[int]) -> pa.Table:
    columns: dict[str, pa.Array] = {LINE_COLUMN: pa.array(lines, type=pa.int64())}
    transposed = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    seen: set[str] = set()
    for name, values in zip(header, transposed, strict=True):
        if name in seen or not name:
            continue  # a repeated or blank header: keep the first, as spreadsheets show it
        seen.add(name)
        columns[name] = pa.array(values, type=pa.string())
    return pa.table(columns)
