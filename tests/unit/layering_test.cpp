// The module layers of docs/ARCHITECTURE.md, checked against the sources: a module includes
// only modules of its own layer or below, and no two modules include each other, directly or
// around a circle. A new module must be given its layer here (and in the document).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace pollkill {
namespace {

namespace fs = std::filesystem;

// Layer by module, lowest first (docs/ARCHITECTURE.md, "Layers").
const std::map<std::string, int>& layers() {
  static const std::map<std::string, int> kLayers = {// 0: support
                                                     {"error", 0},
                                                     {"fd", 0},
                                                     {"status", 0},
                                                     {"units", 0},
                                                     {"diag", 0},
                                                     {"dynlib", 0},
                                                     // 1: pure decisions and formats
                                                     {"policy", 1},
                                                     {"policy_path", 1},
                                                     {"result", 1},
                                                     {"results", 1},
                                                     {"report", 1},
                                                     {"timeline", 1},
                                                     {"report_html", 1},
                                                     {"report_trace", 1},
                                                     {"evidence", 1},
                                                     {"retry", 1},
                                                     {"watchdog", 1},
                                                     {"slurm", 1},
                                                     {"arguments", 1},
                                                     {"live_view", 1},
                                                     // 2: the kernel edge, one concern each
                                                     {"cgroupfs", 2},
                                                     {"proctree", 2},
                                                     {"progress", 2},
                                                     {"output", 2},
                                                     {"fdlimit", 2},
                                                     {"seccomp", 2},
                                                     {"sandbox", 2},
                                                     {"spawn", 2},
                                                     {"event_loop", 2},
                                                     {"slurm_record", 2},
                                                     {"demand", 2},
                                                     {"pressure", 2},
                                                     {"stack_unwind", 2},
                                                     {"terminal", 2},
                                                     // 3: cgroup hierarchies and the host
                                                     {"cgroup", 3},
                                                     {"cgroup_v1", 3},
                                                     {"hostcase", 3},
                                                     {"systemd", 3},
                                                     {"gc", 3},
                                                     {"guard", 3},
                                                     {"evidence_capture", 3},
                                                     // 4: limits
                                                     {"limits", 4},
                                                     // 5: one task
                                                     {"taskfile", 5},
                                                     {"mode", 5},
                                                     {"container", 5},
                                                     {"task", 5},
                                                     {"task_queue", 5},
                                                     // 6: one invocation, one attempt
                                                     {"session", 6},
                                                     {"launcher", 6},
                                                     // 7: the engine
                                                     {"engine", 7},
                                                     // 8: the modes
                                                     {"supervisor", 8},
                                                     {"batch", 8},
                                                     {"slurm_run", 8},
                                                     {"doctor", 8}};
  return kLayers;
}

// Files that are parts of one module (one concern split over several files): the policy is
// its structs and file handling (policy), the key table (policy_keys), the typed readers
// (policy_reader, with the internal policy_detail.h) and what drives them (policy_schema).
std::string module_of(const std::string& stem) {
  static const std::map<std::string, std::string> kParts = {{"policy_schema", "policy"},
                                                            {"policy_keys", "policy"},
                                                            {"policy_reader", "policy"},
                                                            {"policy_detail", "policy"}};
  auto it = kParts.find(stem);
  return it == kParts.end() ? stem : it->second;
}

// Module -> the modules it includes (its header and its source file together).
std::map<std::string, std::set<std::string>> include_graph() {
  std::map<std::string, std::set<std::string>> graph;
  const std::regex include(R"(^#include "pollkill/(\w+)\.h")");
  const fs::path root = POLLKILL_SOURCE_DIR;
  for (const fs::path& dir : {root / "include" / "pollkill", root / "src" / "core"}) {
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (!entry.is_regular_file()) continue;  // src/core/report_page/: assets, not a module
      const std::string module = module_of(entry.path().stem().string());
      graph[module];
      std::ifstream in(entry.path());
      for (std::string line; std::getline(in, line);) {
        std::smatch m;
        if (std::regex_search(line, m, include) && module_of(m[1]) != module)
          graph[module].insert(module_of(m[1]));
      }
    }
  }
  return graph;
}

TEST(Layering, EveryModuleHasALayerAndIncludesNothingAbove) {
  const auto graph = include_graph();
  ASSERT_GT(graph.size(), 30u) << "sources not found under " << POLLKILL_SOURCE_DIR;
  for (const auto& [module, includes] : graph) {
    auto it = layers().find(module);
    ASSERT_NE(it, layers().end()) << module << " has no layer: give it one here and in "
                                  << "docs/ARCHITECTURE.md";
    for (const auto& included : includes) {
      auto other = layers().find(included);
      ASSERT_NE(other, layers().end()) << module << " includes unknown " << included;
      EXPECT_LE(other->second, it->second) << module << " (layer " << it->second << ") includes "
                                           << included << " (layer " << other->second << ")";
    }
  }
}

TEST(Layering, NoIncludeCycle) {
  const auto graph = include_graph();
  std::map<std::string, int> state;  // 0 unseen, 1 on the path, 2 done
  std::vector<std::string> path;
  std::function<void(const std::string&)> visit = [&](const std::string& module) {
    state[module] = 1;
    path.push_back(module);
    auto it = graph.find(module);
    if (it != graph.end()) {
      for (const auto& next : it->second) {
        if (state[next] == 1) {
          std::string cycle;
          for (const auto& m : path) cycle += m + " -> ";
          ADD_FAILURE() << "include cycle: " << cycle << next;
        } else if (state[next] == 0) {
          visit(next);
        }
      }
    }
    path.pop_back();
    state[module] = 2;
  };
  for (const auto& [module, includes] : graph) {
    if (state[module] == 0) visit(module);
  }
}

}  // namespace
}  // namespace pollkill
