"""Pretrained word vectors (GloVe or word2vec text files) into a model's embedding matrix."""

from dataclasses import dataclass
from pathlib import Path

import torch

from .data import DataFormatError


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

    Reads GloVe (`word v1 ... vD` per line) and word2vec text (the same after a `count dimension` header line). A word
    missing from the file is looked up lower-cased; words found in neither keep their initial vectors, and the
    padding row stays zero. `freeze=True` stops the embeddings from training. Raises `DataFormatError` naming the line
    of a vector whose width is not the model's `embedding_size`.
    """
    embeddings = model.get_input_embeddings()
    width = embeddings.embedding_dim
    vocabulary = tokenizer.get_vocab()  # word -> id
    wanted_lower: dict[str, list[int]] = {}
    for word, index in vocabulary.items():
        wanted_lower.setdefault(word.lower(), []).append(index)
    exact: dict[int, torch.Tensor] = {}
    lowered: dict[int, torch.Tensor] = {}
    file_words = 0
    with open(path, encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip().split(" ")
            if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                continue  # word2vec header
            if len(fields) < 2:
                continue
            word, values = fields[0], fields[1:]
            if len(values) != width:
                raise DataFormatError(
                    path, number, f"vector of {len(values)} values for {word!r}, the model's embedding_size is {width}"
                )
            file_words += 1
            if word in vocabulary:
                exact[vocabulary[word]] = torch.tensor([float(v) for v in values])
            for index in wanted_lower.get(word.lower(), ()):
                lowered.setdefault(index, torch.tensor([float(v) for v in values]))
    pad = getattr(model.config, "pad_token_id", None)
    filled_lower = 0
    for index in range(len(vocabulary)):
        if index == pad:
            continue
        if index in exact:
            embeddings.weight[index] = exact[index]
        elif index in lowered:
            embeddings.weight[index] = lowered[index]
            filled_lower += 1
    embeddings.weight.requires_grad_(not freeze)
    return VectorStats(len(vocabulary), len(exact) - int(pad in exact), filled_lower, file_words)
