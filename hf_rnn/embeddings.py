"""Pretrained word vectors (GloVe or word2vec text files) into a model's embedding matrix."""

from dataclasses import dataclass
from pathlib import Path

import torch

from .data import _BLANKS, DataFormatError


@dataclass
class VectorStats:
    """How much of the vocabulary the file covered."""

    vocabulary: int
    exact: int  # found as written
    lowercased: int  # found only in lower case
    file_words: int

    @property
    def missing(self) -> int:
        return self.vocabulary - self.exact - self.lowercased

    @property
    def coverage(self) -> float:
        return (self.exact + self.lowercased) / self.vocabulary if self.vocabulary else 0.0


@torch.no_grad()
def load_word_vectors(model, tokenizer, path: str | Path, freeze: bool = False) -> VectorStats:
    """Copy the vectors of `path` into the rows of the model's input embeddings for the tokenizer's words.

    Reads GloVe (`word v1 ... vD` per line) and word2vec text (the same after a `count dimension` header line), UTF-8
    with or without a byte-order mark, fields split at runs of spaces or TABs (so a word holds neither, but may hold a
    no-break space). A word missing from the file is looked up lower-cased; words found in neither keep their initial
    vectors, and the padding row stays zero. `freeze=True` stops the embeddings from training.

    Raises `DataFormatError` naming the line of a vector whose width is not the model's `embedding_size`, of a value
    that is not a finite number (only the words the vocabulary uses are parsed, which keeps large files fast), of a
    used word listed twice, of a header the file disagrees with, or of bytes that are not UTF-8; `ValueError` when no
    word of the file is in the vocabulary. Nothing is copied unless the whole file reads.
    """
    embeddings = model.get_input_embeddings()
    width, dtype = embeddings.embedding_dim, embeddings.weight.dtype
    vocabulary = tokenizer.get_vocab()  # word -> id
    wanted_lower: dict[str, list[int]] = {}
    for word, index in vocabulary.items():
        wanted_lower.setdefault(word.lower(), []).append(index)
    exact: dict[int, torch.Tensor] = {}
    lowered: dict[int, torch.Tensor] = {}
    used_on: dict[str, int] = {}  # the line of each used word, to catch a second one
    header, file_words = None, 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip(" \t\r\n")
            except UnicodeDecodeError as error:
                raise DataFormatError(path, number, f"not valid UTF-8 ({error.reason})") from None
            if not line:
                continue
            fields = _BLANKS.split(line)
            if number == 1 and len(fields) == 2 and all(field.isdecimal() for field in fields):
                header = int(fields[0])  # word2vec: count and dimension
                if int(fields[1]) != width:
                    raise DataFormatError(
                        path, number, f"the header says {fields[1]} dimensions, the model's embedding_size is {width}"
                    )
                continue
            word, values = fields[0], fields[1:]
            if len(values) != width:
                raise DataFormatError(
                    path, number, f"vector of {len(values)} values for {word!r}, the model's embedding_size is {width}"
                )
            file_words += 1
            indices = wanted_lower.get(word.lower())
            if indices is None:
                continue
            if word in used_on:
                raise DataFormatError(path, number, f"{word!r} again, first on line {used_on[word]}")
            used_on[word] = number
            vector = _vector(word, values, dtype, path, number)
            if word in vocabulary:
                exact[vocabulary[word]] = vector
            for index in indices:
                lowered.setdefault(index, vector)
    if not file_words:
        raise DataFormatError(path, 1, "no vectors found (empty file?)")
    if header is not None and header != file_words:
        raise DataFormatError(path, 1, f"the header says {header} words, the file has {file_words}")
    pad = getattr(model.config, "pad_token_id", None)
    rows = {**lowered, **exact}  # a word found as written wins over a lower-cased one
    rows.pop(pad, None)
    if not rows:
        raise ValueError(
            f"none of the {file_words} words of {path} is in the vocabulary of {len(vocabulary)} words "
            "(not even lower-cased): a file for another language or casing?"
        )
    for index, vector in rows.items():
        embeddings.weight[index] = vector
    embeddings.weight.requires_grad_(not freeze)
    found = len(exact) - int(pad in exact)
    return VectorStats(len(vocabulary), found, len(rows) - found, file_words)


def _vector(word: str, values: list[str], dtype: torch.dtype, path: str | Path, number: int) -> torch.Tensor:
    """The values as a vector of the embeddings' dtype; a NaN or infinity (also an overflow such as 1e999) would
    poison the embeddings, so it is an error, like a value that is no number."""
    numbers = []
    for value in values:
        try:
            numbers.append(float(value))
        except ValueError:
            raise DataFormatError(path, number, f"{word!r} has a value that is not a number: {value!r}") from None
    vector = torch.tensor(numbers, dtype=dtype)
    finite = torch.isfinite(vector)
    if not finite.all():
        bad = values[int((~finite).nonzero()[0])]
        raise DataFormatError(path, number, f"{word!r} has a value that is not finite as {dtype}: {bad!r}")
    return vector
