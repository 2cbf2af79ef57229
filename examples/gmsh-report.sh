#!/usr/bin/env bash
# A real mixed batch of Gmsh meshing jobs under pollkill, and its HTML report and trace: the
# batch behind docs/report-gmsh.png. Meshes of a box minus a sphere at several sizes end ok;
# a geometry with a syntax error fails; a parser loop spins; a mesh too fine for its wall
# time times out; one given less memory than Gmsh with OpenCASCADE needs is OOM-killed
# (where the memory controller is there); a job waiting for an input that never comes hangs;
# a post-processing step aborts.
# The verdicts that are worth it are retried once.
#
#   examples/gmsh-report.sh [POLLKILL] [OUTDIR]
#
# POLLKILL defaults to build/pollkill, OUTDIR to a new temporary directory. Writes
# OUTDIR/run.jsonl (with logs in OUTDIR/run.logs/), OUTDIR/report.html and
# OUTDIR/trace.json. Memory peaks and the OOM need a cgroup v2 memory controller; for the
# picture in docs it ran in the VM harness as root:
#
#   tests/vm/run --out /tmp/gmsh-report -- \
#     sh -c 'examples/gmsh-report.sh build/pollkill "$POLLKILL_VM_OUT"'
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pollkill=$(realpath "${1:-$here/build/pollkill}")
out=${2:-$(mktemp -d /tmp/pollkill-gmsh-report-XXXXXX)}
mkdir -p "$out"
cd "$out"
rm -rf run.jsonl run.logs meshes

mkdir meshes
cp "$here/tests/tools/box-minus-sphere.geo" meshes/part.geo
printf 'SetFactory("OpenCASCADE");\nBox(1) = {0,0,0 1,1,1};\n' >meshes/broken.geo
# Gmsh's parser runs this loop for ever without a word: the loop must span lines.
printf 'x = 0;\nFor i In {1:1000000000000}\nx = x + 1;\nEndFor\n' >meshes/loop.geo
# An input that never comes: opening a FIFO nobody writes to blocks without using any CPU.
fifo=$(mktemp -u /tmp/pollkill-gmsh-input-XXXXXX)
mkfifo "$fifo"
trap 'rm -f "$fifo"' EXIT

{
  for size in 0.3 0.25 0.2 0.17 0.15 0.13 0.12 0.1 0.09 0.08; do
    echo "{\"id\": \"part-$size\", \"cmd\": [\"gmsh\", \"-3\", \"-clmax\", \"$size\", \"meshes/part.geo\", \"-o\", \"meshes/part-$size.msh\"]}"
  done
  echo '{"id": "broken", "cmd": ["gmsh", "-3", "meshes/broken.geo", "-o", "meshes/broken.msh"]}'
  echo '{"id": "loop", "cmd": ["gmsh", "-0", "meshes/loop.geo"]}'
  echo '{"id": "part-0.025", "cmd": ["gmsh", "-3", "-clmax", "0.025", "meshes/part.geo", "-o", "meshes/fine.msh"], "wall_time": "12s"}'
  echo '{"id": "part-0.1-24MiB", "cmd": ["gmsh", "-3", "-clmax", "0.1", "meshes/part.geo", "-o", "meshes/small.msh"], "memory": "24MiB"}'
  echo "{\"id\": \"wait-input\", \"sh\": \"cat $fifo >meshes/in.geo && gmsh -3 meshes/in.geo\"}"
  echo '{"id": "postprocess", "sh": "gmsh -3 -clmax 0.2 meshes/part.geo -o meshes/post.msh && exec python3 -c \"import os; os.abort()\""}'
} >tasks.jsonl

status=0
"$pollkill" batch -j 2 --retries 1 --memory 256MiB --wall-time 60s --hang-after 4s \
  --spin-after 15s --spin-cpu-above 0.6 --kill-grace 1s --results run.jsonl tasks.jsonl ||
  status=$?
[ "$status" -le 1 ] || exit "$status"
"$pollkill" report --html report.html --trace trace.json --memory 256MiB --wall-time 60s \
  run.jsonl || [ $? -le 1 ]
echo "examples/gmsh-report.sh: $out/report.html"
