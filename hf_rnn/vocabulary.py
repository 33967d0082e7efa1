"""Vocabularies built from data, and the fast tokenizers over them (`tokenizers` library): words, and characters.

Recurrent taggers and language models read whole words. The result is a `PreTrainedTokenizerFast` (an
`RnnTokenizerFast`, which adds `char_ids`, when a character vocabulary is asked for), so it saves with
`save_pretrained`, loads with `AutoTokenizer`, and supports `is_split_into_words=True` and `word_ids()`. The splitting
and decoding below, and the `<eos>` a language-model tokenizer puts before each text (see `build_word_tokenizer`),
live in tokenizer.json, so they travel with a checkpoint and work without hf_rnn.

Splitting raw text, the way CoNLL, UD and the Penn Treebank tokenize their words:

- whitespace (any Unicode whitespace, no-break spaces too) separates words;
- punctuation and symbols at a word's start or end become tokens of their own, one per run of a repeated character:
  `"(Paris)."` -> `(`, `Paris`, `)`, `.`; `"wait..."` -> `wait`, `...`; `"$10"` -> `$`, `10`. Inside a word they stay:
  `U.S.-led`, `3.5`, `e-mail`, `O'Neill`;
- the English clitics n't 's 're 've 'm 'll 'd end a word as tokens of their own (PTB and UD EWT): `"don't"` -> `do`,
  `n't`; `"John's"` -> `John`, `'s`; standing alone (`"John 's"`) they are one token;
- a vocabulary word those rules would split stays whole: with `U.S.` and `Mr.` in the training words, `"Mr. Smith
  left the U.S."` keeps both;
- special tokens (`<eos>`, `<unk>`...) are matched first, wherever they stand.

Punctuation is split off only in a text that contains whitespace. The tokenizer sees each word of
`is_split_into_words=True` input on its own, so a pre-split word (`U.S.`, `Paris.`) is never split further and every
given word is one token with its tag; the price is that a one-word raw text (`"Paris."`) is not split either. Offsets
always point into the raw text. Tokenizers saved before this splitting (whitespace only, no decoder) keep their own
tokenizer.json and behave as they did.

Decoding puts one space between tokens, except before closing punctuation (`. , ; : ! ? ) ] } %` and closing quotes)
and the clitics, and after opening brackets, opening quotes and currency signs, so `decode(encode(text))` gives back
text written with single spaces and standard punctuation (`"Jean went to Paris."`, `"I don't know (really)!"`).
Straight quotes `"` and `'` cannot tell opening from closing and keep a space on both sides.

`build_char_tokenizer` makes the other kind, for character language models: every character is a token.

`model_max_length` stays transformers' "no limit" (`int(1e30)`): a recurrent network reads any length, and a finite
value would make `truncation=True`, which the token-classification pipeline passes, cut long sentences.
"""

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel, WordPiece
from transformers import PreTrainedTokenizerFast

from .tokenization_rnn import RnnTokenizerFast

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"

# Oniguruma patterns (the `tokenizers` regex engine). Every repetition is bounded and runs are atomic, so that the work
# per position is bounded: splitting stays linear, and no input makes the engine give up (a panic).
_LONGEST = 64  # characters of a word, or of a run of punctuation, the rules look across
_PUNCT = r"[\p{P}\p{S}]"
_LEAD = rf"(?<=(?:\A|\s){_PUNCT}{{1,16}})"  # what precedes it back to the word's start is punctuation
_BORDER = r"(?<![^\s\p{P}\p{S}])"  # after whitespace or punctuation: where a word, or what is left of it, starts
_END = rf"(?={_PUNCT}{{0,{_LONGEST}}}(?!\S))"  # what follows it up to the word's end is punctuation
_SPACED = rf"(?:(?=\S{{0,{_LONGEST}}}\s)|(?<=\s\S{{0,{_LONGEST}}}))"  # the text holds whitespace: not a pre-split word
_CLITIC = r"(?i:n['’]t|['’](?:s|re|ve|m|ll|d))"
_CLOSING = r"[.,;:!?)\]}%…»”’]+"  # tokens decoded without a space before them
_OPENING = r"[(\[{«“‘$£€¥#]"  # tokens decoded without a space after them


def _splitter(keep: Iterable[str]) -> pre_tokenizers.PreTokenizer:
    """The pre-tokenizer of the module docstring; the words in `keep` are not split."""
    rules = [
        rf"(?<![^\s\p{{L}}\p{{N}}]){_CLITIC}{_END}",
        rf"(?<lead>{_PUNCT})(?>\k<lead>{{0,{_LONGEST}}}){_LEAD}",
        rf"(?<trail>{_PUNCT})(?>\k<trail>{{0,{_LONGEST}}}){_END}",
    ]
    if keep := _one_of(keep):
        rules.insert(0, rf"{_BORDER}{keep}{_END}")
    split = pre_tokenizers.Split(Regex(rf"(?:{'|'.join(rules)}){_SPACED}"), behavior="isolated")
    return pre_tokenizers.Sequence([split, pre_tokenizers.WhitespaceSplit()])


def _one_of(words: Iterable[str]) -> str:
    """A pattern matching any of `words`: their prefix tree, which the regex engine walks once instead of trying word
    after word, with the longer words first at each branch, so that a word is not cut at a shorter one it starts with.
    """
    tree: dict = {}
    for word in words:
        node = tree
        for c in word:
            node = node.setdefault(c, {})
        node[""] = {}

    def pattern(node: dict) -> str:
        branches = [re.escape(c) + pattern(child) for c, child in sorted(node.items()) if c]
        branches += [""] if "" in node else []
        return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"

    return pattern(tree) if tree else ""


_RULES = _splitter(())  # the rules alone, before a vocabulary keeps any of its words whole


def split_words(text: str) -> list[tuple[str, tuple[int, int]]]:
    """`text`'s words, each with its character span `(start, end)`, as a tokenizer built here splits a raw text before
    its vocabulary is known (the rules above): how `hf_rnn.data` cuts a text whose entities are character spans, so
    that the words trained on are the words a pipeline sees."""
    return _RULES.pre_tokenize_str(text)


def _decoder(marker: str | None) -> decoders.Decoder:
    """Spaces back between words (see the module docstring). Decoding drops the space before the first word, or,
    with a sentence `marker` (a language model's), only the marker at the start of the text and the space after it:
    the new words of a generation then decode with the space that separates them from the prompt."""
    start = rf"\A {re.escape(marker)} ?" if marker else r"\A "
    return decoders.Sequence(
        [
            decoders.Replace(Regex(rf"\A(?!(?:{_CLOSING}|{_CLITIC})\z)"), " "),
            decoders.Fuse(),
            decoders.Replace(Regex(rf"(?<=(?:\A|\s){_OPENING}) "), ""),
            decoders.Replace(Regex(start), ""),
        ]
    )


def build_word_tokenizer(
    sentences: Iterable[Sequence[str] | str],
    min_frequency: int = 1,
    max_vocab_size: int | None = None,
    lowercase: bool = False,
    normalize_digits: bool = False,
    special_tokens: Sequence[str] = (PAD, UNK, EOS),
    char_min_frequency: int | None = None,
    max_word_length: int = 24,
    language_model: bool = False,
    lm_char_vocab: Sequence[str] | None = None,
) -> PreTrainedTokenizerFast:
    """Vocabulary from `sentences`: tokens seen `min_frequency` times or more, most frequent first.

    A sentence is a list of pre-split words (as `is_split_into_words=True` encodes them) or a raw text (as a plain
    call encodes it); the vocabulary counts the tokens the tokenizer will then produce, so a word holding whitespace
    (a CoNLL-U FORM "New York") counts as its pieces. `<pad>` gets id 0 (the models' default `pad_token_id`), `<unk>`
    id 1. With `normalize_digits` every digit becomes `0`, so numbers share a few entries. With `char_min_frequency`
    the result is an [`RnnTokenizerFast`] whose character vocabulary holds the raw (unnormalised) characters seen that
    often, for `config.char_encoder`. With `lm_char_vocab` (a character LM tokenizer's tokens in id order,
    `lm_char_vocab(lm_tokenizer)`) it is an [`RnnTokenizerFast`] that also writes each word in the LM's ids, for the
    contextual string embeddings of `config.forward_lm`/`backward_lm`.

    With `language_model`, every encoded text starts with `<eos>` (also the `bos_token`): a word LM trained on an
    `<eos>`-separated stream, as PTB is, sees it before each sentence, and a prompt then starts a sentence rather than
    ending one. Nothing is appended, so generation continues the prompt. Decoding keeps the space before the first word
    of ids that do not start with `<eos>`, so transformers' text-generation pipeline, which appends the decoded new
    words to the prompt, keeps them apart.
    """
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    if list(special_tokens[:2]) != [PAD, UNK]:
        raise ValueError(f"special_tokens must start with {PAD!r}, {UNK!r}, got {list(special_tokens)}")
    if language_model and EOS not in special_tokens:
        raise ValueError(f"language_model needs {EOS!r} in special_tokens, got {list(special_tokens)}")
    steps = ([normalizers.Lowercase()] if lowercase else []) + (
        [normalizers.Replace(Regex(r"\d"), "0")] if normalize_digits else []
    )
    normalizer = normalizers.Sequence(steps) if steps else None
    sentences = [[sentence] if isinstance(sentence, str) else list(sentence) for sentence in sentences]
    split = _RULES
    specials = re.compile("|".join(map(re.escape, special_tokens)))

    def pieces(text: str) -> Iterable[str]:
        """`text`'s tokens as the tokenizer makes them: special tokens out first, then normalised and split."""
        for part in specials.split(text):
            yield from (
                piece for piece, _ in split.pre_tokenize_str(normalizer.normalize_str(part) if normalizer else part)
            )

    counts = Counter(piece for sentence in sentences for text in sentence for piece in pieces(text))
    words = [w for w, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= min_frequency]
    words = [w for w in words if w not in special_tokens]
    if max_vocab_size is not None:
        words = words[: max(0, max_vocab_size - len(special_tokens))]
    vocab = {token: index for index, token in enumerate([*special_tokens, *words])}

    tokenizer = Tokenizer(_whole_words(vocab))
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = _splitter(
        w for w in words if len(w) <= _LONGEST and len(split.pre_tokenize_str(w + " ")) > 1
    )
    tokenizer.decoder = _decoder(EOS if language_model else None)
    tokenizer.add_special_tokens(list(special_tokens))  # all of them matched whole in raw text, not split
    kwargs = dict(tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK, eos_token=EOS if EOS in vocab else None)
    if language_model:  # in tokenizer.json, which transformers 5 trusts over an `add_bos_token` it does not save
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{EOS} $A", pair=f"{EOS} $A {EOS}:1 $B:1", special_tokens=[(EOS, vocab[EOS])]
        )
        kwargs.update(bos_token=EOS)
    names = ["input_ids", "attention_mask"]
    if char_min_frequency is None and lm_char_vocab is None:
        return PreTrainedTokenizerFast(**kwargs, model_input_names=names)
    if char_min_frequency is not None:
        if char_min_frequency < 1:
            raise ValueError(f"char_min_frequency must be None or >= 1, got {char_min_frequency}")
        chars = Counter(c for sentence in sentences for text in sentence for c in text if not c.isspace())
        counted = sorted(chars.items(), key=lambda item: (-item[1], item[0]))
        kwargs.update(char_vocab=[c for c, n in counted if n >= char_min_frequency], max_word_length=max_word_length)
        names.append("char_ids")
    if lm_char_vocab is not None:
        kwargs.update(lm_char_vocab=list(lm_char_vocab))
        names += ["lm_char_ids", "lm_char_lengths"]
    tokenizer = RnnTokenizerFast(**kwargs, model_input_names=names)
    if char_min_frequency is not None:
        tokenizer.char_vocab  # noqa: B018  (validates the character settings now rather than at first use)
    tokenizer.lm_spelling  # noqa: B018  (and the LM's vocabulary)
    return tokenizer


def _whole_words(vocab: dict[str, int]) -> WordPiece:
    """A word-level model that says so: a word is its id or `<unk>`, as with `WordLevel`, but the model has a
    `continuing_subword_prefix`, which transformers' token-classification pipeline reads to learn that every token is
    a whole word. (Without one it guesses from the spacing that "." continues "Paris" and merges the two under
    `aggregation_strategy` first/average/max.) No vocabulary entry starts with the prefix, so no word is ever split
    into pieces, and a word longer than every entry is `<unk>` at once."""
    prefix = "\ue000"  # a private-use character
    while any(token.startswith(prefix) for token in vocab):
        prefix += "\ue000"
    longest = max(len(token) for token in vocab)
    return WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=prefix, max_input_chars_per_word=longest)


def lm_char_vocab(tokenizer: PreTrainedTokenizerFast) -> list[str]:
    """A character LM tokenizer's tokens in id order: the `lm_char_vocab` of the tagger's tokenizer."""
    vocab = tokenizer.get_vocab()
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"the LM tokenizer's ids are not 0 .. {len(vocab) - 1}: not a character tokenizer?")
    return sorted(vocab, key=vocab.get)


def build_char_tokenizer(texts: Iterable[str], min_frequency: int = 1) -> PreTrainedTokenizerFast:
    """A character tokenizer: the characters of `texts` seen `min_frequency` times or more (spaces, newlines and TABs
    too), most frequent first after `<pad>` (id 0) and `<unk>` (id 1), which any other character encodes as.

    Nothing is added around a text and a text's `<pad>` or `<unk>` is read as its five characters
    (`split_special_tokens`), so id i is the text's character i: `offset_mapping` is (i, i + 1) and `decode` gives
    the text back (an unknown character as `<unk>`). It is all in tokenizer.json and tokenizer_config.json, so
    `AutoTokenizer` reloads it without hf_rnn.
    """
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    counts = Counter(c for text in texts for c in text)
    chars = [c for c, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= min_frequency]
    if not chars:
        raise ValueError(f"no character is seen {min_frequency} times or more in the texts")
    tokenizer = Tokenizer(WordLevel({token: i for i, token in enumerate([PAD, UNK, *chars])}, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m)."), behavior="isolated")  # (?m): `.` matches \n too
    tokenizer.decoder = decoders.Fuse()  # characters joined as they are, with no space between
    tokenizer.add_special_tokens([PAD, UNK])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        unk_token=UNK,
        split_special_tokens=True,
        model_input_names=["input_ids", "attention_mask"],
    )


def join_words(words: Sequence[str], separator: str = " ") -> tuple[str, list[tuple[int, int]]]:
    """The text of pre-split `words` joined by `separator`, and each word's character span (start, end) in it: with a
    `build_char_tokenizer` tokenizer, `input_ids[start:end]` are the word's characters. A backward (`reverse`) model
    reads `text[::-1]`, where the word is `len(text) - end` to `len(text) - start`."""
    spans, start = [], 0
    for word in words:
        spans.append((start, start + len(word)))
        start += len(word) + len(separator)
    return separator.join(words), spans
