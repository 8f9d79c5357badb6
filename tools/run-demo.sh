#!/usr/bin/env bash
# Set up (tools/setup.sh), then run "nova-acc demo" with the given options:
#
#   ./tools/run-demo.sh
#   ./tools/run-demo.sh --hosts 2 --devices-per-host 2 --servers 5
#   ./tools/run-demo.sh --context 'resources:FPGA=1;resources:FPGA=1' --json
#
# Options: --hosts N --devices-per-host M --servers K --context SPEC
# (repeatable) --json; ".venv/bin/nova-acc demo --help" lists them all.
# Setup output goes to stderr, so "--json" output on stdout stays clean.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

./tools/setup.sh >&2
exec "${VENV:-$ROOT/.venv}/bin/nova-acc" demo "$@"
