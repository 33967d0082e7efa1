"""The hot path of a training and an evaluation step: host reads of device values per step (each drains a GPU's
launch queue), graph breaks under `torch.compile` (allow_rnn), and what an evaluation step costs with each head.

python bench/hot_path.py [--device cuda] [--skip_compile]
"""

import argparse

import torch
from common import add_device_argument, compare_ms, device_name, goal_row

import hf_rnn
from hf_rnn.profiling import count_host_reads

HEADS = ("softmax", "crf", "semicrf")
LABELS = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC", "ORG", "MISC", "GPE", "DATE", "NUM", "EVT") for p in "BI"]
LABELS.append("B-X")  # 18 tags, the shape of the peer measurements (BiLSTM 100/256, B32 T40)


def tagger(head: str, cell: str, device: torch.device, width: int = 256) -> hf_rnn.RnnForTokenClassification:
    config = hf_rnn.RnnConfig(
        vocab_size=5000,
        embedding_size=100 if width == 256 else 8,
        hidden_size=width,
        bidirectional=True,
        cell_type=cell,
        head_type=head,
        crf_constraints="BIO" if head == "crf" else None,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    return hf_rnn.RnnForTokenClassification(config).to(device)


def batch(device: torch.device, size: int = 32, length: int = 40):
    """Right-padded ragged rows (lengths in [length / 2, length]), BIO-valid labels."""
    ids = torch.randint(1, 5000, (size, length), device=device)
    lengths = torch.randint(length // 2, length + 1, (size,), device=device)
    mask = (torch.arange(length, device=device) < lengths[:, None]).long()
    tags = torch.randint(len(LABELS), (size, length), device=device)
    inside = (tags % 2 == 0) & (tags > 0)  # I-X: legal after B-X or I-X of its type only; make it B-X
    tags = torch.where(inside, tags - 1, tags).masked_fill(mask == 0, -100)
    return ids, mask, tags


def reads_per_step(model, ids, mask, labels) -> tuple[int, int]:
    model.train()
    with count_host_reads() as training:
        model(ids, attention_mask=mask, labels=labels).loss.backward()
    model.eval()
    with count_host_reads() as evaluation, torch.no_grad():
        model(ids, attention_mask=mask, labels=labels)
    return len(training), len(evaluation)


def graph_breaks(model, ids, mask, labels) -> tuple[int, int]:
    def train_step(ids, mask, labels):
        return model(ids, attention_mask=mask, labels=labels).loss

    def eval_step(ids, mask, labels):
        output = model(ids, attention_mask=mask, labels=labels, return_predictions=True)
        return output.loss, output.predictions, output.logits

    found = []
    for step, training in ((train_step, True), (eval_step, False)):
        model.train(training)
        torch._dynamo.reset()
        with torch._dynamo.config.patch(allow_rnn=True), torch.set_grad_enabled(training):
            found.append(torch._dynamo.explain(step)(ids, mask, labels).graph_break_count)
    return found[0], found[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip_compile", action="store_true", help="leave out the graph-break count (dynamo)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    torch.manual_seed(0)
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    print("\nHost reads per step (B4 T7 ragged, 2 layers, every cell), train / eval:\n")
    print("| head | " + " | ".join(hf_rnn.cells.CELLS) + " |")
    print("| --- |" + " ---: |" * len(hf_rnn.cells.CELLS))
    most = 0
    small = batch(device, 4, 7)
    for head in HEADS:
        counts = [reads_per_step(tagger(head, cell, device, width=8), *small) for cell in hf_rnn.cells.CELLS]
        most = max(most, *(max(pair) for pair in counts))
        print(f"| {head} | " + " | ".join(f"{t} / {e}" for t, e in counts) + " |")
    goal_row("hot_path", "host reads per tagger step, most of any head and cell", most, "<= 1", most <= 1, unit="")
    if not args.skip_compile:
        print("\nGraph breaks under torch.compile (allow_rnn), BiLSTM tagger B32 T40, train / eval:\n")
        print("| head | graph breaks |")
        print("| --- | ---: |")
        breaks = 0
        for head in HEADS:
            found = graph_breaks(tagger(head, "lstm", device), *batch(device))
            breaks = max(breaks, *found)
            print(f"| {head} | {found[0]} / {found[1]} |")
        goal_row("hot_path", "graph breaks of a tagger step, most of any head", breaks, "0", breaks == 0, unit="")
    print("\nEvaluation step (eval mode, labels: loss, predictions, logits), BiLSTM emb 100 hidden 256, B32 T40:\n")
    data = batch(device)
    models = {head: tagger(head, "lstm", device).eval() for head in HEADS}

    def evaluation(model):
        def step():
            with torch.no_grad():
                return model(data[0], attention_mask=data[1], labels=data[2])

        return step

    timings = dict(zip(HEADS, compare_ms([evaluation(model) for model in models.values()], device, args.repeats)))
    print("| head | ms / step | vs softmax |")
    print("| --- | ---: | ---: |")
    for head, ms in timings.items():
        print(f"| {head} | {ms:.1f} | {ms / timings['softmax']:.2f}x |")
    goal_row("hot_path", "BiLSTM-CRF / BiLSTM-softmax evaluation step", timings["crf"] / timings["softmax"])


if __name__ == "__main__":
    main()
