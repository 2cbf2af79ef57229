// The kernel edge for cgroup v2 files: finding the hierarchy, and reading and writing a
// cgroup's attributes relative to a directory descriptor (so tests can aim it at a temp dir).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pollkill/fd.h"

namespace pollkill {

/// How this host mounts cgroups.
enum class CgroupLayout {
  pure,     ///< cgroup2 only (usually at /sys/fs/cgroup)
  hybrid,   ///< cgroup2 beside cgroup v1 controller hierarchies (e.g. /sys/fs/cgroup/unified)
  v1_only,  ///< no cgroup2 mount at all
};
std::string_view to_string(CgroupLayout layout);

/// One mounted cgroup v1 hierarchy.
struct V1Mount {
  std::filesystem::path mount_point;     ///< e.g. /sys/fs/cgroup/memory
  std::string root;                      ///< the mount's root inside the hierarchy (usually "/")
  std::vector<std::string> controllers;  ///< e.g. {"cpu", "cpuacct"}
};

/// What /proc/self/mountinfo says about cgroups.
struct CgroupMounts {
  std::optional<std::filesystem::path> cgroup2;  ///< mount point of the unified hierarchy
  /// The cgroup the mount shows at its mount point, relative to the viewer's cgroup
  /// namespace ("/" for a mount of the whole hierarchy or of the namespace's root).
  std::string cgroup2_root = "/";
  bool cgroup2_read_only = false;           ///< mounted "ro" (typical in unprivileged containers)
  std::vector<std::string> v1_controllers;  ///< controllers with a v1 hierarchy mounted
  std::vector<V1Mount> v1_mounts;           ///< the v1 controller hierarchies (first mount each)
  CgroupLayout layout = CgroupLayout::v1_only;
};

/// Parses mountinfo text (see proc(5)); octal escapes in mount points ("\040") are decoded.
/// When several cgroup2 mounts exist the first one wins, unless a later one is mounted on the
/// same mount point: that one covers it and is what a path lookup reaches.
CgroupMounts parse_mountinfo(std::string_view mountinfo);
/// Reads /proc/self/mountinfo.
CgroupMounts probe_cgroup_mounts();

/// The process's cgroup v2 path (the "0::" line of /proc/self/cgroup), e.g. "/" or
/// "/user.slice/user-1000.slice/session-2.scope". Empty when there is no such line.
std::string parse_own_cgroup(std::string_view proc_self_cgroup);
std::string probe_own_cgroup();

/// The process's cgroup v1 paths by controller, from the other lines of /proc/self/cgroup:
/// "4:memory:/a" gives memory -> "/a"; "1:cpu,cpuacct:/" gives both cpu and cpuacct.
/// Named hierarchies ("name=systemd") and the "0::" line are left out.
std::map<std::string, std::string, std::less<>> parse_own_v1_cgroups(
    std::string_view proc_self_cgroup);
std::map<std::string, std::string, std::less<>> probe_own_v1_cgroups();

/// Parses "key value" lines (cpu.stat, memory.events, cgroup.events) into a map.
std::map<std::string, std::uint64_t, std::less<>> parse_keyed(std::string_view text);

/// Parses a space- or newline-separated list of integers (cgroup.procs).
std::vector<int> parse_pids(std::string_view text);

/// An open cgroup directory. Attribute access is relative to its descriptor; errors carry
/// the full path and errno.
class CgroupDir {
 public:
  CgroupDir() = default;
  /// Opens an existing directory (O_DIRECTORY, usable for clone3's CLONE_INTO_CGROUP).
  static CgroupDir open(const std::filesystem::path& path);

  const std::filesystem::path& path() const noexcept { return path_; }
  int fd() const noexcept { return fd_.get(); }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

  /// Whether the attribute file exists (e.g. "cgroup.kill", "memory.peak").
  bool has(std::string_view attr) const;
  /// Reads a whole attribute; throws SystemError("read '<path>/<attr>'").
  std::string read(std::string_view attr) const;
  /// Like read, but nullopt when the file does not exist (ENOENT) instead of throwing.
  std::optional<std::string> try_read(std::string_view attr) const;
  /// Writes a value in one write(2); throws SystemError("write '<value>' to '<path>/<attr>'").
  void write(std::string_view attr, std::string_view value) const;
  /// Reads a single number; "max" reads as UINT64_MAX. nullopt when the file is absent.
  std::optional<std::uint64_t> read_u64(std::string_view attr) const;
  /// Reads a keyed file; nullopt when the file is absent.
  std::optional<std::map<std::string, std::uint64_t, std::less<>>> read_keyed(
      std::string_view attr) const;
  /// The pids in cgroup.procs.
  std::vector<int> procs() const;
  /// "populated" from cgroup.events.
  bool populated() const;
  /// The controllers listed in cgroup.controllers / cgroup.subtree_control.
  std::vector<std::string> controllers() const;
  std::vector<std::string> subtree_control() const;

 private:
  std::filesystem::path path_;
  UniqueFd fd_;
};

/// One attribute open for reads with pread from offset 0 (cpu.pressure, memory.pressure,
/// cgroup.threads). The watch opens one for a read and closes it: a quiet task is read so
/// rarely that a descriptor held per task does not pay (include/pollkill/fdlimit.h).
class AttrReader {
 public:
  AttrReader() = default;
  /// Opens `attr` of `dir`; an empty reader (false) when the file does not exist. Throws
  /// SystemError("open '<path>/<attr>'") for any other failure.
  static AttrReader open(const CgroupDir& dir, std::string_view attr);

  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
  /// The whole file as it is now; nullopt when reading fails (ENODEV: the cgroup is gone;
  /// EOPNOTSUPP: pressure accounting was turned off for it) or the reader is empty.
  std::optional<std::string> read() const;

 private:
  UniqueFd fd_;
};

}  // namespace pollkill
