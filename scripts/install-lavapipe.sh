#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe) on Debian or Ubuntu, so that burn's wgpu
# backend runs on a machine without a GPU (CI's wgpu tests). Does nothing when a Vulkan driver
# for the CPU is installed already.
set -euo pipefail
if compgen -G "/usr/share/vulkan/icd.d/lvp_icd*.json" >/dev/null; then
    exit 0
fi
# CI runs as root; elsewhere apt needs sudo.
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
