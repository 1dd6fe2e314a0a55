#!/usr/bin/env bash
# Installs everything dwc's tests need on a fresh Debian/Ubuntu machine:
#  - system packages: the aarch64 cross toolchain and qemu-user (ARM modules are built and run here),
#  - dwc itself, editable, with its test extras and PyTorch (the CPU build, pinned: the tests of the
#    OIHW filter format and of the PyTorch integration run against it),
#  - the aarch64 TVM runtime and dwc's qemu runner, prepared once in dwc's cache.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
[ -d /usr/aarch64-linux-gnu/lib ] || missing+=(libc6-dev-arm64-cross)
command -v gcc >/dev/null || missing+=(gcc g++)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-test-deps: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python -m pip install -q --disable-pip-version-check -e ".[test,torch]"
python -c "from dwc_compiler.runtime.emulated import ensure_aarch64_runtime as e; print('install-test-deps: aarch64 runtime in', e())"
