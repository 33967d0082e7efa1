"""The example scripts: their defaults train, their launch checks, runs without the optional extras."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_launched
from example_scripts import (
    SAMPLE,
    TINY_TAGGER,
    example_script,
    logged_losses,
    refused,
    run_script,
)
from transformers import AutoTokenizer

import hf_rnn
from hf_rnn.data import read_conll
from hf_rnn.scripts.launch import check_processes, set_threads

# ---- the scripts' defaults train: only the required flags, on the bundled sample -----------------------------------


def test_run_tagging_trains_with_its_defaults(tmp_path):
    """At the Trainer's lr 5e-5 this run ends at 30 % accuracy and logs no loss (every 500 of its 225 steps)."""
    result = run_script(
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
    assert len(logged_losses(out)) == 45  # every 5th of its 225 steps (2 %, rounded up)
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
    result = run_script("run_tagging.py", *args, *TINY_TAGGER, "--use_crf", "--char_encoder", "lstm")
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
    result = run_script("run_lm.py", *args, flags=(), cwd=tmp_path)
    perplexity = float(result.stdout.strip().split()[-1])
    config = json.loads((tmp_path / "trainer_output" / "config.json").read_text())
    assert config["num_layers"] == 2 and config["vocab_size"] > 70
    assert perplexity < 0.4 * config["vocab_size"]  # measured 20.7; a uniform guess scores the vocabulary size
    assert len(logged_losses(tmp_path / "trainer_output")) == 27  # every 2nd of its 54 steps (2 %, rounded up)
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
    result = run_script("run_classification.py", *args, flags=(), cwd=tmp_path)
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
    training_args = example_script(script).parse([*required, "--output_dir", str(tmp_path)])[-1]
    assert {name: getattr(training_args, name) for name in defaults} == defaults
    given = {"learning_rate": 5e-05, "logging_steps": 500, "optim": "adafactor", "max_grad_norm": 1.0}
    flags = [item for name, value in given.items() for item in (f"--{name}", str(value))]
    training_args = example_script(script).parse([*required, *flags, "--output_dir", str(tmp_path)])[-1]
    assert {name: getattr(training_args, name) for name in given} == given


def test_run_lm_char_level_has_its_own_defaults_and_the_flags_win():
    """--char_level under the recipe: batch 32 and the lr decay after a third of the epochs; a word LM, and a
    character LM with AdamW (--no_zaremba), keep the dataclass's."""
    script = example_script("run_lm")
    parse = script.parse
    word_lm, _, word_training = parse(["--train_file", "x.txt", "--num_train_epochs", "13"])
    assert (
        word_lm.decay_start == script.LmArguments.decay_start == 4 and word_training.per_device_train_batch_size == 8
    )
    for epochs, decay_start in (("3", 1), ("13", 4), ("1", 1)):
        lm_args, _, training_args = parse(["--train_file", "x.txt", "--char_level", "--num_train_epochs", epochs])
        assert (lm_args.decay_start, training_args.per_device_train_batch_size) == (decay_start, 32)
        assert (training_args.optim, training_args.learning_rate, lm_args.bptt) == ("sgd", 1.0, word_lm.bptt)
    given = ["--decay_start", "7", "--per_device_train_batch_size", "4"]
    lm_args, _, training_args = parse(["--train_file", "x.txt", "--char_level", *given])
    assert (lm_args.decay_start, training_args.per_device_train_batch_size) == (7, 4)
    lm_args, _, training_args = parse(["--train_file", "x.txt", "--char_level", "--no_zaremba"])
    assert training_args.optim == "adamw_torch_fused" and training_args.per_device_train_batch_size == 8  # unmeasured


def test_run_lm_without_the_recipe_trains_with_adamw(tmp_path):
    lm_args, _, training_args = example_script("run_lm").parse(["--train_file", "x", "--no_zaremba"])
    assert not lm_args.zaremba and training_args.optim == "adamw_torch_fused" and training_args.learning_rate == 2e-3
    assert training_args.max_grad_norm == 1.0 and training_args.lr_scheduler_type == "linear"


@pytest.mark.parametrize("flag", [("--lr_scheduler_type", "cosine"), ("--warmup_steps", "10")])
def test_run_lm_refuses_a_schedule_that_the_recipe_would_replace(tmp_path, monkeypatch, capsys, flag):
    message = refused(monkeypatch, capsys, "run_lm", "--train_file", "x.txt", *flag, output_dir=tmp_path / "out")
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
    example_script("run_tagging").parse(["--train_file", "x.tsv", "--output_dir", str(tmp_path)])
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
    result = run_script(
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
    result = run_script("run_tagging.py", *args, *TINY_TAGGER, env=_without(tmp_path, "matplotlib"))
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


def test_the_pretraining_text_holds_each_training_sentence_once(tmp_path):
    """reproduce_contextual.sh's and reproduce_ulmfit.sh's LM text: both training files' sentences, 500 held out."""
    data = tmp_path / "data"
    (data / "ud_en_ewt").mkdir(parents=True)
    (data / "wnut17").mkdir()
    ud = [f"Word{i} one ." for i in range(400)]
    wnut = [f"tweet {i} here" for i in range(200)]
    (data / "ud_en_ewt" / "en_ewt-ud-train.conllu").write_text(
        "".join("".join(f"{k}\t{w}\t_\tX\t_\t_\t0\t_\t_\t_\n" for k, w in enumerate(s.split(), 1)) + "\n" for s in ud)
    )
    (data / "wnut17" / "wnut17train.conll").write_text(
        "".join("".join(f"{w}\tO\n" for w in s.split()) + "\n" for s in wnut)
    )
    for flags in ([], ["--rare_as_unk"]):
        out = tmp_path / f"out{len(flags)}"
        run_script("pretraining_text.py", str(data), str(out), *flags, flags=())
        train, valid = ((out / f"lm-{name}.txt").read_text().splitlines() for name in ("train", "valid"))
        assert len(valid) == 500 and len(train) == 100
        if flags:  # "Word17" and "17" occur once: <unk>; "one", ".", "tweet", "here" recur and stay
            assert {w for line in train + valid for w in line.split()} == {"<unk>", "one", ".", "tweet", "here"}
        else:
            assert sorted(train + valid) == sorted(ud + wnut)
