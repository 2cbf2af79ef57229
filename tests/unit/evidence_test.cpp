// Evidence as data: the signature rule, names, the /proc parsers, the JSON and text forms.
#include "pollkill/evidence.h"

#include <gtest/gtest.h>
#include <sys/syscall.h>

#include "pollkill/evidence_capture.h"

namespace pollkill {
namespace {

Frame frame(const std::string& function, const std::string& module, std::uint64_t module_offset = 0,
            const std::string& file = "", int line = 0) {
  Frame f;
  f.pc = 0x7f0000000000 + module_offset;
  f.function = function;
  f.symbol = function;
  f.offset = function.empty() ? 0 : 0x20;
  f.module = module;
  f.module_offset = module_offset;
  f.file = file;
  f.line = line;
  return f;
}

const std::string kLibc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
const std::string kStuck = "/build/tests/pk_stuck";

ThreadEvidence thread(pid_t tid, const std::string& comm, char state, double cpu,
                      std::vector<Frame> stack = {}, std::optional<long> syscall = std::nullopt) {
  ThreadEvidence t;
  t.tid = tid;
  t.comm = comm;
  t.state = state;
  t.cpu_s = cpu;
  t.syscall = syscall;
  t.user_stack = std::move(stack);
  return t;
}

ProcessEvidence process(pid_t pid, pid_t ppid, const std::string& comm,
                        std::vector<ThreadEvidence> threads) {
  ProcessEvidence p;
  p.pid = pid;
  p.ppid = ppid;
  p.comm = comm;
  p.cmdline = {comm};
  p.threads = std::move(threads);
  return p;
}

const std::vector<Frame> kReadStack = {
    frame("read", kLibc, 0x1142ec, "../sysdeps/unix/sysv/linux/read.c", 26),
    frame("stuck_in_read", kStuck, 0x118a, "stuck.c", 37),
    frame("main", kStuck, 0x11ff, "stuck.c", 120),
    frame("__libc_start_call_main", kLibc, 0x2724a),
};

TEST(EvidenceNames, ShortFunctionName) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"main", "main"},
      {"gmsh_yyparse()", "gmsh_yyparse"},
      {"ParseFile(std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > "
       "const&, bool, bool)",
       "ParseFile"},
      {"GModel::readGEO(std::__cxx11::basic_string<char, std::char_traits<char>, "
       "std::allocator<char> > const&)",
       "GModel::readGEO"},
      {"Foo::get() const", "Foo::get"},
      {"Foo::take() &&", "Foo::take"},
      {"std::vector<int, std::allocator<int> >::push_back(int&&)", "std::vector::push_back"},
      {"void std::sort<int*>(int*, int*)", "void std::sort"},
      {"Foo::operator()(int)", "Foo::operator()"},
      {"operator<<(std::ostream&, Foo const&)", "operator<<"},
      {"Foo::operator<(Foo const&) const", "Foo::operator<"},
      {"Foo::operator->()", "Foo::operator->"},
      {"(anonymous namespace)::helper(int)", "(anonymous namespace)::helper"},
      {"List_Nbr(List_T*)", "List_Nbr"},
      {"__libc_start_main@@GLIBC_2.34", "__libc_start_main"},
      {"clock_nanosleep@GLIBC_2.2.5", "clock_nanosleep"},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(short_function_name(in), out) << in;
}

TEST(EvidenceNames, Demangle) {
  EXPECT_EQ(demangle("_Z9ParseFileRKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEEbb"),
            "ParseFile(std::__cxx11::basic_string<char, std::char_traits<char>, "
            "std::allocator<char> > const&, bool, bool)");
  EXPECT_EQ(demangle("_Z8List_NbrP6List_T"), "List_Nbr(List_T*)");
  EXPECT_EQ(demangle("stuck_in_read"), "stuck_in_read");
  EXPECT_EQ(demangle("_Znotmangled!"), "_Znotmangled!");
}

TEST(EvidenceNames, RuntimeModules) {
  for (const char* m : {"/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2",
                        "/usr/lib/x86_64-linux-gnu/libpthread.so.0", "[vdso: 1234]",
                        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/libgcc_s.so.1",
                        "/lib/ld-musl-x86_64.so.1", "/usr/lib/x86_64-linux-gnu/libasan.so.8.0.0"}) {
    EXPECT_TRUE(is_runtime_module(m)) << m;
  }
  for (const char* m : {"/usr/lib/x86_64-linux-gnu/libgmsh.so.4.8.4", "/usr/bin/gmsh",
                        "/usr/lib/x86_64-linux-gnu/libm.so.6", "/opt/libcrypto.so", ""}) {
    EXPECT_FALSE(is_runtime_module(m)) << m;
  }
}

TEST(EvidenceParse, ProcFiles) {
  EXPECT_EQ(parse_proc_syscall("0 0x3 0x7ffd 0x1 0x7f55 0x0 0x7ffd 0x7ffd 0x7f55\n"), 0);
  EXPECT_EQ(parse_proc_syscall("61 0x1 0x2 0x3 0x4 0x5 0x6 0x7 0x8\n"), 61);
  EXPECT_EQ(parse_proc_syscall("-1 0x7ffd 0x7f55\n"), -1);
  EXPECT_EQ(parse_proc_syscall("running\n"), std::nullopt);
  EXPECT_EQ(parse_proc_syscall(""), std::nullopt);
  EXPECT_EQ(parse_proc_syscall("x1"), std::nullopt);
  EXPECT_EQ(parse_kernel_stack("[<0>] anon_pipe_read+0x366/0x410\n[<0>] vfs_read+0x32c/0x360\n"),
            (std::vector<std::string>{"anon_pipe_read+0x366/0x410", "vfs_read+0x32c/0x360"}));
  EXPECT_EQ(parse_kernel_stack("[<ffffffff81234567>] do_wait+0x1/0x2\n"),
            (std::vector<std::string>{"do_wait+0x1/0x2"}));
  EXPECT_TRUE(parse_kernel_stack("").empty());
  EXPECT_EQ(parse_cmdline(std::string("sh\0-c\0echo hi\0", 14)),
            (std::vector<std::string>{"sh", "-c", "echo hi"}));
  EXPECT_EQ(parse_cmdline(std::string("a\0\0b\0", 5)), (std::vector<std::string>{"a", "", "b"}));
}

TEST(EvidenceSignature, SkipsTheRuntimeAndNamesThreeFrames) {
  struct Case {
    const char* name;
    std::vector<Frame> stack;
    std::string signature;
  };
  const std::vector<Case> cases{
      {"read in libc, then the program", kReadStack,
       "pk_stuck: stuck_in_read < main < __libc_start_call_main"},
      {"only runtime frames are kept as they are",
       {frame("__GI___poll", kLibc, 0x10), frame("start_thread", kLibc, 0x20)},
       "pk_stuck: __GI___poll < start_thread"},
      {"a frame without a symbol names its module and offset",
       {frame("", "/opt/app/libsolver.so", 0x4a10), frame("solve(int)", "/opt/app/app", 0x99)},
       "pk_stuck: libsolver.so+0x4a10 < solve"},
      {"standard library templates inlined into the program are skipped too",
       {frame("std::_Rb_tree_iterator<std::pair<std::string const, double> >::_Rb_tree_iterator("
              "std::_Rb_tree_node_base*)",
              "/usr/lib/x86_64-linux-gnu/libgmsh.so.4.8.4", 0x9),
        frame("std::map<std::string, double>::find(std::string const&)",
              "/usr/lib/x86_64-linux-gnu/libgmsh.so.4.8.4", 0x8),
        frame("gmsh_yyparse()", "/usr/lib/x86_64-linux-gnu/libgmsh.so.4.8.4", 0x2),
        frame("ParseFile(std::string const&, bool, bool)",
              "/usr/lib/x86_64-linux-gnu/libgmsh.so.4.8.4", 0x3)},
       "pk_stuck: gmsh_yyparse < ParseFile"},
      {"Gmsh's parser",
       {frame("List_Nbr(List_T*)", "/usr/lib/x86_64-linux-gnu/libgmsh.so.4.8.4", 0x1),
        frame("gmsh_yyparse()", "/usr/lib/x86_64-linux-gnu/libgmsh.so.4.8.4", 0x2),
        frame("ParseFile(std::string const&, bool, bool)",
              "/usr/lib/x86_64-linux-gnu/libgmsh.so.4.8.4", 0x3),
        frame("GModel::readGEO(std::string const&)", "/usr/lib/x86_64-linux-gnu/libgmsh.so.4.8.4",
              0x4)},
       "pk_stuck: List_Nbr < gmsh_yyparse < ParseFile"},
  };
  for (const auto& c : cases) {
    Evidence e;
    e.status = Status::hung;
    e.main_pid = 10;
    e.processes = {process(10, 1, "pk_stuck", {thread(10, "pk_stuck", 'S', 0, c.stack)})};
    EXPECT_EQ(stack_signature(e), c.signature) << c.name;
  }
}

TEST(EvidenceSignature, WithoutAUserStackTheKernelSpeaks) {
  Evidence e;
  e.main_pid = 10;
  e.processes = {process(10, 1, "dd", {thread(10, "dd", 'D', 0)})};
  e.processes[0].threads[0].wchan = "nfs_wait_bit_killable";
  EXPECT_EQ(stack_signature(e), "dd: [kernel] nfs_wait_bit_killable");
  e.processes[0].threads[0].wchan.clear();
  EXPECT_EQ(stack_signature(e), "");
  e.processes.clear();
  EXPECT_EQ(stack_signature(e), "");
  EXPECT_EQ(signature_thread(e), nullptr);
}

TEST(EvidenceSignature, TheThreadItIsTakenFrom) {
  const std::vector<Frame> spin = {frame("spin_here", kStuck, 1), frame("run_worker", kStuck, 2)};
  const std::vector<Frame> idle = {frame("idle_worker", kStuck, 3)};
  const std::vector<Frame> waiting = {frame("wait_for_child", kStuck, 4), frame("main", kStuck, 5)};
  struct Case {
    const char* name;
    Status status;
    pid_t main_pid;
    std::vector<ProcessEvidence> processes;
    pid_t expected_tid;
  };
  const std::vector<Case> cases{
      {"spinning: the running thread with the most CPU",
       Status::spinning,
       10,
       {process(10, 1, "app",
                {thread(10, "app", 'S', 50.0, idle), thread(11, "spinner", 'R', 3.0, spin),
                 thread(12, "other", 'R', 1.0, spin)})},
       11},
      {"cpu_limit: no running thread, the most CPU",
       Status::cpu_limit,
       10,
       {process(10, 1, "app", {thread(10, "app", 'S', 1.0), thread(11, "w", 'S', 2.0)})},
       11},
      {"hung: the main process's main thread",
       Status::hung,
       20,
       {process(10, 1, "other", {thread(10, "other", 'S', 9.0)}),
        process(20, 1, "app", {thread(20, "app", 'S', 0.0, idle), thread(21, "w", 'S', 5.0)})},
       20},
      {"hung: a parent in wait4 leads to its child",
       Status::hung,
       10,
       {process(10, 1, "sh", {thread(10, "sh", 'S', 0.0, waiting, SYS_wait4)}),
        process(11, 10, "prog", {thread(11, "prog", 'S', 0.0, kReadStack, SYS_read)})},
       11},
      {"timeout: through two waiting parents, to the busier child",
       Status::timeout,
       10,
       {process(10, 1, "make", {thread(10, "make", 'S', 0.0, waiting, SYS_wait4)}),
        process(11, 10, "sh", {thread(11, "sh", 'S', 0.0, waiting, SYS_waitid)}),
        process(12, 11, "cc1", {thread(12, "cc1", 'S', 0.1)}),
        process(13, 11, "ld", {thread(13, "ld", 'S', 4.0)})},
       13},
      {"a waiting parent without children stays",
       Status::hung,
       10,
       {process(10, 1, "sh", {thread(10, "sh", 'S', 0.0, waiting, SYS_wait4)})},
       10},
      {"the main process gone: the lowest pid",
       Status::thrashing,
       99,
       {process(30, 1, "a", {thread(30, "a", 'S', 0.0)}),
        process(40, 1, "b", {thread(40, "b", 'S', 0.0)})},
       30},
  };
  for (const auto& c : cases) {
    Evidence e;
    e.status = c.status;
    e.main_pid = c.main_pid;
    e.processes = c.processes;
    const ThreadEvidence* t = signature_thread(e);
    ASSERT_NE(t, nullptr) << c.name;
    EXPECT_EQ(t->tid, c.expected_tid) << c.name;
  }
}

Evidence sample_evidence() {
  Evidence e;
  e.id = "t3";
  e.attempt = 2;
  e.status = Status::hung;
  e.reason = "no CPU use (below 0.01 CPU) and no progress for 2s";
  e.captured_at = "2026-11-30T12:00:00.123Z";
  e.capture_s = 0.4123;
  e.frozen = true;
  e.main_pid = 10;
  ThreadEvidence main = thread(10, "pk_stuck", 'S', 0.01, kReadStack, SYS_read);
  main.wchan = "anon_pipe_read";
  main.kernel_stack = {"anon_pipe_read+0x366/0x410", "vfs_read+0x32c/0x360"};
  std::vector<ThreadEvidence> threads{main};
  for (pid_t tid = 11; tid < 17; ++tid) {
    ThreadEvidence idle =
        thread(tid, "idle-" + std::to_string(tid - 11), 'S', 0, {frame("idle_worker", kStuck, 3)});
    idle.kernel_stack_missing = "/proc/TID/stack: Permission denied (EACCES)";
    threads.push_back(idle);
  }
  ThreadEvidence lost = thread(17, "lost", 'D', 0);
  lost.user_stack_missing = "did not stop within the capture budget";
  threads.push_back(lost);
  e.processes = {process(10, 1, "pk_stuck", threads)};
  e.signature_tid = 10;
  e.stack_signature = stack_signature(e);
  e.missing = {"user stacks of 1 thread: did not stop within the capture budget"};
  return e;
}

TEST(EvidenceFiles, JsonSchema) {
  const auto j = to_json(sample_evidence());
  std::vector<std::string> keys;
  for (const auto& item : j.items()) keys.push_back(item.key());
  EXPECT_EQ(keys,
            (std::vector<std::string>{"version", "id", "attempt", "status", "reason", "captured_at",
                                      "capture_s", "mode", "frozen", "main_pid", "stack_signature",
                                      "signature_tid", "missing", "processes"}));
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["status"], "hung");
  EXPECT_EQ(j["capture_s"], 0.412);
  EXPECT_EQ(j["stack_signature"], "pk_stuck: stuck_in_read < main < __libc_start_call_main");
  const auto& t = j["processes"][0]["threads"][0];
  std::vector<std::string> thread_keys;
  for (const auto& item : t.items()) thread_keys.push_back(item.key());
  EXPECT_EQ(thread_keys, (std::vector<std::string>{"tid", "comm", "state", "wchan", "syscall",
                                                   "cpu_s", "kernel_stack", "kernel_stack_missing",
                                                   "user_stack", "user_stack_missing"}));
  EXPECT_EQ(t["state"], "S");
  EXPECT_EQ(t["syscall"], SYS_read);
  EXPECT_TRUE(t["user_stack_missing"].is_null());
  const auto& f = t["user_stack"][1];
  EXPECT_EQ(f["function"], "stuck_in_read");
  EXPECT_EQ(f["pc"], "0x7f000000118a");
  EXPECT_EQ(f["module_offset"], "0x118a");
  EXPECT_EQ(f["offset"], 0x20);
  EXPECT_EQ(f["file"], "stuck.c");
  EXPECT_EQ(f["line"], 37);
  const auto& lost = j["processes"][0]["threads"][7];
  EXPECT_TRUE(lost["user_stack"].is_null());
  EXPECT_EQ(lost["user_stack_missing"], "did not stop within the capture budget");
  EXPECT_TRUE(lost["wchan"].is_null());
  EXPECT_TRUE(lost["syscall"].is_null());
  EXPECT_TRUE(lost["kernel_stack"].is_null());
}

TEST(EvidenceFiles, TextTellsIdleThreadsOnce) {
  const std::string text = format_text(sample_evidence());
  EXPECT_NE(text.find("hung: no CPU use"), std::string::npos) << text;
  EXPECT_NE(text.find("stuck at: pk_stuck: stuck_in_read < main"), std::string::npos) << text;
  EXPECT_NE(text.find("thread 10 (pk_stuck): S in read, wchan anon_pipe_read"), std::string::npos)
      << text;
  EXPECT_NE(text.find("#1 stuck_in_read+0x20 in pk_stuck (stuck.c:37)"), std::string::npos) << text;
  EXPECT_NE(text.find("kernel: anon_pipe_read < vfs_read"), std::string::npos) << text;
  EXPECT_NE(text.find("6 threads (11 idle-0, 12 idle-1, 13 idle-2, 14 idle-3, ...)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("thread 12 "), std::string::npos) << text;
  EXPECT_NE(text.find("no user stack: did not stop within the capture budget"), std::string::npos)
      << text;
  EXPECT_EQ(evidence_json_name("t3", 2), "t3.2.evidence.json");
  EXPECT_EQ(evidence_text_name("t3", 2), "t3.2.evidence.txt");
}

TEST(EvidenceFiles, ReasonNote) {
  EXPECT_EQ(with_evidence_note("hung for 2s", {"/x.json", "a: b", ""}), "hung for 2s");
  EXPECT_EQ(with_evidence_note("hung for 2s",
                               {std::nullopt, std::nullopt, "capture ran past its 2s budget"}),
            "hung for 2s (evidence: capture ran past its 2s budget)");
}

}  // namespace
}  // namespace pollkill
