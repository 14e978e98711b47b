#!/usr/bin/env bash
# Install what is missing, and only that; safe to run twice.
#  - ffmpeg: decodes every audio/video container (Common Voice mp3, browser WebM, YouTube audio)
#  - espeak-ng: speaks the bundled sample corpus (Resources/)
#  - chromium (with --with-browser): the headless browser tests of the apps
#  - iproute2 (`ip`): the Ray tests run their cluster in a loopback-only network namespace
#  - .venv: a virtual environment with this project installed, editable, with its `dev` extras
#    (training, tests, the offline Whisper base, the YouTube stack): `.venv/bin/whisper-gl` is the command
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
[ "${1:-}" = "--with-browser" ] && want_browser=1

missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v ip >/dev/null || missing+=(iproute2)
[ "$want_browser" = 1 ] && ! command -v chromium >/dev/null && missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages with apt: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ ! -x .venv/bin/whisper-gl ]; then
  echo "setup: installing whisper-gl and its dev extras into .venv (pip install -e .[dev])"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
echo "setup: ok (.venv, ffmpeg, espeak-ng$([ "$want_browser" = 1 ] && echo ', chromium'))"
