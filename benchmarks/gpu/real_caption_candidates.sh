#!/bin/bash
# The H200 call of issue 14 / 11 (docs/real_data.md, docs/ablations.md): eight real-photograph
# recipes of benchmarks/real_caption.py and the ShapeCaps scale suite, all side by side on one GPU.
#   CUB=<CUB-layout folder> WEIGHTS=<efficientnet-lite0-57934424.pth> M=5.5 OUT=<folder> \
#     bash benchmarks/gpu/real_caption_candidates.sh          # run from the repository root
# Then, if a time limit cut the benchmarks' own evaluation step, score the trained runs:
#   PYTHONPATH=src python3 benchmarks/real_caption.py --device cuda --rescore $WORK/* --out $OUT
set -u
export PYTHONPATH=$PWD/src
M=${M:-5.5}
WORK=${WORK:-/tmp/rc}
mkdir -p "$WORK" "$OUT/logs"
run() { name=$1; shift; python3 benchmarks/real_caption.py --device cuda --minutes "$M" \
  --data "$CUB" --encoder-weights "$WEIGHTS" --workers 2 --out "$WORK/$name" "$@" \
  > "$OUT/logs/$name.txt" 2>&1; }
run plain --recipe plain &
run colour_drop --recipe colour_drop --no-baseline &
run colour_drop_full --recipe colour_drop_full --no-baseline &
run tic --recipe tic --no-baseline &
run cgan --recipe cgan --no-baseline &
run colour_drop_tic --recipe colour_drop_tic --no-baseline &
run x16_colour_drop --recipe colour_drop --scale 16 &
run x16_plain --recipe plain --scale 16 --no-baseline &
python3 benchmarks/ablations.py --suite scale --device cuda --minutes "$M" --final-eval \
  --out "$OUT/scale_h200.jsonl" > "$OUT/logs/scale.txt" 2>&1 &
wait
