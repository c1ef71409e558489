#!/usr/bin/env bash
# Mutation testing of one module with mutmut 3 and the fast tests that cover it (docs/mutation.md).
# Not part of CI: slow on 2 cores. mutmut copies the code into mutants/ and imports it from there, so the
# checkout's package-dir mapping (esan.runtime -> runtime/ ...) is rebuilt as a plain esan/ tree in WORKDIR.
# usage: tools/mutation.sh MODULE "TEST FILE..." [WORKDIR]
#   MODULE as a path in the checkout, e.g. runtime/core/letterbox.py
#   tools/mutation.sh runtime/core/letterbox.py "tests/core/test_letterbox.py" /tmp/mut-letterbox
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
mod=$1; tests=$2; work=${3:-/tmp/esan-mutation}
command -v mutmut >/dev/null || { echo "mutation: pip install 'esan-rt[mutation]' (mutmut)" >&2; exit 2; }
declare -A room=([runtime]=runtime [train]=train [export]=export [benchmarks]=bench)
top=${mod%%/*}; [ -n "${room[$top]:-}" ] || { echo "mutation: $mod is not under runtime/, train/, export/, benchmarks/" >&2; exit 2; }
rm -rf "$work"; mkdir -p "$work/esan"
for dir in "${!room[@]}"; do cp -r "$repo/$dir" "$work/esan/${room[$dir]}"; done
cp -r "$repo/tests" "$work/tests"
find "$work" -name __pycache__ -prune -exec rm -rf {} +
tests_toml=$(printf '"%s", ' $tests)
cat > "$work/pyproject.toml" <<TOML
[tool.mutmut]
paths_to_mutate = ["esan/${room[$top]}/${mod#*/}"]
also_copy = ["esan"]
tests_dir = [${tests_toml%, }]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
TOML
cd "$work"
export OMP_NUM_THREADS=1 ESAN_CACHE_DIR="$work/cache"
PYTHONWARNINGS=ignore::UserWarning mutmut run --max-children "${MUTATION_CHILDREN:-1}" | tail -c 300
mutmut results > "$work/survivors.txt" || true
echo; echo "survivors (mutmut show NAME in $work): $(grep -c . "$work/survivors.txt" || true)"
