"""A word-level fast tokenizer that also spells each word out as character ids, for character-level word features.

Taggers with `config.char_encoder` read every word twice: its (normalised) word id and its raw characters, where
case, digits and affixes survive normalisation and unknown words still carry information (Lample et al. 2016; Ma &
Hovy 2016). The characters come from the text itself (through each token's offsets), so `<unk>` words keep them.

With `lm_char_vocab` it also writes the sentence in a character language model's ids (`lm_char_ids`, one stream per
sentence, and `lm_char_lengths`, each token's share of it), for the contextual string embeddings of
`config.forward_lm`/`backward_lm`.

This file travels inside checkpoints (`trust_remote_code=True`), so it imports only transformers: no sibling, and no
torch, so a checkpoint's tokenizer loads (and `LmSpelling` writes the LMs' input) where torch is not installed.
"""

from collections.abc import Mapping

from transformers import BatchEncoding, PreTrainedTokenizerFast
from transformers.utils import to_py_obj

CHAR_PAD_ID, CHAR_UNK_ID = 0, 1  # character ids of padding and of characters not in `char_vocab`
LM_SPECIALS = ("<pad>", "<unk>", " ", "\n")  # what the spelling needs in an LM's vocabulary


class LmSpelling:
    """How `RnnTokenizerFast` writes a sentence for the LMs (`lm_char_vocab`: the LM tokenizer's tokens in id order,
    as `build_char_tokenizer` makes them): one flat character stream per sentence, `lm_char_ids`, holding every token
    as its characters' ids followed by the id of a space, the sentence's first word preceded by a newline's (the line
    break the LM saw before each line of its corpus), characters the LM never saw as `<unk>`; and `lm_char_lengths`,
    how many of the stream's ids each token wrote (0 for tokens without characters, e.g. special ones).

    Two 2-D inputs, padded with the LM's `<pad>` (id 0 in `build_char_tokenizer`'s vocabularies) and 0: any collator,
    transformers' pipeline batching included, pads them along their last axis, and the model reads them whatever
    side the padding is on. Words are never cut."""

    def __init__(self, lm_char_vocab: list[str]):
        vocab = lm_char_vocab
        if (
            not isinstance(vocab, list)
            or any(not isinstance(t, str) or not t for t in vocab)
            or len(set(vocab)) != len(vocab)
        ):
            raise ValueError("RnnTokenizerFast.lm_char_vocab must list an LM's distinct tokens in id order")
        missing = [token for token in LM_SPECIALS if token not in vocab]
        if missing:
            raise ValueError(f"RnnTokenizerFast.lm_char_vocab lacks {missing}: is it a character LM's vocabulary?")
        self.to_id = {token: index for index, token in enumerate(vocab)}
        self.pad_id, self.unk_id, self.space_id, self.newline_id = (self.to_id[token] for token in LM_SPECIALS)

    def spell(self, tokens: list[str | None]) -> tuple[list[int], list[int]]:
        """One row's tokens (None: a token without characters) -> (its stream `lm_char_ids`, `lm_char_lengths`)."""
        stream, lengths = [], []
        for token in tokens:
            if token is None:
                lengths.append(0)
                continue
            ids = [self.newline_id] * (not stream) + [self.to_id.get(c, self.unk_id) for c in token] + [self.space_id]
            stream += ids
            lengths.append(len(ids))
        return stream, lengths

    def pad(self, streams: list[list[int]]) -> list[list[int]]:
        """Every row's stream right-padded with `<pad>` to the longest (at least 1 id, for tensors)."""
        longest = max(map(len, streams), default=1) or 1
        return [stream + [self.pad_id] * (longest - len(stream)) for stream in streams]


class RnnTokenizerFast(PreTrainedTokenizerFast):
    r"""
    A `PreTrainedTokenizerFast` whose outputs add `char_ids`: for every token, `max_word_length` character ids
    (right-padded with 0; 1 for a character outside `char_vocab`; all 0 for special and padding tokens); and with
    `lm_char_vocab`, `lm_char_ids` and `lm_char_lengths`: the sentence in a character LM's ids and each token's share
    of them, as `LmSpelling` writes them.

    Args:
        char_vocab (`list[str]`, *optional*): the known characters; character `char_vocab[i]` gets id `i + 2`.
        max_word_length (`int`, defaults to 24):
            Characters kept per word. A longer word keeps its first and last `max_word_length // 2` characters, so
            prefixes and suffixes both survive.
        lm_char_vocab (`list[str]`, *optional*): the character LMs' tokens in id order (their tokenizer's vocabulary).
        At least one of `char_vocab` and `lm_char_vocab` is given; pass `model_input_names` naming the outputs.
    """

    model_input_names = ["input_ids", "attention_mask", "char_ids"]

    # No `__init__` of its own: transformers 5 rebuilds such subclasses from a vocabulary instead of loading
    # tokenizer.json. The settings travel as init kwargs (saved in tokenizer_config.json) and are read from there.

    @property
    def char_vocab(self) -> list[str]:
        return self._char_table()[0]

    @property
    def max_word_length(self) -> int:
        return self._char_table()[1]

    def _char_table(self) -> tuple[list[str], int, dict[str, int]]:
        """(char_vocab, max_word_length, character -> id), validated on first use."""
        if "_char_table_cache" in self.__dict__:
            return self.__dict__["_char_table_cache"]
        char_vocab, max_word_length = self.init_kwargs.get("char_vocab"), self.init_kwargs.get("max_word_length", 24)
        if not char_vocab or not isinstance(char_vocab, list):
            raise ValueError(f"RnnTokenizerFast.char_vocab must list at least one character, got {char_vocab!r}")
        if any(not isinstance(c, str) or len(c) != 1 for c in char_vocab) or len(set(char_vocab)) != len(char_vocab):
            raise ValueError("RnnTokenizerFast.char_vocab must hold distinct single characters")
        if isinstance(max_word_length, bool) or not isinstance(max_word_length, int) or max_word_length < 2:
            raise ValueError(f"RnnTokenizerFast.max_word_length must be an integer >= 2, got {max_word_length!r}")
        table = char_vocab, max_word_length, {c: i + 2 for i, c in enumerate(char_vocab)}
        self.__dict__["_char_table_cache"] = table
        return table

    @property
    def lm_spelling(self) -> LmSpelling | None:
        if "_lm_spelling_cache" not in self.__dict__:
            vocab = self.init_kwargs.get("lm_char_vocab")
            self.__dict__["_lm_spelling_cache"] = None if vocab is None else LmSpelling(vocab)
        return self.__dict__["_lm_spelling_cache"]

    @property
    def char_vocab_size(self) -> int:
        """The model's `config.char_vocab_size`: the characters plus padding and unknown."""
        return len(self.char_vocab) + 2

    def spell(self, word: str) -> list[int]:
        """One word -> exactly `max_word_length` character ids."""
        _, keep, to_id = self._char_table()
        if len(word) > keep:
            word = word[: keep // 2] + word[len(word) - (keep - keep // 2) :]
        ids = [to_id.get(c, CHAR_UNK_ID) for c in word]
        return ids + [CHAR_PAD_ID] * (keep - len(ids))

    def _encode_plus(self, text, text_pair=None, is_split_into_words=False, return_tensors=None, **kwargs):
        encoded = super()._encode_plus(
            text, text_pair, is_split_into_words=is_split_into_words, return_tensors=None, **kwargs
        )
        samples, batched = self._samples(text, text_pair, is_split_into_words)
        single = not batched and not kwargs.get("return_overflowing_tokens")  # the parent unbatched its outputs
        overflow = encoded.get("overflow_to_sample_mapping")
        rows = []  # each token's text, None for special and padding tokens
        for row, encoding in enumerate(encoded.encodings):
            sources = samples[overflow[row] if overflow is not None else row]
            rows.append(
                [
                    None
                    if sequence is None
                    else (sources[sequence][word] if is_split_into_words else sources[sequence])[start:end]
                    for sequence, word, (start, end) in zip(encoding.sequence_ids, encoding.word_ids, encoding.offsets)
                ]
            )
        outputs = {}
        if self.init_kwargs.get("char_vocab") is not None or self.lm_spelling is None:
            blank = [CHAR_PAD_ID] * self.max_word_length
            outputs["char_ids"] = [[blank if t is None else self.spell(t) for t in tokens] for tokens in rows]
        if self.lm_spelling is not None:
            spelled = [self.lm_spelling.spell(tokens) for tokens in rows]
            streams = [stream for stream, _ in spelled]  # each as long as its sentence; tensors need one length
            outputs["lm_char_ids"] = streams if return_tensors is None else self.lm_spelling.pad(streams)
            outputs["lm_char_lengths"] = [lengths for _, lengths in spelled]
        for name, values in outputs.items():
            encoded[name] = values[0] if single else values
        if return_tensors is not None:
            encoded.convert_to_tensors(tensor_type=return_tensors, prepend_batch_axis=single)
        return encoded

    @staticmethod
    def _samples(text, text_pair, is_split_into_words: bool) -> tuple[list[tuple], bool]:
        """The inputs as (first, second) sequences, one per sample, as `_encode_plus` batches them; and whether the
        input was a batch."""
        if is_split_into_words:
            batched = isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))
        else:
            batched = isinstance(text, (list, tuple))
        if not batched:
            return [(text, text_pair)], False
        return (list(zip(text, text_pair)) if text_pair is not None else [(t,) for t in text]), True

    def _pad(self, encoded_inputs, max_length=None, padding_side=None, **kwargs):
        """Pad `char_ids` with all-zero words and `lm_char_lengths` with zeros wherever the parent pads `input_ids`
        (`lm_char_ids`, a stream of its own, is padded by `pad`)."""
        per_token = {name: encoded_inputs.pop(name, None) for name in ("char_ids", "lm_char_lengths")}
        padded = super()._pad(encoded_inputs, max_length=max_length, padding_side=padding_side, **kwargs)
        for name, values in per_token.items():
            if values is not None:
                values = list(values)
                missing = len(padded[self.model_input_names[0]]) - len(values)
                blank = [[CHAR_PAD_ID] * self.max_word_length if name == "char_ids" else 0 for _ in range(missing)]
                left = (padding_side or self.padding_side) == "left"
                padded[name] = blank + values if left else values + blank
        return padded

    def pad(self, encoded_inputs, *args, return_tensors=None, **kwargs):
        """The parent's (what data collators call), with the `lm_char_ids` streams padded to the batch's longest."""
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0]}
        if "lm_char_ids" not in encoded_inputs or self.lm_spelling is None:
            return super().pad(encoded_inputs, *args, return_tensors=return_tensors, **kwargs)
        main = self.model_input_names[0]
        sample = encoded_inputs[main]
        sample = sample[0] if isinstance(sample, (list, tuple)) and sample else sample
        if return_tensors is None and not isinstance(sample, (int, list, tuple)):  # tensors in, tensors out
            return_tensors = "np" if type(sample).__module__ == "numpy" else "pt"
        encoded_inputs = {key: to_py_obj(value) for key, value in encoded_inputs.items()}
        padded = super().pad(encoded_inputs, *args, return_tensors=None, **kwargs)
        batched = bool(padded[main]) and isinstance(padded[main][0], list)
        streams = self.lm_spelling.pad(padded["lm_char_ids"] if batched else [padded["lm_char_ids"]])
        padded["lm_char_ids"] = streams if batched else streams[0]
        return BatchEncoding(padded.data, tensor_type=return_tensors)


__all__ = ["LmSpelling", "RnnTokenizerFast"]
