"""One training step of the BiLSTM-CRF against the same BiLSTM with a softmax head (goal: CRF <= 1.25x).

python bench/tagger_step.py [--device cuda]
"""

import argparse

import torch
from common import add_device_argument, compare_ms, device_name, goal_row

import hf_rnn


def main() -> None:
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    labels = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC", "ORG", "MISC", "GPE", "DATE", "NUM", "EVT") for p in "BI"]
    labels.append("X")  # 18 tags, the shape of the peer measurements (BiLSTM 100/256, B32 T40)
    print(
        f"device: {device_name(device)}; torch {torch.__version__}; BiLSTM emb 100, hidden 256, {len(labels)} tags, "
        "batch 32, T 40 (lengths in [20, 40]), forward + backward + Adam step"
    )
    print("| head | ms / step | vs softmax |")
    print("| --- | ---: | ---: |")
    torch.manual_seed(0)
    ids = torch.randint(1, 5000, (32, 40), device=device)
    lengths = torch.randint(20, 41, (32,), device=device)
    mask = (torch.arange(40, device=device) < lengths[:, None]).long()
    tags = torch.randint(len(labels), (32, 40), device=device).masked_fill(mask == 0, -100)
    steps = []
    for use_crf in (False, True):
        config = hf_rnn.RnnConfig(
            vocab_size=5000,
            embedding_size=100,
            hidden_size=256,
            bidirectional=True,
            use_crf=use_crf,
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )
        model = hf_rnn.RnnForTokenClassification(config).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad()
            model(ids, attention_mask=mask, labels=tags).loss.backward()
            optimizer.step()

        steps.append(step)
    softmax_ms, crf_ms = compare_ms(steps, device, args.repeats)
    print(f"| softmax | {softmax_ms:.1f} | 1.00x |")
    print(f"| CRF | {crf_ms:.1f} | {crf_ms / softmax_ms:.2f}x |")
    ratio = crf_ms / softmax_ms
    goal_row("tagger_step", "BiLSTM-CRF / BiLSTM-softmax step time", ratio, "<= 1.25x", ratio <= 1.25)


if __name__ == "__main__":
    main()
