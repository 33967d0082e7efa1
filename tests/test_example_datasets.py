"""`--dataset_name` (and `--dataset_config_name`) in the scripts, as in transformers' examples: a local dataset folder
reads as the same data given as files."""

import json

import pytest
from example_scripts import SAMPLE, TINY_TAGGER, refused, run_main

from hf_rnn.data import read_conll

LINES = [" ".join(s.tokens) for s in read_conll(SAMPLE / "sample_pos.train.tsv")]


def test_run_lm_on_a_dataset_folder_scores_as_on_its_files(tmp_path, monkeypatch):
    """A folder of train.txt / validation.txt, as `load_dataset` reads it (one row per line, the 'text' column)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_text("\n".join(LINES[:300]) + "\n")
    (folder / "validation.txt").write_text("\n\n".join(LINES[500:560]) + "\n")  # blank lines, skipped as in files
    tiny = ["--hidden_size", "8", "--embedding_size", "8", "--bptt", "10", "--max_steps", "4", "--no_zaremba"]
    files = ["--train_file", str(folder / "train.txt"), "--validation_file", str(folder / "validation.txt")]
    run_main(monkeypatch, "run_lm", *files, *tiny, "--output_dir", str(tmp_path / "files"))
    run_main(monkeypatch, "run_lm", "--dataset_name", str(folder), *tiny, "--output_dir", str(tmp_path / "named"))
    scores = [json.loads((tmp_path / run / "eval_results.json").read_text()) for run in ("files", "named")]
    assert scores[1]["eval_perplexity"] == pytest.approx(scores[0]["eval_perplexity"], rel=1e-6)


def test_run_classification_joins_text_columns_from_files_and_dataset_folders_alike(tmp_path, monkeypatch):
    """transformers' flags: --text_column_names a,b (joined with a space), --label_column_name, --dataset_name (here
    a folder written by `save_to_disk`, labels as class ids); the reference is one text column holding the joined
    texts."""
    import csv

    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    rows = [
        (" ".join(LINES[i].split()[:4]), " ".join(LINES[i].split()[4:9]) or "none", "ab"[i % 2]) for i in range(40)
    ]
    splits = {"train": rows[:30], "validation": rows[30:], "test": rows[30:]}
    for split, part in splits.items():
        with open(tmp_path / f"{split}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([("premise", "hypothesis", "label"), *part])
        with open(tmp_path / f"{split}.joined.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([("text", "label"), *[(f"{p} {h}", label) for p, h, label in part]])
    features = Features(
        {"premise": Value("string"), "hypothesis": Value("string"), "label": ClassLabel(names=["a", "b"])}
    )
    tables = {
        split: Dataset.from_dict(dict(zip(features, map(list, zip(*part))))).cast(features)
        for split, part in splits.items()
    }
    DatasetDict(tables).save_to_disk(tmp_path / "saved")

    tiny = ["--hidden_size", "8", "--embedding_size", "8", "--num_train_epochs", "2", "--do_predict"]

    def files(suffix: str) -> list[str]:
        return [item for split in splits for item in (f"--{split}_file", str(tmp_path / f"{split}{suffix}.csv"))]

    runs = {
        "joined": files(".joined"),
        "columns": [*files(""), "--text_column_names", "premise,hypothesis", "--label_column_name", "label"],
        "named": ["--dataset_name", str(tmp_path / "saved"), "--text_column_names", "premise,hypothesis"],
    }
    for name, flags in runs.items():
        run_main(monkeypatch, "run_classification", *flags, *tiny, "--output_dir", str(tmp_path / name))
    predicted = {}
    for name in runs:
        with open(tmp_path / name / "predictions.csv", newline="") as handle:
            predicted[name] = [(row[0], row[1], row[2]) for row in list(csv.reader(handle))[1:]]
    assert [text for text, _, _ in predicted["joined"]] == [f"{p} {h}" for p, h, _ in splits["test"]]
    assert predicted["columns"] == predicted["named"] == predicted["joined"]
    scores = {name: json.loads((tmp_path / name / "eval_results.json").read_text()) for name in runs}
    assert scores["named"]["eval_loss"] == scores["columns"]["eval_loss"] == scores["joined"]["eval_loss"]


@pytest.mark.parametrize("script", ["run_tagging", "run_lm", "run_classification"])
def test_a_parquet_file_is_refused_with_the_way_to_load_it(tmp_path, monkeypatch, capsys, script):
    """It was read as CoNLL or plain text ("not valid UTF-8")."""
    (tmp_path / "train.parquet").write_bytes(b"PAR1\x15\x04\x15\x80\x80")
    message = refused(
        monkeypatch, capsys, script, "--train_file", str(tmp_path / "train.parquet"), output_dir=tmp_path / "out"
    )
    assert f"--train_file {tmp_path / 'train.parquet'}: a Parquet file" in message and "--dataset_name" in message


def test_run_tagging_on_a_folder_of_parquet_files_tags_as_on_its_json_files(tmp_path, monkeypatch):
    from datasets import Dataset

    sentences = read_conll(SAMPLE / "sample_pos.train.tsv")
    folder = tmp_path / "parquet"
    folder.mkdir()
    for split, part in (("train", sentences[:100]), ("test", sentences[100:110])):
        table = Dataset.from_dict({"tokens": [s.tokens for s in part], "ner_tags": [s.tags for s in part]})
        table.to_json(tmp_path / f"{split}.jsonl")
        table.to_parquet(folder / f"{split}.parquet")
    tiny = [*TINY_TAGGER, "--max_steps", "3", "--no_plots", "--do_predict"]
    json_files = ["--train_file", str(tmp_path / "train.jsonl"), "--test_file", str(tmp_path / "test.jsonl")]
    run_main(monkeypatch, "run_tagging", *json_files, *tiny, "--output_dir", str(tmp_path / "json"))
    named = ["--dataset_name", str(folder), "--do_eval", "false"]
    run_main(monkeypatch, "run_tagging", *named, *tiny, "--output_dir", str(tmp_path / "named"))
    predictions = [(tmp_path / run / "predictions.conll").read_text() for run in ("json", "named")]
    assert predictions[0] == predictions[1] and predictions[0].count("\n\n") == 10


# Sentences as a text and its entities (each a substring, its first occurrence), beside their words and BIO tags
# written by hand: the words as hf_rnn's tokenizer splits a text (punctuation and clitics apart).
SPAN_SENTENCES = [
    (
        "Jean Dupont lives in São Paulo (Brazil).",
        [("Brazil", "LOC"), ("Jean Dupont", "PER"), ("São Paulo", "LOC")],
        "Jean/B-PER Dupont/I-PER lives/O in/O São/B-LOC Paulo/I-LOC (/O Brazil/B-LOC )/O ./O",
    ),
    (
        "Mary didn't visit the U.N. in New York.",
        [("Mary", "PER"), ("U.N.", "ORG"), ("New York", "LOC")],
        "Mary/B-PER did/O n't/O visit/O the/O U.N/B-ORG ./I-ORG in/O New/B-LOC York/I-LOC ./O",
    ),
    (
        "Acme Corp. hired Bob.",
        [("Acme Corp.", "ORG"), ("Bob", "PER")],
        "Acme/B-ORG Corp/I-ORG ./I-ORG hired/O Bob/B-PER ./O",
    ),
    (
        "Flights: Paris Rome Berlin.",
        [("Paris", "LOC"), ("Rome", "LOC"), ("Berlin", "LOC")],
        "Flights/O :/O Paris/B-LOC Rome/B-LOC Berlin/B-LOC ./O",
    ),
    ("It rained all day.", [], "It/O rained/O all/O day/O ./O"),
]


def test_run_tagging_reads_text_and_character_spans_as_the_same_sentences_in_conll(tmp_path, monkeypatch):
    """doccano's JSON lines (`text`, `label`: [[start, end, type]], in any order; flair's `data` for the text) train,
    evaluate and predict as the CoNLL file of the same words and hand-written BIO tags: same gold tags, same model."""
    lines, conll = [], []
    for number, (text, entities, reference) in enumerate(SPAN_SENTENCES):
        spans = [[text.index(entity), text.index(entity) + len(entity), kind] for entity, kind in entities]
        lines.append(json.dumps({"data" if number == 1 else "text": text, "label": spans, "id": number}))
        conll.append("".join(f"{pair.rsplit('/', 1)[0]}\t{pair.rsplit('/', 1)[1]}\n" for pair in reference.split()))
    for split, chosen in (("train", range(5)), ("validation", (0, 2)), ("test", (1, 3, 4))):
        (tmp_path / f"{split}.jsonl").write_text("".join(lines[i] + "\n" for i in chosen))
        (tmp_path / f"{split}.conll").write_text("\n".join(conll[i] for i in chosen))
    tiny = [*TINY_TAGGER, "--max_steps", "3", "--no_plots", "--do_predict", "--use_crf"]
    for suffix in ("jsonl", "conll"):
        files = [f"--{split}_file" for split in ("train", "validation", "test")]
        files = [item for flag in files for item in (flag, str(tmp_path / f"{flag[2:-5]}.{suffix}"))]
        run_main(monkeypatch, "run_tagging", *files, *tiny, "--output_dir", str(tmp_path / suffix))
    predictions = {suffix: (tmp_path / suffix / "predictions.conll").read_text() for suffix in ("jsonl", "conll")}
    assert predictions["jsonl"] == predictions["conll"]
    gold = [
        [line.split("\t")[:2] for line in block.splitlines()] for block in predictions["jsonl"].strip().split("\n\n")
    ]
    assert gold == [[pair.rsplit("/", 1) for pair in SPAN_SENTENCES[i][2].split()] for i in (1, 3, 4)]
    scores = {suffix: json.loads((tmp_path / suffix / "eval_results.json").read_text()) for suffix in predictions}
    for name in ("eval_loss", "eval_accuracy", "eval_f1"):
        assert scores["jsonl"][name] == scores["conll"][name], name
