#!/usr/bin/env bash
# Makes sure Chromium and chromedriver are installed for tests/review_browser.rs (the review
# page in a real headless browser) and prints where they are, as two lines:
#   LOOPC_CHROMIUM=/usr/bin/chromium
#   LOOPC_CHROMEDRIVER=/usr/bin/chromedriver
#
# CI, before `cargo test`:
#   eval "$(.ci/browser.sh | sed 's/^/export /')"
#
# Installs Debian's `chromium` and `chromium-driver` with apt when either is missing. When they
# cannot be had, it says so and exits 1: the browser tests would fail (they never skip
# silently; LOOPC_SKIP_BROWSER_TESTS=1 skips them on purpose).
set -euo pipefail

find_one() {
  local env_value="$1"; shift
  if [ -n "$env_value" ] && [ -x "$env_value" ]; then echo "$env_value"; return 0; fi
  for candidate in "$@"; do
    if command -v "$candidate" >/dev/null 2>&1; then command -v "$candidate"; return 0; fi
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

find_chromium() { find_one "${LOOPC_CHROMIUM:-}" chromium chromium-browser google-chrome /usr/lib/chromium/chromium; }
find_chromedriver() { find_one "${LOOPC_CHROMEDRIVER:-}" chromedriver /usr/lib/chromium/chromedriver; }

if ! find_chromium >/dev/null || ! find_chromedriver >/dev/null; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "Chromium or chromedriver is missing and this machine has no apt-get: install them, or set LOOPC_CHROMIUM and LOOPC_CHROMEDRIVER" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing chromium and chromium-driver with apt" >&2
  $sudo apt-get update >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver >&2 || {
    echo "apt-get could not install chromium and chromium-driver: the review page's browser tests cannot run here" >&2
    exit 1
  }
fi

if ! c="$(find_chromium)" || ! d="$(find_chromedriver)"; then
  echo "Chromium or chromedriver is still missing after installing; set LOOPC_CHROMIUM and LOOPC_CHROMEDRIVER" >&2
  exit 1
fi
echo "LOOPC_CHROMIUM=$c"
echo "LOOPC_CHROMEDRIVER=$d"
