"""The example scripts: TBPTT batching and state carrying, tagging end to end, checkpoint resumption."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hf_rnn
from hf_rnn.data import read_conll

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from run_lm import BpttWindows, TbpttTrainer  # noqa: E402

SAMPLE = ROOT / "hf_rnn" / "samples"
# a small, fast tagger for the end-to-end runs of the example scripts
TINY_TAGGER = ["--learning_rate", "0.01", "--per_device_train_batch_size", "16", "--embedding_size", "32"]
TINY_TAGGER += ["--hidden_size", "32", "--save_strategy", "no"]


@pytest.mark.parametrize("processes", [1, 2])
def test_bptt_batches_continue_each_row(processes):
    """Concatenating one process's batches row by row gives back contiguous slices of the stream."""
    ids = torch.arange(1000)
    data = BpttWindows(ids, batch_size=3, processes=processes, bptt=7)
    rows = 3 * processes
    global_batches = [[data[g * 3 + i] for i in range(3)] for g in range(len(data) // 3)]
    for process in range(processes):
        mine = global_batches[process::processes]  # what accelerate gives this process
        for i in range(3):
            row = torch.cat([batch[i]["input_ids"] for batch in mine])
            targets = torch.cat([batch[i]["shift_labels"] for batch in mine])
            start = row[0].item()
            assert torch.equal(row, torch.arange(start, start + len(row)))
            assert torch.equal(targets, row + 1)
    starts = {batch[i]["input_ids"][0].item() for batch in global_batches[:processes] for i in range(3)}
    assert len(starts) == rows  # every row is owned by exactly one process and one batch slot


def test_tbptt_evaluation_equals_one_pass_over_each_row(tmp_path):
    """Carried state: evaluating window by window gives the loss of one long forward over every row."""
    from transformers import TrainingArguments

    torch.manual_seed(0)
    config = hf_rnn.RnnConfig(vocab_size=50, embedding_size=8, hidden_size=8, num_layers=2, cell_type="lstm")
    model = hf_rnn.RnnForCausalLM(config).eval()
    ids = torch.randint(1, 50, (600,))
    data = BpttWindows(ids, batch_size=4, processes=1, bptt=10)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=4,
        report_to="none",
        use_cpu=True,
        train_sampling_strategy="sequential",
        remove_unused_columns=False,
        label_names=["shift_labels"],
        prediction_loss_only=True,
        disable_tqdm=True,
    )
    trainer = TbpttTrainer(model=model, args=args, eval_dataset=data)
    metrics = trainer.evaluate()
    with torch.no_grad():
        span = slice(0, data.windows * 10)
        whole = model(data.inputs[:, span].contiguous(), shift_labels=data.targets[:, span].contiguous()).loss
    assert metrics["eval_loss"] == pytest.approx(whole.item(), rel=1e-5)
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(whole.item()), rel=1e-5)


def _run(script: str, *args: str, launcher: tuple = (), env: dict | None = None) -> subprocess.CompletedProcess:
    """Run an example script on the CPU without logging integrations; `launcher` prefixes e.g. torchrun."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", **(env or {})}
    command = [
        *(launcher or (sys.executable,)),
        str(ROOT / "examples" / script),
        *args,
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--use_cpu",
        "true",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_run_lm_trains_and_reports_perplexity(tmp_path):
    lines = [" ".join(s.tokens) for s in read_conll(SAMPLE / "sample_pos.train.tsv")]
    (tmp_path / "train.txt").write_text("\n".join(lines[:500]) + "\n")
    (tmp_path / "valid.txt").write_text("\n".join(lines[500:]) + "\n")
    result = _run(
        "run_lm.py",
        "--train_file",
        str(tmp_path / "train.txt"),
        "--validation_file",
        str(tmp_path / "valid.txt"),
        "--output_dir",
        str(tmp_path / "out"),
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "8",
        "--bptt",
        "20",
        "--hidden_size",
        "64",
        "--embedding_size",
        "64",
        "--num_train_epochs",
        "3",
        "--zaremba",
        "--learning_rate",
        "1",
        "--max_grad_norm",
        "5",
        "--save_strategy",
        "no",
    )
    perplexity = float(result.stdout.strip().split()[-1])
    assert perplexity < 25  # the vocabulary has ~60 words: a uniform guess scores ~60
    model = hf_rnn.RnnForCausalLM.from_pretrained(tmp_path / "out")
    assert model.config.num_layers == 2


@pytest.mark.parametrize("use_crf, char_encoder", [(False, None), (True, "lstm")])
def test_run_tagging_end_to_end(tmp_path, use_crf, char_encoder):
    result = _run(
        "run_tagging.py",
        "--train_file",
        str(SAMPLE / "sample_pos.train.tsv"),
        "--validation_file",
        str(SAMPLE / "sample_pos.dev.tsv"),
        "--output_dir",
        str(tmp_path),
        "--num_train_epochs",
        "3",
        *TINY_TAGGER,
        *(["--use_crf"] if use_crf else []),
        *(["--char_encoder", char_encoder] if char_encoder else []),
    )
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["eval_accuracy"] > 0.8
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["use_crf"] is use_crf and config["char_encoder"] == char_encoder
    tokenizer = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert tokenizer["tokenizer_class"] == ("RnnTokenizerFast" if char_encoder else "TokenizersBackend")
    plots = {"learning_curves.png", "confusion_matrix.png"} | ({"crf_transitions.png"} if use_crf else set())
    assert {p.name for p in tmp_path.glob("*.png")} == plots
    assert all((tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in plots)


def test_run_classification_end_to_end(tmp_path):
    """A toy task read from CSV: does the sentence join two clauses (contains 'and'/'but')?"""
    import csv

    sentences = read_conll(SAMPLE / "sample_pos.train.tsv")
    for name, part in (("train", sentences[:450]), ("dev", sentences[450:])):
        with open(tmp_path / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for s in part:
                writer.writerow([" ".join(s.tokens), "two" if "CCONJ" in s.tags else "one"])
    result = _run(
        "run_classification.py",
        "--train_file",
        str(tmp_path / "train.csv"),
        "--validation_file",
        str(tmp_path / "dev.csv"),
        "--output_dir",
        str(tmp_path / "out"),
        "--num_train_epochs",
        "4",
        "--learning_rate",
        "0.01",
        "--per_device_train_batch_size",
        "16",
        "--embedding_size",
        "32",
        "--hidden_size",
        "32",
        "--pooling",
        "max",
        "--save_strategy",
        "no",
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["eval_accuracy"] > 0.9
    assert hf_rnn.RnnForSequenceClassification.from_pretrained(tmp_path / "out").config.id2label == {
        0: "one",
        1: "two",
    }


def test_run_tagging_from_a_dataset_folder_with_two_processes(tmp_path):
    """`--dataset_name` (a local folder, as load_dataset reads it; string tags) under `torchrun` with 2 processes."""
    sentences = read_conll(SAMPLE / "sample_pos.train.tsv")
    folder = tmp_path / "data"
    folder.mkdir()
    for split, part in (("train", sentences[:400]), ("validation", sentences[400:500])):
        rows = [json.dumps({"words": s.tokens, "pos": s.tags}) for s in part]
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    result = _run(
        "run_tagging.py",
        "--dataset_name",
        str(folder),
        "--tokens_column",
        "words",
        "--tags_column",
        "pos",
        "--output_dir",
        str(tmp_path / "out"),
        "--num_train_epochs",
        "6",
        "--dropout",
        "0.2",
        *TINY_TAGGER,
        "--no_plots",
        "--use_crf",
        "--ddp_find_unused_parameters",
        "false",
        launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        env={"OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"},
    )
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["eval_accuracy"] > 0.8
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert sorted(config["label2id"]) == sorted({t for s in sentences for t in s.tags})


def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_run(tmp_path):
    common = [
        "--train_file",
        str(SAMPLE / "sample_pos.train.tsv"),
        "--num_train_epochs",
        "2",
        "--learning_rate",
        "0.01",
        "--per_device_train_batch_size",
        "32",
        "--embedding_size",
        "16",
        "--hidden_size",
        "16",
        "--dropout",
        "0.3",
        "--save_strategy",
        "epoch",
        "--use_crf",
        "--seed",
        "3",
    ]
    _run("run_tagging.py", *common, "--output_dir", str(tmp_path / "full"))
    checkpoint = sorted((tmp_path / "full").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[0]
    _run(
        "run_tagging.py",
        *common,
        "--output_dir",
        str(tmp_path / "resumed"),
        "--resume_from_checkpoint",
        str(checkpoint),
    )
    full = hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path / "full").state_dict()
    resumed = hf_rnn.RnnForTokenClassification.from_pretrained(tmp_path / "resumed").state_dict()
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=0, msg=name)
