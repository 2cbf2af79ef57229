#include "pollkill/fdlimit.h"

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "pollkill/diag.h"
#include "pollkill/error.h"

namespace pollkill {

NofilePlan plan_nofile(rlim_t soft, rlim_t hard, std::uint64_t needed, std::uint64_t per_task) {
  NofilePlan plan;
  if (soft == RLIM_INFINITY || soft >= needed) return plan;
  if (hard != RLIM_INFINITY && hard < needed) {
    plan.enough = false;
    plan.max_jobs = hard > kFdsBase ? (hard - kFdsBase) / per_task : 0;
    if (hard > soft) plan.raise_soft_to = hard;
    plan.raise_hard_to = static_cast<rlim_t>(needed);
    return plan;
  }
  plan.raise_soft_to = static_cast<rlim_t>(needed);
  return plan;
}

NofileRaise NofileRaise::for_jobs(std::uint64_t jobs, std::uint64_t per_task) {
  rlimit current{};
  if (::getrlimit(RLIMIT_NOFILE, &current) != 0) throw_errno("getrlimit(RLIMIT_NOFILE)");
  const std::uint64_t needed = nofile_needed(jobs, per_task);
  NofilePlan plan = plan_nofile(current.rlim_cur, current.rlim_max, needed, per_task);
  if (!plan.enough) {
    // Raising the hard limit needs CAP_SYS_RESOURCE (and stays within fs.nr_open): root on most
    // machines, not in many containers. Where it works, that is what the user asked for.
    const rlimit raised{*plan.raise_hard_to, *plan.raise_hard_to};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      diag::detail("raised the hard open-file limit (RLIMIT_NOFILE) from " +
                   std::to_string(current.rlim_max) + " to " + std::to_string(needed) +
                   " for --jobs " + std::to_string(jobs));
      NofileRaise raise;
      raise.original_ = current;
      return raise;
    }
    const int err = errno;
    throw Error("--jobs " + std::to_string(jobs) + " needs up to " + std::to_string(needed) +
                    " open files, but the hard limit (RLIMIT_NOFILE) is " +
                    std::to_string(current.rlim_max),
                "use --jobs " + std::to_string(plan.max_jobs) +
                    " or less, or raise the hard limit (`ulimit -Hn` as root, LimitNOFILE= in a "
                    "systemd unit, nofile in /etc/security/limits.conf); pollkill could not "
                    "raise it itself: " +
                    std::strerror(err) + " (" + errno_name(err) +
                    (err == EPERM ? ", needs CAP_SYS_RESOURCE)" : ")"));
  }
  NofileRaise raise;
  if (!plan.raise_soft_to) return raise;
  rlimit wanted = current;
  wanted.rlim_cur = *plan.raise_soft_to;
  if (::setrlimit(RLIMIT_NOFILE, &wanted) != 0) throw_errno("raise the soft RLIMIT_NOFILE");
  raise.original_ = current;
  return raise;
}

NofileRaise::NofileRaise(NofileRaise&& other) noexcept
    : original_(std::exchange(other.original_, std::nullopt)) {}

NofileRaise& NofileRaise::operator=(NofileRaise&& other) noexcept {
  if (this != &other) {
    if (original_) ::setrlimit(RLIMIT_NOFILE, &*original_);
    original_ = std::exchange(other.original_, std::nullopt);
  }
  return *this;
}

NofileRaise::~NofileRaise() {
  // Best effort: lowering the soft limit only fails for an invalid value, and the descriptors
  // the batch held are closed by now.
  if (original_) ::setrlimit(RLIMIT_NOFILE, &*original_);
}

}  // namespace pollkill
