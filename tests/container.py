"""podman for the container test, every setting in one private temporary folder.

What these machines need (measured, see shared/notes/container-build-here.md): there is
no Docker engine and no registry, so the base image is made here with debootstrap; crun
fails on this cgroup layout, so runc with cgroupfs; the default ulimits cannot be set, so
explicit ones; overlay storage as root. Builds reach PyPI with ``--network host`` and the
host's CA bundle mounted. CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and TMPDIR point into
the folder, so nothing outside it changes (podman still makes a few small folders in /run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from devtools.launcher import ROOT

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
STANDIN_OS = "localhost/qaserve-standin-os:latest"
STANDIN_BASE = "localhost/qaserve-standin-base:latest"
DEBIAN_PACKAGES = "python3,python3-pip,python3-venv,ca-certificates"


def missing_requirements() -> list[str]:
    """Why the container check cannot run here (empty when it can)."""
    missing = [tool for tool in ("podman", "runc", "debootstrap") if not shutil.which(tool)]
    if os.geteuid() != 0:
        missing.append("root (overlay storage and debootstrap need it)")
    if not Path(CA_BUNDLE).is_file():
        missing.append(CA_BUNDLE)
    return missing


def debian_mirror() -> str:
    """The first Debian mirror apt uses here (deb822 ``URIs:`` or one-line ``deb`` sources)."""
    apt = Path("/etc/apt")
    sources = [*sorted(apt.glob("sources.list.d/*.sources")), apt / "sources.list"]
    for path in sources:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        found = re.search(r"^(?:URIs:|deb(?:\s+\[[^\]]*\])?)\s+(\S+)", text, re.M)
        if found:
            return found.group(1)
    return "http://deb.debian.org/debian"


def pip_find_links() -> list[str]:
    """Folders pip takes wheels from here (the CPU torch build lives in one)."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    links = re.findall(r"find-links='([^']+)'", listed)
    links += os.environ.get("PIP_FIND_LINKS", "").split()
    return sorted({link for link in links if Path(link).is_dir()})


class Podman:
    def __init__(self, root: Path):
        self.root = root
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        (root / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            f'tmp_dir = "{root}/tmp"\n'
        )
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n'
        )
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
            "TMPDIR": str(root / "tmp"),
        }

    def __call__(self, *args: str, timeout: float = 600, stdin=None, merged=False) -> str:
        """podman's stdout (with its stderr when ``merged``); a failure raises with both."""
        done = subprocess.run(
            ["podman", *args],
            env=self.env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            output = done.stdout + (done.stderr or "")
            raise RuntimeError(f"podman {' '.join(args[:3])} failed:\n{output[-4000:]}")
        return done.stdout

    def build(self, context: Path, tag: str, *options: str) -> str:
        """A build that reaches PyPI; returns podman's output (steps and cache hits)."""
        mounts = [f"--volume={CA_BUNDLE}:{CA_BUNDLE}:ro"]
        return self(
            "build",
            "--pull=never",
            "--format=docker",  # HEALTHCHECK is kept only in the Docker format
            "--network=host",
            *mounts,
            *options,
            f"--tag={tag}",
            str(context),
            timeout=1200,
            merged=True,
        )

    def logs(self, name: str) -> str:
        return self("logs", name, merged=True)

    def image_size(self, tag: str) -> int:
        return int(self("image", "inspect", "--format={{.Size}}", tag).strip())

    def remove_everything(self) -> None:
        """Containers and images of this private store, then the store itself."""
        for command in (["rm", "--all", "--force"], ["rmi", "--all", "--force"]):
            subprocess.run(["podman", *command], env=self.env, capture_output=True, timeout=300)
        shutil.rmtree(self.root, ignore_errors=True)


def make_standin_base(podman: Podman, workdir: Path) -> str:
    """The vendor image's stand-in: debootstrapped Debian plus torch and transformers."""
    rootfs = workdir / "rootfs"
    debootstrap = ["debootstrap", "--variant=minbase", f"--include={DEBIAN_PACKAGES}"]
    subprocess.run(
        [*debootstrap, "bookworm", str(rootfs), debian_mirror()],
        check=True,
        capture_output=True,
        timeout=900,
    )
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        podman("import", "-", STANDIN_OS, stdin=tar.stdout)
    shutil.rmtree(rootfs)
    links = pip_find_links()
    podman.build(
        ROOT / "tests/container",
        STANDIN_BASE,
        "--file=standin.Dockerfile",
        f"--build-arg=PIP_FIND_LINKS={' '.join(links)}",
        *(f"--volume={link}:{link}:ro" for link in links),
    )
    return STANDIN_BASE


def build_context(into: Path, model_dir: Path) -> Path:
    """The files of a clone of this repository, and a local model in model-src/."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, into / name)
    shutil.copytree(model_dir, into / "model-src", dirs_exist_ok=True)
    return into
