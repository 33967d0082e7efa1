"""Sharing on the Hub: a complete push (config, safetensors weights, tokenizer, model code, model card).

`push_model` saves everything into a temporary folder and uploads it as one commit, so the local training folder is
never touched, and an unchanged model re-pushed makes no new commit (the Hub reports every file as present).
A `Trainer` that pushes an hf_rnn model writes this module's card too (`trainer_writes_hf_rnn_cards`).

This file travels inside checkpoints (the model's `push_to_hub` and `save_pretrained` import it), so a model loaded
by remote code pushes the same card: it imports only huggingface_hub and its flat siblings `cells.py`, `schemes.py`.
"""

import functools
import sys
import tempfile
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .cells import CELLS
from .schemes import label_scheme

PIPELINE_TAGS = {
    "RnnForTokenClassification": "token-classification",
    "RnnForSequenceClassification": "text-classification",
    "RnnForCausalLM": "text-generation",
    "RnnModel": "feature-extraction",
}


def model_card(
    model,
    repo_id: str,
    eval_results: dict[str, float] | None = None,
    dataset: str | None = None,
    hyperparameters: dict | None = None,
    extra_tags: list[str] | None = None,
) -> ModelCard:
    """A model card: YAML metadata (with model-index when `eval_results` are given), the architecture, the training
    hyper-parameters, an evaluation table, and how to load the model with and without hf_rnn installed."""
    config = model.config
    architecture = type(model).__name__
    task = PIPELINE_TAGS.get(architecture, "feature-extraction")
    kind = CELLS[config.cell_type].display_name
    tags = ["hf_rnn", config.cell_type, "rnn"] + (["bidirectional"] if config.bidirectional else [])
    head = getattr(model, "head", None)  # a tagger's output layer (heads.py)
    tags += list(getattr(head, "card_tags", ())) + (["char-" + config.char_encoder] if config.char_encoder else [])
    tags += [tag for tag in extra_tags or () if tag not in tags]
    results = [
        EvalResult(
            task_type=task,
            dataset_type=dataset or "custom",
            dataset_name=dataset or "custom",
            metric_type=name,
            metric_value=round(float(value), 4),
        )
        for name, value in sorted((eval_results or {}).items())
    ]
    data = ModelCardData(
        library_name="transformers",
        tags=tags,
        pipeline_tag=task,
        model_name=repo_id.split("/")[-1],
        datasets=[dataset] if dataset else None,
        metrics=sorted(eval_results) if eval_results else None,
        eval_results=results or None,
    )
    head_text = getattr(head, "description", "")
    lines = [
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A {'bidirectional ' if config.bidirectional else ''}{config.num_layers}-layer {kind} "
        f"({architecture}{head_text}) made with hf_rnn: "
        f"{model.num_parameters():,} parameters, word embeddings {config.embedding_size}, hidden size "
        f"{config.hidden_size}, vocabulary {config.vocab_size}"
        + (
            f", character {'BiLSTM' if config.char_encoder == 'lstm' else 'CNN'} word features ({config.char_feature_size})"
            if config.char_encoder
            else ""
        )
        + "".join(f", {name[:-3]} character LM {lm.name_or_path}" for name, lm in config.language_models.items())
        + (
            f", {config.num_labels} labels: {', '.join(config.id2label[i] for i in range(config.num_labels))}"
            if task in ("token-classification", "text-classification")
            else ""
        )
        + ".",
        "",
    ]
    if hyperparameters:
        lines += ["## Training hyper-parameters", "", "| name | value |", "| --- | --- |"]
        lines += [f"| {name} | {value} |" for name, value in sorted(hyperparameters.items())] + [""]
    if eval_results:
        lines += [
            "## Evaluation",
            "",
            f"On {dataset or 'the evaluation data'}:",
            "",
            "| metric | value |",
            "| --- | ---: |",
        ]
        lines += [f"| {name} | {float(value):.4f} |" for name, value in sorted(eval_results.items())] + [""]
    auto = {
        "token-classification": "AutoModelForTokenClassification",
        "text-classification": "AutoModelForSequenceClassification",
        "text-generation": "AutoModelForCausalLM",
    }.get(task, "AutoModel")
    lines += [
        "## Usage",
        "",
        "With hf_rnn installed (it is not on PyPI: `pip install -e .` in a clone of its repository, or"
        ' `pip install "hf_rnn @ git+<its repository URL>"`); import it before loading, since transformers learns'
        " the hf_rnn classes only when the import registers them (otherwise it asks for `trust_remote_code`):",
        "",
        "```python",
        "import hf_rnn  # registers the model classes and the rnn-token-classification pipeline",
        f"from transformers import AutoTokenizer, {auto}",
        f'model = {auto}.from_pretrained("{repo_id}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
        "```",
        "",
        "Without hf_rnn (only transformers and torch installed), the model code stored in this repository is used:",
        "",
        "```python",
        f"from transformers import AutoTokenizer, {auto}",
        f'model = {auto}.from_pretrained("{repo_id}", trust_remote_code=True)',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)',
        "```",
        "",
    ]
    if task == "token-classification":
        lines += [
            "Tagging with the model's own decision (Viterbi paths and CRF marginals with a CRF):",
            "",
            "```python",
            "import hf_rnn  # the rnn-token-classification task is hf_rnn's",
            "from transformers import pipeline",
            f'tagger = pipeline("rnn-token-classification", model="{repo_id}", aggregation_strategy="simple")',
            'tagger("Jean went to Paris")',
            "```",
            "",
        ]
        try:
            scheme = label_scheme(config.crf_labels)
        except ValueError:  # labels with no one reading
            scheme = None
        if scheme in ("BIOES", "BILOU"):
            lines += [
                f"transformers' own `token-classification` pipeline groups B-/I- tags only: with this model's {scheme} "
                "tags its entities come out split (an `E-`/`S-` tag as an entity of its own). Use "
                '`rnn-token-classification` above, or read the tags it gives with `aggregation_strategy="none"` '
                "as chunks (`hf_rnn.schemes.chunks`).",
                "",
            ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def push_model(
    model,
    tokenizer,
    repo_id: str,
    revision: str | None = None,
    eval_results: dict[str, float] | None = None,
    dataset: str | None = None,
    hyperparameters: dict | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    create_pr: bool = False,
    commit_description: str | None = None,
    max_shard_size: int | str | None = "50GB",
    tags: list[str] | None = None,
):
    """Push model, tokenizer, model code and card to `repo_id` (created if needed) in one commit.

    `revision` names a branch, created from main if it does not exist; `create_pr=True` opens a pull request instead
    of committing. The other arguments mean what they mean in transformers' `push_to_hub`. Returns the `CommitInfo`.
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hf_rnn_push_") as folder:
        model.save_pretrained(folder, max_shard_size=max_shard_size)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        card = model_card(model, repo_id, eval_results, dataset, hyperparameters, tags)
        card.save(Path(folder) / "README.md")
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message or "Upload model with hf_rnn",
            commit_description=commit_description,
            create_pr=create_pr,
        )


REPORTED_METRICS = ("accuracy", "f1", "precision", "recall", "perplexity")


def _reported(metrics: dict | None) -> dict[str, float]:
    """The evaluation metrics a card reports, without the `eval_` prefix."""
    return {
        key.removeprefix("eval_"): value
        for key, value in (metrics or {}).items()
        if key.removeprefix("eval_") in REPORTED_METRICS
    }


def _hyperparameters(trainer) -> dict:
    """What a `Trainer` run did (`--max_steps` cuts the epochs short), not what the arguments planned."""
    args = trainer.args
    return {
        "learning_rate": args.learning_rate,
        "epochs": round(trainer.state.epoch or 0.0, 2),
        "steps": trainer.state.global_step,
        "batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "optimizer": getattr(args.optim, "value", args.optim),  # "adamw_torch", not "OptimizerNames.ADAMW_TORCH"
        "seed": args.seed,
    }


def push_trained(trainer, metrics: dict | None = None, dataset: str | None = None):
    """`push_model` for a finished `Trainer` run (what the example scripts' `--push_to_hub` does).

    The repository is `--hub_model_id` (default: the output folder's name), the branch `--hub_revision`; the card gets
    the evaluation metrics and the main hyper-parameters. Only the main process pushes.
    """
    args = trainer.args
    if not trainer.is_world_process_zero():
        return None
    return push_model(
        trainer.accelerator.unwrap_model(trainer.model),
        trainer.processing_class,
        args.hub_model_id or Path(args.output_dir).name,
        revision=getattr(args, "hub_revision", None),
        eval_results=_reported(metrics) or None,
        dataset=dataset,
        hyperparameters=_hyperparameters(trainer),
        private=bool(args.hub_private_repo),
        token=args.hub_token,
    )


def trainer_writes_hf_rnn_cards() -> None:
    """Make transformers' `Trainer.create_model_card` write this module's card for an hf_rnn model (other models keep
    transformers' card). `Trainer(push_to_hub=True)`'s `push_to_hub` saves the model, writes README.md with that
    method, then uploads the folder: transformers' card has no `pipeline_tag`, so `pipeline(model=repo_id)` could not
    tell the task. The model's `save_pretrained` calls this, so it is in place before the card is written, with or
    without hf_rnn installed; it does nothing until the Trainer's module is imported, and nothing twice."""
    trainer_module = sys.modules.get("transformers.trainer")
    if trainer_module is None:
        return
    original = trainer_module.Trainer.create_model_card
    if getattr(original, "writes_hf_rnn_cards", False):
        return

    @functools.wraps(original)
    def create_model_card(
        self, language=None, license=None, tags=None, model_name=None, finetuned_from=None, **kwargs
    ):
        model = self.accelerator.unwrap_model(self.model)
        if (
            getattr(getattr(model, "config", None), "model_type", None) != "hf_rnn"
            or type(model).__name__ not in PIPELINE_TAGS
        ):
            return original(self, language, license, tags, model_name, finetuned_from, **kwargs)
        if not self.is_world_process_zero():
            return None
        dataset = kwargs.get("dataset") or kwargs.get("dataset_tags")
        metrics = next((entry for entry in reversed(self.state.log_history) if "eval_loss" in entry), None)
        card = model_card(
            model,
            self.hub_model_id or self.args.hub_model_id or model_name or Path(self.args.output_dir).name,
            eval_results=_reported(metrics) or None,
            dataset=dataset[0] if isinstance(dataset, (list, tuple)) else dataset,
            hyperparameters=_hyperparameters(self),
            extra_tags=[tags] if isinstance(tags, str) else tags,
        )
        card.save(Path(self.args.output_dir) / "README.md")
        return None

    create_model_card.writes_hf_rnn_cards = True
    trainer_module.Trainer.create_model_card = create_model_card
