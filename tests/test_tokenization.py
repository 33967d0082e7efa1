"""The word tokenizer: raw text split like CoNLL/UD with offsets, pre-split words kept whole, a vocabulary of the
tokens encoding makes, decoding with spaces, and the language-model settings, through transformers' own pipelines."""

import pytest
import torch
from conftest import tiny_config
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import AutoTokenizer, PreTrainedTokenizerFast, pipeline

import hf_rnn
from hf_rnn.vocabulary import EOS, PAD, UNK, build_char_tokenizer, build_word_tokenizer, join_words

# pre-split as in a CoNLL / UD EWT file
SENTENCES = [
    ["Jean", "went", "to", "Paris", "."],
    ["I", "do", "n't", "know", ",", "(", "really", ")", "!"],
    ["John", "'s", "car", "costs", "$", "10", "in", "the", "U.S.", "-", "wait", "..."],
    ["Mr.", "Smith", "left", "U.S.-led", "talks", "e.g.", ","],
]
RAW = {
    "Jean went to Paris.": ["Jean", "went", "to", "Paris", "."],
    "I don't know, (really)!": ["I", "do", "n't", "know", ",", "(", "really", ")", "!"],
    "John's car costs $10 - wait...": ["John", "'s", "car", "costs", "$", "10", "-", "wait", "..."],
    "Mr. Smith left U.S.-led talks, e.g., in the U.S.": ["Mr.", "Smith", "left", "U.S.-led", "talks", ","]
    + ["e.g.", ",", "in", "the", "U.S."],
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(SENTENCES)


def test_raw_text_is_split_like_the_training_files_with_offsets_into_it(tokenizer):
    """Punctuation and clitics come off words; vocabulary words such as `U.S.` and `Mr.` stay whole."""
    for text, expected in RAW.items():
        encoding = tokenizer(text, return_offsets_mapping=True)
        assert encoding.tokens() == expected
        assert [text[start:end] for start, end in encoding["offset_mapping"]] == expected
        assert tokenizer.unk_token_id not in encoding["input_ids"]


def test_tagger_pipeline_tags_the_word_and_its_full_stop_apart(tokenizer):
    model = hf_rnn.RnnForTokenClassification(tiny_config(vocab_size=len(tokenizer), bidirectional=True)).eval()
    tagger = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer)
    sentence = "Jean went to Paris."
    entities = tagger(sentence, ignore_labels=[])
    assert [e["word"] for e in entities] == ["Jean", "went", "to", "Paris", "."]
    assert all(sentence[e["start"] : e["end"]] == e["word"] for e in entities)


def test_pre_split_words_are_never_split_further(tokenizer):
    """The tokenizer sees each given word alone; one without whitespace is one token with one word id, and its tag."""
    words = ["U.S.", "Paris.", "don't", "(", "e.g.,"]
    encoding = tokenizer([words], is_split_into_words=True, return_offsets_mapping=True)
    assert encoding.word_ids(0) == [0, 1, 2, 3, 4]
    assert encoding["offset_mapping"][0] == [(0, len(word)) for word in words]
    assert tokenizer("Paris.", return_offsets_mapping=True)["offset_mapping"] == [(0, 6)]  # one raw word: not split
    model = hf_rnn.RnnForTokenClassification(tiny_config(vocab_size=len(tokenizer), bidirectional=True)).eval()
    tagger = pipeline("rnn-token-classification", model=model, tokenizer=tokenizer)
    assert [e["word"] for e in tagger([words], is_split_into_words=True, ignore_labels=[])[0]] == words


@pytest.mark.parametrize("text", ["." * 50_000, "x " + "-" * 50_000, "(" * 50_000 + " x", "我爱北京。" * 20_000])
def test_long_runs_of_punctuation_never_stall_the_splitting(tokenizer, text):
    """The splitting regex looks a bounded way around each character: no input makes the regex engine give up."""
    assert tokenizer(text)["input_ids"]


def test_the_vocabulary_holds_the_tokens_that_encoding_makes():
    """A pre-split word with whitespace inside counts as its pieces; a raw text counts as it is split."""
    split = build_word_tokenizer([["New York", "has", "10\u00a0000", "cabs"]], char_min_frequency=1)
    vocab = split.get_vocab()
    assert {"New", "York", "10", "000"} <= set(vocab) and not {"New York", "10\u00a0000"} & set(vocab)
    encoding = split([["New York", "has", "cabs"]], is_split_into_words=True)
    assert encoding.word_ids(0) == [0, 0, 1, 2] and split.unk_token_id not in encoding["input_ids"][0]
    assert " " not in split.char_vocab and "\u00a0" not in split.char_vocab  # no token spells whitespace

    raw = build_word_tokenizer(["I loved it.", "Loved it, <eos> really!"])
    assert set(raw.get_vocab()) == {PAD, UNK, EOS, "I", "loved", "Loved", "it", ".", ",", "really", "!"}
    assert raw.unk_token_id not in raw("Loved it. I loved it, really!")["input_ids"]


def test_a_tokenizer_saved_before_keeps_its_whitespace_splitting(tmp_path):
    """tokenizer.json as build_word_tokenizer wrote it before punctuation splitting: no pre-tokenizer rules, no
    decoder."""
    backend = Tokenizer(WordLevel({PAD: 0, UNK: 1, EOS: 2, "Jean": 3, "Paris.": 4}, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, unk_token=UNK, eos_token=EOS).save_pretrained(
        tmp_path
    )
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    encoding = loaded("Jean  Paris. Paris")
    assert encoding.tokens() == ["Jean", "Paris.", UNK]
    assert loaded.decode(encoding["input_ids"]) == "Jean Paris. <unk>"


@pytest.mark.parametrize("char_min_frequency", [None, 1])
def test_decode_puts_the_spaces_back_and_survives_saving(char_min_frequency, tmp_path):
    texts = [*RAW, "The old teacher likes that heavy quiet"]
    tokenizer = build_word_tokenizer(texts, char_min_frequency=char_min_frequency)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is type(tokenizer)
    for text in texts:
        for tok in (tokenizer, loaded):
            ids = tok(text)["input_ids"]
            assert tok.unk_token_id not in ids and tok.decode(ids) == text
    assert loaded.convert_tokens_to_string(["Marie", "Curie"]) == "Marie Curie"  # the pipelines' entity words
    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).decode(
        tokenizer("Jean went to Paris.")["input_ids"]
    ) == ("Jean went to Paris.")  # the decoder travels in tokenizer.json


LINES = [
    ["the", "old", "teacher", "likes", "that", "heavy", "quiet", "river", EOS],
    ["a", "dog", "runs", "near", "the", "river", EOS],
]


def test_text_generation_pipeline_keeps_the_new_words_apart():
    tokenizer = build_word_tokenizer(LINES, language_model=True)
    config = tiny_config(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id)
    model = hf_rnn.RnnForCausalLM(config).eval()
    generate = dict(max_new_tokens=5, do_sample=False, suppress_tokens=[0, 1, 2])  # words only, no early stop
    prompt = "the old teacher"
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**inputs, **generate)[0, inputs["input_ids"].shape[1] :]
    new_words = tokenizer.convert_ids_to_tokens(ids.tolist())
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    assert generator(prompt, **generate)[0]["generated_text"] == " ".join([prompt, *new_words])
    assert generator(prompt, return_full_text=False, **generate)[0]["generated_text"] == " " + " ".join(new_words)


def test_a_language_model_tokenizer_starts_every_text_with_eos(tmp_path):
    """`<eos>` before each text is the sentence boundary the LM saw in training; the text still round-trips."""
    tokenizer = build_word_tokenizer(LINES, language_model=True)
    tokenizer.save_pretrained(tmp_path)
    text = "the old teacher likes the river"
    for tok in (tokenizer, AutoTokenizer.from_pretrained(tmp_path)):
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.eos_token_id == tok.bos_token_id and tok.unk_token_id not in ids
        assert tok.decode(ids) == text
        assert tok.decode(ids, skip_special_tokens=True) == " " + text  # decoded as a continuation
        assert tok("")["input_ids"] == [tok.eos_token_id]  # an empty prompt starts a sentence
    assert build_word_tokenizer(LINES)(text)["input_ids"][0] != tokenizer.eos_token_id  # taggers get no <eos>
    with pytest.raises(ValueError, match="language_model"):
        build_word_tokenizer(LINES, special_tokens=(PAD, UNK), language_model=True)


def test_no_length_limit_truncates_a_long_sentence(tokenizer):
    """A recurrent network reads any length: `truncation=True` (the token-classification pipeline's) cuts nothing."""
    assert len(tokenizer(["Paris"] * 3000, is_split_into_words=True, truncation=True)["input_ids"]) == 3000


# ---- the character tokenizer (character language models) --------------------------------------------------------

CHARACTER_TEXTS = ["the cat sat\n", "  on\tthe mat.\n", "\n", "a <unk> and a <pad>\n"]


def test_a_character_tokenizer_gives_one_id_per_character_and_decodes_the_text_back(tmp_path):
    """Spaces, TABs and newlines are characters; so are the letters of `<unk>` and `<pad>` written in a text; an
    unseen character is `<unk>`. Saved and reloaded by AutoTokenizer, it encodes and decodes the same."""
    tokenizer = build_char_tokenizer(CHARACTER_TEXTS)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    vocab = tokenizer.get_vocab()
    assert vocab[PAD] == tokenizer.pad_token_id == 0 and vocab[UNK] == tokenizer.unk_token_id == 1
    assert set(vocab) == {PAD, UNK, *"".join(CHARACTER_TEXTS)}
    assert [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])][2] == " "  # the most frequent
    for text in [*CHARACTER_TEXTS, "".join(CHARACTER_TEXTS), " tact\n\n", "the <unk> mat"]:
        for current in (tokenizer, loaded):
            encoding = current(text, return_offsets_mapping=True)
            assert encoding.input_ids == [vocab[c] for c in text]
            assert encoding.offset_mapping == [(i, i + 1) for i in range(len(text))]
            assert current.decode(encoding.input_ids) == text
    assert loaded("zebra!").input_ids == [1, vocab["e"], 1, 1, vocab["a"], 1]
    assert loaded.decode(loaded("zebra").input_ids) == "<unk>e<unk><unk>a"
    batch = loaded(["ab", "a"], padding=True)
    assert batch.input_ids == [[vocab["a"], 1], [vocab["a"], 0]] and batch.attention_mask == [[1, 1], [1, 0]]


def test_a_character_tokenizer_keeps_the_frequent_characters():
    tokenizer = build_char_tokenizer(["aaab"], min_frequency=2)
    assert tokenizer("ab").input_ids == [2, 1]
    with pytest.raises(ValueError, match="min_frequency must be >= 1"):
        build_char_tokenizer(["a"], min_frequency=0)
    with pytest.raises(ValueError, match="no character is seen 2 times"):
        build_char_tokenizer(["ab"], min_frequency=2)


def test_joined_words_give_each_word_its_character_span():
    """What a contextual tagger reads: the sentence's characters, and where each word's are (forward and reversed)."""
    words = ["Jean", "went", "to", "Paris", "."]
    text, spans = join_words(words)
    assert text == "Jean went to Paris ."
    tokenizer = build_char_tokenizer([text])
    ids = tokenizer(text).input_ids
    for word, (start, end) in zip(words, spans):
        assert text[start:end] == word and tokenizer.decode(ids[start:end]) == word
        backward = text[::-1]
        assert backward[len(text) - end : len(text) - start] == word[::-1]
    assert join_words(["a", "b"], separator="") == ("ab", [(0, 1), (1, 2)])


@pytest.mark.parametrize("options", [{}, {"lowercase": True, "normalize_digits": True}])
def test_word_tokenizer_encodes_as_a_word_level_vocabulary_does(options):
    """The tokenizer's model declares whole words (for transformers' token-classification pipeline) but encodes as
    `WordLevel` over the same vocabulary: a word is its id or `<unk>`, never pieces, whatever its length."""
    import copy

    words = ["Paris", "Par", "is", "##is", "\ue000x", "New", "York-based", "1984", "naïve", "x" * 40]
    tokenizer = build_word_tokenizer([words, ["Paris.", "is", "New"]], **options)
    reference = copy.deepcopy(tokenizer._tokenizer)
    reference.model = WordLevel(tokenizer.get_vocab(), unk_token=UNK)
    texts = [
        "Paris Parisis isPar Par##is ##is \ue000x \ue000xis",
        "New York-based York based naïve naive 1984 2001 " + "x" * 40 + " " + "x" * 41,
        "PARIS, Paris. paris! ÉCOLE İstanbul <unk> <pad>",
    ]
    for text in texts:
        assert tokenizer(text)["input_ids"] == reference.encode(text).ids, text
    assert tokenizer._tokenizer.model.continuing_subword_prefix  # what the pipeline reads
