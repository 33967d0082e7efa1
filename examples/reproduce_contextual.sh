#!/usr/bin/env bash
# Contextual string embeddings, with and without (the README's table): two character LMs pretrained on the training
# text of UD English EWT and WNUT-17, then the same CRF+char tagger on UD UPOS, CoNLL-2000 and WNUT-17 with and without
# them. CoNLL-2000's text is not pretraining text: its dev sentences are held out of its train file, and PTB holds
# the same WSJ articles.
# The LMs train 13 epochs with run_lm.py --char_level's defaults (one run each: its lr decay is planned over the 13
# epochs, which a second run from a checkpoint would restart); both tables read them: the 5-epoch taggers and the
# best recipes (examples/reproduce_tagging.sh's), each run with and without them. TABLES="short" or "long" runs one
# table's taggers.
# Usage: bash examples/reproduce_contextual.sh [DATA_DIR] [OUT_DIR]   (DATA_DIR defaults to ../shared/data)
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${2:-runs/contextual}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
$PY examples/pretraining_text.py "$DATA" "$OUT"  # lm-train.txt, lm-valid.txt (500 held out for bpc)
LM=(--char_level --train_file "$OUT/lm-train.txt" --validation_file "$OUT/lm-valid.txt" --hidden_size 256
    --num_layers 1 --num_train_epochs 13 --save_strategy no --report_to none --overwrite_output_dir true)
TABLES=${TABLES:-short long}
$PY examples/run_lm.py "${LM[@]}" --output_dir "$OUT/char-forward"
$PY examples/run_lm.py "${LM[@]}" --reverse --output_dir "$OUT/char-backward"
TAGGER=(--per_device_train_batch_size 32 --learning_rate 2e-3 --num_train_epochs 5 --train_sampling_strategy group_by_length
        --normalize_digits --min_frequency 2 --embedding_size 100 --hidden_size 256 --dropout 0.5
        --save_strategy no --eval_strategy no --report_to none --disable_tqdm true --seed 1 --no_plots
        --overwrite_output_dir true --use_crf --char_encoder lstm --char_embedding_size 25 --char_hidden_size 25)
LMS=(--forward_lm "$OUT/char-forward" --backward_lm "$OUT/char-backward")
UD=(--train_file "$DATA/ud_en_ewt/en_ewt-ud-train.conllu" --validation_file "$DATA/ud_en_ewt/en_ewt-ud-dev.conllu")
CONLL=(--train_file "$DATA/conll2000/train.txt" --validation_fraction 0.1)
WNUT=(--train_file "$DATA/wnut17/wnut17train.conll" --validation_file "$DATA/wnut17/emerging.dev.conll"
      --lowercase --min_frequency 1 --per_device_train_batch_size 16)
for task in UD CONLL WNUT; do  # the 5-epoch table
  [[ " $TABLES " == *" short "* ]] || break
  declare -n ARGS=$task
  $PY examples/run_tagging.py "${TAGGER[@]}" "${ARGS[@]}" --output_dir "$OUT/${task,,}"
  $PY examples/run_tagging.py "${TAGGER[@]}" "${ARGS[@]}" "${LMS[@]}" --output_dir "$OUT/${task,,}-lm"
done
# the best recipes (reproduce_tagging.sh's ud-upos-crf-char-2x20-wide, conll2000-crf-char, wnut17-crf-char-30)
CHARS=(--use_crf --char_encoder lstm --char_embedding_size 25 --char_hidden_size 25)
BEST=("${TAGGER[@]}" --num_train_epochs 10)  # the later value of a flag wins
UD_BEST=("${UD[@]}" "${CHARS[@]}" --char_hidden_size 50 --num_layers 2 --locked_dropout --embedding_size 200
         --word_dropout 0.1 --num_train_epochs 20)
CONLL_BEST=("${CONLL[@]}" "${CHARS[@]}")
WNUT_BEST=("${WNUT[@]}" "${CHARS[@]}" --num_train_epochs 30)
for task in UD_BEST CONLL_BEST WNUT_BEST; do
  [[ " $TABLES " == *" long "* ]] || break
  declare -n ARGS=$task
  $PY examples/run_tagging.py "${BEST[@]}" "${ARGS[@]}" --output_dir "$OUT/${task,,}"
  $PY examples/run_tagging.py "${BEST[@]}" "${ARGS[@]}" "${LMS[@]}" --output_dir "$OUT/${task,,}-lm"
done
