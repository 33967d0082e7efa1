#!/usr/bin/env bash
# ULMFiT's options on UD English EWT UPOS dev (the README's table): a word LSTM LM pretrained on the UD EWT + WNUT-17
# training text, then the same unidirectional CRF tagger started from a randomly initialised copy of that LM (same
# vocabulary: from scratch), from the LM, and from the LM with --layer_lr_decay 2.6 or --gradual_unfreezing.
# Usage: bash examples/reproduce_ulmfit.sh [DATA_DIR] [OUT_DIR]   (DATA_DIR defaults to ../shared/data)
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/ulmfit}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
$PY examples/pretraining_text.py "$DATA" "$OUT" --rare_as_unk  # as reproduce_contextual.sh's, words seen once as <unk>
$PY examples/run_lm.py --train_file "$OUT/lm-train.txt" --validation_file "$OUT/lm-valid.txt" --no_zaremba \
  --embedding_size 100 --hidden_size 256 --num_layers 1 --dropout 0.5 --bptt 35 --per_device_train_batch_size 32 \
  --learning_rate 2e-3 --num_train_epochs 2 --save_strategy no --report_to none --seed 1 --overwrite_output_dir true \
  --output_dir "$OUT/word-lm"
$PY - "$OUT" <<'PYTHON'
import sys, torch, hf_rnn
from transformers import AutoTokenizer
out = sys.argv[1]
lm = hf_rnn.RnnForCausalLM.from_pretrained(f"{out}/word-lm")
torch.manual_seed(1)
hf_rnn.RnnForCausalLM(lm.config).save_pretrained(f"{out}/random-lm")  # the same architecture, random weights
AutoTokenizer.from_pretrained(f"{out}/word-lm").save_pretrained(f"{out}/random-lm")
PYTHON
tag() {  # tag NAME LM [FLAGS...]
  local name=$1 lm=$2; shift 2
  $PY examples/run_tagging.py --model_name_or_path "$OUT/$lm" --use_crf \
    --train_file "$DATA/ud_en_ewt/en_ewt-ud-train.conllu" --validation_file "$DATA/ud_en_ewt/en_ewt-ud-dev.conllu" \
    --per_device_train_batch_size 32 --learning_rate 2e-3 --num_train_epochs 3 --train_sampling_strategy group_by_length \
    --save_strategy no --eval_strategy no --report_to none --disable_tqdm true --seed 1 --no_plots \
    --overwrite_output_dir true --output_dir "$OUT/tag-$name" "$@"
}
tag scratch random-lm
tag lm word-lm
tag lm-discr word-lm --layer_lr_decay 2.6
tag lm-unfreeze word-lm --gradual_unfreezing
