"""The LMs' pretraining text for reproduce_contextual.sh and reproduce_ulmfit.sh: the training sentences of UD English
EWT and WNUT-17 (never dev text; CoNLL-2000 and PTB are left out, as they hold CoNLL-2000's dev text), one per line,
words joined by single spaces (as the tagger's tokenizer feeds them to the LMs), shuffled, 500 held out for the
validation file.

    python examples/pretraining_text.py DATA_DIR OUT_DIR [--rare_as_unk]

writes OUT_DIR/lm-train.txt and OUT_DIR/lm-valid.txt; `--rare_as_unk` writes the words seen once in the training
lines as `<unk>` (a word LM's vocabulary, smaller softmax).
"""

import argparse
import random
from collections import Counter
from pathlib import Path

from hf_rnn.data import read_conll, read_conllu

HELD_OUT = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--rare_as_unk", action="store_true")
    args = parser.parse_args()
    lines = [" ".join(s.tokens) for s in read_conllu(args.data_dir / "ud_en_ewt" / "en_ewt-ud-train.conllu")]
    lines += [" ".join(s.tokens) for s in read_conll(args.data_dir / "wnut17" / "wnut17train.conll")]
    random.Random(0).shuffle(lines)
    held, train = lines[:HELD_OUT], lines[HELD_OUT:]
    if args.rare_as_unk:
        counts = Counter(word for line in train for word in line.split())
        held, train = (
            [" ".join(w if counts[w] > 1 else "<unk>" for w in line.split()) for line in part]
            for part in (held, train)
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "lm-valid.txt").write_text("\n".join(held) + "\n")
    (args.out_dir / "lm-train.txt").write_text("\n".join(train) + "\n")


if __name__ == "__main__":
    main()
