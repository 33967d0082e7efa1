"""Label schemes in run_tagging: the files' own as the CRF's constraints, --tag_scheme trains in another, a
checkpoint reads files of another scheme."""

import json
from pathlib import Path

import pytest
import torch
from example_scripts import (
    SAMPLE,
    TINY_TAGGER,
    conll_sentences,
    example_script,
    run_main,
)

import hf_rnn
from hf_rnn.data import read_conll
from hf_rnn.schemes import chunks, convert, scheme_constraints

# ---- label schemes: the files' own as the CRF's constraints, --tag_scheme trains in another ------------------------


def _chunk_files(folder: Path, scheme: str) -> dict[str, Path]:
    """The POS sample as chunking data, written in `scheme`: each PROPN is a LOC, each run of ADJ/NOUN an NP, but an
    adjective of a-m is an NP of its own (so that IOB1 needs a B- between two NPs)."""
    chunk_of = {"ADJ": "NP", "NOUN": "NP", "PROPN": "LOC"}
    files = {}
    for split in ("train", "dev"):
        blocks = []
        for sentence in read_conll(SAMPLE / f"sample_pos.{split}.tsv"):
            bio, previous = [], (None, "")
            for word, tag in zip(sentence.tokens, sentence.tags):
                kind = chunk_of.get(tag)
                inside = kind == previous[0] == "NP" and previous[1][0].lower() > "m"
                bio.append("O" if kind is None else f"{'I' if inside else 'B'}-{kind}")
                previous = kind, word
            tags = convert(bio, scheme)
            blocks.append("".join(f"{word}\t{tag}\n" for word, tag in zip(sentence.tokens, tags)))
        files[split] = folder / f"{scheme}.{split}.tsv"
        files[split].write_text("\n".join(blocks))
    return files


@pytest.mark.parametrize("scheme", ["BIO", "IOB1", "BIOES", "BILOU"])
def test_run_tagging_trains_a_crf_under_the_constraints_of_its_files_scheme(tmp_path, monkeypatch, scheme):
    """Every scheme was read as BIO before: BIOES/BILOU labels then failed the config, IOB1 gold paths the CRF."""
    files = _chunk_files(tmp_path, scheme)
    data = ["--train_file", str(files["train"]), "--test_file", str(files["dev"]), "--max_train_samples", "200"]
    out = tmp_path / "out"
    run_main(monkeypatch, "run_tagging", *data, *TINY_TAGGER, "--use_crf", "--output_dir", str(out), "--no_plots")
    model = hf_rnn.RnnForTokenClassification.from_pretrained(out)
    assert model.config.crf_constraints == scheme
    allowed = torch.tensor(scheme_constraints(model.config.crf_labels, scheme)[0])
    assert torch.equal(model.crf.allowed_transitions, allowed) and not allowed.all()
    predicted = [[guess for _, _, guess in s] for s in conll_sentences(out / "predictions.conll")]
    assert all(convert(tags, scheme) == tags for tags in predicted)  # Viterbi paths are valid in the scheme


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_run_tagging_trains_a_semicrf_whose_predictions_are_chunks_of_its_files_scheme(tmp_path, monkeypatch, scheme):
    """--head_type semicrf: max_segment_length defaults to the data's longest chunk, the predictions file holds
    valid tags of the files' scheme, scored by the span metric; --use_crf contradicts it."""
    files = _chunk_files(tmp_path, scheme)
    data = ["--train_file", str(files["train"]), "--test_file", str(files["dev"]), "--max_train_samples", "200"]
    out = tmp_path / "out"
    run_main(monkeypatch, "run_tagging", *data, *TINY_TAGGER, "--head_type", "semicrf", "--output_dir", str(out))
    model = hf_rnn.RnnForTokenClassification.from_pretrained(out)
    longest = max(
        last - first + 1
        for split in ("train", "dev")
        for sentence in read_conll(files[split])
        for _, first, last in chunks(sentence.tags)
    )
    assert model.config.head_type == "semicrf" and model.config.max_segment_length == longest > 1
    predicted = [[guess for _, _, guess in s] for s in conll_sentences(out / "predictions.conll")]
    assert all(convert(tags, scheme) == tags for tags in predicted) and any(len(set(t)) > 1 for t in predicted)
    assert "predict_f1" in json.loads((out / "predict_results.json").read_text())
    with pytest.raises(SystemExit):
        run_main(monkeypatch, "run_tagging", *data, "--use_crf", "--head_type", "semicrf", "--output_dir", str(out))


def test_run_tagging_trains_in_bioes_on_bio_files_and_scores_in_bio(tmp_path, monkeypatch):
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    files = _chunk_files(tmp_path, "BIO")
    data = ["--train_file", str(files["train"]), "--test_file", str(files["dev"])]
    out = tmp_path / "out"
    flags = ["--use_crf", "--tag_scheme", "BIOES", "--output_dir", str(out), "--no_plots"]
    run_main(monkeypatch, "run_tagging", *data, *TINY_TAGGER, *flags)
    config = json.loads((out / "config.json").read_text())
    assert config["crf_constraints"] == "BIOES"
    assert sorted(config["label2id"]) == sorted(["O"] + [f"{p}-{k}" for k in ("LOC", "NP") for p in "BIES"])
    rows = conll_sentences(out / "predictions.conll")
    gold, predicted = [[t for _, t, _ in s] for s in rows], [[g for _, _, g in s] for s in rows]
    assert gold == [s.tags for s in read_conll(files["dev"])]  # the file's own tags, in BIO
    assert {tag[0] for tags in predicted for tag in tags} <= set("BIO") and any("I-NP" in tags for tags in predicted)
    metrics = json.loads((out / "predict_results.json").read_text())
    assert metrics["predict_f1"] == pytest.approx(seqeval_metrics.f1_score(gold, predicted))
    pairs = [(t, g) for tags, guesses in zip(gold, predicted) for t, g in zip(tags, guesses)]
    assert metrics["predict_accuracy"] == pytest.approx(sum(t == g for t, g in pairs) / len(pairs))
    assert metrics["predict_f1"] > 0.5
    # the BIOES tagger on the BIO files again, from its checkpoint: read in BIOES, scored and written in BIO (before:
    # "the data has labels ['B-LOC', ...] that the model does not know")
    again = tmp_path / "again"
    test = ["--test_file", str(files["dev"]), "--do_train", "false", "--no_plots", "--output_dir", str(again)]
    run_main(monkeypatch, "run_tagging", "--model_name_or_path", str(out), *test)
    assert conll_sentences(again / "predictions.conll") == rows
    reloaded = json.loads((again / "predict_results.json").read_text())
    assert reloaded["predict_f1"] == pytest.approx(metrics["predict_f1"])
    assert reloaded["predict_accuracy"] == pytest.approx(metrics["predict_accuracy"])


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tag_scheme", "BIOSE"], "--tag_scheme BIOSE: give none or one of BIO, IOB1, BIOES, BILOU"),
        (["--tag_scheme", "BIOES", "--crf_constraints", "BIO"], "--crf_constraints BIO: the model's labels are"),
    ],
)
def test_run_tagging_refuses_a_tag_scheme_it_cannot_train_in(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit):
        example_script("run_tagging").parse(["--train_file", "x.tsv", "--output_dir", str(tmp_path), *flags])
    assert message in capsys.readouterr().err


def test_run_tagging_refuses_to_convert_tags_that_are_not_chunks(tmp_path, monkeypatch):
    data = ["--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--tag_scheme", "BIOES"]
    with pytest.raises(ValueError, match="--tag_scheme BIOES: the training labels are not chunk tags"):
        run_main(monkeypatch, "run_tagging", *data, "--output_dir", str(tmp_path))


# ---- a checkpoint on files of another scheme: read in its own, scored and written in the files' ---------------------


def _scored(folder: Path) -> tuple[list[list[str]], list[list[str]], dict]:
    rows = conll_sentences(folder / "predictions.conll")
    gold, predicted = [[t for _, t, _ in s] for s in rows], [[g for _, _, g in s] for s in rows]
    return gold, predicted, json.loads((folder / "predict_results.json").read_text())


def _accuracy(gold: list[list[str]], predicted: list[list[str]]) -> float:
    pairs = [(t, g) for tags, guesses in zip(gold, predicted) for t, g in zip(tags, guesses)]
    return sum(t == g for t, g in pairs) / len(pairs)


@pytest.mark.parametrize("head", [["--use_crf"], []], ids=["crf", "softmax"])
def test_a_bioes_checkpoint_scores_iob1_files_in_iob1(tmp_path, monkeypatch, head):
    """Before, a softmax checkpoint (no CRF constraints to name its scheme) wrote IOB1 files' predictions in BIO."""
    bio, iob1 = _chunk_files(tmp_path, "BIO"), _chunk_files(tmp_path, "IOB1")
    model = tmp_path / "model"
    train = ["--train_file", str(bio["train"]), "--tag_scheme", "BIOES", "--output_dir", str(model), "--no_plots"]
    run_main(monkeypatch, "run_tagging", *train, *TINY_TAGGER, *head)
    out = tmp_path / "out"
    test = ["--test_file", str(iob1["dev"]), "--do_train", "false", "--no_plots", "--output_dir", str(out)]
    run_main(monkeypatch, "run_tagging", "--model_name_or_path", str(model), *test)
    gold, predicted, metrics = _scored(out)
    assert gold == [s.tags for s in read_conll(iob1["dev"])]
    assert all(convert(tags, "IOB1") == tags for tags in predicted)  # valid IOB1: B- only between two chunks
    assert metrics["predict_accuracy"] == pytest.approx(_accuracy(gold, predicted))


def test_converting_refuses_tags_it_would_change_and_maps_unknown_types_before(tmp_path, monkeypatch):
    files = _chunk_files(tmp_path, "BIO")
    model = tmp_path / "model"
    train = ["--train_file", str(files["train"]), "--tag_scheme", "BIOES", "--output_dir", str(model), "--no_plots"]
    run_main(monkeypatch, "run_tagging", *train, *TINY_TAGGER, "--use_crf")
    sentences = read_conll(files["dev"])
    broken = tmp_path / "broken.tsv"  # an I-NP after O: BIO that converting would read as B-NP
    row, position = next(
        (r, i) for r, x in enumerate(sentences) for i, tag in enumerate(x.tags) if i and tag == "I-NP"
    )
    sentences[row].tags[position - 1] = "O"
    broken.write_text("\n".join("".join(f"{w}\t{t}\n" for w, t in zip(s.tokens, s.tags)) for s in sentences))
    test = ["--do_train", "false", "--no_plots", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(ValueError, match=rf"broken.tsv:{sentences[row].lines[position]}: tag 'I-NP' is not valid BIO"):
        run_main(monkeypatch, "run_tagging", "--model_name_or_path", str(model), "--test_file", str(broken), *test)
    unseen = tmp_path / "unseen.tsv"  # a type the checkpoint never saw, mapped to O by --unknown_tag in BIO
    sentences = read_conll(files["dev"])
    sentences[0].tags = ["B-MISC"] + ["O" if t.endswith("MISC") else t for t in sentences[0].tags[1:]]
    unseen.write_text("\n".join("".join(f"{w}\t{t}\n" for w, t in zip(s.tokens, s.tags)) for s in sentences))
    out = tmp_path / "unseen"
    test = ["--do_train", "false", "--no_plots", "--output_dir", str(out), "--test_file", str(unseen)]
    line = sentences[0].lines[0]
    with pytest.raises(ValueError, match=rf"unseen.tsv:{line}: tag 'B-MISC' \('S-MISC' in the checkpoint's BIOES\)"):
        run_main(monkeypatch, "run_tagging", "--model_name_or_path", str(model), *test)
    run_main(monkeypatch, "run_tagging", "--model_name_or_path", str(model), "--unknown_tag", "O", *test)
    gold, predicted, metrics = _scored(out)
    assert gold[0][0] == "O" and gold[1:] == [s.tags for s in sentences[1:]]  # as the metrics read them
    assert metrics["predict_accuracy"] == pytest.approx(_accuracy(gold, predicted))
