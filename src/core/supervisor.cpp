#include "pollkill/supervisor.h"

#include <filesystem>

#include "pollkill/engine.h"
#include "pollkill/error.h"
#include "pollkill/limits.h"
#include "pollkill/results.h"
#include "pollkill/sandbox.h"
#include "pollkill/task_queue.h"
#include "pollkill/taskfile.h"

namespace pollkill {

Result run_task(const RunRequest& request) {
  Policy policy = request.policy;
  // One task has no median to adapt to: a percentage wall time leaves only its cap.
  if (policy.limits.wall_time_percent) {
    policy.limits.wall_time = policy.limits.wall_time_max;
    policy.limits.wall_time_percent.reset();
  }
  // The --result file first: an unusable path (a directory, /dev/full, a missing folder) is
  // refused before anything is created, not found out after the task has run.
  std::optional<RecordWriter> record;
  if (request.result) record = RecordWriter::replace(*request.result);
  if (!request.evidence_dir.empty() && !std::filesystem::is_directory(request.evidence_dir)) {
    throw Error("--evidence-dir '" + request.evidence_dir + "' is not a directory",
                "create it first");
  }
  EngineRequest engine;
  // Then, so that a policy this process cannot enforce fails before anything is created.
  engine.sandbox = prepare_sandbox(policy, current_environment());
  engine.plan = plan_limits(policy.limits);
  engine.policy = std::move(policy);
  engine.cgroup_root = request.cgroup_root;
  engine.cgroup_name = request.cgroup_name.empty() ? "task-" + request.id : request.cgroup_name;
  engine.setup_errors_fatal = true;
  engine.record_unstarted = true;
  engine.evidence_dir = request.evidence_dir;
  engine.evidence_stem = request.evidence_stem;
  Engine run(std::move(engine));
  TaskSpec task;
  task.id = request.id;
  task.seq = 1;
  task.command = request.command;
  TaskQueue queue(std::move(task));
  EngineOutcome outcome = run.run(queue, record ? &*record : nullptr, nullptr);
  if (!outcome.last) throw Error("the task ended without a result");  // cannot happen
  return std::move(*outcome.last);
}

}  // namespace pollkill
