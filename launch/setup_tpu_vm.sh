#!/usr/bin/env bash
# Idempotent per-worker setup: a venv with pinned jax[tpu] and the repo's requirements.
# `tpu_vm.py setup` runs it from the synced code on every worker (--worker=all); rerunning it
# with the same pins does nothing, a changed pin reinstalls.
set -euo pipefail

cd "$(dirname "$0")/.."
source launch/versions.env
VENV="${GRAMR2_VENV:-$HOME/gramr2_jax/venv}"
MARKER="$VENV/.gramr2_setup_hash"

pinned_files=(launch/versions.env launch/setup_tpu_vm.sh)
if [[ -f requirements.txt ]]; then
  pinned_files+=(requirements.txt)
fi
wanted="$(cat "${pinned_files[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$wanted" ]]; then
  echo "$(hostname): already set up (${wanted:0:12})"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  rm -rf "$VENV"
  # Some runtime images lack ensurepip; install python3-venv only when venv creation fails.
  if ! python3 -m venv "$VENV"; then
    rm -rf "$VENV"
    sudo apt-get update -q && sudo apt-get install -y -q python3-venv
    python3 -m venv "$VENV"
  fi
fi
pip=("$VENV/bin/python" -m pip)
"${pip[@]}" install -q -U pip
"${pip[@]}" install -q "jax[tpu]==$JAX_VERSION" -f "$LIBTPU_FIND_LINKS"
if [[ -f requirements.txt ]]; then
  # The constraint stops requirements.txt from moving jax off the pin.
  "${pip[@]}" install -q -r requirements.txt \
    -c <(printf 'jax==%s\njaxlib==%s\n' "$JAX_VERSION" "$JAX_VERSION")
fi

# Written last, so a failed install is retried on the next run.
echo "$wanted" > "$MARKER"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import socket

def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "missing"

# Compare these lines across workers: they must all agree.
print(f"{socket.gethostname()}: jax {version('jax')} jaxlib {version('jaxlib')} libtpu {version('libtpu')}")
PY
