#!/usr/bin/env bash
# Start the Ray head on this node, wait for the worker nodes (scripts/ray_worker.sh) to
# join, then start the server on the cluster: vLLM places its pipeline-parallel stages
# (PIPELINE_PARALLEL_SIZE) and tensor-parallel ranks (TENSOR_PARALLEL_SIZE) on the nodes'
# GPUs through Ray. The model must sit at the same MODEL_DIR path on every node.
#
#   RAY_PORT            the head's port (GCS), 6379 by default; the workers join there
#   RAY_NODE_IP         this node's address as the other nodes reach it (--node-ip-address,
#                       also VLLM_HOST_IP); Ray picks one when unset. Ray replaces 127.0.0.1
#                       with the outward address; other 127.x.y.z addresses stay on loopback.
#   NETWORK_INTERFACE   the interface the nodes talk over (e.g. eth0, ib0): NCCL_SOCKET_IFNAME
#                       and GLOO_SOCKET_IFNAME, unless those are set themselves
#   RAY_NUM_CPUS, RAY_NUM_GPUS   what this node offers (Ray detects both when unset)
#   RAY_EXPECTED_NODES  wait until this many nodes (the head included) are alive
#   RAY_WAIT_SECONDS    how long to wait for them, 600 by default; then fail
#   RAY_NO_SERVER=1 or --no-server   stop once the cluster is up (start serve.py yourself)
#   RAY_INCLUDE_DASHBOARD   false by default (true: Ray's dashboard, on 127.0.0.1:8265)
# Other arguments go to `ray start` as they are (e.g. --temp-dir=..., --object-store-memory=...).
# The server runs with DISTRIBUTED_EXECUTOR_BACKEND=ray unless that is set. Stop the
# cluster with `ray stop` on every node.
set -euo pipefail
cd "$(dirname "$0")/.."

no_server=${RAY_NO_SERVER:-0}
ray_args=()
for arg in "$@"; do
  case "$arg" in
    --no-server) no_server=1 ;;
    *) ray_args+=("$arg") ;;
  esac
done

if [ -x "${VENV:-.venv}/bin/python" ]; then python=${VENV:-.venv}/bin/python; else python=python3; fi
source scripts/ray_common.sh
RAY_PORT=${RAY_PORT:-6379}
status_args=()
if [ -n "${RAY_NODE_IP:-}" ]; then
  ray_args=(--node-ip-address="$RAY_NODE_IP" ${ray_args[@]+"${ray_args[@]}"})
  export VLLM_HOST_IP=${VLLM_HOST_IP:-$RAY_NODE_IP}
  # For the server's ray.init: this cluster, not a new local one.
  export RAY_ADDRESS=${RAY_ADDRESS:-$RAY_NODE_IP:$RAY_PORT}
  status_args=(--address="$RAY_NODE_IP:$RAY_PORT")
fi
if [ -n "${RAY_NUM_CPUS:-}" ]; then ray_args+=(--num-cpus="$RAY_NUM_CPUS"); fi
if [ -n "${RAY_NUM_GPUS:-}" ]; then ray_args+=(--num-gpus="$RAY_NUM_GPUS"); fi

"$ray" start --head --port="$RAY_PORT" \
  --include-dashboard="${RAY_INCLUDE_DASHBOARD:-false}" --disable-usage-stats \
  ${ray_args[@]+"${ray_args[@]}"}

# Alive nodes in `ray status`: the counts listed under "Active:" (0 before the first report).
alive_nodes() {
  local budget=$1
  timeout "$budget" "$ray" status ${status_args[@]+"${status_args[@]}"} 2>/dev/null |
    awk '/^Active:/ {on = 1; next} /^[A-Z]/ {on = 0} on && $2 ~ /^node_/ {n += $1}
         END {print n + 0}' || true
}

if [ -n "${RAY_EXPECTED_NODES:-}" ]; then
  wait_seconds=${RAY_WAIT_SECONDS:-600}
  deadline=$((SECONDS + wait_seconds))
  while :; do
    left=$((deadline - SECONDS))
    alive=$(alive_nodes "$((left < 60 ? (left > 1 ? left : 1) : 60))")
    alive=${alive:-0}
    echo "ray_head.sh: $alive/$RAY_EXPECTED_NODES nodes alive" >&2
    [ "$alive" -ge "$RAY_EXPECTED_NODES" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "ray_head.sh: only $alive of RAY_EXPECTED_NODES=$RAY_EXPECTED_NODES nodes joined" \
        "within RAY_WAIT_SECONDS=$wait_seconds; check the workers' logs and that they reach" \
        "this node at port $RAY_PORT (Ray stays up: ray stop to end it)" >&2
      exit 1
    fi
    sleep "$((left < 5 ? (left > 1 ? left : 1) : 5))"
  done
fi

if [ "$no_server" = 1 ]; then
  echo "ray_head.sh: the Ray cluster is up; not starting the server (--no-server)" >&2
  exit 0
fi
export DISTRIBUTED_EXECUTOR_BACKEND=${DISTRIBUTED_EXECUTOR_BACKEND:-ray}
exec "$python" serve.py
