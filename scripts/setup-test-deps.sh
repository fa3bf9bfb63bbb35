#!/usr/bin/env bash
# System packages the tests need besides Python ones: Debian's Chromium, which the
# browser test of `boomerang serve` drives with Playwright (no browser download).
# Runs apt-get as root (CI) or through sudo; does nothing when chromium is there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
