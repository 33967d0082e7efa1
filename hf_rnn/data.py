"""Readers from tagged files to `datasets.DatasetDict`s with `ClassLabel` tag sequences.

`READERS` names every format a tagged file may be in (`read_tagged` picks one by the file's name, `format_of`): CoNLL
columns, CoNLL-U, JSON lines of a text and its entities as character spans (doccano's, flair's), and tables of words
and tags (run_ner.py's JSON, JSON lines, CSV). A new format is a function returning `TaggedSentence`s, added there.

Every malformed input raises `DataFormatError` naming the file and line, so a bad file never trains silently. Files
are UTF-8 (a leading byte-order mark is dropped) and lines end only at "\n", "\r\n" or "\r": form feeds, U+2028 and
the other characters `str.splitlines` also breaks at stay inside the line, as part of a token.
"""

import bisect
import codecs
import inspect
import json
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from .schemes import misspelt_chunk_tag
from .vocabulary import split_words


class DataFormatError(ValueError):
    """A line of an input file that cannot be read; the message starts with `file:line:`."""

    def __init__(self, path: str | Path, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line = str(path), line


@dataclass
class TaggedSentence:
    tokens: list[str]
    tags: list[str]
    path: str  # where the sentence was read, for error messages
    lines: list[int]  # each token's line in `path`


def read_conll(
    path: str | Path, token_column: int = 0, tag_column: int = -1, separator: str | None = None
) -> list[TaggedSentence]:
    """Read a CoNLL-style file: one token per line, columns split on `separator`.

    By default a file whose every token line holds the same number of TABs is split on TABs, so a token may hold
    spaces (kept whole; the word tokenizer then reads it as several pieces, the first one tagged), and any other file
    on runs of spaces and TABs. Only these split, so a stray no-break space or form feed cannot shift the columns.
    Sentences end at whitespace-only lines (WNUT-17 uses a lone TAB) and `-DOCSTART-` lines are skipped. Every token
    line must have as many columns as the sentence's first line. Whitespace around a token or tag is dropped; an
    empty one is an error, and so is a tag that holds whitespace (the columns split otherwise than the file means).
    """
    lines = _read_lines(path)
    if separator is None and _same_tab_count(lines):
        separator = "\t"
    split_on = "TABs" if separator == "\t" else repr(separator) if separator else "runs of spaces and TABs"
    sentences: list[TaggedSentence] = []
    current: TaggedSentence | None = None
    width = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            if current is not None:
                sentences.append(current)
            current, width = None, None
            continue
        columns = raw.split(separator) if separator else _BLANKS.split(raw.strip(" \t"))
        if _is_docstart(raw):
            continue
        if width is None:
            width = len(columns)
            if width < 2:
                raise DataFormatError(
                    path, number, f"expected a token and a tag column (split on {split_on}), got {raw!r}"
                )
            for column in (token_column, tag_column):
                if not -width <= column < width:
                    raise DataFormatError(path, number, f"no column {column}: the line has {width} columns: {raw!r}")
            if token_column % width == tag_column % width:
                raise DataFormatError(
                    path, number, f"token_column {token_column} and tag_column {tag_column} are the same column"
                )
        elif len(columns) != width:
            raise DataFormatError(
                path,
                number,
                f"expected {width} columns like the sentence's first line, got {len(columns)} (split on {split_on}):"
                f" {raw!r}",
            )
        tag = _filled(columns[tag_column], "tag", path, number, raw)
        if _WHITESPACE.search(tag):
            raise DataFormatError(path, number, f"tag {tag!r} holds whitespace (columns split on {split_on}): {raw!r}")
        if current is None:
            current = TaggedSentence([], [], str(path), [])
        current.tokens.append(_filled(columns[token_column], "token", path, number, raw))
        current.tags.append(tag)
        current.lines.append(number)
    if current is not None:
        sentences.append(current)
    if not sentences:
        raise DataFormatError(path, 1, "no sentences found (empty file?)")
    return sentences


def read_words(path: str | Path) -> list[TaggedSentence] | None:
    """Read a file of words to tag: one word per line, a blank line after each sentence (a CoNLL file without its tag
    column; `-DOCSTART-` lines skipped), as sentences with no tags. None if its first word line has more columns (a
    tagged file: `read_conll`); a later line with more is an error naming it."""
    sentences: list[TaggedSentence] = []
    current: TaggedSentence | None = None
    for number, raw in enumerate(_read_lines(path), start=1):
        if not raw.strip():
            if current is not None:
                sentences.append(current)
            current = None
            continue
        columns = _BLANKS.split(raw.strip(" \t"))
        if columns[0].strip() == "-DOCSTART-":
            continue
        if len(columns) > 1:
            if not sentences and current is None:
                return None
            raise DataFormatError(path, number, f"expected one word like the file's first line, got {raw!r}")
        if current is None:
            current = TaggedSentence([], [], str(path), [])
        current.tokens.append(_filled(columns[0], "word", path, number, raw))
        current.lines.append(number)
    if current is not None:
        sentences.append(current)
    if not sentences:
        raise DataFormatError(path, 1, "no sentences found (empty file?)")
    return sentences


def _is_docstart(line: str) -> bool:
    return line.split(maxsplit=1)[0] == "-DOCSTART-"


def _same_tab_count(lines: list[str]) -> bool:
    """Whether every token line (not blank, not `-DOCSTART-`) holds the same number of TABs, at least one."""
    counts = {line.count("\t") for line in lines if line.strip() and not _is_docstart(line)}
    return len(counts) == 1 and counts != {0}


def _check_chunk_spelling(sentences: Sequence[TaggedSentence]) -> None:
    """Refuse a chunk tag misspelt (`b-per`, `B_PER`) at its file and line: it is no chunk tag, so the labels
    would be read as POS-style tags, trained without the scheme's constraints and scored by accuracy, not span F1.
    Refused rather than normalised: the data's spelling of the types is the user's to fix, once, for every tool."""
    for sentence in sentences:
        for line, tag in zip(sentence.lines, sentence.tags):
            meant = misspelt_chunk_tag(tag)
            if meant is not None:
                raise DataFormatError(
                    sentence.path,
                    line,
                    f"tag {tag!r} looks like the chunk tag {meant!r} misspelt (chunk tags are 'O' or <prefix>-<TYPE>,"
                    " prefixes B, I, E, S, L, U in capitals, a '-' after them): fix the data",
                )


CONLLU_FIELDS = {"upos": 3, "xpos": 4}
_WORD_ID = re.compile(r"[1-9][0-9]*")
_RANGE_ID = re.compile(r"([1-9][0-9]*)-([1-9][0-9]*)")  # a multiword token: N-M with N < M
_EMPTY_NODE_ID = re.compile(r"(0|[1-9][0-9]*)\.[1-9][0-9]*")


def read_conllu(path: str | Path, tag_field: str = "upos") -> list[TaggedSentence]:
    """Read a CoNLL-U file: the word forms and their UPOS or XPOS tags.

    Comment lines are skipped, and so are multiword-token lines (`3-4`, their words follow as ordinary lines) and
    empty nodes (`8.1`), which are not part of the basic tree. Word IDs must count 1, 2, 3... within a sentence,
    which also catches a missing blank line between two sentences. A FORM may hold spaces (UD allows it): kept whole.
    """
    if tag_field not in CONLLU_FIELDS:
        raise ValueError(f"tag_field must be one of {list(CONLLU_FIELDS)}, got {tag_field!r}")
    column = CONLLU_FIELDS[tag_field]
    sentences: list[TaggedSentence] = []
    current: TaggedSentence | None = None
    for number, raw in enumerate(_read_lines(path), start=1):
        if not raw.strip():
            if current is not None:
                sentences.append(current)
            current = None
            continue
        if raw.startswith("#"):
            continue
        fields = raw.split("\t")
        if len(fields) != 10:
            raise DataFormatError(path, number, f"expected 10 TAB-separated fields, got {len(fields)}: {raw!r}")
        word_id = fields[0]
        span = _RANGE_ID.fullmatch(word_id)
        if (span and int(span[1]) < int(span[2])) or _EMPTY_NODE_ID.fullmatch(word_id):
            continue
        if not _WORD_ID.fullmatch(word_id):
            raise DataFormatError(
                path, number, f"word ID {word_id!r} is not a word (N), a range (N-M) or an empty node"
            )
        expected = len(current.tokens) + 1 if current else 1
        if int(word_id) != expected:
            raise DataFormatError(
                path, number, f"word ID {word_id} where {expected} was expected (a missing blank line or word line?)"
            )
        tag = fields[column].strip()
        if tag in ("", "_"):
            raise DataFormatError(path, number, f"word {fields[1]!r} has no {tag_field.upper()} tag")
        if current is None:
            current = TaggedSentence([], [], str(path), [])
        current.tokens.append(_filled(fields[1], "word form", path, number, raw))
        current.tags.append(tag)
        current.lines.append(number)
    if current is not None:
        sentences.append(current)
    if not sentences:
        raise DataFormatError(path, 1, "no sentences found (empty file?)")
    return sentences


SPAN_KEYS = {"text": ("text", "data"), "spans": ("label", "labels")}  # doccano's names first, then flair's and others'


def read_spans(path: str | Path) -> list[TaggedSentence]:
    """Read JSON lines of a text and its entities as character spans, one sentence per line, into BIO tags: doccano's
    `{"text": "Jean lives in Paris", "label": [[0, 4, "PER"], [14, 19, "LOC"]]}` (flair's `JsonlDataset` names the text
    `"data"`; `"labels"` is read too). Offsets count characters, the end excluded; other keys are ignored.

    The text is split into words as hf_rnn's word tokenizers split raw text (`vocabulary.split_words`: punctuation and
    clitics apart), and a span tags the words inside it, the first `B-<type>`, the others `I-<type>`, the rest `O`.
    A span that starts or ends inside a word cannot be told in word tags, so it is an error naming the word, as are
    overlapping spans, a span outside the text or covering no word, and a type that is empty or holds whitespace.
    """
    sentences = []
    for number, raw in enumerate(_read_lines(path), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise DataFormatError(path, number, f"not valid JSON ({error.msg}); one object per line") from None
        if not isinstance(record, dict):
            raise DataFormatError(path, number, f"a line must be a JSON object, got {raw:.60}")
        text, spans = (_span_value(record, key, path, number) for key in SPAN_KEYS)
        if not isinstance(text, str):
            raise DataFormatError(path, number, f"the text must be a string, got {text!r:.60}")
        if _SURROGATE.search(text):
            found = _SURROGATE.search(text)[0]
            raise DataFormatError(path, number, f"the text holds a lone surrogate {found!r} (a broken \\u escape)")
        if not isinstance(spans, list):
            raise DataFormatError(path, number, f"the spans must be a list of [start, end, type], got {spans!r:.60}")
        words = split_words(text)
        if not words:
            raise DataFormatError(path, number, f"the text {text!r} holds no words")
        sentence = TaggedSentence([word for word, _ in words], ["O"] * len(words), str(path), [number] * len(words))
        _tag_spans(sentence, text, [offsets for _, offsets in words], spans, number)
        sentences.append(sentence)
    if not sentences:
        raise DataFormatError(path, 1, "no sentences found (empty file?)")
    return sentences


def _span_value(record: dict, key: str, path: str | Path, number: int) -> object:
    """The record's value under one of `SPAN_KEYS[key]`'s names: exactly one must be there."""
    names = [name for name in SPAN_KEYS[key] if name in record]
    if not names:
        wanted = " or ".join(map(repr, SPAN_KEYS[key]))
        raise DataFormatError(path, number, f"no {wanted} key (the {key}); the line's keys are {list(record)}")
    if len(names) > 1:
        raise DataFormatError(path, number, f"both {names[0]!r} and {names[1]!r}: which holds the {key}?")
    return record[names[0]]


def _tag_spans(sentence: TaggedSentence, text: str, offsets: list[tuple[int, int]], spans: list, number: int) -> None:
    """Write each span's BIO tags over the words it covers, refusing spans the words cannot express."""
    for span in spans:
        if not (isinstance(span, list) and len(span) == 3 and all(map(_is_offset, span[:2]))):
            raise DataFormatError(sentence.path, number, f"span {span!r:.60}: a span is [start, end, type]")
        start, end, kind = span
        if not 0 <= start < end <= len(text):
            raise DataFormatError(
                sentence.path, number, f"span {span!r}: needs 0 <= start < end <= {len(text)} (the text's length)"
            )
        if not isinstance(kind, str) or not kind.strip() or _WHITESPACE.search(kind):
            raise DataFormatError(sentence.path, number, f"span {span!r}: the type must be a name without whitespace")
    starts, ends = [start for start, _ in offsets], [end for _, end in offsets]
    previous = None
    for span in sorted(spans):
        start, end, kind = span
        if previous is not None and start < previous[1]:
            raise DataFormatError(sentence.path, number, f"span {span!r} overlaps span {previous!r}")
        first, last = bisect.bisect_right(ends, start), bisect.bisect_left(starts, end)  # the words it touches
        if first >= last:
            raise DataFormatError(sentence.path, number, f"span {span!r} ({text[start:end]!r}) covers no word")
        for edge, index, inside in (
            ("starts", first, starts[first] < start),
            ("ends", last - 1, ends[last - 1] > end),
        ):
            if inside:
                raise DataFormatError(
                    sentence.path,
                    number,
                    f"span {span!r} ({text[start:end]!r}) {edge} inside the word {sentence.tokens[index]!r}"
                    f" ({starts[index]}-{ends[index]}): a span must start and end where words do (the text is split"
                    " as hf_rnn's word tokenizer splits it)",
                )
        sentence.tags[first:last] = [f"B-{kind}"] + [f"I-{kind}"] * (last - first - 1)
        previous = span


def _is_offset(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_tag_table(
    path: str | Path, tokens_column: str = "tokens", tags_column: str = "ner_tags"
) -> list[TaggedSentence]:
    """Records of words and tags in a JSON, JSON lines, CSV or TSV file, as run_ner.py reads them
    (`tables.read_tagged_table`)."""
    from .tables import read_tagged_table  # here: tables reads its files with this module's `read_utf8`

    return read_tagged_table(path, tokens_column, tags_column)


READERS: dict[str, Callable[..., list[TaggedSentence]]] = {
    "conll": read_conll,
    "conllu": read_conllu,
    "jsonl": read_spans,
    "table": read_tag_table,
}


def format_of(path: str | Path, tokens_column: str = "tokens") -> str:
    """The `READERS` format a file is in, told by its name: `.conllu` is CoNLL-U; `.json`, `.jsonl` and `.csv` are
    tables, except a `.jsonl` file whose first line is a record with a text (`"text"` or `"data"`) and no
    `tokens_column`: spans (`"jsonl"`); any other file is CoNLL (a `.tsv` too: CoNLL files are often named so)."""
    suffix = Path(path).suffix
    if suffix == ".conllu":
        return "conllu"
    if suffix == ".jsonl" and _first_record_has_text(path, tokens_column):
        return "jsonl"
    return "table" if suffix in (".json", ".jsonl", ".csv") else "conll"


def _first_record_has_text(path: str | Path, tokens_column: str) -> bool:
    first = next((line for line in _read_lines(path) if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:  # the reader says where
        return False
    keys = record if isinstance(record, dict) else {}
    return tokens_column not in keys and any(name in keys for name in SPAN_KEYS["text"])


def read_tagged(path: str | Path, format: str | None = None, **options) -> list[TaggedSentence]:
    """Read a tagged file with `READERS[format]` (by default the file's `format_of`), passing the reader those of the
    `options` its signature names: a caller hands every format's options (run_tagging: all its data flags), so a new
    reader's own options need no change to the callers, only a flag of the same name."""
    format = format or format_of(path, options.get("tokens_column", "tokens"))
    if format not in READERS:
        raise ValueError(f"{path}: unknown format {format!r}; the formats are {sorted(READERS)}")
    reader = READERS[format]
    taken = inspect.signature(reader).parameters
    return reader(path, **{name: value for name, value in options.items() if name in taken and name != "path"})


def read_text(path: str | Path, eos: str | None = "<eos>") -> list[list[str]]:
    """A plain-text corpus for language modelling: one sentence per line, `eos` appended to each (the PTB recipe).

    Lines end only at line ends, but tokens are split at any whitespace `str.split` knows (form feeds, U+2028,
    U+001C... too), so no token holds whitespace the word tokenizer would split again. Blank lines are skipped."""
    lines = [line.split() + ([eos] if eos else []) for line in _read_lines(path) if line.strip()]
    if not lines:
        raise DataFormatError(path, 1, "no text found (empty file?)")
    return lines


def read_characters(path: str | Path) -> list[str]:
    """A plain-text corpus for a character language model: the file's lines, each with its line end as `"\\n"` (the
    last line only if the file ends with one), every character kept, blank lines too."""
    lines = _read_lines(path)
    if not any(line.strip() for line in lines):
        raise DataFormatError(path, 1, "no text found (empty file?)")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


_LINE_END = re.compile(r"\r\n|\r|\n")
_BLANKS = re.compile(r"[ \t]+")
_WHITESPACE = re.compile(r"\s")
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate (a JSON `\\ud800` escape): no character


def read_utf8(path: str | Path) -> str:
    """The file's text, decoded as UTF-8 without a leading byte-order mark. A UTF-16 or UTF-32 file (told by its
    byte-order mark), a byte sequence that is not UTF-8 (Latin-1, cp1252) and a NUL character (a binary or BOM-less
    UTF-16 file) raise a `DataFormatError` naming the line."""
    data = Path(path).read_bytes()
    for bom, encoding in _OTHER_BOMS:  # UTF-32-LE's starts like UTF-16-LE's: longest first
        if data.startswith(bom):
            raise DataFormatError(path, 1, f"the file is {encoding} (its byte-order mark says so): save it as UTF-8")
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = len(_LINE_END.split(data[: error.start].decode("utf-8")))
        raise DataFormatError(
            path, line, f"not valid UTF-8 ({error.reason}; Latin-1 or cp1252? save it as UTF-8)"
        ) from None
    if "\0" in text:
        line = len(_LINE_END.split(text[: text.index("\0")]))
        raise DataFormatError(path, line, "a NUL character (a binary file, or UTF-16 without a byte-order mark?)")
    return text


_OTHER_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32-LE"),
    (codecs.BOM_UTF32_BE, "UTF-32-BE"),
    (codecs.BOM_UTF16_LE, "UTF-16-LE"),
    (codecs.BOM_UTF16_BE, "UTF-16-BE"),
)


def _read_lines(path: str | Path) -> list[str]:
    """The lines of `read_utf8`'s text, each without a leading byte-order mark: files joined with `cat` carry one
    where the second begins, which would otherwise stick to its first token (`-DOCSTART-` then reads as a word)."""
    return [line.removeprefix("\ufeff") for line in _LINE_END.split(read_utf8(path))]


def _filled(cell: str, what: str, path: str | Path, number: int, raw: str) -> str:
    """`cell` without surrounding whitespace; an empty token would vanish at tokenization and an empty tag become a
    label `''`, so both are errors."""
    cell = cell.strip()
    if not cell:
        raise DataFormatError(path, number, f"empty {what} in {raw!r}")
    return cell


def tagging_dataset(
    splits: dict[str, Sequence[TaggedSentence]],
    label_names: Sequence[str] | None = None,
    unknown_tag: str | None = None,
) -> DatasetDict:
    """Build a `DatasetDict` with `tokens` and `tags` (a `ClassLabel` sequence).

    The label set comes from the `"train"` split (sorted) unless `label_names` is given. A tag outside it raises an
    error naming the file line, unless `unknown_tag` names a label to map it to (e.g. `"O"`). So does a chunk tag
    misspelt (`b-per`, `B_PER`), which would otherwise train as a POS-style label.
    """
    for sentences in splits.values():
        _check_chunk_spelling(sentences)
    if label_names is None:
        if "train" not in splits:
            raise ValueError("Pass `label_names` or a 'train' split to take the label set from.")
        label_names = sorted({tag for sentence in splits["train"] for tag in sentence.tags})
    label_names = list(label_names)
    known = set(label_names)
    if unknown_tag is not None and unknown_tag not in known:
        raise ValueError(f"unknown_tag={unknown_tag!r} is not one of the labels {label_names}")
    features = Features({"tokens": List(Value("string")), "tags": List(ClassLabel(names=label_names))})

    def rows(sentences: Sequence[TaggedSentence]) -> Iterator[dict]:
        for sentence in sentences:
            tags = []
            for line, tag in zip(sentence.lines, sentence.tags, strict=True):
                if tag not in known:
                    if unknown_tag is None:
                        raise DataFormatError(
                            sentence.path,
                            line,
                            f"tag {tag!r} is not in the label set {label_names} (pass unknown_tag=... to map it)",
                        )
                    tag = unknown_tag
                tags.append(tag)
            yield {"tokens": sentence.tokens, "tags": tags}

    return DatasetDict(
        {split: Dataset.from_list(list(rows(sentences)), features=features) for split, sentences in splits.items()}
    )


def standardize_tagging_dataset(
    data: DatasetDict, tokens_column: str = "tokens", tags_column: str = "tags"
) -> DatasetDict:
    """A Hub (or `load_dataset`) tagging dataset as hf_rnn's layout: `tokens` and `tags`, a `ClassLabel` sequence.

    Tags stored as class ids keep their names; tags stored as strings get the training split's sorted label set, and
    one outside it (or blank) raises `ValueError` naming the split and row, and so does a misspelt chunk tag (`b-per`).
    Rows are checked further when encoded.
    """
    if "train" not in data:
        raise ValueError(f"the dataset has no 'train' split (it has {list(data)})")
    for split, part in data.items():
        missing = {tokens_column, tags_column} - set(part.column_names)
        if missing:
            raise ValueError(f"split {split!r} has no column(s) {sorted(missing)}; it has {part.column_names}")
    data = DatasetDict({split: part.select_columns([tokens_column, tags_column]) for split, part in data.items()})
    inner = getattr(data["train"].features[tags_column], "feature", None)
    if isinstance(inner, ClassLabel):
        names = inner.names
    else:
        seen = {tag for tags in data["train"][tags_column] for tag in tags}
        names = sorted(tag for tag in seen if tag is not None and str(tag).strip())  # a blank tag is no label
        index = {name: i for i, name in enumerate(names)}
        for split, part in data.items():
            for row, (tokens, tags) in enumerate(zip(part[tokens_column], part[tags_column])):
                _check_row(split, row, tokens, tags, index)

        def to_ids(batch: dict) -> dict:
            return {tags_column: [[index[tag] for tag in tags] for tags in batch[tags_column]]}

        data = data.map(to_ids, batched=True)
    for name in names:
        if misspelt_chunk_tag(str(name)) is not None:
            raise ValueError(
                f"the dataset's tag {name!r} looks like the chunk tag {misspelt_chunk_tag(str(name))!r} misspelt: it"
                " would train as a POS-style label (no scheme constraints, no span F1)"
            )
    features = Features({"tokens": List(Value("string")), "tags": List(ClassLabel(names=list(names)))})
    renamed = DatasetDict(
        {split: part.rename_columns({tokens_column: "tokens", tags_column: "tags"}) for split, part in data.items()}
    )
    return renamed.cast(features)


def load_sample_pos() -> DatasetDict:
    """The small invented POS corpus shipped with hf_rnn (train 600 / dev 150 sentences, 10 UPOS tags)."""
    folder = resources.files("hf_rnn") / "samples"
    return tagging_dataset({split: read_conll(folder / f"sample_pos.{split}.tsv") for split in ("train", "dev")})


def encode_for_tagging(dataset: DatasetDict, tokenizer, max_length: int | None = None) -> DatasetDict:
    """Tokenize pre-split words and align the tags: each word's first token gets its tag, later pieces -100.

    `tags` must be a `ClassLabel` sequence. Raises `ValueError` naming the split and row of anything that would train
    wrongly: a row without words, tags that do not pair with the words, a tag id outside the labels (such as -1, a
    `ClassLabel`'s missing value), or a word the tokenizer drops (empty or whitespace), which would lose its tag.
    """

    def encode(batch: dict, indices: list[int], split: str, label_ids: range) -> dict:
        for index, tokens, tags in zip(indices, batch["tokens"], batch["tags"]):
            _check_row(split, index, tokens, tags, label_ids)
        encoding = tokenizer(
            batch["tokens"], is_split_into_words=True, truncation=max_length is not None, max_length=max_length
        )
        labels = []
        for row, (index, tokens, tags) in enumerate(zip(indices, batch["tokens"], batch["tags"])):
            words = encoding.word_ids(row)
            kept = {word for word in words if word is not None}
            truncated = max_length is not None and len(words) >= max_length  # its last words are cut on purpose
            end = max(kept, default=-1) + 1 if truncated else len(tokens)
            lost = next((word for word in range(end) if word not in kept), None)
            if lost is not None:
                raise ValueError(
                    f"split {split!r} row {index}: word {lost} {tokens[lost]!r} gives the tokenizer no tokens, "
                    "so its tag would be lost"
                )
            previous, aligned = None, []
            for word in words:
                aligned.append(-100 if word is None or word == previous else tags[word])
                previous = word
            labels.append(aligned)
        encoding["labels"] = labels
        return encoding

    encoded = {}
    for split, part in dataset.items():
        inner = getattr(part.features["tags"], "feature", None)
        if not isinstance(inner, ClassLabel):
            raise ValueError(
                f"split {split!r}: `tags` is not a ClassLabel sequence (tagging_dataset and "
                "standardize_tagging_dataset make one)"
            )
        encoded[split] = part.map(
            encode,
            batched=True,
            with_indices=True,
            remove_columns=part.column_names,
            fn_kwargs={"split": split, "label_ids": range(inner.num_classes)},
        )
    return DatasetDict(encoded)


def _check_row(split: str, row: int, tokens: Sequence[str], tags: Sequence, labels: Collection) -> None:
    """Raise for a row that would train wrongly: no words (a sequence the model cannot run), tags that do not pair
    with the words, or a tag that is not one of the `labels`."""
    where = f"split {split!r} row {row}"
    if not tokens:
        raise ValueError(f"{where} has no tokens")
    if len(tags) != len(tokens):
        raise ValueError(f"{where} has {len(tokens)} tokens but {len(tags)} tags")
    for position, (token, tag) in enumerate(zip(tokens, tags)):
        if tag not in labels:
            missing = " (-1 is a ClassLabel's missing value)" if tag == -1 else ""
            raise ValueError(
                f"{where}: tag {tag!r} of word {position} {token!r} is not one of the {len(labels)} labels{missing}"
            )
