#!/usr/bin/env bash
# Print a Python 3.10 interpreter (the evaluation image's Python), or nothing where none exists.
for candidate in python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python /root/.pyenv/versions/3.10*/bin/python; do
  # A pyenv shim answers to the name without running 3.10: ask the interpreter itself.
  if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
    echo "$candidate"
    exit 0
  fi
done
