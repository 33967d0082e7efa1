#!/usr/bin/env bash
# The tagging results in the README: UD English EWT UPOS, CoNLL-2000 chunking, WNUT-17 NER (dev splits).
# Usage: bash examples/reproduce_tagging.sh [DATA_DIR] [OUT_DIR]   (DATA_DIR defaults to ../shared/data)
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs}
PY=${PYTHON:-.venv/bin/python}
COMMON=(--per_device_train_batch_size 32 --learning_rate 2e-3 --num_train_epochs 10 --train_sampling_strategy group_by_length
        --normalize_digits --min_frequency 2 --embedding_size 100 --hidden_size 256 --dropout 0.5
        --save_strategy no --eval_strategy no --report_to none --disable_tqdm true --seed 1)
STAGES=${STAGES:-ud conll2000 wnut17}
for head in crf softmax; do
  [[ " $STAGES " == *" ud "* ]] || continue
  flag=(); [ "$head" = crf ] && flag=(--use_crf)
  $PY examples/run_tagging.py --train_file "$DATA/ud_en_ewt/en_ewt-ud-train.conllu" \
      --validation_file "$DATA/ud_en_ewt/en_ewt-ud-dev.conllu" --output_dir "$OUT/ud-upos-$head" "${flag[@]}" "${COMMON[@]}"
done
[[ " $STAGES " != *" conll2000 "* ]] || $PY examples/run_tagging.py --train_file "$DATA/conll2000/train.txt" --validation_fraction 0.1 \
    --output_dir "$OUT/conll2000-crf" --use_crf "${COMMON[@]}"
[[ " $STAGES " != *" wnut17 "* ]] || $PY examples/run_tagging.py --train_file "$DATA/wnut17/wnut17train.conll" --validation_file "$DATA/wnut17/emerging.dev.conll" \
    --output_dir "$OUT/wnut17-crf" --use_crf "${COMMON[@]}"
