"""The example scripts: their defaults, their launch checks, each end to end, bad input, checkpoint resumption."""

import functools
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_launched
from transformers import AutoTokenizer

import hf_rnn
from hf_rnn.checkpoints import last_complete_checkpoint, resolve_resume
from hf_rnn.data import read_characters, read_conll, read_text
from hf_rnn.launch import check_processes, load_pretrained, set_threads
from hf_rnn.schemes import convert, scheme_constraints
from hf_rnn.vocabulary import build_char_tokenizer, build_word_tokenizer

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = ROOT / "hf_rnn" / "samples"
# a small, fast tagger for the end-to-end runs of the example scripts
TINY_TAGGER = ["--learning_rate", "0.01", "--per_device_train_batch_size", "16", "--embedding_size", "32"]
TINY_TAGGER += ["--hidden_size", "32", "--save_strategy", "no"]


@functools.cache
def _script(name: str):
    """An example script as a module (the scripts are files, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


QUIET = ("--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true")


def _run(
    script: str,
    *args: str,
    launcher: tuple = (),
    env: dict | None = None,
    flags: tuple = QUIET,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run an example script, by default on the CPU without logging integrations; `launcher` prefixes e.g. torchrun.
    OMP_NUM_THREADS is left to `env`, so that the scripts' own default (one thread) applies."""
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, **(env or {})}
    command = [*(launcher or (sys.executable,)), str(ROOT / "examples" / script), *args, *flags]
    result = run_launched(command, timeout=300, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _logged_losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


# ---- the scripts' defaults train: only the required flags, on the bundled sample -----------------------------------


def test_run_tagging_trains_with_its_defaults(tmp_path):
    """At the Trainer's lr 5e-5 this run ends at 30 % accuracy and logs no loss (every 500 of its 225 steps)."""
    result = _run(
        "run_tagging.py",
        "--train_file",
        str(SAMPLE / "sample_pos.train.tsv"),
        "--validation_file",
        str(SAMPLE / "sample_pos.dev.tsv"),
        flags=(),
        cwd=tmp_path,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["eval_accuracy"] >= 0.9
    out = tmp_path / "trainer_output"  # the Trainer's default output_dir
    assert len(_logged_losses(out)) == 45  # every 5th of its 225 steps (2 %, rounded up)
    assert "torch uses 1 CPU thread" in result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["use_crf"] is False and config["char_encoder"] is None
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    plots = {"learning_curves.png", "confusion_matrix.png"}
    assert {p.name for p in out.glob("*.png")} == plots
    assert all((out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in plots)


def test_run_tagging_with_a_crf_and_characters_end_to_end(tmp_path):
    train, dev = str(SAMPLE / "sample_pos.train.tsv"), str(SAMPLE / "sample_pos.dev.tsv")
    args = ("--train_file", train, "--validation_file", dev, "--output_dir", str(tmp_path), "--num_train_epochs", "3")
    result = _run("run_tagging.py", *args, *TINY_TAGGER, "--use_crf", "--char_encoder", "lstm")
    assert json.loads(result.stdout.strip().splitlines()[-1])["eval_accuracy"] > 0.8
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["use_crf"] is True and config["char_encoder"] == "lstm"
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "RnnTokenizerFast"
    plots = {"learning_curves.png", "confusion_matrix.png", "crf_transitions.png"}
    assert {p.name for p in tmp_path.glob("*.png")} == plots
    assert all((tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in plots)


def test_run_lm_trains_with_its_defaults(tmp_path):
    """At the Trainer's AdamW lr 5e-5 this run ends at a perplexity of ~70, its vocabulary's size."""
    lines = [" ".join(s.tokens) for s in read_conll(SAMPLE / "sample_pos.train.tsv")]
    (tmp_path / "train.txt").write_text("\n".join(lines[:500]) + "\n")
    (tmp_path / "valid.txt").write_text("\n".join(lines[500:]) + "\n")
    args = ("--train_file", str(tmp_path / "train.txt"), "--validation_file", str(tmp_path / "valid.txt"))
    result = _run("run_lm.py", *args, flags=(), cwd=tmp_path)
    perplexity = float(result.stdout.strip().split()[-1])
    config = json.loads((tmp_path / "trainer_output" / "config.json").read_text())
    assert config["num_layers"] == 2 and config["vocab_size"] > 70
    assert perplexity < 0.4 * config["vocab_size"]  # measured 20.7; a uniform guess scores the vocabulary size
    assert len(_logged_losses(tmp_path / "trainer_output")) == 27  # every 2nd of its 54 steps (2 %, rounded up)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "trainer_output")  # a word LM's: <eos> starts a prompt
    ids = tokenizer(lines[0]).input_ids
    assert ids[0] == tokenizer.eos_token_id and tokenizer.convert_ids_to_tokens(ids[1:]) == lines[0].split()
    assert tokenizer.decode(ids[1:3]).strip() == " ".join(lines[0].split()[:2])  # words apart, not glued


def test_run_classification_trains_with_its_defaults(tmp_path):
    """A toy task read from CSV: does the sentence join two clauses (contains 'and'/'but')? 73 % of the dev sentences
    do not: the Trainer's lr 5e-5 ends there, predicting the majority class."""
    import csv

    sentences = read_conll(SAMPLE / "sample_pos.train.tsv")
    for name, part in (("train", sentences[:450]), ("dev", sentences[450:])):
        with open(tmp_path / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for s in part:
                writer.writerow([" ".join(s.tokens), "two" if "CCONJ" in s.tags else "one"])
    args = ("--train_file", str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv"))
    result = _run("run_classification.py", *args, flags=(), cwd=tmp_path)
    assert json.loads(result.stdout.strip().splitlines()[-1])["eval_accuracy"] > 0.9
    model = hf_rnn.RnnForSequenceClassification.from_pretrained(tmp_path / "trainer_output")
    assert model.config.id2label == {0: "one", 1: "two"}
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "trainer_output")  # the vocabulary holds what encoding makes
    assert tokenizer.unk_token_id not in tokenizer(" ".join(sentences[0].tokens)).input_ids


DEFAULTS = {  # script -> (its required flags, {TrainingArguments field: default})
    "run_tagging": (
        ["--train_file", "x.tsv"],
        {"learning_rate": 2e-3, "logging_steps": 0.02, "optim": "adamw_torch_fused"},
    ),
    "run_classification": (["--train_file", "x.csv"], {"learning_rate": 2e-3, "logging_steps": 0.02}),
    "run_lm": (
        ["--train_file", "x.txt"],
        {
            "learning_rate": 1.0,
            "optim": "sgd",
            "max_grad_norm": 5.0,
            "lr_scheduler_type": "constant",
            "logging_steps": 0.02,
        },
    ),
}


@pytest.mark.parametrize("script", DEFAULTS)
def test_the_defaults_give_way_to_the_flags(tmp_path, script):
    required, defaults = DEFAULTS[script]
    training_args = _script(script).parse([*required, "--output_dir", str(tmp_path)])[-1]
    assert {name: getattr(training_args, name) for name in defaults} == defaults
    given = {"learning_rate": 5e-05, "logging_steps": 500, "optim": "adafactor", "max_grad_norm": 1.0}
    flags = [item for name, value in given.items() for item in (f"--{name}", str(value))]
    training_args = _script(script).parse([*required, *flags, "--output_dir", str(tmp_path)])[-1]
    assert {name: getattr(training_args, name) for name in given} == given


def test_run_lm_without_the_recipe_trains_with_adamw(tmp_path):
    lm_args, _, training_args = _script("run_lm").parse(["--train_file", "x", "--no_zaremba"])
    assert not lm_args.zaremba and training_args.optim == "adamw_torch_fused" and training_args.learning_rate == 2e-3
    assert training_args.max_grad_norm == 1.0 and training_args.lr_scheduler_type == "linear"


@pytest.mark.parametrize("flag", [("--lr_scheduler_type", "cosine"), ("--warmup_steps", "10")])
def test_run_lm_refuses_a_schedule_that_the_recipe_would_replace(tmp_path, monkeypatch, capsys, flag):
    message = _refused(monkeypatch, capsys, "run_lm", "--train_file", "x.txt", *flag, output_dir=tmp_path / "out")
    assert f"{flag[0]} {flag[1]}" in message and "--no_zaremba" in message


def test_one_cpu_thread_unless_omp_num_threads_says_otherwise():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        set_threads({"OMP_NUM_THREADS": "2"})
        assert torch.get_num_threads() == 2
        set_threads({})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


# ---- a launch that does not start the processes asked for --------------------------------------------------------


def _accelerate_environment(tmp_path: Path, *flags: str) -> dict:
    """The environment `accelerate launch FLAGS` gives the script it starts."""
    (tmp_path / "env.py").write_text("import json, os\nprint(json.dumps(dict(os.environ)))\n")
    command = [sys.executable, "-m", "accelerate.commands.launch", *flags, str(tmp_path / "env.py")]
    result = run_launched(command, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_accelerate_launching_one_process_of_several_is_a_loud_warning(tmp_path, caplog):
    check_processes(1, _accelerate_environment(tmp_path, "--cpu", "--num_processes", "2"))
    assert "ONE PROCESS" in caplog.text and "ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N" in caplog.text
    caplog.clear()
    check_processes(1, _accelerate_environment(tmp_path, "--cpu", "--num_processes", "1"))
    assert not caplog.text


def test_the_example_scripts_check_their_launch(tmp_path, monkeypatch, caplog):
    """What `accelerate launch --cpu --num_processes 2` sets (the test above reads it from accelerate)."""
    for name, value in {
        "ACCELERATE_MIXED_PRECISION": "no",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }.items():
        monkeypatch.setenv(name, value)
    _script("run_tagging").parse(["--train_file", "x.tsv", "--output_dir", str(tmp_path)])
    assert "ONE PROCESS" in caplog.text


def test_processes_that_would_each_train_alone_are_refused():
    """torchrun --nproc_per_node 2 without --use_cpu on a machine without GPUs: WORLD_SIZE 2, a world of 1 in each."""
    with pytest.raises(ValueError, match=r"started 2 processes .* each one trains alone .* pass --use_cpu true"):
        check_processes(1, {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "localhost"})
    check_processes(2, {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "localhost"})
    check_processes(1, {})


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


# a small CRF tagger with dropout, for the runs that must reproduce each other exactly
RESUMABLE_TAGGER = ["--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--learning_rate", "0.01"]
RESUMABLE_TAGGER += ["--per_device_train_batch_size", "32", "--embedding_size", "16", "--hidden_size", "16"]
RESUMABLE_TAGGER += ["--dropout", "0.3", "--use_crf", "--seed", "3"]


def _same_weights(folder: Path, reference: Path) -> None:
    expected = hf_rnn.RnnForTokenClassification.from_pretrained(reference).state_dict()
    got = hf_rnn.RnnForTokenClassification.from_pretrained(folder).state_dict()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_run(tmp_path):
    common = [*RESUMABLE_TAGGER, "--num_train_epochs", "2", "--save_strategy", "epoch"]
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
    _same_weights(tmp_path / "resumed", tmp_path / "full")


# ---- bad input: refused before training, with nothing written ------------------------------------------------------


def _refused(monkeypatch, capsys, script: str, *args: str, output_dir: Path) -> str:
    """Call an example script's `main()` in this process (no subprocess start-up) on input it must refuse; returns
    the error (a parser error's message, or the ValueError's), once sure that output_dir was not created."""
    monkeypatch.setattr(sys, "argv", [script, *args, "--output_dir", str(output_dir), "--use_cpu", "true"])
    with pytest.raises((ValueError, SystemExit)) as caught:
        _script(script).main()
    assert not output_dir.exists()
    if caught.type is SystemExit:
        assert caught.value.code == 2  # argparse's usage error
        return capsys.readouterr().err
    return str(caught.value)


BAD_TABLES = {  # train.csv's text -> the error
    "empty text cell": ("text,label\nhello world,a\n,b\n", "train.csv:3: empty 'text' value"),
    "empty label cell": ("text,label\nhello world,a\nbye now,\n", "train.csv:3: empty 'label' value"),
    "blank label": ("text,label\nhello world,a\nbye now, \n", "train.csv:3: empty 'label' value"),
    "missing cell": ("text,label\nhello world,a\nbye now\n", "train.csv:3: empty 'label' value"),
    "extra cell": ("text,label\nhello world,a\nbye,now,b\n", "train.csv:3: 3 cells, the header has 2"),
    "no label column": ("text,category\nhello,a\n", "train.csv: no 'label' column (--label_column); it has"),
    "header only": ("text,label\n", "train.csv: no rows below the header"),
    "empty file": ("", "train.csv: empty file"),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_run_classification_refuses_a_bad_table(tmp_path, monkeypatch, capsys, case):
    text, error = BAD_TABLES[case]
    (tmp_path / "train.csv").write_text(text)
    message = _refused(
        monkeypatch,
        capsys,
        "run_classification",
        "--train_file",
        str(tmp_path / "train.csv"),
        output_dir=tmp_path / "out",
    )
    assert error in message


BAD_VALIDATION_FILES = {  # the validation file's name and text -> the error
    "empty CSV cell": ("dev.csv", "text,label\nhello,a\n,b\n", "dev.csv:3: empty 'text' value"),
    "JSON null": ("dev.jsonl", '{"text": "hello", "label": "a"}\n{"text": null, "label": "b"}\n', "row 2: empty"),
    "JSON list": ("dev.jsonl", '{"text": ["hello"], "label": "a"}\n', "dev.jsonl: row 1: the 'text' value is a list"),
    "unseen label": ("dev.csv", "text,label\nhello,c\n", "dev.csv: labels ['c'] do not occur in the training file"),
}


@pytest.mark.parametrize("case", BAD_VALIDATION_FILES)
def test_run_classification_refuses_a_bad_validation_file(tmp_path, monkeypatch, capsys, case):
    name, text, error = BAD_VALIDATION_FILES[case]
    (tmp_path / "train.csv").write_text("text,label\nhello world,a\nbye now,b\n")
    (tmp_path / name).write_text(text)
    message = _refused(
        monkeypatch,
        capsys,
        "run_classification",
        "--train_file",
        str(tmp_path / "train.csv"),
        "--validation_file",
        str(tmp_path / name),
        output_dir=tmp_path / "out",
    )
    assert error in message


@pytest.mark.parametrize("short", ["train", "validation"])
def test_run_lm_refuses_a_corpus_shorter_than_one_window(tmp_path, monkeypatch, capsys, short):
    lines = [" ".join(s.tokens) for s in read_conll(SAMPLE / "sample_pos.dev.tsv")]
    files = {"train": tmp_path / "long.txt", "validation": tmp_path / "long.txt", short: tmp_path / "short.txt"}
    (tmp_path / "long.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "short.txt").write_text("a b c\nd e\n")  # 7 tokens with the <eos>s; a window here needs 2 * 20 + 1
    message = _refused(
        monkeypatch,
        capsys,
        "run_lm",
        "--train_file",
        str(files["train"]),
        "--validation_file",
        str(files["validation"]),
        "--bptt",
        "20",
        "--per_device_train_batch_size",
        "2",
        "--per_device_eval_batch_size",
        "2",
        output_dir=tmp_path / "out",
    )
    assert f"{tmp_path / 'short.txt'}: 7 tokens" in message and "--bptt 20" in message and "needs 41" in message


def test_run_lm_refuses_an_empty_corpus(tmp_path, monkeypatch, capsys):
    (tmp_path / "train.txt").write_text("\n\n")
    message = _refused(
        monkeypatch, capsys, "run_lm", "--train_file", str(tmp_path / "train.txt"), output_dir=tmp_path / "out"
    )
    assert message.startswith(f"{tmp_path / 'train.txt'}:1: no text found")


@pytest.mark.parametrize("fraction", ["1.0", "1.5", "-0.1"])
def test_run_tagging_refuses_a_validation_fraction_outside_0_1(tmp_path, monkeypatch, capsys, fraction):
    train = str(SAMPLE / "sample_pos.train.tsv")
    args = ("--train_file", train, "--validation_fraction", fraction)
    message = _refused(monkeypatch, capsys, "run_tagging", *args, output_dir=tmp_path / "out")
    assert f"--validation_fraction {fraction}" in message and "[0, 1)" in message


def test_run_tagging_refuses_a_validation_fraction_that_leaves_no_training_sentence(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny.tsv").write_text("Hello\tINTJ\n!\tPUNCT\n")
    args = ("--train_file", str(tmp_path / "tiny.tsv"), "--validation_fraction", "0.5")
    message = _refused(monkeypatch, capsys, "run_tagging", *args, output_dir=tmp_path / "out")
    assert f"{tmp_path / 'tiny.tsv'} has 1 sentence" in message and "--validation_fraction 0.5" in message


def test_run_tagging_refuses_a_validation_fraction_next_to_a_validation_file(tmp_path, monkeypatch, capsys):
    train, dev = str(SAMPLE / "sample_pos.train.tsv"), str(SAMPLE / "sample_pos.dev.tsv")
    args = ("--train_file", train, "--validation_file", dev, "--validation_fraction", "0.1")
    message = _refused(monkeypatch, capsys, "run_tagging", *args, output_dir=tmp_path / "out")
    assert "--validation_fraction" in message and "--validation_file" in message


# ---- interrupted training: resume from the last complete checkpoint ------------------------------------------------


def _checkpoint(folder: Path, max_shard_size: int | str = "50GB") -> Path:
    """A checkpoint as Trainer._save_checkpoint leaves it: the model's files first, trainer_state.json last."""
    from transformers import TrainerState

    model = hf_rnn.RnnForCausalLM(hf_rnn.RnnConfig(vocab_size=10, embedding_size=4, hidden_size=4))
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    TrainerState().save_to_json(str(folder / "trainer_state.json"))
    return folder


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


INTERRUPTIONS = {  # what a SIGKILL during the save may leave
    "no trainer state": lambda folder: (folder / "trainer_state.json").unlink(),
    "no weights": lambda folder: (folder / "model.safetensors").unlink(),
    "truncated weights": lambda folder: _truncate(folder / "model.safetensors"),
}


@pytest.mark.parametrize("interruption", INTERRUPTIONS)
def test_the_last_complete_checkpoint_skips_an_interrupted_save(tmp_path, caplog, interruption):
    from transformers.trainer_utils import get_last_checkpoint

    for step in (4, 10, 20):  # ordered by step, not by name
        _checkpoint(tmp_path / f"checkpoint-{step}")
    INTERRUPTIONS[interruption](tmp_path / "checkpoint-20")
    assert get_last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-20")  # what transformers would pick
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert f"skipping {tmp_path / 'checkpoint-20'}" in caplog.text
    for value in ("True", "true", str(tmp_path)):  # the last complete one in output_dir, or in the given folder
        assert resolve_resume(value, str(tmp_path)) == str(tmp_path / "checkpoint-10")


def test_a_checkpoint_folder_of_any_name_resumes_from_itself(tmp_path):
    """E.g. the `last-checkpoint` that hub_strategy="checkpoint" keeps; an incomplete one is refused."""
    _checkpoint(tmp_path / "last-checkpoint")
    assert resolve_resume(str(tmp_path / "last-checkpoint"), "elsewhere") == str(tmp_path / "last-checkpoint")
    (tmp_path / "last-checkpoint" / "trainer_state.json").unlink()
    with pytest.raises(ValueError, match=r"last-checkpoint: not a complete checkpoint \(trainer_state\.json"):
        resolve_resume(str(tmp_path / "last-checkpoint"), "elsewhere")


def test_a_sharded_checkpoint_is_complete_when_every_shard_opens(tmp_path):
    shards = sorted(_checkpoint(tmp_path / "checkpoint-3", max_shard_size=300).glob("model-*.safetensors"))
    assert len(shards) > 1 and last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-3"
    _truncate(shards[-1])
    assert last_complete_checkpoint(tmp_path) is None


def test_resuming_from_an_interrupted_or_absent_checkpoint_is_an_error(tmp_path):
    _truncate(_checkpoint(tmp_path / "checkpoint-2") / "model.safetensors")
    with pytest.raises(ValueError, match=r"checkpoint-2: not a complete checkpoint \(model\.safetensors"):
        resolve_resume(str(tmp_path / "checkpoint-2"), str(tmp_path))
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint True: no complete checkpoint in .*checkpoint-2"):
        resolve_resume("True", str(tmp_path))
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint .*nowhere: no such folder"):
        resolve_resume(str(tmp_path / "nowhere"), str(tmp_path))
    assert resolve_resume(None, str(tmp_path)) is None and resolve_resume("False", str(tmp_path)) is None


def test_an_interrupted_run_resumes_from_its_last_complete_checkpoint(tmp_path):
    """Killed while saving checkpoint-4: the rerun skips it, resumes from checkpoint-2 and ends as the full run."""
    common = [*RESUMABLE_TAGGER, "--max_steps", "6", "--save_steps", "2"]
    _run("run_tagging.py", *common, "--output_dir", str(tmp_path / "full"))
    for step in (2, 4):
        shutil.copytree(tmp_path / "full" / f"checkpoint-{step}", tmp_path / "killed" / f"checkpoint-{step}")
    _truncate(tmp_path / "killed" / "checkpoint-4" / "model.safetensors")
    result = _run(
        "run_tagging.py", *common, "--output_dir", str(tmp_path / "killed"), "--resume_from_checkpoint", "True"
    )
    assert f"skipping {tmp_path / 'killed' / 'checkpoint-4'}" in result.stderr
    _same_weights(tmp_path / "killed", tmp_path / "full")


# ---- optional extras absent ----------------------------------------------------------------------------------------


def _without(tmp_path: Path, module: str) -> dict:
    """Environment for a subprocess in which `import module` fails as if the package were not installed."""
    package = tmp_path / "absent" / module
    package.mkdir(parents=True)
    message = f"No module named {module!r}"
    (package / "__init__.py").write_text(f"raise ModuleNotFoundError({message!r}, name={module!r})\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(package.parent), os.environ.get("PYTHONPATH")]))}


def test_run_tagging_without_matplotlib_saves_the_model_and_skips_the_plots(tmp_path):
    train, dev = str(SAMPLE / "sample_pos.train.tsv"), str(SAMPLE / "sample_pos.dev.tsv")
    out = tmp_path / "out"
    args = ("--train_file", train, "--validation_file", dev, "--output_dir", str(out), "--max_steps", "2")
    result = _run("run_tagging.py", *args, *TINY_TAGGER, env=_without(tmp_path, "matplotlib"))
    assert "eval_accuracy" in json.loads(result.stdout.strip().splitlines()[-1])
    assert result.stderr.count("plots skipped") == 1 and 'pip install -e ".[plots]"' in result.stderr
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.png"))


def test_the_crf_benchmark_without_pytorch_crf_names_the_extra(tmp_path):
    bench = Path(__file__).parent.parent / "bench"
    env = {**os.environ, **_without(tmp_path, "torchcrf")}
    result = subprocess.run(
        [sys.executable, "crf.py"], cwd=bench, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and 'pip install -e ".[bench]"' in result.stderr
    assert "Traceback" not in result.stderr


# ---- run_ner.py's flags: --model_name_or_path, --do_train/--do_eval/--do_predict, --test_file, --max_*_samples -----


def _main(monkeypatch, script: str, *args: str) -> None:
    """Run an example script's `main()` in this process: a subprocess would spend most of its time importing."""
    quiet = ["--use_cpu", "true", "--disable_tqdm", "true", "--save_strategy", "no", "--report_to", "none"]
    monkeypatch.setattr(sys, "argv", [script, *args, *quiet])
    _script(script).main()


def _conll_sentences(path: Path) -> list[list[list[str]]]:
    return [[line.split("\t") for line in block.splitlines()] for block in path.read_text().strip().split("\n\n")]


def test_run_tagging_predicts_and_its_checkpoint_predicts_the_same(tmp_path, monkeypatch):
    """Trained from a JSON-lines file (run_ner.py's layout) on its first 300 sentences; predictions.conll holds the
    test file's words and gold tags and scores what predict_results.json says; the saved model, reloaded, tags the
    same."""
    sentences = read_conll(SAMPLE / "sample_pos.train.tsv")
    rows = [json.dumps({"tokens": s.tokens, "ner_tags": s.tags}) for s in sentences]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    test = ["--test_file", str(SAMPLE / "sample_pos.dev.tsv"), "--max_predict_samples", "20", "--no_plots"]
    out, again = tmp_path / "out", tmp_path / "again"
    train = ["--train_file", str(tmp_path / "train.jsonl"), "--max_train_samples", "300", "--num_train_epochs", "2"]
    _main(monkeypatch, "run_tagging", *train, *TINY_TAGGER, "--output_dir", str(out), *test)
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 38  # 2 epochs of 300 / 16 batches

    predicted = _conll_sentences(out / "predictions.conll")
    gold = read_conll(SAMPLE / "sample_pos.dev.tsv")[:20]
    assert [[word for word, _, _ in s] for s in predicted] == [s.tokens for s in gold]
    assert [[tag for _, tag, _ in s] for s in predicted] == [s.tags for s in gold]
    pairs = [(tag, guess) for s in predicted for _, tag, guess in s]
    metrics = json.loads((out / "predict_results.json").read_text())
    assert metrics["predict_accuracy"] == pytest.approx(sum(t == g for t, g in pairs) / len(pairs))

    _main(
        monkeypatch,
        "run_tagging",
        "--model_name_or_path",
        str(out),
        "--do_train",
        "false",
        "--output_dir",
        str(again),
        *test,
    )
    assert (again / "predictions.conll").read_text() == (out / "predictions.conll").read_text()
    assert not (again / "model.safetensors").exists()  # nothing trained, nothing saved

    # a dataset folder whose label set lacks PRON (other tag ids): scored as the same sentences from a file
    dev = [s for s in read_conll(SAMPLE / "sample_pos.dev.tsv") if "PRON" not in s.tags]
    (tmp_path / "data").mkdir()
    for split in ("train", "validation"):
        lines = (json.dumps({"words": s.tokens, "pos": s.tags}) + "\n" for s in dev)
        (tmp_path / "data" / f"{split}.jsonl").write_text("".join(lines))
    (tmp_path / "dev.tsv").write_text(
        "".join("".join(f"{w}\t{t}\n" for w, t in zip(s.tokens, s.tags)) + "\n" for s in dev)
    )
    evaluate = ["--model_name_or_path", str(out), "--do_train", "false", "--no_plots"]
    dataset = ["--dataset_name", str(tmp_path / "data"), "--tokens_column", "words", "--tags_column", "pos"]
    _main(monkeypatch, "run_tagging", *evaluate, *dataset, "--output_dir", str(tmp_path / "from_dataset"))
    _main(
        monkeypatch,
        "run_tagging",
        *evaluate,
        "--validation_file",
        str(tmp_path / "dev.tsv"),
        "--output_dir",
        str(tmp_path / "from_file"),
    )
    scores = [
        json.loads((tmp_path / name / "eval_results.json").read_text()) for name in ("from_dataset", "from_file")
    ]
    assert scores[0]["eval_accuracy"] == scores[1]["eval_accuracy"] > 0.3


def test_a_json_or_csv_tagging_file_reads_as_its_conll_file(tmp_path):
    sentences = read_conll(SAMPLE / "sample_pos.dev.tsv")
    (tmp_path / "dev.jsonl").write_text(
        "".join(json.dumps({"words": s.tokens, "pos": s.tags}) + "\n" for s in sentences)
    )
    lines = ["words,pos", *(f"{' '.join(s.tokens)},{' '.join(s.tags)}" for s in sentences)]
    (tmp_path / "dev.csv").write_text("\n".join(lines) + "\n")
    read_table = _script("run_tagging").read_table
    for name in ("dev.jsonl", "dev.csv"):
        table = read_table(str(tmp_path / name), "words", "pos")
        assert [(s.tokens, s.tags) for s in table] == [(s.tokens, s.tags) for s in sentences]
    (tmp_path / "bad.jsonl").write_text('{"words": ["a", "b"], "pos": ["X"]}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: 2 words but 1 tags"):
        read_table(str(tmp_path / "bad.jsonl"), "words", "pos")


def test_run_classification_predicts_and_its_checkpoint_predicts_the_same(tmp_path, monkeypatch, capsys):
    import csv

    sentences = read_conll(SAMPLE / "sample_pos.train.tsv")
    with open(tmp_path / "all.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([" ".join(s.tokens), "two" if "CCONJ" in s.tags else "one"] for s in sentences)
    test = ["--test_file", str(tmp_path / "all.csv"), "--max_predict_samples", "30"]
    out, again = tmp_path / "out", tmp_path / "again"
    tiny = ["--embedding_size", "16", "--hidden_size", "16", "--max_train_samples", "200", "--num_train_epochs", "1"]
    _main(
        monkeypatch,
        "run_classification",
        "--train_file",
        str(tmp_path / "all.csv"),
        *tiny,
        "--output_dir",
        str(out),
        *test,
    )
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    with open(tmp_path / "all.csv", newline="") as handle:
        assert [row[:2] for row in rows] == list(csv.reader(handle))[:31]  # the header, then the first 30 rows
    metrics = json.loads((out / "predict_results.json").read_text())
    assert metrics["predict_accuracy"] == pytest.approx(sum(row[1] == row[2] for row in rows[1:]) / 30)

    _main(
        monkeypatch,
        "run_classification",
        "--model_name_or_path",
        str(out),
        "--do_train",
        "false",
        "--output_dir",
        str(again),
        *test,
    )
    assert (again / "predictions.csv").read_text() == (out / "predictions.csv").read_text()

    (tmp_path / "new.csv").write_text("text,label\nhello world,three\n")
    args = ("--model_name_or_path", str(out), "--train_file", str(tmp_path / "new.csv"))
    message = _refused(monkeypatch, capsys, "run_classification", *args, output_dir=tmp_path / "refused")
    assert "the data has labels ['three'] that the model does not know" in message


def test_run_lm_scores_a_test_file_and_its_checkpoint_scores_the_same(tmp_path, monkeypatch, capsys):
    lines = [" ".join(s.tokens) for s in read_conll(SAMPLE / "sample_pos.train.tsv")]
    (tmp_path / "train.txt").write_text("\n".join(lines[:500]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(lines[500:]) + "\n")
    test = ["--test_file", str(tmp_path / "test.txt"), "--bptt", "10", "--per_device_eval_batch_size", "4"]
    out, again = tmp_path / "out", tmp_path / "again"
    tiny = ["--hidden_size", "16", "--embedding_size", "16", "--max_train_samples", "160", "--num_train_epochs", "1"]
    _main(monkeypatch, "run_lm", "--train_file", str(tmp_path / "train.txt"), *tiny, "--output_dir", str(out), *test)
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 20  # 160 windows in rows of 8
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert first.startswith("test perplexity ")
    _main(
        monkeypatch,
        "run_lm",
        "--model_name_or_path",
        str(out),
        "--do_train",
        "false",
        "--output_dir",
        str(again),
        *test,
    )
    assert capsys.readouterr().out.strip().splitlines()[-1] == first
    assert json.loads((again / "predict_results.json").read_text())["predict_perplexity"] == pytest.approx(
        float(first.split()[-1]), abs=0.005
    )


def test_a_checkpoint_of_another_head_is_refused(tmp_path):
    hf_rnn.RnnForCausalLM(hf_rnn.RnnConfig(vocab_size=10, embedding_size=4, hidden_size=4)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"a checkpoint of RnnForCausalLM, not of RnnForTokenClassification"):
        load_pretrained(str(tmp_path), hf_rnn.RnnForTokenClassification)


BAD_STEPS = {  # script, flags -> the usage error
    "nothing to evaluate": ("run_tagging", ["--do_train", "false", "--test_file", "t.tsv"], "--do_train false: pass"),
    "eval without data": ("run_tagging", ["--train_file", "t.tsv", "--do_eval", "true"], "--do_eval needs --valid"),
    "predict without data": ("run_classification", ["--train_file", "t.csv", "--do_predict"], "--do_predict needs"),
    "train without data": ("run_lm", ["--model_name_or_path", "m", "--do_train"], "--do_train needs --train_file"),
    "fixed architecture": (
        "run_tagging",
        ["--model_name_or_path", "m", "--train_file", "t.tsv", "--use_crf", "--lowercase"],
        "--use_crf --lowercase: the model and its tokenizer come from --model_name_or_path m",
    ),
    "fixed size": (
        "run_lm",
        ["--model_name_or_path", "m", "--train_file", "t", "--hidden_size", "8"],
        "--hidden_size:",
    ),
}


@pytest.mark.parametrize("case", BAD_STEPS)
def test_steps_without_their_data_or_flags_a_checkpoint_fixes_are_refused(tmp_path, monkeypatch, capsys, case):
    script, args, error = BAD_STEPS[case]
    assert error in _refused(monkeypatch, capsys, script, *args, output_dir=tmp_path / "out")


@pytest.mark.parametrize("script", ["run_tagging", "run_classification", "run_lm"])
def test_the_steps_default_to_what_the_data_asks_for(tmp_path, script):
    parse = _script(script).parse
    train = ["--train_file", "t", "--output_dir", str(tmp_path)]
    steps = ("do_train", "do_eval", "do_predict")
    assert [getattr(parse(train)[-1], step) for step in steps] == [True, False, False]
    both = [*train, "--validation_file", "v", "--test_file", "t"]
    assert [getattr(parse(both)[-1], step) for step in steps] == [True, True, True]
    assert not parse([*both, "--do_eval", "false"])[-1].do_eval


# ---- character and backward language models (--char_level, --reverse) ---------------------------------------------


def _lm_corpus(tmp_path: Path) -> tuple[Path, Path]:
    lines = [" ".join(s.tokens) for s in read_conll(SAMPLE / "sample_pos.train.tsv")]
    (tmp_path / "train.txt").write_text("\n".join(lines[:300]) + "\n")
    (tmp_path / "valid.txt").write_text("\n".join(lines[500:540]) + "\n")
    return tmp_path / "train.txt", tmp_path / "valid.txt"


def test_run_lm_trains_a_character_model_and_reports_bits_per_character(tmp_path, monkeypatch, capsys):
    """Every character is a token (spaces, line ends); eval_bpc is the loss in bits, log2 of the perplexity. The
    tokenizer reloads as one id per character; the checkpoint's config says char_level."""
    train, valid = _lm_corpus(tmp_path)
    out = tmp_path / "out"
    tiny = ["--hidden_size", "32", "--embedding_size", "16", "--num_layers", "1", "--bptt", "50"]
    files = ["--train_file", str(train), "--validation_file", str(valid), "--output_dir", str(out)]
    adamw = ["--no_zaremba", "--learning_rate", "0.02", "--num_train_epochs", "3"]
    _main(monkeypatch, "run_lm", "--char_level", *files, *tiny, *adamw)
    printed = capsys.readouterr().out.strip().splitlines()
    perplexity, bpc = float(printed[-2].split()[-1]), float(printed[-1].split()[-1])
    assert printed[-2].startswith("validation perplexity ") and printed[-1].startswith("validation bits per character")
    assert bpc == pytest.approx(math.log2(perplexity), abs=2e-3)
    metrics = json.loads((out / "eval_results.json").read_text())
    assert metrics["eval_bpc"] == pytest.approx(math.log2(metrics["eval_perplexity"]))
    config = json.loads((out / "config.json").read_text())
    assert config["char_level"] is True and config["reverse"] is False
    assert bpc < 0.7 * math.log2(config["vocab_size"])  # measured 2.81; a uniform guess over its 38 is 5.25
    text = valid.read_text()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer(text).input_ids
    assert len(ids) == len(text) and tokenizer.decode(ids) == text and "\n" in tokenizer.get_vocab()


def test_run_lm_reverse_reads_each_file_last_token_first(tmp_path, monkeypatch, capsys):
    """The streams: a word LM's reversed stream is the forward one flipped (an <eos> now opens each line), cut to
    --max_*_samples first; a backward checkpoint, evaluated again, reads its files reversed as in training."""
    train, valid = _lm_corpus(tmp_path)
    run_lm = _script("run_lm")
    words = read_text(train)
    tokenizer = build_word_tokenizer(words, language_model=True)
    forward = run_lm.token_stream(words, tokenizer, False, None, False)
    backward = run_lm.token_stream(words, tokenizer, False, None, True)
    assert torch.equal(backward, forward.flip(0)) and backward[0] == tokenizer.eos_token_id
    assert torch.equal(run_lm.token_stream(words, tokenizer, False, 7, True), forward[:7].flip(0))
    characters = read_characters(train)
    chars = build_char_tokenizer(characters)
    assert chars.decode(run_lm.token_stream(characters, chars, True, None, True)) == train.read_text()[::-1]

    out, again = tmp_path / "out", tmp_path / "again"
    tiny = ["--hidden_size", "16", "--embedding_size", "16", "--bptt", "10", "--max_train_samples", "80"]
    files = ["--train_file", str(train), "--validation_file", str(valid)]
    _main(monkeypatch, "run_lm", "--reverse", *files, *tiny, "--output_dir", str(out))
    trained = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads((out / "config.json").read_text())["reverse"] is True
    evaluate = ["--model_name_or_path", str(out), "--do_train", "false", "--validation_file", str(valid)]
    _main(monkeypatch, "run_lm", *evaluate, "--bptt", "10", "--output_dir", str(again))
    assert capsys.readouterr().out.strip().splitlines()[-1] == trained


# ---- a classifier or tagger started from a language model's encoder (ULMFiT) ---------------------------------------


def _language_model(folder: Path, char_level: bool = False, reverse: bool = False) -> hf_rnn.RnnForCausalLM:
    """A small saved LM (random weights) whose vocabulary holds the sample's words, or characters."""
    sentences = [s.tokens for s in read_conll(SAMPLE / "sample_pos.train.tsv")]
    if char_level:
        tokenizer = build_char_tokenizer(" ".join(words) + "\n" for words in sentences)
    else:
        tokenizer = build_word_tokenizer(sentences, language_model=True)
    config = hf_rnn.RnnConfig(
        vocab_size=tokenizer.vocab_size, embedding_size=12, hidden_size=16, num_layers=2, tie_word_embeddings=True,
        char_level=char_level, reverse=reverse, pad_token_id=0, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    model = hf_rnn.RnnForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def _classification_files(tmp_path: Path) -> Path:
    import csv

    with open(tmp_path / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for s in read_conll(SAMPLE / "sample_pos.train.tsv")[:100]:
            writer.writerow([" ".join(s.tokens), "two" if "CCONJ" in s.tags else "one"])
    return tmp_path / "train.csv"


def _encoder_loaded(model, lm: hf_rnn.RnnForCausalLM) -> None:
    """The encoder's weights are the LM's, every one; the head's are new."""
    encoder = {name: value for name, value in lm.state_dict().items() if name.startswith("model.")}
    weights = model.state_dict()
    assert set(encoder) == {name for name in weights if name.startswith("model.")}
    assert all(torch.equal(weights[name], value) for name, value in encoder.items())
    assert {name.split(".")[0] for name in weights} - {"model"} == ({"classifier", "crf"} & set(model._modules))


def test_run_classification_starts_from_a_language_models_encoder(tmp_path, monkeypatch, caplog):
    """ULMFiT's start: --model_name_or_path of an LM gives a classifier with its encoder (checked before any step
    changes it: lr 0), its tokenizer and architecture, the training file's labels, --pooling, and a new head; the log
    names what was loaded and what is new. Not a backward LM's encoder, and not without training the new head."""
    lm = _language_model(tmp_path / "lm")
    train, out = _classification_files(tmp_path), tmp_path / "out"
    args = ["--model_name_or_path", str(tmp_path / "lm"), "--train_file", str(train), "--pooling", "max"]
    with caplog.at_level("INFO", logger="hf_rnn.launch"):
        _main(monkeypatch, "run_classification", *args, "--learning_rate", "0", "--output_dir", str(out))
    assert "new: classifier.bias, classifier.weight; left out: lm_head.bias, projection.weight" in caplog.text
    model = hf_rnn.RnnForSequenceClassification.from_pretrained(out)
    _encoder_loaded(model, lm)
    config = model.config
    assert config.id2label == {0: "one", 1: "two"} and config.classifier_pooling == "max" and not config.bidirectional
    assert config.hidden_size == 16 and config.num_layers == 2 and config.architectures == [type(model).__name__]
    tokenizers = [AutoTokenizer.from_pretrained(folder) for folder in (out, tmp_path / "lm")]
    assert tokenizers[0].get_vocab() == tokenizers[1].get_vocab()
    text = "The cat went to Paris."
    assert tokenizers[0](text).input_ids == tokenizers[1](text).input_ids  # <eos> first, as the LM read it

    _language_model(tmp_path / "backward", reverse=True)
    args = ["--model_name_or_path", str(tmp_path / "backward"), "--train_file", str(train)]
    message = _refused(monkeypatch, None, "run_classification", *args, output_dir=tmp_path / "refused")
    assert "a backward language model (config.reverse)" in message


@pytest.mark.parametrize(
    "flags, error",
    [
        (["--do_train", "false", "--validation_file", "v.csv"], "is a language model, its new head needs training"),
        (["--train_file", "t.csv", "--hidden_size", "8"], "--hidden_size: the model and its tokenizer come from"),
    ],
)
def test_a_language_model_fixes_the_encoder_and_needs_training(tmp_path, monkeypatch, capsys, flags, error):
    _language_model(tmp_path / "lm")
    args = ["--model_name_or_path", str(tmp_path / "lm"), *flags]
    assert error in _refused(monkeypatch, capsys, "run_classification", *args, output_dir=tmp_path / "out")


def test_run_tagging_starts_from_a_word_language_models_encoder(tmp_path, monkeypatch):
    """A CRF tagger on an LM's encoder (--use_crf is the new head's), with ULMFiT's schedules on; not on a character
    LM's."""
    lm = _language_model(tmp_path / "lm")
    out = tmp_path / "out"
    args = ["--model_name_or_path", str(tmp_path / "lm"), "--train_file", str(SAMPLE / "sample_pos.train.tsv")]
    schedules = ["--layer_lr_decay", "2.6", "--gradual_unfreezing", "--num_train_epochs", "2"]
    _main(monkeypatch, "run_tagging", *args, "--use_crf", *schedules, "--learning_rate", "0", "--output_dir", str(out))
    model = hf_rnn.RnnForTokenClassification.from_pretrained(out)
    _encoder_loaded(model, lm)
    assert model.config.use_crf and model.config.num_labels == 10 and not model.config.bidirectional

    _language_model(tmp_path / "chars", char_level=True)
    args[1] = str(tmp_path / "chars")
    message = _refused(monkeypatch, None, "run_tagging", *args, output_dir=tmp_path / "refused")
    assert "a character language model, whose encoder reads characters" in message


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
    _main(monkeypatch, "run_tagging", *data, *TINY_TAGGER, "--use_crf", "--output_dir", str(out), "--no_plots")
    model = hf_rnn.RnnForTokenClassification.from_pretrained(out)
    assert model.config.crf_constraints == scheme
    allowed = torch.tensor(scheme_constraints(model.config.crf_labels, scheme)[0])
    assert torch.equal(model.crf.allowed_transitions, allowed) and not allowed.all()
    predicted = [[guess for _, _, guess in s] for s in _conll_sentences(out / "predictions.conll")]
    assert all(convert(tags, scheme) == tags for tags in predicted)  # Viterbi paths are valid in the scheme


def test_run_tagging_trains_in_bioes_on_bio_files_and_scores_in_bio(tmp_path, monkeypatch):
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    files = _chunk_files(tmp_path, "BIO")
    data = ["--train_file", str(files["train"]), "--test_file", str(files["dev"])]
    out = tmp_path / "out"
    flags = ["--use_crf", "--tag_scheme", "BIOES", "--output_dir", str(out), "--no_plots"]
    _main(monkeypatch, "run_tagging", *data, *TINY_TAGGER, *flags)
    config = json.loads((out / "config.json").read_text())
    assert config["crf_constraints"] == "BIOES"
    assert sorted(config["label2id"]) == sorted(["O"] + [f"{p}-{k}" for k in ("LOC", "NP") for p in "BIES"])
    rows = _conll_sentences(out / "predictions.conll")
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
    _main(monkeypatch, "run_tagging", "--model_name_or_path", str(out), *test)
    assert _conll_sentences(again / "predictions.conll") == rows
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
        _script("run_tagging").parse(["--train_file", "x.tsv", "--output_dir", str(tmp_path), *flags])
    assert message in capsys.readouterr().err


def test_run_tagging_refuses_to_convert_tags_that_are_not_chunks(tmp_path, monkeypatch):
    data = ["--train_file", str(SAMPLE / "sample_pos.train.tsv"), "--tag_scheme", "BIOES"]
    with pytest.raises(ValueError, match="--tag_scheme BIOES: the training labels are not chunk tags"):
        _main(monkeypatch, "run_tagging", *data, "--output_dir", str(tmp_path))
