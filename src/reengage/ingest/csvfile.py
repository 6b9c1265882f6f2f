"""Read a delimited text file into columns of strings, keeping each record's line number.

Structure is checked here (encoding, field count); values are checked by `fields`.
"""

from __future__ import annotations

import codecs
import csv
import mmap
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


CHUNK_BYTES = 64 * 1024 * 1024
BOM = b"\xef\xbb\xbf"


def _not_utf8(path: Path, line: int) -> InputError:
    return InputError(
        f"{path}, line {line}: not UTF-8 text (save the file as UTF-8 and import it again)"
    )


def check_utf8(path: Path) -> None:
    """The whole file decodes as UTF-8, or one error naming the first bad line.

    Checked before anything is stored, so a file in another encoding writes nothing.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    with open(path, "rb") as fh:
        while block := fh.read(16 * 1024 * 1024):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise _not_utf8(path, lines + block[: exc.start].count(b"\n") + 1) from None
            lines += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise _not_utf8(path, lines + 1) from None


def read_text(path: Path) -> str:
    check_utf8(path)
    return path.read_bytes().decode("utf-8-sig")


def sniff_delimiter(first_line: str) -> str:
    """The candidate that splits the header into the most fields (quotes respected)."""
    best, best_count = ",", 0
    for candidate in DELIMITERS:
        count = len(next(csv.reader([first_line], delimiter=candidate), []))
        if count > best_count:
            best, best_count = candidate, count
    return best


def _records(text: str, delimiter: str, first_line: int) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record starts, fields); blank lines are skipped."""
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter, strict=False)
    previous_end = 0
    for fields in reader:
        start = previous_end + first_line
        previous_end = reader.line_num
        if fields and not (len(fields) == 1 and not fields[0].strip()):
            yield start, fields


@dataclass(frozen=True)
class Delimited:
    """A CSV file whose header has been read: where its records begin, how it is split."""

    path: Path
    header: list[str]
    delimiter: str
    body_start: int
    size: int


def open_delimited(path: Path, delimiter: str | None = None) -> Delimited:
    check_utf8(path)
    with open(path, "rb") as fh:
        head = fh.read(1024 * 1024)
        size = fh.seek(0, 2)
    skip = len(BOM) if head.startswith(BOM) else 0
    newline = head.find(b"\n", skip)
    first = head[skip : newline if newline >= 0 else len(head)].decode("utf-8").rstrip("\r")
    if not first.strip():
        raise InputError(f"{path}: the file is empty or its first line (the header) is blank")
    if delimiter is None:
        delimiter = sniff_delimiter(first)
    elif len(delimiter) != 1:
        raise InputError(f"--delimiter must be one character, not {delimiter!r}")
    header = [h.strip().lower() for h in next(csv.reader([first], delimiter=delimiter))]
    body_start = newline + 1 if newline >= 0 else size
    return Delimited(path, header, delimiter, body_start, size)


def read_chunks(
    source: Delimited, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[RawTable, int]]:
    """The records in pieces of about chunk_bytes, each with the bytes read so far.

    A piece ends at a line break outside quotes (an even number of quote characters since the
    piece began), so no record is ever cut in two. At least one piece, maybe empty, is given.
    """
    if source.body_start >= source.size:
        yield _parse_body("", source.header, source.delimiter, 2), source.size
        return
    with open(source.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        start, line = source.body_start, 2
        while start < source.size:
            end = min(start + chunk_bytes, source.size)
            quotes, counted = 0, start
            while end < source.size:
                newline = data.find(b"\n", end - 1)
                if newline < 0:
                    end = source.size
                    break
                end = newline + 1
                quotes += data[counted:end].count(b'"')
                counted = end
                if quotes % 2 == 0:
                    break
                end += 1  # inside a quoted field: look for the next line break
            end = min(end, source.size)
            body = data[start:end].decode("utf-8")
            yield _parse_body(body, source.header, source.delimiter, line), end
            line += body.count("\n")
            start = end


def read_delimited(path: Path, delimiter: str | None = None) -> RawTable:
    """A whole CSV file with a header row: wrong field counts are rejected, the rest kept."""
    source = open_delimited(path, delimiter)
    pieces = [raw for raw, _ in read_chunks(source, chunk_bytes=max(source.size, 1))]
    return pieces[0]


def _parse_body(body: str, header: list[str], delimiter: str, first_line: int) -> RawTable:
    return _read_fast(body, header, delimiter, first_line) or _read_exact(
        body, header, delimiter, first_line
    )


def _read_exact(body: str, header: list[str], delimiter: str, first_line: int) -> RawTable:
    """Record by record with Python's csv module: slower, right for any quoting."""
    width = len(header)
    lines: list[int] = []
    rows: list[list[str]] = []
    rejected: list[Rejected] = []
    for line, fields in _records(body, delimiter, first_line):
        if len(fields) == width:
            lines.append(line)
            rows.append(fields)
        else:
            rejected.append(Rejected(line, f"expected {width} fields, found {len(fields)}", fields))
    return RawTable(header, columns_table(header, rows, lines), rejected)


def _read_fast(body: str, header: list[str], delimiter: str, first_line: int) -> RawTable | None:
    """Arrow's C++ reader, for pieces whose every record is one line; None for the others.

    Arrow reports a bad record's text but not its line, so each is found again in the piece,
    in order; the good records take the remaining non-blank lines, in order.
    """
    if not body:
        return None
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
    candidates = [i for i, line in enumerate(lines) if line.strip()]
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
            Rejected(
                index + first_line, f"expected {len(header)} fields, found {len(fields)}", fields
            )
        )
        pos += 1
    good_lines = [i + first_line for i in candidates if i not in taken]
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
