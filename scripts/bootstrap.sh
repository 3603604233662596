#!/usr/bin/env bash
# One entry point for a fresh machine: create .venv, install ttasr with the extras the demo
# and the tests need, fetch the NIQE parameters, then run the demo or the test suite.
#   bash scripts/bootstrap.sh demo [ttasr demo options...]
#   bash scripts/bootstrap.sh test [pytest options...]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
shift || true
case "$what" in demo|test|setup) ;; *) echo "usage: bash scripts/bootstrap.sh demo|test|setup [args...]" >&2; exit 2;; esac

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($py --version)"
  "$py" -m venv .venv
fi
stamp=.venv/.ttasr-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/constraints.txt -nt "$stamp" ]; then
  echo "[bootstrap] installing ttasr[offline,metrics,io,dev] (first run takes a few minutes)"
  # PyTorch with its CUDA libraries takes about 7 GiB once installed, and pip needs room for the
  # downloads as well (in TMPDIR): say so before minutes of downloading end in "No space left".
  need_gib=9
  for where in .venv "${TMPDIR:-/tmp}"; do
    free_gib=$(df -Pk "$where" 2>/dev/null | awk 'NR==2 {print int($4 / 1048576)}')
    if [ -n "$free_gib" ] && [ "$free_gib" -lt "$need_gib" ]; then
      echo "[bootstrap] warning: $free_gib GiB free on the file system of $where; the install needs about $need_gib GiB (PyTorch). Free some space, or point TMPDIR at a larger disk" >&2
    fi
  done
  .venv/bin/python -m pip install -q --disable-pip-version-check -c scripts/constraints.txt \
    -e ".[offline,metrics,io,dev]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  .venv/bin/python -c "import ttasr, torch, spandrel" || {
    echo "[bootstrap] install failed (pip's messages above). Free disk space: $(df -Ph .venv | awk 'NR==2 {print $4}') for .venv, $(df -Ph "${TMPDIR:-/tmp}" | awk 'NR==2 {print $4}') in ${TMPDIR:-/tmp}; then run this command again" >&2
    exit 1; }
  touch "$stamp"
fi
# NIQE's pristine parameters: pyiqa downloads them from a model hub; we take the
# original MATLAB values from the basicsr sdist on PyPI when the hub is unreachable.
.venv/bin/ttasr metrics fetch niqe --quiet || echo "[bootstrap] warning: NIQE parameters unavailable; NIQE-based steps will say how to supply them" >&2

case "$what" in
  demo) exec .venv/bin/ttasr demo "$@" ;;
  test) .venv/bin/python -m mypy ttasr && exec .venv/bin/python -m pytest -q "$@" ;;
  setup) echo "[bootstrap] ready: .venv/bin/ttasr --help" ;;
esac
