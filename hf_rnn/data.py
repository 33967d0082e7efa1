"""Readers from column files to `datasets.DatasetDict`s with `ClassLabel` tag sequences.

Every malformed input raises `DataFormatError` naming the file and line, so a bad file never trains silently.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value


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
    line: int


def read_conll(
    path: str | Path, token_column: int = 0, tag_column: int = -1, separator: str | None = None
) -> list[TaggedSentence]:
    """Read a CoNLL-style file: one token per line, columns split on `separator` (default: any whitespace).

    Sentences end at whitespace-only lines (WNUT-17 uses a lone TAB) and `-DOCSTART-` lines are skipped. Every token
    line must have as many columns as the sentence's first line.
    """
    sentences: list[TaggedSentence] = []
    current: TaggedSentence | None = None
    width = None
    for number, raw in enumerate(_read_lines(path), start=1):
        if not raw.strip():
            if current is not None:
                sentences.append(current)
            current, width = None, None
            continue
        columns = raw.split(separator) if separator else raw.split()
        if columns[0] == "-DOCSTART-":
            continue
        if width is None:
            width = len(columns)
            if width < 2:
                raise DataFormatError(path, number, f"expected a token and a tag column, got {raw!r}")
        elif len(columns) != width:
            raise DataFormatError(
                path, number, f"expected {width} columns like the sentence's first line, got {len(columns)}: {raw!r}"
            )
        try:
            token, tag = columns[token_column], columns[tag_column]
        except IndexError:
            raise DataFormatError(path, number, f"no column {token_column} or {tag_column} in {raw!r}") from None
        if current is None:
            current = TaggedSentence([], [], str(path), number)
        current.tokens.append(token)
        current.tags.append(tag)
    if current is not None:
        sentences.append(current)
    if not sentences:
        raise DataFormatError(path, 1, "no sentences found (empty file?)")
    return sentences


CONLLU_FIELDS = {"upos": 3, "xpos": 4}


def read_conllu(path: str | Path, tag_field: str = "upos") -> list[TaggedSentence]:
    """Read a CoNLL-U file: the word forms and their UPOS or XPOS tags.

    Comment lines are skipped, and so are multiword-token lines (`3-4`, their words follow as ordinary lines) and
    empty nodes (`8.1`), which are not part of the basic tree.
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
        if "-" in fields[0] or "." in fields[0]:
            continue
        if not fields[0].isdigit():
            raise DataFormatError(path, number, f"word ID {fields[0]!r} is not an integer, a range or a decimal")
        if fields[column] == "_":
            raise DataFormatError(path, number, f"word {fields[1]!r} has no {tag_field.upper()} tag")
        if current is None:
            current = TaggedSentence([], [], str(path), number)
        current.tokens.append(fields[1])
        current.tags.append(fields[column])
    if current is not None:
        sentences.append(current)
    if not sentences:
        raise DataFormatError(path, 1, "no sentences found (empty file?)")
    return sentences


def read_text(path: str | Path, eos: str | None = "<eos>") -> list[list[str]]:
    """A plain-text corpus for language modelling: one sentence per line, whitespace-separated tokens, `eos`
    appended to every line (the PTB recipe). Blank lines are skipped."""
    lines = [line.split() + ([eos] if eos else []) for line in _read_lines(path) if line.strip()]
    if not lines:
        raise DataFormatError(path, 1, "no text found (empty file?)")
    return lines


def _read_lines(path: str | Path) -> list[str]:
    """The file's lines; a decoding error names the line it happened on."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise DataFormatError(path, line, f"not valid UTF-8 ({error.reason})") from None


def tagging_dataset(
    splits: dict[str, Sequence[TaggedSentence]],
    label_names: Sequence[str] | None = None,
    unknown_tag: str | None = None,
) -> DatasetDict:
    """Build a `DatasetDict` with `tokens` and `tags` (a `ClassLabel` sequence).

    The label set comes from the `"train"` split (sorted) unless `label_names` is given. A tag outside it raises an
    error naming the file line, unless `unknown_tag` names a label to map it to (e.g. `"O"`).
    """
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
            for offset, tag in enumerate(sentence.tags):
                if tag not in known:
                    if unknown_tag is None:
                        raise DataFormatError(
                            sentence.path,
                            sentence.line + offset,
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

    Tags stored as class ids keep their names; tags stored as strings get the training split's sorted label set.
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
        names = sorted({tag for tags in data["train"][tags_column] for tag in tags})
        index = {name: i for i, name in enumerate(names)}

        def to_ids(batch: dict) -> dict:
            unknown = {tag for tags in batch[tags_column] for tag in tags} - set(index)
            if unknown:
                raise ValueError(f"tags {sorted(unknown)} do not occur in the training split")
            return {tags_column: [[index[tag] for tag in tags] for tags in batch[tags_column]]}

        data = data.map(to_ids, batched=True)
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
    """Tokenize pre-split words and align the tags: each word's first token gets its tag, later pieces -100."""

    def encode(batch: dict) -> dict:
        encoding = tokenizer(
            batch["tokens"], is_split_into_words=True, truncation=max_length is not None, max_length=max_length
        )
        labels = []
        for row, tags in enumerate(batch["tags"]):
            previous, aligned = None, []
            for word in encoding.word_ids(row):
                aligned.append(-100 if word is None or word == previous else tags[word])
                previous = word
            labels.append(aligned)
        encoding["labels"] = labels
        return encoding

    columns = next(iter(dataset.values())).column_names
    return dataset.map(encode, batched=True, remove_columns=columns)
