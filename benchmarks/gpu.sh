#!/usr/bin/env bash
# Training throughput on the GPU machine (../shared/GPU.md): finetunekit against the seed's
# plain Keras code, same run, Keras 3 on JAX (that machine has no TensorFlow and no
# network). Writes bench.json, bench.md and bench.png into $OUT/bench.
#
# Here, once (downloads the wheels the GPU machine lacks; .whl/ is git-ignored):
#   bash benchmarks/gpu.sh --fetch-wheels
# On the GPU machine (the device tool), carrying .whl:
#   run(command="bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=540)
# Try it here on the CPU with tiny settings first:
#   SIZE=32 BATCH=4 STEPS=1 REPEATS=1 OUT=/tmp/gpu-try bash benchmarks/gpu.sh --here
#
# Settings (environment): SIZE (150, the seed's), BATCH (128), STEPS (20 batches per
# timed repeat), REPEATS (5), STRATEGIES (feature_extraction,partial,full: with two
# precisions that is 12 models to compile, several minutes; run others, e.g.
# STRATEGIES=two_stage,lora, in a second call), PRECISIONS (float32,mixed_bfloat16),
# MODES (throughput,end_to_end: which benchmarks), E2E_EPOCHS (3 timed epochs per repeat).
# end_to_end (issue 15): Engine.run epochs against plain model.fit of the same model, in
# memory and streamed (a PyDataset here: no TensorFlow), strategy full, STEPS batches per
# epoch, with the run folder (checkpoints, report) and without; written to
# $OUT/bench-end-to-end and $OUT/bench-end-to-end-nosave. Only end to end, e.g.:
#   run(command="MODES=end_to_end bash benchmarks/gpu.sh", carry=[".whl"], timeout_s=400)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  # keras as GPU.md says; click and tomli-w because finetunekit's CLI and recipes need them
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform any \
    -d .whl keras==3.15.1 namex optree click tomli-w
  exit 0
fi

if [[ "${1:-}" != "--here" ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target .pydeps .whl/*.whl
  export PYTHONPATH=$PWD/.pydeps:$PWD
  PY=python3
else
  export PYTHONPATH=$PWD
  PY=${PYTHON:-python3}
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

SIZE=${SIZE:-150}
BATCH=${BATCH:-128}
STEPS=${STEPS:-20}
REPEATS=${REPEATS:-5}
STRATEGIES=${STRATEGIES:-feature_extraction,partial,full}
PRECISIONS=${PRECISIONS:-float32,mixed_bfloat16}
MODES=${MODES:-throughput,end_to_end}
E2E_EPOCHS=${E2E_EPOCHS:-3}
OUT=${OUT:-out}

$PY -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
# one call per strategy, each writing its own folder: a call cut short by the time limit
# loses only its own strategy
if [[ ",$MODES," == *,end_to_end,* ]]; then
  for folder in "" --no-run-folder; do
    $PY -m finetunekit bench --end-to-end --backbones vgg16 --strategies full \
      --image-size "$SIZE" --batch-size "$BATCH" --precision "${PRECISIONS##*,}" \
      --steps "$STEPS" --epochs "$E2E_EPOCHS" --repeats "$REPEATS" $folder \
      --out "$OUT/bench-end-to-end${folder:+-nosave}"
  done
fi
if [[ ",$MODES," == *,throughput,* ]]; then
  for strategy in ${STRATEGIES//,/ }; do
    $PY -m finetunekit bench --backbones vgg16 --strategies "$strategy" --image-size "$SIZE" \
      --batch-size "$BATCH" --precision "$PRECISIONS" --steps "$STEPS" --repeats "$REPEATS" \
      --out "$OUT/bench-$strategy"
  done
fi
