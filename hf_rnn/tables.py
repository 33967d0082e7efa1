"""Readers of tables: CSV, TSV, JSON (an array of records) and JSON lines, one record per row, for the example scripts'
`--train_file x.csv` (run_tagging's tokens and tags columns, run_classification's text and label columns).

Read here rather than by `datasets`, so that every error is hf_rnn's own and names the file and the line a record (or,
in CSV, its cell) starts on: a cell spanning lines does not shift the lines of later rows. The text is UTF-8 as in
`hf_rnn.data` (UTF-16, Latin-1 and NUL characters are named), CSV is read strictly (a quote never closed is named
where its row starts, not where the file ends), and a lone surrogate (a JSON `\\ud800` escape, which is no character
and fails inside the tokenizer) is refused at its record.
"""

import bisect
import csv
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .data import DataFormatError, TaggedSentence, read_utf8

TABLE_FORMATS = {".csv": ",", ".tsv": "\t", ".json": None, ".jsonl": None}  # the delimiter; None: JSON (lines)
_LINE_END = re.compile(r"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Row:
    """One record: the values of the columns asked for (None where a record lacks one) and where each starts."""

    values: dict[str, object]
    path: str
    lines: dict[str, int]  # column -> the line its cell starts on (JSON: the record's first line)

    def where(self, column: str) -> str:
        return f"{self.path}:{self.lines[column]}"


def read_table(path: str | Path, columns: Mapping[str, str]) -> list[Row]:
    """The rows of a CSV/TSV file (a header, then one row per record) or a JSON file (an array of objects, or objects
    one after another: JSON lines), with `columns` only. `columns` maps each column name to how the user gave it (a
    flag such as `"--text_column"`), for the error when the table lacks it. A file without rows is an error."""
    path = str(path)
    suffix = Path(path).suffix
    if suffix not in TABLE_FORMATS:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {sorted(TABLE_FORMATS)}")
    text = read_utf8(path)
    if not text.strip():
        raise ValueError(f"{path}: empty file")
    starts = [0] + [match.end() for match in _LINE_END.finditer(text)]

    def line_of(position: int) -> int:
        return bisect.bisect_right(starts, position)

    delimiter = TABLE_FORMATS[suffix]
    if delimiter is None:
        header, records = _json_records(path, text, line_of)
    else:
        header, records = _csv_records(path, text, delimiter)
    if not records:
        raise ValueError(f"{path}: no rows" + (" below the header" if delimiter else ""))
    for column, given in columns.items():
        if column not in header:
            raise ValueError(f"{path}: no {column!r} column ({given}); it has {header}")
    rows = []
    for values, lines in records:
        row = Row({column: values.get(column) for column in columns}, path, {c: lines[c] for c in columns})
        for column, value in row.values.items():
            for string in _strings(value):
                if _SURROGATE.search(string):
                    raise DataFormatError(
                        path,
                        row.lines[column],
                        f"the {column!r} value holds a lone surrogate {_SURROGATE.search(string)[0]!r} (a broken"
                        " \\u escape), which is no character",
                    )
        rows.append(row)
    return rows


def _csv_records(path: str, text: str, delimiter: str) -> tuple[list[str], list[tuple[dict, dict]]]:
    """The header and each row's cells by column name with the line each cell starts on. A row with more cells than
    the header is an error; one with fewer reads the missing cells as None."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header, records, start = None, [], 1
    while True:
        try:
            cells = next(reader, None)
        except csv.Error as error:
            if "unexpected end of data" in str(error):
                message = (
                    "a quoted cell in this row is never closed (an unbalanced '\"'): it runs to the end of the file"
                )
                raise DataFormatError(path, start, message) from None
            raise DataFormatError(path, reader.line_num, f"not valid CSV ({error})") from None
        if cells is None:
            break
        if cells:  # a blank line separates nothing
            lines, line = [], start
            for cell in cells:
                lines.append(line)
                line += len(_LINE_END.findall(cell))
            if header is None:
                header = cells
                twice = sorted({name for name in cells if cells.count(name) > 1})
                if twice:
                    raise DataFormatError(path, start, f"the header names the column(s) {twice} more than once")
            elif len(cells) > len(header):
                raise DataFormatError(path, start, f"{len(cells)} cells, the header has {len(header)}")
            else:
                records.append(
                    (dict(zip(header, cells)), {name: lines[min(i, len(cells) - 1)] for i, name in enumerate(header)})
                )
        start = reader.line_num + 1
    return header or [], records


def _json_records(path: str, text: str, line_of) -> tuple[list[str], list[tuple[dict, dict]]]:
    """The keys in order of first use and each record with its first line: the items of one top-level array, or
    top-level objects one after another (JSON lines, or pretty-printed objects)."""
    decoder, values = json.JSONDecoder(), []
    position = _skip_space(text, 0)
    if text[position] == "[":
        position = _skip_space(text, position + 1)
        while text[position : position + 1] != "]":
            value, end = _decode(decoder, path, text, position, line_of)
            values.append((position, value))
            position = _skip_space(text, end)
            if text[position : position + 1] == ",":
                position = _skip_space(text, position + 1)
            elif text[position : position + 1] != "]":
                raise DataFormatError(path, line_of(position), "not valid JSON (expected ',' or ']' after a record)")
        if _skip_space(text, position + 1) < len(text):
            raise DataFormatError(path, line_of(position + 1), "not valid JSON (more text after the array)")
    else:
        while position < len(text):
            value, end = _decode(decoder, path, text, position, line_of)
            values.append((position, value))
            position = _skip_space(text, end)
    header, first_lines = {}, []
    for position, value in values:
        if not isinstance(value, dict):
            raise DataFormatError(path, line_of(position), f"a record must be a JSON object, got {value!r:.60}")
        header.update(dict.fromkeys(value))
        first_lines.append(line_of(position))
    records = [(value, dict.fromkeys(header, line)) for (_, value), line in zip(values, first_lines)]
    return list(header), records


def _decode(decoder: json.JSONDecoder, path: str, text: str, position: int, line_of) -> tuple[object, int]:
    try:
        return decoder.raw_decode(text, position)
    except json.JSONDecodeError as error:
        raise DataFormatError(path, line_of(error.pos), f"not valid JSON ({error.msg})") from None


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _strings(value: object) -> list[str]:
    """The strings in a cell: itself, or those of a list (a JSON record's words)."""
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def read_tagged_table(path: str | Path, tokens_column: str, tags_column: str) -> list[TaggedSentence]:
    """One sentence per record: JSON lists of words and of tags (names, or ids as integers), or CSV/TSV cells of
    whitespace-separated words and tags (as run_ner.py reads them). Errors name the file and the cell's line."""
    rows = read_table(path, {tokens_column: "--tokens_column", tags_column: "--tags_column"})
    sentences = []
    for row in rows:
        tokens, tags = (_split(row.values[column]) for column in (tokens_column, tags_column))
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t.strip() for t in tokens):
            raise ValueError(f"{row.where(tokens_column)}: {tokens_column!r} must be a list of words, got {tokens!r}")
        if not isinstance(tags, list) or not tags or not all(map(_is_tag, tags)):
            raise ValueError(f"{row.where(tags_column)}: {tags_column!r} must be a list of tags, got {tags!r}")
        if len(tags) != len(tokens):
            raise ValueError(f"{row.where(tags_column)}: {len(tokens)} words but {len(tags)} tags")
        line = row.lines[tags_column]
        sentences.append(TaggedSentence(tokens, [str(tag) for tag in tags], str(path), [line] * len(tokens)))
    return sentences


def _split(cell: object) -> object:
    return cell.split() if isinstance(cell, str) else cell


def _is_tag(tag: object) -> bool:
    return (isinstance(tag, str) and bool(tag.strip())) or (isinstance(tag, int) and not isinstance(tag, bool))


def read_labelled_texts(path: str | Path, text_column: str, label_column: str) -> dict[str, list[str]]:
    """The text and label columns, every value a non-blank string (a number reads as its text): an empty cell is an
    error naming the file, the cell's line and the column (as a label it would become a class 'None'), as is a JSON
    NaN (a class 'nan'), and so is a JSON list or object (one odd text or class)."""
    rows = read_table(path, {text_column: "--text_column", label_column: "--label_column"})
    table = {text_column: [], label_column: []}
    for row in rows:
        for column in table:
            value = row.values[column]
            if isinstance(value, float) and not math.isfinite(value):  # JSON's NaN: pandas' missing value
                raise ValueError(f"{row.where(column)}: empty {column!r} value ({value} in the JSON)")
            if value is None or not str(value).strip():
                raise ValueError(f"{row.where(column)}: empty {column!r} value")
            if isinstance(value, (list, dict)):
                raise ValueError(f"{row.where(column)}: the {column!r} value is a {type(value).__name__}, not text")
            table[column].append(str(value))
    return table


__all__ = ["TABLE_FORMATS", "Row", "read_labelled_texts", "read_table", "read_tagged_table"]
