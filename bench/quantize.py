"""Dynamic int8 quantisation (`hf_rnn.quantize_dynamic`) against fp32, side by side in one process: weight size,
speed (a forward over a batch of PTB windows, and generate() at batch 1) and accuracy (validation perplexity and how
often the two pick the same next word). The LM is a small PTB LSTM (and GRU) trained for `--windows` truncated-BPTT
windows first (on the first `--train_lines` lines, the 3,000 most frequent words), so the answers are those of a
model that has learnt something. Under a minute on one idle CPU thread.

    python bench/quantize.py [--train_file ptb.train.txt --valid_file ptb.valid.txt] [--windows 40] [--threads 1]
"""

import argparse
import io
import math
import warnings
from pathlib import Path

import torch
from common import add_device_argument, compare_ms, device_name, goal_row

import hf_rnn
from hf_rnn.data import read_text
from hf_rnn.vocabulary import build_word_tokenizer

PTB = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb"
)  # beside the repository, as in lm_trainer_vs_loop


def stream(lines: list[list[str]], vocab: dict[str, int], tokens: int) -> torch.Tensor:
    """The first `tokens` word ids of the text (`read_text` ends each line with `<eos>`)."""
    return torch.tensor([vocab.get(word, vocab["<unk>"]) for line in lines for word in line][:tokens])


def train(cell_type: str, vocab_size: int, data: torch.Tensor, windows: int, bptt: int) -> hf_rnn.RnnForCausalLM:
    torch.manual_seed(0)
    config = hf_rnn.RnnConfig(
        cell_type=cell_type, vocab_size=vocab_size, embedding_size=128, hidden_size=256, num_layers=2
    )
    model = hf_rnn.RnnForCausalLM(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rows = data[: data.numel() // 20 * 20].view(20, -1)  # 20 parallel streams
    cache = None
    for window in range(min(windows, (rows.size(1) - 1) // bptt)):
        span = slice(window * bptt, (window + 1) * bptt)
        inputs, targets = rows[:, span], rows[:, span.start + 1 : span.stop + 1]
        outputs = model(input_ids=inputs, shift_labels=targets, cache=cache, use_cache=True)
        cache = outputs.cache.detach()
        optimizer.zero_grad()
        outputs.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    return model.eval()


def size_mb(model: torch.nn.Module) -> float:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 2**20


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: torch.Tensor, bptt: int) -> tuple[float, torch.Tensor]:
    """Perplexity over 10 parallel streams read window by window with the carried state, and the predicted words."""
    rows = data[: (data.numel() - 1) // 10 * 10 + 1]
    inputs, targets = rows[:-1].view(10, -1), rows[1:].view(10, -1)
    cache, total, predictions = None, 0.0, []
    for start in range(0, inputs.size(1), bptt):
        span = slice(start, start + bptt)
        outputs = model(input_ids=inputs[:, span], shift_labels=targets[:, span], cache=cache, use_cache=True)
        cache = outputs.cache
        total += outputs.loss.item() * targets[:, span].numel()
        predictions.append(outputs.logits.argmax(-1))
    return math.exp(total / targets.numel()), torch.cat(predictions, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_file", default=str(PTB / "ptb.train.txt"))
    parser.add_argument("--valid_file", default=str(PTB / "ptb.valid.txt"))
    parser.add_argument("--train_lines", type=int, default=5000)
    parser.add_argument("--windows", type=int, default=40, help="training windows of 20 x 35 words")
    parser.add_argument("--valid_tokens", type=int, default=3500)
    parser.add_argument("--threads", type=int, default=1)
    add_device_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="torch.ao")  # torch.ao's deprecation notices, one per module
    warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
    if args.device.type != "cpu":
        parser.error(f"--device {args.device}: torch's dynamic int8 kernels run on the CPU only")
    device, bptt = args.device, 35

    lines = read_text(args.train_file)[: args.train_lines]
    tokenizer = build_word_tokenizer(lines, max_vocab_size=3000)
    vocab = tokenizer.get_vocab()
    train_ids = stream(lines, vocab, 20 * (bptt * args.windows + 1))
    valid_ids = stream(read_text(args.valid_file), vocab, args.valid_tokens)
    print(f"device: {device_name(device)}; PTB word LM, 2x256, vocab {len(vocab)}, trained {args.windows} windows")
    print("| cell | weights MB fp32 / int8 | forward 20x35 ms fp32 / int8 | generate ms/token fp32 / int8 |", end=" ")
    print("valid ppl fp32 / int8 | same next word |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    batch = train_ids[: 20 * bptt].view(20, bptt)
    prompt = valid_ids[None, :10]
    for cell_type in ("lstm", "gru"):
        model = train(cell_type, len(vocab), train_ids, args.windows, bptt)
        quantized = hf_rnn.quantize_dynamic(model)
        sizes = [size_mb(m) for m in (model, quantized)]
        with torch.no_grad():
            forward = compare_ms([lambda m=m: m(batch) for m in (model, quantized)], device, repeats=10)
            new = 20
            generate = compare_ms(
                [
                    lambda m=m: m.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False)
                    for m in (model, quantized)
                ],
                device,
                repeats=3,
                warmup=1,
            )
        (ppl, words), (q_ppl, q_words) = evaluate(model, valid_ids, bptt), evaluate(quantized, valid_ids, bptt)
        same = (words == q_words).float().mean().item()
        print(
            f"| {cell_type} | {sizes[0]:.1f} / {sizes[1]:.1f} ({sizes[0] / sizes[1]:.1f}x smaller) "
            f"| {forward[0]:.1f} / {forward[1]:.1f} ({forward[0] / forward[1]:.2f}x) "
            f"| {generate[0] / new:.2f} / {generate[1] / new:.2f} ({generate[0] / generate[1]:.2f}x) "
            f"| {ppl:.1f} / {q_ppl:.1f} ({q_ppl / ppl:.3f}x) | {same:.2%} |"
        )
        goal_row("quantize", f"int8 / fp32 forward speed-up, {cell_type}", forward[0] / forward[1])


if __name__ == "__main__":
    main()
