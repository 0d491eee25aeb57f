"""The multi-node scripts: scripts/ray_head.sh and scripts/ray_worker.sh.

The stub tests run the scripts with fake ``ray`` and ``python3`` commands that log what
they were given, so they need no Ray. The cluster test brings up a real two-node Ray
cluster on this machine (the head and a worker, two raylets) through the scripts, checks
that both nodes are alive, and takes it down again. vLLM's CPU build refuses the Ray
executor, so the server itself is not started on it here.

Loopback only: Ray turns the node address 127.0.0.1 into the machine's outward address,
so the nodes use 127.0.0.2 and 127.0.0.3 (loopback too, which Ray keeps as given). Ray's
head also probes cloud metadata servers (169.254.169.254) and posts a "usage stats
disabled" note to usage-stats.ray.io even with usage stats off: an HTTP proxy on a closed
loopback port makes those fail here before they leave the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import psutil
import pytest

from devtools.launcher import OWN_PROCESS_GROUP, free_port

ROOT = Path(__file__).resolve().parent.parent
HEAD = ROOT / "scripts" / "ray_head.sh"
WORKER = ROOT / "scripts" / "ray_worker.sh"

# What the user's shell may carry that would change what the scripts do.
SCRIPT_ENV = (
    "NETWORK_INTERFACE",
    "NCCL_SOCKET_IFNAME",
    "GLOO_SOCKET_IFNAME",
    "VLLM_HOST_IP",
    "RAY_ADDRESS",
    "RAY_PORT",
    "RAY_NODE_IP",
    "RAY_HEAD_ADDRESS",
    "RAY_NUM_CPUS",
    "RAY_NUM_GPUS",
    "RAY_EXPECTED_NODES",
    "RAY_WAIT_SECONDS",
    "RAY_NO_SERVER",
    "RAY_INCLUDE_DASHBOARD",
    "DISTRIBUTED_EXECUTOR_BACKEND",
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRIPT_ENV}
    return {**env, **extra}


# --- The scripts with stub commands ---------------------------------------------------

# Logs its name, arguments and the environment the scripts set to $STUB_LOG; `ray status`
# lists two alive nodes the way Ray prints them.
STUB = r"""#!/bin/sh
echo "$(basename "$0") $* | NCCL=${NCCL_SOCKET_IFNAME-} GLOO=${GLOO_SOCKET_IFNAME-}\
 HOST_IP=${VLLM_HOST_IP-} ADDRESS=${RAY_ADDRESS-} BACKEND=${DISTRIBUTED_EXECUTOR_BACKEND-}"\
 >> "$STUB_LOG"
if [ "$1" = status ]; then
  printf 'Node status\n-----\nActive:\n 1 node_aaa\n 1 node_bbb\nPending:\n (none)\n'
fi
"""


@pytest.fixture
def stubs(tmp_path):
    """An environment whose `ray` and `python3` are the stub (and no venv to find)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ray", "python3"):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    return clean_env(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        VENV=str(tmp_path / "none"),
        STUB_LOG=str(tmp_path / "calls.log"),
    )


def run_script(script: Path, env: dict[str, str], *args: str) -> tuple[int, str, list[str]]:
    """The script's exit code, its stderr, and the stub commands it ran."""
    calls = Path(env["STUB_LOG"])
    calls.write_text("")
    done = subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stderr, calls.read_text().splitlines()


def test_head_exports_interface_and_starts_server(stubs):
    env = {
        **stubs,
        "NETWORK_INTERFACE": "lo",
        "RAY_NODE_IP": "127.0.0.5",
        "RAY_NUM_GPUS": "8",
        "RAY_EXPECTED_NODES": "2",
    }
    code, err, calls = run_script(HEAD, env, "--temp-dir=/tmp/x")
    assert code == 0, err
    assert calls == [
        "ray start --head --port=6379 --include-dashboard=false --disable-usage-stats"
        " --node-ip-address=127.0.0.5 --temp-dir=/tmp/x --num-gpus=8"
        " | NCCL=lo GLOO=lo HOST_IP=127.0.0.5 ADDRESS=127.0.0.5:6379 BACKEND=",
        "ray status --address=127.0.0.5:6379"
        " | NCCL=lo GLOO=lo HOST_IP=127.0.0.5 ADDRESS=127.0.0.5:6379 BACKEND=",
        "python3 serve.py | NCCL=lo GLOO=lo HOST_IP=127.0.0.5 ADDRESS=127.0.0.5:6379 BACKEND=ray",
    ]
    assert "2/2 nodes alive" in err


def test_head_fails_when_the_nodes_do_not_join(stubs):
    env = {**stubs, "RAY_EXPECTED_NODES": "3", "RAY_WAIT_SECONDS": "1"}
    code, err, calls = run_script(HEAD, env)
    assert code == 1
    assert "only 2 of RAY_EXPECTED_NODES=3 nodes joined within RAY_WAIT_SECONDS=1" in err
    assert calls[0].startswith("ray start --head --port=6379 ")
    assert calls[1].startswith("ray status | NCCL= GLOO= HOST_IP= ADDRESS= ")
    assert not any(call.startswith("python3") for call in calls)
    code, err, calls = run_script(HEAD, {**stubs, "RAY_EXPECTED_NODES": "2", "RAY_NO_SERVER": "1"})
    assert code == 0, err
    assert [call.split()[:2] for call in calls] == [["ray", "start"], ["ray", "status"]]


def test_worker(stubs):
    code, err, calls = run_script(WORKER, stubs)
    assert (code, calls) == (2, [])
    assert "set RAY_HEAD_ADDRESS" in err
    with socket.create_server(("127.0.0.1", 0)) as head:  # where the worker waits for
        port = str(head.getsockname()[1])
        env = {
            **stubs,
            "RAY_HEAD_ADDRESS": "127.0.0.1",
            "RAY_PORT": port,
            "RAY_NODE_IP": "10.1.2.4",
        }
        code, err, calls = run_script(WORKER, {**env, "NETWORK_INTERFACE": "no-such-if0"})
        assert (code, calls) == (1, [])
        assert "NETWORK_INTERFACE=no-such-if0: no such interface" in err
        code, err, calls = run_script(WORKER, {**env, "NETWORK_INTERFACE": "lo"}, "--no-block")
        assert code == 0, err
        assert calls == [
            f"ray start --address=127.0.0.1:{port} --disable-usage-stats"
            " --node-ip-address=10.1.2.4 | NCCL=lo GLOO=lo HOST_IP=10.1.2.4 ADDRESS= BACKEND="
        ]
        code, err, calls = run_script(WORKER, env, "--temp-dir=/tmp/w")
        assert code == 0, err
        assert calls[0].startswith(
            f"ray start --address=127.0.0.1:{port} --disable-usage-stats --block"
            " --node-ip-address=10.1.2.4 --temp-dir=/tmp/w |"
        )
    # No head: it waits RAY_WAIT_SECONDS, then fails without starting Ray.
    env = {**stubs, "RAY_HEAD_ADDRESS": "127.0.0.1", "RAY_PORT": str(free_port())}
    code, err, calls = run_script(WORKER, {**env, "RAY_WAIT_SECONDS": "1"})
    assert (code, calls) == (1, [])
    assert "waiting for the Ray head at 127.0.0.1:" in err
    assert "no Ray head answered at 127.0.0.1:" in err


# --- A real two-node cluster on this machine ------------------------------------------

HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
RAY_DAEMONS = {"raylet", "gcs_server"}

NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], _node_ip_address=sys.argv[2], log_to_driver=False,
         logging_level="ERROR")
print(json.dumps([{"alive": n["Alive"], "ip": n["NodeManagerAddress"],
                   "cpus": n["Resources"].get("CPU")} for n in ray.nodes()]))
ray.shutdown()
"""


def ray_cli() -> Path | None:
    beside = Path(sys.executable).with_name("ray")  # the venv's, or the interpreter's
    found = str(beside) if beside.exists() else shutil.which("ray")
    return Path(found) if found else None


def ray_daemons() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] in RAY_DAEMONS and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def off_loopback(procs: list[psutil.Process]) -> tuple[list[str], int]:
    """The sockets of these processes bound or connected past loopback (a wildcard
    listener, which Ray's gRPC servers open on every node, names no address), and how
    many sockets were looked at."""
    bad, seen = [], 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="inet"):
                seen += 1
                local_ok = is_loopback(conn.laddr.ip) or conn.laddr.ip in ("0.0.0.0", "::")
                if not local_ok or (conn.raddr and not is_loopback(conn.raddr.ip)):
                    bad.append(f"{proc.name()} {conn.laddr} -> {conn.raddr} {conn.status}")
    return bad, seen


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, **OWN_PROCESS_GROUP
        )


def finish(proc: subprocess.Popen, timeout: float, log: Path) -> str:
    """Wait for a script; on overtime kill its process group and fail."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        pytest.fail(f"{' '.join(proc.args[:2])} ran past {timeout} s:\n{log.read_text()[-3000:]}")
    return log.read_text()


def test_two_node_cluster_on_loopback():
    ray_cmd = ray_cli()
    if find_spec("ray") is None or ray_cmd is None:
        pytest.skip("ray is not installed (pip install ray): the multi-node scripts need it")
    if ray_daemons():
        pytest.skip(
            "a Ray cluster already runs on this machine: this test ends with `ray stop --force`,"
            " which would stop it too"
        )
    # Ray's sockets live under its temp dir: tmp_path is too long for a Unix socket path.
    base = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    gcs_port, closed = free_port(), free_port()
    no_egress = f"http://127.0.0.1:{closed}"
    env = clean_env(
        PATH=f"{ray_cmd.parent}{os.pathsep}{os.environ['PATH']}",
        VENV=str(base / "no-venv"),
        RAY_PORT=str(gcs_port),
        RAY_NUM_CPUS="1",
        RAY_NUM_GPUS="0",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TMPDIR=str(base),  # instead of /tmp/ray
        AUTOSCALER_METRIC_PORT=str(free_port()),  # 44217 by default
        RAY_USAGE_STATS_REPORT_URL=f"{no_egress}/",
        HTTP_PROXY=no_egress,
        HTTPS_PROXY=no_egress,
        http_proxy=no_egress,
        https_proxy=no_egress,
        NO_PROXY="127.0.0.0/8,localhost,::1",
        no_proxy="127.0.0.0/8,localhost,::1",
    )
    # Two raylets on one machine: each node gets its own --temp-dir and
    # --dashboard-agent-listen-port (52365 by default), the head its own
    # --ray-client-server-port (10001 by default); small object stores.
    common = ["--object-store-memory=100000000"]
    procs: list[subprocess.Popen] = []
    seen: list[psutil.Process] = []
    stopped = ""
    began = time.monotonic()
    try:
        head_log = base / "head.log"
        head = start(
            [
                "bash",
                str(HEAD),
                "--no-server",
                f"--temp-dir={base / 'head'}",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                *common,
            ],
            {**env, "RAY_NODE_IP": HEAD_IP, "RAY_EXPECTED_NODES": "2", "RAY_WAIT_SECONDS": "150"},
            head_log,
        )
        procs.append(head)
        # At the same time: the worker script waits for the head's port.
        worker_log = base / "worker.log"
        worker = start(
            [
                "bash",
                str(WORKER),
                "--no-block",
                f"--temp-dir={base / 'worker'}",
                f"--dashboard-agent-listen-port={free_port()}",
                *common,
            ],
            {
                **env,
                "RAY_HEAD_ADDRESS": HEAD_IP,
                "RAY_NODE_IP": WORKER_IP,
                "RAY_WAIT_SECONDS": "90",
            },
            worker_log,
        )
        procs.append(worker)
        out = finish(worker, 150, worker_log)
        assert worker.returncode == 0, out[-3000:]
        print(f"\nworker up after {time.monotonic() - began:.1f} s")

        out = finish(head, 180, head_log)
        assert head.returncode == 0, out[-3000:]
        assert "ray_head.sh: 2/2 nodes alive" in out
        print(f"head saw 2 nodes in `ray status` after {time.monotonic() - began:.1f} s")

        nodes_log = base / "nodes.log"
        nodes = start(
            [sys.executable, "-c", NODES, f"{HEAD_IP}:{gcs_port}", HEAD_IP], env, nodes_log
        )
        procs.append(nodes)
        out = finish(nodes, 120, nodes_log)
        assert nodes.returncode == 0, out[-3000:]
        listed = json.loads(out.strip().splitlines()[-1])
        print(f"ray.nodes() after {time.monotonic() - began:.1f} s: {listed}")
        assert sorted((n["ip"], n["alive"], n["cpus"]) for n in listed) == [
            (HEAD_IP, True, 1.0),
            (WORKER_IP, True, 1.0),
        ]

        daemons = ray_daemons()
        assert sorted(p.name() for p in daemons) == ["gcs_server", "raylet", "raylet"]
        seen = daemons + [c for p in daemons for c in p.children(recursive=True)]
        bad, sockets = off_loopback(seen)
        print(f"{sockets} sockets of {len(seen)} Ray processes, off loopback: {bad}")
        assert sockets > 0
        assert bad == []
    finally:
        try:
            stop = subprocess.run(
                [str(ray_cmd), "stop", "--force"],
                env=env,
                capture_output=True,
                text=True,
                timeout=90,
            )
            stopped = stop.stdout + stop.stderr
        except subprocess.TimeoutExpired:
            stopped = "`ray stop --force` ran past 90 s"
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        _, alive = psutil.wait_procs(seen + ray_daemons(), timeout=20)
        for proc in alive:  # only ours: the test skipped if Ray ran before it
            with contextlib.suppress(psutil.Error):
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)
        print(f"down after {time.monotonic() - began:.1f} s")
    assert alive == [], f"left running after `ray stop --force`: {alive}\n{stopped}"
    assert ray_daemons() == []
