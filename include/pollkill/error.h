// Errors that carry what was being done, to what, and (for system errors) errno.
#pragma once

#include <stdexcept>
#include <string>

namespace pollkill {

/// A failure pollkill reports to the user. `what()` is the complete message;
/// `hint()` (may be empty) says what the user can do about it.
class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, std::string hint = {})
      : std::runtime_error(std::move(message)), hint_(std::move(hint)) {}
  const std::string& hint() const noexcept { return hint_; }

 private:
  std::string hint_;
};

/// A failed system call: `what()` reads "CONTEXT: strerror (ENAME)", e.g.
/// "write '+memory' to '/sys/fs/cgroup/pk/cgroup.subtree_control': Device or resource busy
/// (EBUSY)".
class SystemError : public Error {
 public:
  SystemError(int err, const std::string& context, std::string hint = {});
  int code() const noexcept { return errno_; }

 private:
  int errno_;
};

/// Throws SystemError(errno, context). Call right after the failing syscall.
[[noreturn]] void throw_errno(const std::string& context, std::string hint = {});

/// The symbolic name of an errno value ("EBUSY"), or "E<number>" when unknown.
std::string errno_name(int err);

/// Parses an errno name ("EPERM") to its value; -1 when unknown.
int errno_from_name(const std::string& name);

}  // namespace pollkill
