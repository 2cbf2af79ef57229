# shellcheck shell=bash
# Shared helpers for the bench/ scripts. Sourced, not run.
#
# Every script accepts --quick (tiny sizes: proves the script works in seconds; its numbers
# mean nothing) and reads POLLKILL (default: build/pollkill in this tree). Results go to
# stdout as "key value" lines and aligned tables; nothing here asserts a speed.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quick=0  # shellcheck disable=SC2034 # read by the scripts

bench_init() {
  for arg in "$@"; do
    case "$arg" in
      --quick) quick=1 ;;
      -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) echo "$(basename "$0"): unknown argument '$arg' (only --quick)" >&2; exit 2 ;;
    esac
  done
  PK=${POLLKILL:-$bench_root/build/pollkill}
  if [ ! -x "$PK" ]; then
    echo "$(basename "$0"): $PK is not built (cmake --build build, or set POLLKILL)" >&2
    exit 2
  fi
  work=$(mktemp -d "${TMPDIR:-/tmp}/pollkill-bench-XXXXXX")
  trap bench_cleanup EXIT
}

# Background processes a script started, killed (by pid) if it exits early.
bench_pids=()
bench_cleanup() {
  local pid
  for pid in "${bench_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${bench_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}

now_ns() { date +%s%N; }

# Seconds (3 decimals) that "$@" took; its output is discarded, a failure is fatal.
time_s() {
  local t0 t1
  t0=$(now_ns)
  "$@" >/dev/null 2>&1 || { echo "$(basename "$0"): failed: $*" >&2; return 1; }
  t1=$(now_ns)
  awk -v d=$((t1 - t0)) 'BEGIN { printf "%.3f\n", d / 1e9 }'
}

# The median of the numbers given as arguments.
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "inf"; else printf "%.2f\n", a / b }'; }

# utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15; the command name
# in field 2 may contain spaces, so fields are counted after its closing parenthesis).
cpu_ticks() {
  local stat
  stat=$(<"/proc/$1/stat")
  stat=${stat##*) }
  # After "pid (comm) " the state is field 3, so utime (14) and stime (15) are the 12th and 13th.
  awk '{ print $12 + $13 }' <<<"$stat"
}
clk_tck=$(getconf CLK_TCK)

# Nanoseconds a process has run on a CPU (/proc/PID/schedstat, first field).
run_ns() { awk '{ print $1 }' "/proc/$1/schedstat"; }

# VmHWM / VmRSS of a process in KiB.
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

machine_description() {
  echo "cpu       $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs online"
  echo "memory    $(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
  echo "kernel    $(uname -r)"
  echo "os        $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "cgroup2   $(awk '$9 == "cgroup2" { print $5 }' /proc/self/mountinfo | head -1) (controllers: $(cat "$(awk '$9 == "cgroup2" { print $5 }' /proc/self/mountinfo | head -1)/cgroup.controllers" 2>/dev/null || echo '?'))"
  echo "pollkill  $("$PK" --version) ($PK)"
  echo "load      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before this benchmark)"
}

# The run cgroup directory of the pollkill process $1 (empty until it exists). Its sibling
# "pollkill-PID-HEX.alive" holds the guard's liveness process, not tasks.
run_cgroup_of() {
  local mount
  mount=$(awk '$9 == "cgroup2" { print $5 }' /proc/self/mountinfo | head -1)
  find "$mount" -maxdepth 4 -type d -name "pollkill-$1-*" ! -name '*.alive' -print -quit 2>/dev/null
}

# Processes in the task cgroups of run cgroup $1.
processes_in() { cat "$1"/task-*/cgroup.procs 2>/dev/null | wc -l; }

# Task cgroups under run cgroup $1 (one cheap read, however many there are).
task_cgroups_in() { awk '$1 == "nr_descendants" { print $2 }' "$1/cgroup.stat" 2>/dev/null || echo 0; }

# Waits until the batch $1 has $2 processes in its task cgroups (at most $3 seconds). Large
# batches are counted by their task cgroups first (reading thousands of cgroup.procs files
# five times a second would compete with the spawns), and say how far they got each minute.
wait_for_processes() {
  local pid=$1 want=$2 limit=$3 run="" start=$SECONDS said=$SECONDS have=0
  while [ $((SECONDS - start)) -lt "$limit" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "$(basename "$0"): pollkill $pid exited early" >&2; return 1; }
    [ -n "$run" ] || run=$(run_cgroup_of "$pid")
    if [ -n "$run" ]; then
      have=$(task_cgroups_in "$run")
      if [ "$have" -ge "$want" ] && [ "$(processes_in "$run")" -ge "$want" ]; then return 0; fi
    fi
    if [ $((SECONDS - said)) -ge 60 ]; then
      echo "$(basename "$0"): $have of $want tasks started after $((SECONDS - start))s" >&2
      said=$SECONDS
    fi
    if [ "$want" -gt 500 ]; then sleep 2; else sleep 0.2; fi
  done
  echo "$(basename "$0"): $want processes did not start within ${limit}s ($have task cgroups)" >&2
  return 1
}

# wait_for_command PID WANT LIMIT COMMAND_LINE: like wait_for_processes, for a run without task
# cgroups (subreaper mode): counts the processes whose whole command line is COMMAND_LINE.
wait_for_command() {
  local pid=$1 want=$2 limit=$3 line=$4 start=$SECONDS
  while [ $((SECONDS - start)) -lt "$limit" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "$(basename "$0"): pollkill $pid exited early" >&2; return 1; }
    if [ "$(pgrep -c -x -f "$line" || true)" -ge "$want" ]; then return 0; fi
    sleep 0.2
  done
  echo "$(basename "$0"): $want processes '$line' did not start within ${limit}s" >&2
  return 1
}

# Starts pollkill batch with $1 concurrent `sleep 600` tasks at poll interval $2, waits until all
# run, then measures pollkill's own CPU over $3 seconds. Prints one line:
#   TASKS INTERVAL CPU_PERCENT_OF_ONE_CORE VMHWM_KIB VMRSS_KIB STARTUP_S CPU_PERCENT_SCHEDSTAT
# The first CPU figure is utime+stime (10 ms ticks); the last is the scheduler's own run time
# (/proc/PID/schedstat, nanoseconds), which resolves the small values.
# The guard process (blocked on a pipe) and the tasks themselves are not counted.
# measure_watching TASKS INTERVAL WINDOW [EXTRA_ARG...]: EXTRA_ARGs go to `pollkill batch`.
# Every task must be running within BENCH_START_LIMIT seconds (120).
measure_watching() {
  local tasks=$1 interval=$2 window=$3 pid t0 t1 c0 c1 s0 s1 hwm rss start_ns ready_ns
  # A duration of this benchmark's own, for wait_for_command in subreaper mode.
  local sleep_line="sleep 600.$$"
  repeat_line "$sleep_line" "$tasks" >"$work/sleep-tasks"
  rm -rf "$work/w.jsonl" "$work/w.jsonl.logs"
  start_ns=$(now_ns)
  "$PK" batch -j "$tasks" -q --no-progress --poll-interval "$interval" --kill-grace 0 \
    "${@:4}" --results "$work/w.jsonl" "$work/sleep-tasks" >/dev/null 2>"$work/batch.err" &
  pid=$!
  bench_pids+=("$pid")
  case " ${*:4} " in
    *" subreaper "*) wait_for_command "$pid" "$tasks" "${BENCH_START_LIMIT:-120}" "$sleep_line" ;;
    *) wait_for_processes "$pid" "$tasks" "${BENCH_START_LIMIT:-120}" ;;
  esac
  ready_ns=$(now_ns)
  sleep 1  # let the last spawns' bookkeeping settle
  c0=$(cpu_ticks "$pid"); s0=$(run_ns "$pid"); t0=$(now_ns)
  sleep "$window"
  c1=$(cpu_ticks "$pid"); s1=$(run_ns "$pid"); t1=$(now_ns)
  hwm=$(status_kib "$pid" VmHWM); rss=$(status_kib "$pid" VmRSS)
  kill -TERM "$pid"
  wait "$pid" || true  # cancelled: 143
  bench_pids=("${bench_pids[@]/$pid/}")
  awk -v tasks="$tasks" -v iv="$interval" -v c=$((c1 - c0)) -v hz="$clk_tck" -v d=$((t1 - t0)) \
    -v hwm="$hwm" -v rss="$rss" -v st=$((ready_ns - start_ns)) -v s=$((s1 - s0)) \
    'BEGIN { printf "%d %s %.2f %d %d %.2f %.3f\n", tasks, iv, 100 * c / hz / (d / 1e9), hwm, rss, st / 1e9, 100 * s / d }'
}

# Prints $2 lines of text $1 (yes | head would die of SIGPIPE under pipefail).
repeat_line() { awk -v line="$1" -v n="$2" 'BEGIN { for (i = 0; i < n; i++) print line }'; }
