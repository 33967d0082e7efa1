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
from hf_rnn.schemes import convert, scheme_constraints

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
