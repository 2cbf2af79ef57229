#!/usr/bin/env bash
# A tour of what pollkill does: three badly behaved tasks, each caught and reaped whole.
# Usage: examples/demo.sh [PATH/TO/pollkill]   (as root on a host with cgroup v2)
set -uo pipefail
pollkill=${1:-build/pollkill}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

show() {
  local title=$1; shift
  echo
  echo "== $title"
  echo "   \$ pollkill run $*"
  "$pollkill" run -q --result "$out/result.json" "$@"
  local code=$?
  local status reason reaped
  status=$(sed -n 's/.*"status":"\([^"]*\)".*/\1/p' "$out/result.json")
  reason=$(sed -n 's/.*"reason":"\([^"]*\)".*/\1/p' "$out/result.json")
  reaped=$(sed -n 's/.*"processes_reaped":\([0-9]*\).*/\1/p' "$out/result.json")
  echo "   -> status: $status, exit code: $code, processes reaped: $reaped"
  echo "      reason: $reason"
}

echo "pollkill demonstration ($("$pollkill" --version))"

show "A task that hangs: sleeps forever, using no CPU and writing nothing" \
  --hang-after 2s -- sleep 1000

show "A task that spins: 100% CPU, no output" \
  --spin-after 2s -- sh -c 'while :; do :; done'

show "A task that leaves a setsid, double-forked, SIGTERM-ignoring daemon behind" \
  -- sh -c 'setsid sh -c "trap \"\" TERM; exec sleep 1000" & echo "main process done"'

show "A task that runs too long" \
  --wall-time 1s -- sleep 1000

show "A busy task that keeps printing progress is left alone" \
  --spin-after 1s -- sh -c 'i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); echo $i; done >/dev/null'

show "A task that crashes" \
  -- sh -c 'kill -SEGV $$'

echo
leftover=$(pgrep -fc 'sleep 1000' || true)
echo "Processes named 'sleep 1000' still running after all of this: ${leftover:-0}"
echo
echo "Full JSON result of the last task:"
cat "$out/result.json"
