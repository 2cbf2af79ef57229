#!/usr/bin/env python3
"""pollkill on a real Slurm cluster of several nodes (tests/slurm/cluster): batch --slurm,
collect, --launcher srun, --resume and requeue through RequeueExit=75, compared task for task
with a local `pollkill batch` of the same task file; and nodes that fail mid-batch: one that
loses power (and stays off until the batch is done), one that hangs and wakes up after its
elements were run again elsewhere.

Needs root, a running cluster (SLURM_CONF), its directory (POLLKILL_SLURM_CLUSTER, for
switching nodes off and on) and POLLKILL (the binary). Without a cluster the tests skip,
unless POLLKILL_SLURM_REQUIRED=1 (scripts/test slurm sets it), when they fail.
Run: tests/slurm/run (starts and stops the cluster around this file).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

POLLKILL = os.path.abspath(os.environ.get("POLLKILL", "build/pollkill"))
REQUIRED = os.environ.get("POLLKILL_SLURM_REQUIRED") == "1"
CLUSTER_DIR = os.environ.get("POLLKILL_SLURM_CLUSTER")
CLUSTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster")

# The mixed batch: each id names what the task does. The sleeps carry numbers no other
# process uses, so a leftover is found by its command line.
TASKS = """\
{"id": "ok", "cmd": ["true"]}
{"id": "failed", "sh": "echo to-stderr >&2; exit 3"}
{"id": "crashed", "sh": "kill -SEGV $$"}
{"id": "hung", "cmd": ["sleep", "7301"]}
{"id": "orphan", "sh": "setsid sleep 7302 & echo started"}
{"id": "missing", "cmd": ["/nonexistent/program"]}
"""
FLAGS = ["--hang-after", "1s", "--kill-grace", "0", "-j", "2", "-q"]
# What a Slurm run must reproduce of a local one; timings, paths and cgroups differ.
COMPARED = ["id", "attempt", "final", "command", "status", "reason", "exit_code", "signal",
            "processes_reaped", "limits_not_enforced", "unkillable"]
LEFTOVER = re.compile(r"sleep [0-9.]*73[0-9][0-9]")


def cluster_up():
    if not os.environ.get("SLURM_CONF"):
        return "SLURM_CONF is not set (start one with tests/slurm/cluster start DIR)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo failed: {e}"
    if out.returncode != 0 or "idle" not in out.stdout and "mix" not in out.stdout:
        return f"no idle node (sinfo: {out.stdout.strip()} {out.stderr.strip()})"
    return None


def read_records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def leaked_run_cgroups():
    """Run cgroups (pollkill-PID-*) under the cgroup2 mount that are ours and left behind:
    their owner is gone (nobody removed them) or is still a `pollkill slurm-element`
    after every job ended. Other pollkills' (a developer's batch beside the tests) are not."""
    mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                mount = fields[4]
                break
    leaked = []
    if mount is None:
        return leaked
    for root, dirs, _ in os.walk(mount):
        for d in dirs:
            m = re.fullmatch(r"pollkill-(\d+)-[0-9a-f]+", d)
            if not m:
                continue
            try:
                with open(f"/proc/{m.group(1)}/cmdline", "rb") as f:
                    owner = f.read().replace(b"\0", b" ").decode(errors="replace")
            except FileNotFoundError:
                owner = None
            if owner is None or "slurm-element" in owner:
                leaked.append(os.path.join(root, d))
    return leaked


def leftover_processes():
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if LEFTOVER.search(line) and "ps -eo" not in line]


def node_names():
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True,
                         check=True).stdout
    return sorted(set(out.split()))


def node_state(node):
    return subprocess.run(["sinfo", "-h", "-n", node, "-o", "%t"], capture_output=True,
                          text=True).stdout.strip()


def wait_until(what, predicate, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"{what} within {timeout}s")


def wait_nodes_idle(timeout=60):
    wait_until("every node idle", lambda: all(node_state(n) == "idle" for n in node_names()),
               timeout)


def cluster(action, node):
    """Switches a node off or on, freezes or thaws it (tests/slurm/cluster)."""
    run = subprocess.run([CLUSTER, action, CLUSTER_DIR, node], capture_output=True, text=True)
    assert run.returncode == 0, f"cluster {action} {node}: {run.stderr}"


def job_fields(job):
    """`scontrol show job` of every job or array element of JOB, as dicts (MinJobAge keeps
    ended ones)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True,
                         text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = {}
        for word in line.split():
            key, _, value = word.partition("=")
            fields[key] = value
        jobs.append(fields)
    return jobs


def element_hosts(job):
    """Where Slurm last ran each element of array JOB: {"JOB_INDEX": node}."""
    return {f"{f['ArrayJobId']}_{f['ArrayTaskId']}": f["BatchHost"] for f in job_fields(job)
            if "ArrayTaskId" in f}


def allocation_nodes(job):
    nodes = job_fields(job)[0]["NodeList"]
    out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def final_records(records_dir):
    """{seq: [attempt, ...]} of the final records (final and not cancelled) in a directory."""
    finals = {}
    for name in os.listdir(records_dir):
        m = re.fullmatch(r"(\d+)\.(\d+)\.json", name)
        if not m:
            continue
        with open(os.path.join(records_dir, name)) as f:
            record = json.load(f)
        if record["final"] and record["status"] != "cancelled":
            finals.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    return finals


def wait_for_job(job, timeout=180):
    """Until squeue no longer lists the job (array elements and requeues included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True,
                             text=True)
        if out.returncode == 0 and not out.stdout.strip():
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job} still in squeue after {timeout}s")


class SlurmBatch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = cluster_up()
        if why:
            if REQUIRED:
                raise AssertionError("POLLKILL_SLURM_REQUIRED=1 but " + why)
            raise unittest.SkipTest(why)
        cls.nodes = node_names()
        cls.work = tempfile.mkdtemp(prefix="pollkill-slurm-test-")
        cls.tasks = os.path.join(cls.work, "tasks")
        with open(cls.tasks, "w") as f:
            f.write(TASKS)
        local = os.path.join(cls.work, "local.jsonl")
        run = subprocess.run([POLLKILL, "batch", *FLAGS, "--results", local, cls.tasks],
                             cwd=cls.work, capture_output=True, text=True)
        assert run.returncode == 1, run.stderr
        cls.local = {r["id"]: r for r in read_records(local)}

    @classmethod
    def tearDownClass(cls):
        if hasattr(cls, "work"):
            shutil.rmtree(cls.work, ignore_errors=True)

    def pollkill(self, *args, expect=0):
        run = subprocess.run([POLLKILL, *args], cwd=self.work, capture_output=True, text=True)
        self.assertEqual(run.returncode, expect,
                         f"pollkill {' '.join(args)}\nstdout: {run.stdout}\nstderr: {run.stderr}")
        return run

    def submit(self, *args):
        run = self.pollkill("batch", "--slurm", *args)
        job = run.stdout.strip()
        self.assertRegex(job, r"^\d+$")
        return job, run.stderr

    def assert_like_local(self, records, source):
        self.assertEqual(sorted(r["id"] for r in records), sorted(self.local))
        for record in records:
            want = self.local[record["id"]]
            for key in COMPARED:
                self.assertEqual(record.get(key), want.get(key),
                                 f"{source}: task {record['id']}: {key}")
            self.assertIn(record["host"], self.nodes, f"{source}: task {record['id']}: host")
            self.assertTrue(record["slurm_job_id"], f"{source}: task {record['id']}: job id")
            self.assertTrue(os.path.isabs(record["stdout"]))

    def assert_hosts_ran_them(self, records, job):
        """Each record names the node Slurm ran its element on (the last run of it)."""
        where = element_hosts(job)
        for record in records:
            if record["final"]:
                self.assertEqual(record["host"], where[record["slurm_job_id"]],
                                 f"task {record['id']}")

    def assert_nothing_left(self):
        self.assertEqual(leftover_processes(), [])
        self.assertEqual(leaked_run_cgroups(), [])

    def test_1_job_array_collects_what_a_local_batch_records(self):
        d = os.path.join(self.work, "array")
        job, _ = self.submit("--results-dir", d, *FLAGS, self.tasks)
        wait_for_job(job)
        results = os.path.join(self.work, "array.jsonl")
        self.pollkill("collect", d, "--results", results)
        records = read_records(results)
        self.assert_like_local(records, "--slurm")
        self.assertTrue(all(r["slurm_job_id"].startswith(job + "_") for r in records))
        # The elements ran on several nodes, and each record names its own.
        self.assert_hosts_ran_them(records, job)
        self.assertGreater(len({r["host"] for r in records}), 1, [r["host"] for r in records])
        # The stderr of the task went to its log, pollkill's own line to Slurm's output.
        failed = next(r for r in records if r["id"] == "failed")
        with open(failed["stderr"]) as f:
            self.assertEqual(f.read(), "to-stderr\n")
        # Collecting again adds nothing; report summarises as for a local batch.
        self.pollkill("collect", d, "--results", results)
        self.assertEqual(len(read_records(results)), len(records))
        report = json.loads(self.pollkill("report", "--json", results, expect=1).stdout)
        local = json.loads(self.pollkill("report", "--json", os.path.join(self.work, "local.jsonl"),
                                         expect=1).stdout)
        self.assertEqual(report["counts"], local["counts"])
        self.assert_nothing_left()

    def test_2_resume_submits_only_what_is_missing(self):
        d = os.path.join(self.work, "resume")
        job, _ = self.submit("--results-dir", d, *FLAGS, self.tasks)
        wait_for_job(job)
        records = os.path.join(d, "records")
        # Tasks 1 (ok) and 4 (hung) as if their nodes had died before writing a record:
        # no record, and no claim of one (SEQ.final).
        for seq in (1, 4):
            os.unlink(os.path.join(records, f"{seq}.1.json"))
            os.unlink(os.path.join(records, f"{seq}.final"))
        kept = {name: os.stat(os.path.join(records, name)).st_mtime_ns
                for name in os.listdir(records)}
        # Without --resume the directory is refused; with another task file too.
        self.pollkill("batch", "--slurm", "--results-dir", d, *FLAGS, self.tasks, expect=2)
        other = os.path.join(self.work, "other-tasks")
        with open(other, "w") as f:
            f.write(TASKS.replace("7301", "7309"))
        self.pollkill("batch", "--slurm", "--resume", "--results-dir", d, *FLAGS, other, expect=2)
        self.pollkill("collect", d, "--results", os.path.join(self.work, "partial.jsonl"),
                      expect=1)

        loud = [f for f in FLAGS if f != "-q"]
        job2, err = self.submit("--resume", "--results-dir", d, *loud, self.tasks)
        self.assertIn("submitted 2 of 6 tasks", err)
        self.assertIn("--array=1,4%2", err)
        wait_for_job(job2)
        # Their attempt 1 started (its logs are there) and was lost: the resumed runs are
        # attempt 2, and leave attempt 1's logs alone.
        now = sorted(os.listdir(records))
        self.assertEqual(now, sorted(list(kept) + ["1.2.json", "4.2.json", "1.final",
                                                   "4.final"]))
        for name, mtime in kept.items():
            self.assertEqual(os.stat(os.path.join(records, name)).st_mtime_ns, mtime, name)
        results = os.path.join(self.work, "resume.jsonl")
        self.pollkill("collect", d, "--results", results)
        merged = read_records(results)
        self.assertEqual({r["id"]: r["attempt"] for r in merged if r["id"] in ("ok", "hung")},
                         {"ok": 2, "hung": 2})
        self.assert_like_local([dict(r, attempt=1) if r["id"] in ("ok", "hung") else r
                                for r in merged], "--slurm --resume")
        by_id = {r["id"]: r["slurm_job_id"].split("_")[0] for r in merged}
        self.assertEqual({i for i, j in by_id.items() if j == job2}, {"ok", "hung"})
        # Nothing left to submit now.
        run = self.pollkill("batch", "--slurm", "--resume", "--results-dir", d, *loud,
                            self.tasks)
        self.assertEqual(run.stdout, "")
        self.assertIn("nothing to submit", run.stderr)
        self.assert_nothing_left()

    def test_3_srun_launcher_inside_an_allocation(self):
        d = os.path.join(self.work, "steps")
        results = os.path.join(self.work, "steps.jsonl")
        run = subprocess.run(
            ["salloc", "--quiet", "-n", "2", POLLKILL, "batch", "--launcher", "srun",
             "--results", results, "--results-dir", d, *FLAGS, self.tasks],
            cwd=self.work, capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 1, run.stderr)
        records = read_records(results)
        self.assert_like_local(records, "--launcher srun")
        self.assertTrue(all(re.fullmatch(r"\d+\.\d+", r["slurm_job_id"]) for r in records))
        # The steps ran on the allocation's nodes.
        allocation = records[0]["slurm_job_id"].split(".")[0]
        self.assertTrue({r["host"] for r in records} <= allocation_nodes(allocation))
        # The same directory's records, collected, are the same records.
        collected = os.path.join(self.work, "steps-collected.jsonl")
        self.pollkill("collect", d, "--results", collected)
        self.assertEqual(sorted(map(json.dumps, read_records(collected))),
                         sorted(map(json.dumps, records)))
        self.assert_nothing_left()

    def test_4_retryable_verdict_is_requeued_by_slurm(self):
        # The test cluster sets RequeueExit=75. The task crashes on its first run and
        # succeeds on the second; --retries 1 allows one more attempt.
        d = os.path.join(self.work, "requeue")
        flag = os.path.join(self.work, "requeue-flag")
        tasks = os.path.join(self.work, "requeue-tasks")
        with open(tasks, "w") as f:
            f.write(json.dumps({"id": "flaky", "sh": f"[ -e {flag} ] && exit 0; "
                                                     f"touch {flag}; kill -SEGV $$"}) + "\n")
        job, _ = self.submit("--results-dir", d, "--retries", "1", tasks)
        wait_for_job(job, timeout=240)
        results = os.path.join(self.work, "requeue.jsonl")
        self.pollkill("collect", d, "--results", results)
        first, second = read_records(results)
        self.assertEqual((first["attempt"], first["status"], first["final"]), (1, "crashed", False))
        self.assertEqual((second["attempt"], second["status"], second["final"]), (2, "ok", True))
        # Slurm requeued the same element: one job id for both attempts.
        self.assertEqual(first["slurm_job_id"], f"{job}_1")
        self.assertEqual(second["slurm_job_id"], f"{job}_1")
        self.assert_nothing_left()

    def test_7_requeued_attempt_runs_with_escalated_limits(self):
        # retry.escalate on the cluster: attempt 1 times out under 1s; the requeued element
        # reads its record and runs attempt 2 with five times the wall time. The memory limit
        # escalates only after oom (these nodes have no memory controller: "warn"), but the
        # array asks Slurm for the largest escalated memory: 128 MiB and pollkill's 64.
        d = os.path.join(self.work, "escalate")
        policy = os.path.join(self.work, "escalate.toml")
        with open(policy, "w") as f:
            f.write('version = 1\n[limits]\nmemory = "64MiB"\nwall_time = "1s"\n'
                    '[runner]\nmissing_controllers = "warn"\n[retry]\nattempts = 2\n'
                    'escalate = { memory = "x2", wall_time = "x5" }\n')
        tasks = os.path.join(self.work, "escalate-tasks")
        with open(tasks, "w") as f:
            f.write(json.dumps({"id": "slow", "cmd": ["sleep", "1.7303"]}) + "\n")
        job, _ = self.submit("--results-dir", d, "--policy", policy, "-q", tasks)
        self.assertEqual({f.get("MinMemoryNode") for f in job_fields(job)}, {"192M"})
        wait_for_job(job, timeout=240)
        results = os.path.join(self.work, "escalate.jsonl")
        self.pollkill("collect", d, "--results", results)
        first, second = read_records(results)
        self.assertEqual((first["attempt"], first["status"], first["final"]),
                         (1, "timeout", False))
        self.assertEqual((first["wall_time_limit_s"], first["memory_limit_bytes"]),
                         (1.0, 64 << 20))
        self.assertEqual((second["attempt"], second["status"], second["final"]), (2, "ok", True))
        self.assertEqual((second["wall_time_limit_s"], second["memory_limit_bytes"]),
                         (5.0, 64 << 20))
        self.assertEqual(first["slurm_job_id"], f"{job}_1")
        self.assertEqual(second["slurm_job_id"], f"{job}_1")
        self.assert_nothing_left()

    def test_8_chunks_of_a_hundred_tasks_per_element(self):
        # 2,000 tasks in 20 elements of 100, each element a local batch on its node (-j from
        # its two CPUs): one final record per task, named by the element that ran it, the
        # elements spread over the nodes, and collect finds them all.
        d = os.path.join(self.work, "chunks")
        tasks = os.path.join(self.work, "chunk-tasks")
        with open(tasks, "w") as f:
            for i in range(1, 2001):
                f.write(json.dumps({"id": f"c{i}", "cmd": ["true", str(i)]}) + "\n")
        started = time.monotonic()
        job, err = self.submit("--results-dir", d, "--chunk", "100", "-j", "6",
                               "--sbatch-arg=--cpus-per-task=2", tasks)
        self.assertIn("--array=1-20%6", err)
        wait_for_job(job, timeout=420)
        print(f"\n  2000 tasks in 20 elements took {time.monotonic() - started:.1f}s",
              file=sys.stderr)
        self.assertEqual(final_records(os.path.join(d, "records")),
                         {i: [1] for i in range(1, 2001)})
        results = os.path.join(self.work, "chunks.jsonl")
        self.pollkill("collect", d, "--results", results)
        records = read_records(results)
        self.assertEqual([r["id"] for r in records], [f"c{i}" for i in range(1, 2001)])
        self.assertTrue(all(r["status"] == "ok" for r in records))
        # Task N ran in element ceil(N / 100), on the node Slurm ran that element on.
        for i, r in enumerate(records, start=1):
            self.assertEqual(r["slurm_job_id"], f"{job}_{(i - 1) // 100 + 1}", r["id"])
        self.assert_hosts_ran_them(records, job)
        self.assertGreater(len({r["host"] for r in records}), 1)
        self.assert_nothing_left()

    def node_failure_batch(self, name, node, wait):
        """Six tasks, submitted to run all at once (two per node), each of which ends at once
        except on `node`, where it runs `wait` (a shell command) first; returns (results dir,
        job)."""
        tasks = os.path.join(self.work, f"{name}-tasks")
        with open(tasks, "w") as f:
            for i in range(6):
                sh = f'[ "$(hostname)" != {node} ] || {wait}; : 0.0731{i}'
                f.write(json.dumps({"id": f"t{i + 1}", "sh": sh}) + "\n")
        d = os.path.join(self.work, name)
        job, _ = self.submit("--results-dir", d, "-j", "6", "-q", tasks)
        return d, job

    def wait_running_on(self, d, job, node):
        """Waits until elements run on `node` and their tasks have started (their logs exist);
        returns their array indices."""
        seqs = []

        def started():
            out = subprocess.run(["squeue", "-h", "-j", job, "-t", "R", "-w", node, "-o", "%K"],
                                 capture_output=True, text=True).stdout
            seqs[:] = [int(i) for i in out.split()]
            return seqs and all(os.path.exists(os.path.join(d, "logs", f"{i}.1.out"))
                                for i in seqs)

        wait_until(f"tasks running on {node}", started, 30)
        return sorted(seqs)

    def wait_down(self, node, since):
        wait_until(f"{node} declared down",
                   lambda: node_state(node).startswith("down"), timeout=90)
        took = time.monotonic() - since
        print(f"\n  {node} declared down {took:.1f}s after it failed", file=sys.stderr)
        return took

    def assert_one_final_record_each(self, d, job, lost, dead):
        """collect: every task has exactly one final record; those of the `lost` elements
        are attempt 2 from another node than `dead`, and their attempt 1 has no record."""
        self.assertEqual(final_records(os.path.join(d, "records")),
                         {i: [2] if i in lost else [1] for i in range(1, 7)})
        results = d + ".jsonl"
        self.pollkill("collect", d, "--results", results)
        records = read_records(results)
        self.assertEqual(sorted((r["id"], r["attempt"]) for r in records),
                         sorted((f"t{i}", 2 if i in lost else 1) for i in range(1, 7)))
        for r in records:
            self.assertEqual((r["status"], r["final"]), ("ok", True), r)
            if int(r["id"][1:]) in lost:
                self.assertNotEqual(r["host"], dead, r)
                # The lost attempt started (its logs are there) and left no record.
                self.assertTrue(os.path.exists(os.path.join(d, "logs", r["id"][1:] + ".1.out")))
        self.assert_hosts_ran_them(records, job)
        return records

    def test_5_a_node_that_loses_power_mid_batch(self):
        # docs/SLURM.md, "When a node dies": Slurm declares the node down, requeues its
        # elements (sbatch --requeue), and each reruns as the next attempt elsewhere.
        wait_nodes_idle()
        dead = self.nodes[-1]
        d, job = self.node_failure_batch("poweroff", dead, "sleep 7310")
        lost = self.wait_running_on(d, job, dead)
        try:
            since = time.monotonic()
            cluster("poweroff", dead)
            self.wait_down(dead, since)
            # It stays off until the batch is done.
            wait_for_job(job, timeout=120)
            self.assertTrue(node_state(dead).startswith("down"))
            self.assert_one_final_record_each(d, job, lost, dead)
            self.assertFalse(os.path.exists(os.path.join(d, "superseded")))
            # The tasks died with the node; nothing of them is left.
            self.assert_nothing_left()
        finally:
            cluster("poweron", dead)
        # The node boots and returns to service (ReturnToService=2); nothing changes.
        before = sorted(os.listdir(os.path.join(d, "records")))
        wait_nodes_idle()
        self.assertEqual(sorted(os.listdir(os.path.join(d, "records"))), before)

    def test_6_a_node_cut_off_whose_elements_end_after_their_reruns(self):
        # The node is cut off from the controller but runs on: Slurm declares it down and
        # runs its elements again elsewhere. Its own elements (the stragglers) end after
        # their reruns and try to record attempt 1 of tasks that attempt 2 has decided:
        # their records go to DIR/superseded, and each task keeps one final record.
        wait_nodes_idle()
        cut = self.nodes[1]
        flag = os.path.join(self.work, "partition-flag")
        d, job = self.node_failure_batch(
            "partition", cut, f"while [ ! -e {flag} ]; do sleep 0.07319; done")
        lost = self.wait_running_on(d, job, cut)
        try:
            since = time.monotonic()
            cluster("partition", cut)
            self.wait_down(cut, since)
            # The reruns decide the tasks; then the stragglers end.
            wait_until("the reruns' records", lambda: all(
                os.path.exists(os.path.join(d, "records", f"{i}.2.json")) for i in lost), 90)
            with open(flag, "w"):
                pass
            aside = os.path.join(d, "superseded")

            def recorded_somewhere(seq):
                aside_names = os.listdir(aside) if os.path.isdir(aside) else []
                return os.path.exists(os.path.join(d, "records", f"{seq}.1.json")) or any(
                    n.startswith(f"{seq}.1.") for n in aside_names)

            wait_until("the stragglers' records", lambda: all(map(recorded_somewhere, lost)), 30)
        finally:
            cluster("heal", cut)
        wait_for_job(job, timeout=60)
        self.assert_one_final_record_each(d, job, lost, cut)
        stragglers = []
        for name in os.listdir(aside):
            with open(os.path.join(aside, name)) as f:
                stragglers.append(json.load(f))
        self.assertEqual(sorted(int(r["id"][1:]) for r in stragglers), lost)
        for r in stragglers:
            self.assertEqual((r["attempt"], r["status"], r["host"]), (1, "ok", cut), r)
        # The node is back in service; collecting again adds nothing.
        wait_nodes_idle()
        self.pollkill("collect", d, "--results", d + ".jsonl")
        self.assertEqual(len(read_records(d + ".jsonl")), 6)
        self.assert_nothing_left()

def on_terminate(signum, _frame):
    """tests/slurm/run passes on SIGTERM and then stops the cluster; the files go first."""
    work = getattr(SlurmBatch, "work", None)
    if work:
        shutil.rmtree(work, ignore_errors=True)
    os._exit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_terminate)
    unittest.main(verbosity=2)
