#!/usr/bin/env bash
# Installs the build dependencies on Debian/Ubuntu (idempotent; needs root or sudo).
set -euo pipefail
PKGS="build-essential pkg-config libopenblas-dev libdnnl-dev libcjson-dev zlib1g-dev libpcre2-dev bc python3"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
