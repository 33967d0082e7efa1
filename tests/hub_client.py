"""Client side of the Hub tests, run in fresh processes (HF_ENDPOINT and an empty HF_HOME set by the test).

    python hub_client.py push REPO OUT_DIR [REVISION]     train a tiny char-BiLSTM-CRF, push it (twice), write its predictions
    python hub_client.py load REPO OUT_FILE [--without-hf-rnn] [REVISION]
    python hub_client.py try-load REPO OUT_FILE             record the exception a load raises
    python hub_client.py inspect REPO OUT_FILE REVISION     what model_info, list_repo_refs and list_repo_commits say
    python hub_client.py pull-request REPO OUT_FILE         commit to main, open two pull requests, download from both

With --no-backoff, the client's retry waits are skipped (to test an unreachable Hub quickly).
"""

import json
import sys

SENTENCES = [["The", "old", "teacher", "watches", "a", "quick", "run", "."], ["Anna", "reads", "a", "book", "."]]


def predict(model, tokenizer) -> list[list[int]]:
    import torch

    inputs = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).predictions.tolist()


def push(repo_id: str, out_dir: str, revision: str | None) -> None:
    import torch
    from transformers import DataCollatorForTokenClassification

    import hf_rnn
    from hf_rnn.data import encode_for_tagging, load_sample_pos
    from hf_rnn.hub import push_model
    from hf_rnn.vocabulary import build_word_tokenizer

    torch.manual_seed(0)
    raw = load_sample_pos()
    labels = raw["train"].features["tags"].feature.names
    tokenizer = build_word_tokenizer(raw["train"]["tokens"], char_min_frequency=1)  # ships tokenization_rnn.py
    data = encode_for_tagging(raw, tokenizer)["train"]
    config = hf_rnn.RnnConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=16,
        hidden_size=16,
        char_encoder="lstm",
        char_vocab_size=tokenizer.char_vocab_size,
        char_embedding_size=4,
        char_hidden_size=4,
        bidirectional=True,
        use_crf=True,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = hf_rnn.RnnForTokenClassification(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    collate = DataCollatorForTokenClassification(tokenizer)
    for start in range(0, 320, 32):
        batch = collate([data[i] for i in range(start, start + 32)])
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    model.eval()
    commits = []
    for _ in range(2):  # the second push is unchanged: no new commit
        info = push_model(
            model,
            tokenizer,
            repo_id,
            revision=revision,
            eval_results={"accuracy": 0.9876},
            dataset="hf_rnn-sample-pos",
            hyperparameters={"learning_rate": 0.02, "epochs": 1},
        )
        commits.append(info.oid)
    with open(f"{out_dir}/pushed.json", "w") as handle:
        json.dump({"predictions": predict(model, tokenizer), "commits": commits}, handle)


def load(repo_id: str, out_file: str, with_hf_rnn: bool, revision: str | None) -> None:
    if not with_hf_rnn:
        sys.modules["hf_rnn"] = None  # any `import hf_rnn` now fails
    else:
        import hf_rnn  # noqa: F401
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    model = AutoModelForTokenClassification.from_pretrained(
        repo_id, revision=revision, trust_remote_code=not with_hf_rnn, use_safetensors=True
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(repo_id, revision=revision, trust_remote_code=not with_hf_rnn)
    result = {
        "predictions": predict(model, tokenizer),
        "module": type(model).__module__,
        "tokenizer": type(tokenizer).__module__,
    }
    # transformers' own task, by default read from the card's pipeline_tag (the Hub's model_info reads main's card,
    # so a branch names it); the CRF's max-marginal logits give the Viterbi tags
    task = None if revision is None else "token-classification"
    standard = pipeline(task, model=repo_id, revision=revision, trust_remote_code=not with_hf_rnn)
    result["standard_pipeline"] = [
        [e["entity"] for e in standard([words], is_split_into_words=True, ignore_labels=[])[0]] for words in SENTENCES
    ]
    if with_hf_rnn:
        tagger = pipeline("rnn-token-classification", model=repo_id, revision=revision)
        result["pipeline"] = [
            [e["entity"] for e in tagger([words], is_split_into_words=True, ignore_labels=[])[0]]
            for words in SENTENCES
        ]
    with open(out_file, "w") as handle:
        json.dump(result, handle)


def try_load(repo_id: str, out_file: str) -> None:
    from transformers import AutoModelForTokenClassification

    import hf_rnn  # noqa: F401

    try:
        AutoModelForTokenClassification.from_pretrained(repo_id, use_safetensors=True)
        outcome = {"error": None}
    except Exception as error:  # the test inspects which error surfaced
        outcome = {"error": type(error).__name__, "message": str(error)}
    with open(out_file, "w") as handle:
        json.dump(outcome, handle)


def inspect(repo_id: str, out_file: str, revision: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    info = api.model_info(repo_id, revision=revision)
    refs = api.list_repo_refs(repo_id, include_pull_requests=True)
    commits = api.list_repo_commits(repo_id, revision=revision)
    seen = {
        "pipeline_tag": info.pipeline_tag,
        "library_name": info.library_name,
        "tags": info.tags,
        "card_datasets": info.card_data.datasets,
        "branches": {ref.name: ref.target_commit for ref in refs.branches},
        "tags_refs": refs.tags,
        "pull_requests": {ref.ref: ref.target_commit for ref in refs.pull_requests},
        "commits": [[commit.commit_id, commit.title] for commit in commits],
    }
    with open(out_file, "w") as handle:
        json.dump(seen, handle)


def pull_request(repo_id: str, out_file: str) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

    api = HfApi()
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"v1", path_in_repo="notes.txt", repo_id=repo_id)
    first = api.upload_file(path_or_fileobj=b"proposed", path_in_repo="notes.txt", repo_id=repo_id, create_pr=True)
    second = api.create_commit(repo_id, [CommitOperationAdd("extra.txt", b"x")], commit_message="more", create_pr=True)
    refs = api.list_repo_refs(repo_id, include_pull_requests=True)
    with open(hf_hub_download(repo_id, "notes.txt", revision=first.pr_revision)) as handle:
        pr_content = handle.read()
    with open(hf_hub_download(repo_id, "notes.txt")) as handle:
        main_content = handle.read()
    seen = {
        "first": [first.pr_revision, first.pr_num, first.oid],
        "second": [second.pr_revision, second.pr_num, second.oid],
        "pr_content": pr_content,
        "main_content": main_content,
        "branches": {ref.name: ref.target_commit for ref in refs.branches},
        "pull_requests": {ref.ref: ref.target_commit for ref in refs.pull_requests},
    }
    with open(out_file, "w") as handle:
        json.dump(seen, handle)


if __name__ == "__main__":
    if "--no-backoff" in sys.argv:
        import time

        time.sleep = lambda seconds: None
    command, repo = sys.argv[1], sys.argv[2]
    single_run = {"try-load": try_load, "inspect": inspect, "pull-request": pull_request}
    if command in single_run:
        single_run[command](repo, *sys.argv[3:])
        sys.exit(0)
    positional = [a for a in sys.argv[3:] if not a.startswith("--")]
    if command == "push":
        push(repo, positional[0], positional[1] if len(positional) > 1 else None)
    else:
        load(repo, positional[0], "--without-hf-rnn" not in sys.argv, positional[1] if len(positional) > 1 else None)
