"""A word-level fast tokenizer that also spells each word out as character ids, for character-level word features.

Taggers with `config.char_encoder` read every word twice: its (normalised) word id and its raw characters, where
case, digits and affixes survive normalisation and unknown words still carry information (Lample et al. 2016; Ma &
Hovy 2016). The characters come from the text itself (through each token's offsets), so `<unk>` words keep them.

This file travels inside checkpoints (`trust_remote_code=True`), so it imports only transformers.
"""

from transformers import PreTrainedTokenizerFast

CHAR_PAD_ID, CHAR_UNK_ID = 0, 1  # character ids of padding and of characters not in `char_vocab`


class RnnTokenizerFast(PreTrainedTokenizerFast):
    r"""
    A `PreTrainedTokenizerFast` whose outputs add `char_ids`: for every token, `max_word_length` character ids
    (right-padded with 0; 1 for a character outside `char_vocab`; all 0 for special and padding tokens).

    Args:
        char_vocab (`list[str]`): the known characters; character `char_vocab[i]` gets id `i + 2`.
        max_word_length (`int`, defaults to 24):
            Characters kept per word. A longer word keeps its first and last `max_word_length // 2` characters, so
            prefixes and suffixes both survive.
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
        char_ids = []
        for row, encoding in enumerate(encoded.encodings):
            sources = samples[overflow[row] if overflow is not None else row]
            spelled = []
            for sequence, word, (start, end) in zip(encoding.sequence_ids, encoding.word_ids, encoding.offsets):
                if sequence is None:  # special or padding token
                    spelled.append([CHAR_PAD_ID] * self.max_word_length)
                else:
                    source = sources[sequence]
                    spelled.append(self.spell((source[word] if is_split_into_words else source)[start:end]))
            char_ids.append(spelled)
        encoded["char_ids"] = char_ids[0] if single else char_ids
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
        """Pad `char_ids` with all-zero words wherever the parent pads `input_ids`."""
        char_ids = encoded_inputs.pop("char_ids", None)
        padded = super()._pad(encoded_inputs, max_length=max_length, padding_side=padding_side, **kwargs)
        if char_ids is not None:
            char_ids = list(char_ids)
            missing = len(padded[self.model_input_names[0]]) - len(char_ids)
            blank = [[CHAR_PAD_ID] * self.max_word_length for _ in range(missing)]
            left = (padding_side or self.padding_side) == "left"
            padded["char_ids"] = blank + char_ids if left else char_ids + blank
        return padded


__all__ = ["RnnTokenizerFast"]
