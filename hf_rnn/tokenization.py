"""A word-level fast tokenizer built with the `tokenizers` library.

Recurrent taggers and language models read whole words. The result is a `PreTrainedTokenizerFast` (an
`RnnTokenizerFast`, which adds `char_ids`, when a character vocabulary is asked for), so it saves with
`save_pretrained`, loads with `AutoTokenizer`, and supports `is_split_into_words=True` and `word_ids()`.
"""

from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from .tokenization_rnn import RnnTokenizerFast

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"


def build_word_tokenizer(
    sentences: Iterable[Sequence[str]],
    min_frequency: int = 1,
    max_vocab_size: int | None = None,
    lowercase: bool = False,
    normalize_digits: bool = False,
    special_tokens: Sequence[str] = (PAD, UNK, EOS),
    char_min_frequency: int | None = None,
    max_word_length: int = 24,
) -> PreTrainedTokenizerFast:
    """Vocabulary from pre-split `sentences`: words seen `min_frequency` times or more, most frequent first.

    `<pad>` gets id 0 (the models' default `pad_token_id`), `<unk>` id 1. With `normalize_digits` every digit becomes
    `0`, so numbers share a few entries. With `char_min_frequency` the result is an [`RnnTokenizerFast`] whose
    character vocabulary holds the raw (unnormalised) characters seen that often, for `config.char_encoder`.
    """
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    if list(special_tokens[:2]) != [PAD, UNK]:
        raise ValueError(f"special_tokens must start with {PAD!r}, {UNK!r}, got {list(special_tokens)}")
    steps = ([normalizers.Lowercase()] if lowercase else []) + (
        [normalizers.Replace(Regex(r"\d"), "0")] if normalize_digits else []
    )
    normalizer = normalizers.Sequence(steps) if steps else None
    sentences = [list(sentence) for sentence in sentences]  # read twice when characters are counted too
    counts = Counter(
        normalizer.normalize_str(word) if normalizer else word for sentence in sentences for word in sentence
    )
    words = [w for w, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= min_frequency]
    words = [w for w in words if w not in special_tokens]
    if max_vocab_size is not None:
        words = words[: max(0, max_vocab_size - len(special_tokens))]
    vocab = {token: index for index, token in enumerate([*special_tokens, *words])}

    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK))
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    kwargs = dict(tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK, eos_token=EOS if EOS in vocab else None)
    if char_min_frequency is None:
        return PreTrainedTokenizerFast(**kwargs, model_input_names=["input_ids", "attention_mask"])
    if char_min_frequency < 1:
        raise ValueError(f"char_min_frequency must be None or >= 1, got {char_min_frequency}")
    chars = Counter(c for sentence in sentences for word in sentence for c in word)
    char_vocab = [c for c, n in sorted(chars.items(), key=lambda item: (-item[1], item[0])) if n >= char_min_frequency]
    tokenizer = RnnTokenizerFast(**kwargs, char_vocab=char_vocab, max_word_length=max_word_length)
    tokenizer.char_vocab  # noqa: B018  (validates the character settings now rather than at first use)
    return tokenizer
