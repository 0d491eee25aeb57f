#!/usr/bin/env bash
# Install what the container check (tests/test_container.py) and the offline test need,
# from Debian's packages: podman with runc, debootstrap for the stand-in base image,
# iproute2 and util-linux for network namespaces. Needs root and apt-get; without them it
# says so, and those tests skip with the reason.
set -euo pipefail
missing=()
for tool in podman runc debootstrap ip unshare; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "WARNING: ${missing[*]} missing and not installable here (needs root and apt-get):" \
    "the container check will be skipped" >&2
  exit 0
fi
echo "installing podman, runc, debootstrap, iproute2 (once)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq podman runc debootstrap iproute2 util-linux >/dev/null
