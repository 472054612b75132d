#!/usr/bin/env bash
# Headless Chromium for the steering-map browser test (tests/unit/test_steering_view.py), installed from the
# system package manager when it is missing and we are root; otherwise say why and go on (the test then skips
# with the same reason). Idempotent: with Chromium on PATH it returns at once.
set -u
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "chromium: not installed, and not root (uid $(id -u)): the browser test will skip; install it with" \
        "'sudo apt-get install chromium'" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: not installed, and no apt-get here: the browser test will skip" >&2
    exit 0
fi
echo "chromium: installing it with apt-get for the browser test (once)" >&2
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq && apt-get install -y -qq chromium >/dev/null; then
    echo "chromium: $(chromium --version 2>/dev/null)" >&2
else
    # Not fatal: the rest of the suite runs; the browser test skips and says why.
    echo "chromium: apt-get install failed: the browser test will skip" >&2
fi
exit 0
