"""hf_rnn's LinearChainCRF against pytorch-crf 0.7.2 on the same inputs: NLL forward+backward and Viterbi.

python bench/crf.py [--device cuda]
"""

import argparse

import torch
from common import add_device_argument, compare_ms, device_name, goal_row

from hf_rnn.crf import LinearChainCRF

try:
    from torchcrf import CRF
except ImportError:
    raise SystemExit(
        'bench/crf.py compares against pytorch-crf: the bench extra, pip install -e ".[bench]" in a clone'
    ) from None

SHAPES = [(32, 40, 18), (64, 128, 20), (256, 64, 9)]  # batch, length, tags


def main() -> None:
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 = the setting of the README's table)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    print(f"device: {device_name(device)}; torch {torch.__version__}; right-padded batches, lengths in [T/2, T]")
    print(
        "| B | T | C | NLL f+b: pytorch-crf ms | hf_rnn ms | speed-up | Viterbi: pytorch-crf ms | hf_rnn ms | speed-up |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch, length, num_tags in SHAPES:
        torch.manual_seed(0)
        ours = LinearChainCRF(num_tags).to(device)
        reference = CRF(num_tags, batch_first=True).to(device)
        with torch.no_grad():
            for name in ("transitions", "start_transitions", "end_transitions"):
                getattr(ours, name).copy_(torch.randn_like(getattr(ours, name)))
                getattr(reference, name).copy_(getattr(ours, name))
        emissions = torch.randn(batch, length, num_tags, device=device, requires_grad=True)
        tags = torch.randint(num_tags, (batch, length), device=device)
        lengths = torch.randint(length // 2, length + 1, (batch,), device=device)
        lengths[0] = length  # pytorch-crf needs the first column unmasked and one full row to size its loop
        mask = torch.arange(length, device=device) < lengths[:, None]

        with torch.no_grad():  # same answers before timing
            torch.testing.assert_close(
                ours.log_likelihood(emissions, tags, mask),
                reference(emissions, tags, mask, reduction="none"),
                atol=1e-3,
                rtol=1e-4,
            )
            expected = reference.decode(emissions, mask)
            decoded = ours.decode(emissions, mask)
            assert all(decoded[b, : len(p)].tolist() == p for b, p in enumerate(expected))

        def nll_reference():
            (-reference(emissions, tags, mask, reduction="sum")).backward()

        def nll_ours():
            (-ours.log_likelihood(emissions, tags, mask).sum()).backward()

        timings = compare_ms([nll_reference, nll_ours], device, args.repeats)
        with torch.no_grad():
            timings += compare_ms(
                [lambda: reference.decode(emissions, mask), lambda: ours.decode(emissions, mask)], device, args.repeats
            )
        print(
            f"| {batch} | {length} | {num_tags} | {timings[0]:.2f} | {timings[1]:.2f} | {timings[0] / timings[1]:.1f}x | "
            f"{timings[2]:.2f} | {timings[3]:.2f} | {timings[2] / timings[3]:.1f}x |"
        )
        shape = f"B{batch} T{length} C{num_tags}"
        goal_row("crf", f"NLL f+b speed-up against pytorch-crf, {shape}", timings[0] / timings[1])
        speedup = timings[2] / timings[3]
        goal_row("crf", f"Viterbi speed-up against pytorch-crf, {shape}", speedup, ">= 3x", speedup >= 3)


if __name__ == "__main__":
    main()
