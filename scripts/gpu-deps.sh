#!/usr/bin/env bash
# Fetches, on the build machine (Debian 12, network), the .deb files of the headers and libraries gptkit's build
# needs that the GPU machine's image may lack (cJSON, SQLite, zlib headers), into .gpudeps/ (git-ignored), so a
# GPU run can carry them: device run with carry [".gpudeps"], then scripts/gpu-check.sh unpacks them under /tmp
# and builds against them. About 2 MB. Uses apt-get download (no install).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpudeps
cd .gpudeps
apt-get download libcjson1 libcjson-dev libsqlite3-0 libsqlite3-dev zlib1g-dev 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
ls -l
