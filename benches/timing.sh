# Shared by benches/*.sh (sourced, not run): time shell commands per
# invocation. Expects the associative array `cmd` (name -> command line) and
# `work` (a scratch directory); `time_all RUNS NAME...` fills the associative
# array `mean_ms` (name -> mean milliseconds) and sets `tool` to what timed
# them: hyperfine when installed, else a plain loop after 5 warm-up runs.
declare -A mean_ms
tool=

time_all() {
  local runs=$1 k i start end
  shift
  if command -v hyperfine >/dev/null; then
    tool=hyperfine
    for k in "$@"; do
      hyperfine -N --warmup 10 --runs "$runs" --export-json "$work/$k.json" "${cmd[$k]}" >/dev/null
      mean_ms[$k]=$(sed -n 's/.*"mean": *\([0-9.e-]*\).*/\1/p' "$work/$k.json" | head -1 | awk '{printf "%.3f", $1*1000}')
    done
  else
    tool="loop of $runs"
    for k in "$@"; do
      for _ in 1 2 3 4 5; do eval "${cmd[$k]}" >/dev/null; done
      start=$(date +%s%N)
      for ((i = 0; i < runs; i++)); do eval "${cmd[$k]}" >/dev/null; done
      end=$(date +%s%N)
      mean_ms[$k]=$(awk -v a="$start" -v b="$end" -v n="$runs" 'BEGIN{printf "%.3f", (b-a)/n/1e6}')
    done
  fi
}

# ratio A B: A/B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
