"""generate() with the carried recurrent state against recomputing the whole prefix for every new token.

python bench/generate.py [--device cuda]
"""

import argparse

import torch
from common import add_device_argument, compare_ms, device_name, goal_row

import hf_rnn


def main() -> None:
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    parser.add_argument("--new_tokens", type=int, default=32)
    args = parser.parse_args()
    device = args.device
    config = hf_rnn.RnnConfig(vocab_size=10000, embedding_size=650, hidden_size=650, num_layers=2, eos_token_id=None)
    model = hf_rnn.RnnForCausalLM(config).to(device).eval()
    print(f"device: {device_name(device)}; 2x650 LSTM LM, batch 1, greedy, {args.new_tokens} new tokens")
    print("| prompt length | cached ms/token | recomputed ms/token | speed-up |")
    print("| ---: | ---: | ---: | ---: |")
    for prompt_length in (16, 128, 512):
        prompt = torch.randint(1, config.vocab_size, (1, prompt_length), device=device)
        runs = [
            lambda use_cache=use_cache: model.generate(
                prompt,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                use_cache=use_cache,
            )
            for use_cache in (True, False)
        ]
        timings = [ms / args.new_tokens for ms in compare_ms(runs, device, repeats=3, warmup=1)]
        print(f"| {prompt_length} | {timings[0]:.2f} | {timings[1]:.2f} | {timings[1] / timings[0]:.1f}x |")
        goal_row("generate", f"recomputed / cached ms per token, prompt {prompt_length}", timings[1] / timings[0])


if __name__ == "__main__":
    main()
