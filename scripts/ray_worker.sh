#!/usr/bin/env bash
# Join this node to the Ray cluster that scripts/ray_head.sh started, and stay in the
# foreground (`ray start --block`) until stopped: its GPUs then run the server's pipeline
# stages. The model must sit at the same MODEL_DIR path as on the head.
#
#   RAY_HEAD_ADDRESS    the head's address (required), as this node reaches it
#   RAY_PORT            the head's port, 6379 by default
#   RAY_NODE_IP         this node's address (--node-ip-address, also VLLM_HOST_IP); Ray picks
#                       one when unset. Ray replaces 127.0.0.1 with the outward address.
#   NETWORK_INTERFACE   the interface the nodes talk over: NCCL_SOCKET_IFNAME and
#                       GLOO_SOCKET_IFNAME, unless those are set themselves
#   RAY_NUM_CPUS, RAY_NUM_GPUS   what this node offers (Ray detects both when unset)
#   RAY_WAIT_SECONDS    how long to wait for the head's port to open, 600 by default; then fail
#   --no-block          start the node's Ray processes in the background and return
# Other arguments go to `ray start` as they are. `ray stop` ends the node.
set -euo pipefail
cd "$(dirname "$0")/.."

block=(--block)
ray_args=()
for arg in "$@"; do
  case "$arg" in
    --no-block) block=() ;;
    *) ray_args+=("$arg") ;;
  esac
done

if [ -z "${RAY_HEAD_ADDRESS:-}" ]; then
  echo "ray_worker.sh: set RAY_HEAD_ADDRESS to the head node's address" \
    "(the RAY_NODE_IP that scripts/ray_head.sh ran with)" >&2
  exit 2
fi

source scripts/ray_common.sh
if [ -n "${RAY_NODE_IP:-}" ]; then
  ray_args=(--node-ip-address="$RAY_NODE_IP" ${ray_args[@]+"${ray_args[@]}"})
  # Ray's workers on this node take it over: vLLM's own address for this node.
  export VLLM_HOST_IP=${VLLM_HOST_IP:-$RAY_NODE_IP}
fi
if [ -n "${RAY_NUM_CPUS:-}" ]; then ray_args+=(--num-cpus="$RAY_NUM_CPUS"); fi
if [ -n "${RAY_NUM_GPUS:-}" ]; then ray_args+=(--num-gpus="$RAY_NUM_GPUS"); fi

head=$RAY_HEAD_ADDRESS:${RAY_PORT:-6379}
# Wait for the head's port to open (`ray start` gives up after about two minutes).
wait_seconds=${RAY_WAIT_SECONDS:-600}
deadline=$((SECONDS + wait_seconds))
# shellcheck disable=SC2016 # $1 and $2 belong to the inner bash
until timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$RAY_HEAD_ADDRESS" "${RAY_PORT:-6379}" \
  2>/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "ray_worker.sh: no Ray head answered at $head within RAY_WAIT_SECONDS=$wait_seconds" >&2
    exit 1
  fi
  echo "ray_worker.sh: waiting for the Ray head at $head" >&2
  sleep 2
done

exec "$ray" start --address="$head" --disable-usage-stats \
  ${block[@]+"${block[@]}"} ${ray_args[@]+"${ray_args[@]}"}
