"""Character-level word features: the tokenizer's `char_ids`, the char-BiLSTM/CNN against direct computations,
padding invariance, and the whole path through saving, the pipeline and remote code."""

import json

import pytest
import torch
from conftest import run_without_hf_rnn, tiny_config
from torch import nn
from transformers import AutoTokenizer, DataCollatorForTokenClassification, pipeline

import hf_rnn
from hf_rnn.vocabulary import build_word_tokenizer

SENTENCES = [["The", "Zürich", "office", "opened", "in", "1999", "."], ["the", "Office", "of", "Antidisestablishment"]]
BIO = dict(id2label={0: "O", 1: "B-X", 2: "I-X"}, label2id={"O": 0, "B-X": 1, "I-X": 2})


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(SENTENCES, lowercase=True, char_min_frequency=1, max_word_length=8)


def char_model(tokenizer, head=hf_rnn.RnnForTokenClassification, encoder="lstm", **overrides):
    config = tiny_config(
        vocab_size=len(tokenizer),
        bidirectional=True,
        char_encoder=encoder,
        char_vocab_size=tokenizer.char_vocab_size,
        char_embedding_size=4,
        char_hidden_size=3,
        **{**BIO, **overrides},
    )
    return head(config).eval()


def test_tokenizer_spells_each_word_from_the_raw_text(tokenizer):
    encoding = tokenizer(["The", "Zürich", "qx", "Antidisestablishment"], is_split_into_words=True)
    to_id = {c: i + 2 for i, c in enumerate(tokenizer.char_vocab)}
    spell = lambda word: [to_id.get(c, 1) for c in word] + [0] * (8 - len(word))  # noqa: E731
    # case survives the word normaliser; an unseen character is 1; a long word keeps its first and last 4 characters
    assert encoding["char_ids"] == [spell("The"), spell("Zürich"), [1, 1] + [0] * 6, spell("Antiment")]
    assert encoding["input_ids"][2] == tokenizer.unk_token_id  # unknown as a word, still spelled out
    assert tokenizer("The  Zürich qx")["char_ids"] == encoding["char_ids"][:3]  # raw text: the same, via offsets


def test_char_ids_follow_padding_in_the_call_and_in_the_collator(tokenizer, monkeypatch):
    words = [["The", "office"], ["in"]]
    for side in ("right", "left"):
        monkeypatch.setattr(tokenizer, "padding_side", side)  # restored after the test, even on failure
        direct = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
        features = [dict(tokenizer(w, is_split_into_words=True), labels=[0] * len(w)) for w in words]
        collated = DataCollatorForTokenClassification(tokenizer)(features)
        for batch in (direct, collated):
            assert batch["char_ids"].shape == (2, 2, 8)
            real = batch["char_ids"][1][batch["attention_mask"][1].bool()]
            torch.testing.assert_close(real, torch.tensor(tokenizer(["in"], is_split_into_words=True)["char_ids"]))
            assert not batch["char_ids"][1][~batch["attention_mask"][1].bool()].any()


def test_tokenizer_round_trip_through_auto_tokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is hf_rnn.RnnTokenizerFast
    assert loaded.char_vocab == tokenizer.char_vocab and loaded.max_word_length == 8
    assert loaded(SENTENCES, is_split_into_words=True) == tokenizer(SENTENCES, is_split_into_words=True)


def test_bad_character_settings_name_the_field():
    with pytest.raises(ValueError, match="max_word_length"):
        build_word_tokenizer(SENTENCES, char_min_frequency=1, max_word_length=1)
    with pytest.raises(ValueError, match="char_min_frequency"):
        build_word_tokenizer(SENTENCES, char_min_frequency=0)
    for field, value in (("char_encoder", "rnn"), ("char_kernel_size", 4), ("char_hidden_size", 0)):
        with pytest.raises(ValueError, match=field):
            tiny_config(**{"char_encoder": "cnn", "char_vocab_size": 9, field: value})
    with pytest.raises(ValueError, match="char_vocab_size"):
        tiny_config(char_encoder="lstm")
    with pytest.raises(ValueError, match="char_encoder"):
        hf_rnn.RnnForCausalLM(tiny_config(char_encoder="lstm", char_vocab_size=9))


def test_char_ids_are_required_exactly_when_the_model_reads_characters(tokenizer):
    ids = torch.tensor([[3, 4]])
    with pytest.raises(ValueError, match="pass `char_ids`"):
        char_model(tokenizer)(ids)
    with pytest.raises(ValueError, match="no character encoder"):
        hf_rnn.RnnForTokenClassification(tiny_config())(ids, char_ids=torch.ones(1, 2, 3, dtype=torch.long))


def test_char_bilstm_equals_torch_bidirectional_lstm_on_each_word_alone(tokenizer):
    encoder = char_model(tokenizer).model.char_encoder
    reference = nn.LSTM(4, 3, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for direction, suffix in enumerate(("", "_reverse")):
            for name, param in encoder.directions[direction].named_parameters():
                getattr(reference, name + suffix).copy_(param)
    char_ids = torch.tensor(tokenizer(SENTENCES, is_split_into_words=True, padding=True)["char_ids"])
    features = encoder(char_ids)  # (B, T, 6)
    for b, t in torch.cartesian_prod(torch.arange(char_ids.size(0)), torch.arange(char_ids.size(1))).tolist():
        word = char_ids[b, t][char_ids[b, t] != 0]
        if len(word) == 0:
            assert not features[b, t].any()
            continue
        final = reference(encoder.embeddings(word).unsqueeze(0))[1][0]  # (2, 1, 3): last forward, last backward
        torch.testing.assert_close(features[b, t], final.flatten(), rtol=1e-5, atol=1e-6)


def test_char_cnn_equals_a_direct_convolution_over_each_word(tokenizer):
    encoder = char_model(tokenizer, encoder="cnn", char_kernel_size=3).model.char_encoder
    char_ids = torch.tensor(tokenizer(SENTENCES, is_split_into_words=True, padding=True)["char_ids"])
    features = encoder(char_ids)
    weight, bias = encoder.conv.weight, encoder.conv.bias  # (F, E_c, 3), (F,)
    for b, t in [(0, 0), (0, 1), (0, 5), (1, 3)]:
        x = encoder.embeddings(char_ids[b, t][char_ids[b, t] != 0])  # (L, E_c)
        padded = torch.cat([x.new_zeros(1, 4), x, x.new_zeros(1, 4)])  # zero borders, as in Ma & Hovy
        windows = torch.stack([padded[i : i + 3] for i in range(len(x))])  # (L, 3, E_c)
        expected = (torch.einsum("lke,fek->lf", windows, weight) + bias).amax(0)  # (F,)
        torch.testing.assert_close(features[b, t], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("encoder", ["lstm", "cnn"])
def test_repeated_words_get_the_features_and_gradients_of_words_encoded_one_by_one(tokenizer, encoder):
    """The encoder spells each distinct word of a batch once; each occurrence must still count in the gradient."""
    torch.manual_seed(0)
    char_encoder = char_model(tokenizer, encoder=encoder).model.char_encoder
    repeated = [SENTENCES[0], SENTENCES[0][::-1] + ["The"], SENTENCES[1]]
    char_ids = torch.tensor(tokenizer(repeated, is_split_into_words=True, padding=True)["char_ids"])  # (3, T, L)
    weights = torch.randn(*char_ids.shape[:2], char_encoder.feature_size)  # (3, T, F) a different pull per occurrence

    def features_and_gradients(encode):
        char_encoder.zero_grad()
        features = encode(char_ids)
        (features * weights).sum().backward()
        return features.detach(), [p.grad.clone() for p in char_encoder.parameters()]

    def one_by_one(ids):  # each word alone: a batch of one word, nothing to share
        rows = [[char_encoder(word.view(1, 1, -1))[0, 0] for word in row] for row in ids]
        return torch.stack([torch.stack(row) for row in rows])

    features, gradients = features_and_gradients(char_encoder)
    expected_features, expected_gradients = features_and_gradients(one_by_one)
    torch.testing.assert_close(features, expected_features, rtol=1e-5, atol=1e-6)
    for gradient, expected in zip(gradients, expected_gradients, strict=True):
        torch.testing.assert_close(gradient, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("encoder", ["lstm", "cnn"])
@pytest.mark.parametrize("head", [hf_rnn.RnnForTokenClassification, hf_rnn.RnnForSequenceClassification])
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_never_changes_a_sequence_with_characters(tokenizer, encoder, head, side):
    model = char_model(tokenizer, head=head, encoder=encoder)
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, padding_side=side, return_tensors="pt")
    assert batch["attention_mask"][:, 0 if side == "left" else -1].tolist() == [1, 0]  # the side was applied
    together = model(**batch).logits
    for row, sentence in enumerate(SENTENCES):
        alone = model(**tokenizer([sentence], is_split_into_words=True, return_tensors="pt")).logits[0]
        if head is hf_rnn.RnnForTokenClassification:
            together_row = together[row][batch["attention_mask"][row].bool()]
        else:
            together_row = together[row]
        torch.testing.assert_close(together_row, alone, rtol=1e-5, atol=1e-6)


def test_characters_change_the_prediction_of_an_unknown_word(tokenizer):
    """Two unknown words share `<unk>` but not their spelling, so a char model tells them apart."""
    model = char_model(tokenizer)
    batch = tokenizer([["Thein"], ["ffice"]], is_split_into_words=True, return_tensors="pt")
    assert batch["input_ids"][0].tolist() == batch["input_ids"][1].tolist()
    logits = model(**batch).logits
    assert not torch.allclose(logits[0], logits[1])


@pytest.mark.parametrize("encoder", ["lstm", "cnn"])
def test_save_load_and_pipeline_with_characters(tokenizer, encoder, tmp_path):
    model = char_model(tokenizer, encoder=encoder, use_crf=True, crf_constraints="BIO")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path).eval()
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)
    output = model.eval()(**batch)
    tags, probabilities = output.predictions, model.tag_probabilities(output.emissions, batch["attention_mask"].bool())
    tagger = pipeline("rnn-token-classification", model=str(tmp_path))
    for row, sentence in enumerate(SENTENCES):
        entities = tagger([sentence], is_split_into_words=True, ignore_labels=[])[0]
        assert [e["entity"] for e in entities] == [model.config.id2label[t] for t in tags[row].tolist() if t != -100]
        expected = probabilities[row, : len(sentence)].gather(1, tags[row, : len(sentence), None]).squeeze(1)
        torch.testing.assert_close(torch.tensor([float(e["score"]) for e in entities]), expected)
        tagged = model.tag(sentence, tokenizer)  # words in, (word, tag, probability) out
        assert [(w, t) for w, t, _ in tagged] == [(w, e["entity"]) for w, e in zip(sentence, entities)]
        assert [p for _, _, p in tagged] == pytest.approx([float(e["score"]) for e in entities], rel=1e-5)


LOADER = """
    import json, sys
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    folder = sys.argv[1]
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True).eval()
    batch = tokenizer(json.loads(sys.argv[2]), is_split_into_words=True, padding=True, return_tensors="pt")
    print(json.dumps([type(tokenizer).__module__, model(**batch).predictions.tolist()]))
"""


def test_remote_code_loads_the_character_tokenizer_and_model_without_hf_rnn(tokenizer, tmp_path):
    model = char_model(tokenizer, use_crf=True)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["auto_map"]["AutoTokenizer"][1] == (
        "tokenization_rnn.RnnTokenizerFast"
    )
    result = run_without_hf_rnn(LOADER, str(tmp_path), json.dumps(SENTENCES), cwd=tmp_path)
    module, predictions = json.loads(result.stdout.strip().splitlines()[-1])
    assert module.startswith("transformers_modules")
    batch = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    assert predictions == model(**batch).predictions.tolist()
