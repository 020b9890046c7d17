#!/usr/bin/env bash
# Measure schedopt on this machine's GPU: one table, with the device name, for the README.
#
#   scripts/device_check.sh            # on a machine with an NVIDIA GPU
#   scripts/device_check.sh --cpu      # the same runs on the CPU (to try this script)
#
# On a machine without a GPU it prints one line and exits 0. Otherwise it installs the CUDA
# build of jaxlib for the installed jax version when JAX does not see the GPU yet, runs the
# benchmark scripts with small settings, each under its own time limit inside an overall
# budget of 8 minutes ($DEVICE_CHECK_BUDGET seconds, default 470), and prints one Markdown
# table: benchmark, setting, headline result, wall time, status. Full outputs are kept in
# $DEVICE_CHECK_LOGS (default device-check-logs/). Run it from anywhere; Python is $PYTHON
# (default: python3), with schedopt importable or run from a checkout.
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
budget="${DEVICE_CHECK_BUDGET:-470}"
logs="${DEVICE_CHECK_LOGS:-device-check-logs}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export SCHEDOPT_CACHE_DIR=off  # first calls include compilation, as a new user sees them
SECONDS=0

if [ "${1:-}" = "--cpu" ]; then
  export JAX_PLATFORMS=cpu
  device="CPU ($(nproc) cores): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
else
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "device_check: no NVIDIA GPU on this machine (nvidia-smi finds none); skipped"
    exit 0
  fi
  device="$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
  device="$device, $(nvidia-smi -L | wc -l) GPU(s)"
  backend="$("$python" -c 'import jax; print(jax.default_backend())' 2>/dev/null)"
  if [ "$backend" != "gpu" ]; then
    version="$("$python" -c 'import jax; print(jax.__version__)')" || exit 1
    echo "device_check: installing the CUDA build of jaxlib for jax $version ..." >&2
    if ! "$python" -m pip install --quiet "jax[cuda12]==$version" >&2; then
      echo "device_check: could not install jax[cuda12]==$version; install it and rerun" >&2
      exit 1
    fi
    backend="$("$python" -c 'import jax; print(jax.default_backend())' 2>/dev/null)"
    if [ "$backend" != "gpu" ]; then
      echo "device_check: JAX still does not see the GPU (backend '$backend'); check the" \
        "CUDA driver (nvidia-smi) and the jax-cuda12 install" >&2
      exit 1
    fi
  fi
fi
mkdir -p "$logs"
rows=()

# run NAME LIMIT_S SETTING PARSER -- COMMAND...: the command's output goes to $logs/NAME.txt;
# PARSER (a shell function) reads it and prints the headline result.
run() {
  local name="$1" limit="$2" setting="$3" parser="$4"
  shift 5
  local left=$((budget - SECONDS - 5))
  if [ "$left" -lt 20 ]; then
    rows+=("| $name | $setting | - | - | skipped: out of time |")
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local start=$SECONDS status result
  (cd "$root" && timeout "$limit" "$@") >"$logs/$name.txt" 2>&1
  local code=$?
  case $code in
    0) status="ok" ;;
    124) status="stopped at its ${limit} s limit" ;;
    *) status="failed (exit $code, see $logs/$name.txt)" ;;
  esac
  result="$($parser "$logs/$name.txt" 2>/dev/null)"
  rows+=("| $name | $setting | ${result:--} | $((SECONDS - start)) | $status |")
}

# Headline parsers: one Markdown row (or line) of each script's own output.
optimize_row() {  # optimize() (certified and not) and the exact DP, chain curve, n 4096, T 64
  awk -F'|' '$2 ~ /chain/ && $3 ~ /^ *4096 *$/ && $4 ~ /^ *64 *$/ {
    gsub(/ /, "", $9); printf "optimize %s ms (certify=False %s ms), exact DP %s ms, KL ratio %s",
    $5+0, $6+0, $8+0, $9 }' "$1"
}
batch_row() {  # smooth curves: schedules per second, share certified, share optimal
  awk -F'|' '$2 ~ /smooth/ && /schedules per second/ { r = $4+0 }
    $2 ~ /smooth/ && /certified/ { c = $4 } $2 ~ /smooth/ && /^[|] smooth [|] optimal/ { o = $4 }
    END { gsub(/^ +| +$/, "", c); gsub(/^ +| +$/, "", o)
      if (r) printf "%s schedules/s, certified %s, optimal %s", r, c, o }' "$1"
}
sampler_row() {  # the first law's sampler throughput at T = 16 and T = 64
  awk -F'|' '$2 ~ /markov/ { gsub(/ /, "", $3); gsub(/ /, "", $4);
    printf "%s: %s tokens/s (T=16), %s (T=64)", $2, $3, $4; exit }' "$1" | xargs
}
estimate_row() {
  grep -m1 '^one token per step' "$1"
}
distributed_row() {
  grep -m1 'schedules/s' "$1" | sed 's/.*: first call/first call/'
}

run optimize 150 "n 256-32768, T 4-512, 1 repeat" optimize_row -- \
  "$python" scripts/bench_optimize.py --repeats 1
run batch 90 "smooth curves, n 1024, T 32, 1024 problems" batch_row -- \
  "$python" scripts/bench_batch.py --family smooth --batch 1024 --repeats 2 --single 4 \
  --skip-frontier
run sampler 60 "n 1024, 64 sequences, 1 repeat" sampler_row -- \
  "$python" scripts/bench_sampler.py --repeats 1 --sequences 64 --profile-samples 64
run estimate 120 "digits model, 1 order" estimate_row -- \
  "$python" scripts/bench_estimate.py --skip hmm cost --orders 1
run distributed 60 "optimize_batch n 256, T 16, 4096 problems" distributed_row -- \
  "$python" scripts/bench_distributed.py --batch 4096

jax_line="$(cd "$root" && "$python" -c 'import jax; d = jax.devices()[0]; print(f"jax {jax.__version__}, {jax.device_count()} x {d.device_kind} ({d.platform})")' 2>/dev/null)"
echo
echo "Device: $device; $jax_line; measured $(date -u +%Y-%m-%d), ${SECONDS} s in all"
echo
echo "| benchmark | setting | result | wall (s) | status |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
