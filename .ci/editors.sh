#!/usr/bin/env bash
# Makes sure the editor tests (tests/editors.rs) have what they need: node and npm (to install
# and package the VS Code extension from npm) and neovim (the headless client). Installs
# Debian's `nodejs`, `npm` and `neovim` with apt when one is missing. When they cannot be had,
# it says so and exits 1: the editor tests would fail (they never skip silently;
# LOOPC_SKIP_EDITOR_TESTS=1 skips them on purpose).
set -euo pipefail

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v nvim >/dev/null 2>&1 || missing+=(neovim)

if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing ${missing[*]} and this machine has no apt-get: install node (18 or newer), npm and neovim (0.7 or newer)" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing ${missing[*]} with apt" >&2
  $sudo apt-get update >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 || {
    echo "apt-get could not install ${missing[*]}: the editor tests cannot run here" >&2
    exit 1
  }
fi

for tool in node npm nvim; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool is still missing after installing; the editor tests cannot run here" >&2
    exit 1
  fi
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "node $(node --version) is too old for the VS Code packaging tools: install node 18 or newer" >&2
  exit 1
fi
echo "node $(node --version), npm $(npm --version), $(nvim --version | head -1)" >&2
