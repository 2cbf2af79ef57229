#include "pollkill/error.h"

#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

namespace pollkill {
namespace {

struct ErrnoName {
  int value;
  std::string_view name;
};

// The errno values a task or the kernel edge plausibly meets; glibc has no
// strerrorname_np before 2.32 on some targets, and we want a stable table.
constexpr ErrnoName kErrnoNames[] = {
    {EPERM, "EPERM"},
    {ENOENT, "ENOENT"},
    {ESRCH, "ESRCH"},
    {EINTR, "EINTR"},
    {EIO, "EIO"},
    {ENXIO, "ENXIO"},
    {E2BIG, "E2BIG"},
    {ENOEXEC, "ENOEXEC"},
    {EBADF, "EBADF"},
    {ECHILD, "ECHILD"},
    {EAGAIN, "EAGAIN"},
    {ENOMEM, "ENOMEM"},
    {EACCES, "EACCES"},
    {EFAULT, "EFAULT"},
    {EBUSY, "EBUSY"},
    {EEXIST, "EEXIST"},
    {EXDEV, "EXDEV"},
    {ENODEV, "ENODEV"},
    {ENOTDIR, "ENOTDIR"},
    {EISDIR, "EISDIR"},
    {EINVAL, "EINVAL"},
    {ENFILE, "ENFILE"},
    {EMFILE, "EMFILE"},
    {ENOTTY, "ENOTTY"},
    {ETXTBSY, "ETXTBSY"},
    {EFBIG, "EFBIG"},
    {ENOSPC, "ENOSPC"},
    {ESPIPE, "ESPIPE"},
    {EROFS, "EROFS"},
    {EMLINK, "EMLINK"},
    {EPIPE, "EPIPE"},
    {EDOM, "EDOM"},
    {ERANGE, "ERANGE"},
    {EDEADLK, "EDEADLK"},
    {ENAMETOOLONG, "ENAMETOOLONG"},
    {ENOLCK, "ENOLCK"},
    {ENOSYS, "ENOSYS"},
    {ENOTEMPTY, "ENOTEMPTY"},
    {ELOOP, "ELOOP"},
    {ENOTSUP, "ENOTSUP"},
    {EOPNOTSUPP == ENOTSUP ? 0 : EOPNOTSUPP, "EOPNOTSUPP"},
    {EAFNOSUPPORT, "EAFNOSUPPORT"},
    {EADDRINUSE, "EADDRINUSE"},
    {ECONNREFUSED, "ECONNREFUSED"},
    {ECONNRESET, "ECONNRESET"},
    {ENETUNREACH, "ENETUNREACH"},
    {ETIMEDOUT, "ETIMEDOUT"},
    {ENOTSOCK, "ENOTSOCK"},
    {EPROTONOSUPPORT, "EPROTONOSUPPORT"},
    {EOVERFLOW, "EOVERFLOW"},
    {ECANCELED, "ECANCELED"},
    {EOWNERDEAD, "EOWNERDEAD"},
    {EDQUOT, "EDQUOT"},
};

}  // namespace

std::string errno_name(int err) {
  for (const auto& entry : kErrnoNames) {
    if (entry.value == err && entry.value != 0) return std::string(entry.name);
  }
  return "E" + std::to_string(err);
}

int errno_from_name(const std::string& name) {
  for (const auto& entry : kErrnoNames) {
    if (entry.name == name && entry.value != 0) return entry.value;
  }
  return -1;
}

SystemError::SystemError(int err, const std::string& context, std::string hint)
    : Error(context + ": " + std::strerror(err) + " (" + errno_name(err) + ")", std::move(hint)),
      errno_(err) {}

void throw_errno(const std::string& context, std::string hint) {
  throw SystemError(errno, context, std::move(hint));
}

}  // namespace pollkill
