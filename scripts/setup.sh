#!/usr/bin/env bash
# Install what is missing, and only that; safe to run twice.
#  - ffmpeg: decodes every audio/video container (Common Voice mp3, browser WebM, YouTube audio)
#  - espeak-ng: speaks the bundled sample corpus (Resources/)
#  - chromium (with --with-browser): the headless browser test of the apps
#  - .venv: a virtual environment with requirements-dev.txt (runtime + tests + the offline model)
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
[ "${1:-}" = "--with-browser" ] && want_browser=1

missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
[ "$want_browser" = 1 ] && ! command -v chromium >/dev/null && missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages with apt: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv (requirements-dev.txt)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  touch "$stamp"
fi
echo "setup: ok (.venv, ffmpeg, espeak-ng$([ "$want_browser" = 1 ] && echo ', chromium'))"
