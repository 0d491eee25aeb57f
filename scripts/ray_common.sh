# Sourced by scripts/ray_head.sh and scripts/ray_worker.sh: the ray command, and the
# network interface the nodes talk over (NETWORK_INTERFACE -> NCCL_SOCKET_IFNAME and
# GLOO_SOCKET_IFNAME, unless those are set themselves).
VENV=${VENV:-.venv}
if [ -x "$VENV/bin/ray" ]; then ray=$VENV/bin/ray; else ray=ray; fi
if ! command -v "$ray" >/dev/null; then
  echo "$(basename "$0"): the ray command is missing: pip install ray" >&2
  exit 1
fi
if [ -n "${NETWORK_INTERFACE:-}" ]; then
  if [ -d /sys/class/net ] && [ ! -e "/sys/class/net/$NETWORK_INTERFACE" ]; then
    echo "$(basename "$0"): NETWORK_INTERFACE=$NETWORK_INTERFACE: no such interface here" \
      "(interfaces: $(cd /sys/class/net && echo *))" >&2
    exit 1
  fi
  export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-$NETWORK_INTERFACE}
  export GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-$NETWORK_INTERFACE}
fi
export RAY_USAGE_STATS_ENABLED=${RAY_USAGE_STATS_ENABLED:-0}
