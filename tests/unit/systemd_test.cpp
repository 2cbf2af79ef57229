// The systemd scope decision, version parsing and the policy key (pure); the scope request
// itself is tested against real systemd in tests/integration/systemd_test.cpp.
#include "pollkill/systemd.h"

#include <gtest/gtest.h>

#include "pollkill/error.h"
#include "pollkill/policy.h"

namespace pollkill {
namespace {

struct DecisionCase {
  SystemdScopeMode mode;
  bool systemd_pid1;
  bool explicit_root;
  bool own_usable;
  bool request;
};

TEST(SystemdScopeDecision, Table) {
  using M = SystemdScopeMode;
  const DecisionCase cases[] = {
      // auto: only on systemd, only without an explicit root, only when not delegated
      {M::automatic, true, false, false, true},
      {M::automatic, true, false, true, false},
      {M::automatic, true, true, false, false},
      {M::automatic, false, false, false, false},
      // always: on systemd whatever the own cgroup is, but an explicit root still wins
      {M::always, true, false, true, true},
      {M::always, true, false, false, true},
      {M::always, true, true, false, false},
      {M::always, false, false, false, false},
      // never
      {M::never, true, false, false, false},
  };
  for (const auto& c : cases) {
    ScopeDecision d = decide_scope(c.mode, c.systemd_pid1, c.explicit_root, c.own_usable);
    EXPECT_EQ(d.request, c.request)
        << to_string(c.mode) << " systemd=" << c.systemd_pid1 << " explicit=" << c.explicit_root
        << " usable=" << c.own_usable << ": " << d.why;
    EXPECT_FALSE(d.why.empty());
  }
}

TEST(SystemdVersion, LeadingNumber) {
  EXPECT_EQ(systemd_major_version("252.38-1~deb12u1"), 252);
  EXPECT_EQ(systemd_major_version("255"), 255);
  EXPECT_EQ(systemd_major_version("v1"), 0);
  EXPECT_EQ(systemd_major_version(""), 0);
  EXPECT_LT(systemd_major_version("217"), kMinimumSystemdForDelegation);
}

TEST(SystemdScopePolicy, ParsesPrintsAndRejects) {
  EXPECT_EQ(default_policy().runner.systemd_scope, SystemdScopeMode::automatic);
  for (const char* word : {"auto", "never", "always"}) {
    Policy p = parse_policy(
        std::string("version = 1\n[runner]\nsystemd_scope = \"") + word + "\"\n", "t.toml");
    EXPECT_STREQ(to_string(p.runner.systemd_scope), word);
    EXPECT_NE(to_toml(p).find(std::string("systemd_scope = \"") + word + "\""), std::string::npos);
    EXPECT_EQ(parse_policy(to_toml(p), "round.toml"), p);
  }
  EXPECT_THROW(parse_policy("version = 1\n[runner]\nsystemd_scope = \"sometimes\"\n", "t.toml"),
               PolicyError);
  EXPECT_THROW(parse_systemd_scope("yes"), Error);
}

TEST(SystemdUserManagerFix, NamesTheDropIn) {
  std::string fix = user_manager_delegate_fix({"memory", "cpu"});
  EXPECT_NE(fix.find("does not delegate memory cpu"), std::string::npos) << fix;
  EXPECT_NE(fix.find("/etc/systemd/system/user@.service.d/delegate.conf"), std::string::npos);
  EXPECT_NE(fix.find("Delegate="), std::string::npos);
}

}  // namespace
}  // namespace pollkill
