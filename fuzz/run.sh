#!/usr/bin/env bash
# Runs one fuzz target for a fixed time: fuzz/run.sh TARGET SECONDS [extra libFuzzer options]
#   TARGET  one of the names in fuzz/targets.py TARGETS (fuzz/run.sh list prints them)
# The corpus grows in fuzz/corpus/TARGET (seeded from fuzz/seeds/TARGET); a crashing input is written to
# fuzz/findings/TARGET/ and the exit status is non-zero.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
py="$root/.venv/bin/python"
target=${1:?usage: fuzz/run.sh TARGET SECONDS}
if [ "$target" = list ]; then
  cd "$here" && exec "$py" -c 'import targets; print("\n".join(targets.TARGETS))'
fi
seconds=${2:?usage: fuzz/run.sh TARGET SECONDS}
shift 2
if ! "$py" -c 'import atheris' 2>/dev/null; then
  echo "atheris is not installed: $py -m pip install atheris" >&2
  exit 2
fi
mkdir -p "$here/corpus/$target" "$here/findings/$target" "$here/seeds/$target"
cd "$here"
exec "$py" fuzz.py "$target" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
  -artifact_prefix="$here/findings/$target/" "$@" \
  "$here/corpus/$target" "$here/seeds/$target"
