// Shared libraries loaded only where they are used: a move-only handle for a dlopen'ed library
// and typed lookup of its symbols. Every library pollkill links is mapped, relocated and
// initialized at each start, `pollkill --version` included; libdw (evidence capture's stacks)
// and libsystemd (asking systemd for a delegated scope) are needed by few runs and pulled in
// eleven more libraries, so they are opened here, by the code that uses them, when it does.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

namespace pollkill {

/// A library to open: its versioned soname (the file the dynamic loader looks for, the same one
/// a link-time dependency would name), what pollkill needs it for and who ships it. The sonames
/// come from the build (CMake reads them from the libraries pkg-config found), never a guess.
struct DynlibSpec {
  const char* soname;    ///< "libdw.so.1"
  const char* purpose;   ///< "to unwind the stacks of a stuck task (evidence capture)"
  const char* packages;  ///< "Debian: libdw1; Fedora: elfutils-libs"
};

/// One library opened with dlopen(RTLD_NOW | RTLD_LOCAL): every symbol it needs is bound at
/// once (a missing dependency fails here, not at the first call), and its symbols do not join
/// the global namespace. Closed (dlclose) when the handle is destroyed. Move-only.
///
/// Load once per process: the callers keep theirs in a function-local static (see `cached`),
/// so the library is opened on first use and stays for the life of the process. pollkill's
/// engine is single-threaded; dlopen/dlsym are thread-safe themselves, and the static's
/// initialization is too, but dlerror() is per thread and read right after the failing call.
class Dynlib {
 public:
  /// Opens `spec.soname`. Throws Error: "cannot load libdw.so.1 (needed to ...): DLERROR" with
  /// the hint to install the package that ships it.
  static Dynlib open(const DynlibSpec& spec);

  Dynlib(Dynlib&& other) noexcept;
  Dynlib& operator=(Dynlib&& other) noexcept;
  Dynlib(const Dynlib&) = delete;
  Dynlib& operator=(const Dynlib&) = delete;
  ~Dynlib();

  /// The address of `name`, typed: `lib.symbol<decltype(&dwfl_begin)>("dwfl_begin")`, checked
  /// against the declaration in the library's header at compile time (variadic functions such as
  /// sd_bus_message_append work the same way). Throws Error naming the symbol and the library
  /// (an older library than the headers the build used) when it has no such symbol.
  template <typename Function>
  Function symbol(const char* name) const {
    static_assert(
        std::is_pointer_v<Function> && std::is_function_v<std::remove_pointer_t<Function>>,
        "symbol<T>: T is a pointer to a function, e.g. decltype(&dwfl_begin)");
    return reinterpret_cast<Function>(address(name));
  }

  const std::string& soname() const noexcept { return soname_; }

 private:
  Dynlib(void* handle, std::string soname, std::string packages) noexcept;
  void* address(const char* name) const;

  void* handle_ = nullptr;
  std::string soname_;
  std::string packages_;
};

/// The library's functions, loaded once per process: `Api` is a struct whose constructor opens
/// the library and looks up its symbols (throwing Error on failure). The first call that
/// succeeds keeps it; a call that throws leaves nothing behind, so the next call tries again and
/// reports the same error.
template <typename Api>
const Api& cached() {
  static const Api api;
  return api;
}

}  // namespace pollkill

/// Declares a member named after a function of the library's header, holding its address looked
/// up in the Dynlib member `lib` declared before it: `POLLKILL_DYNLIB_SYMBOL(dwfl_begin);` in a
/// struct, called as `api.dwfl_begin(...)`.
#define POLLKILL_DYNLIB_SYMBOL(name) decltype(&::name) name = lib.symbol<decltype(&::name)>(#name)

/// Declares a library the binary dlopens, for packagers and their tools (dlopen-notes,
/// dh-dlopenlibdeps): an ELF note of type 0x407c0c0a, owner "FDO", in section .note.dlopen, whose
/// description is a JSON array of one object (https://systemd.io/ELF_DLOPEN_METADATA/; what
/// systemd 261's SD_ELF_NOTE_DLOPEN writes, which Debian 12's libsystemd-dev does not have). Read
/// it with `readelf -p .note.dlopen pollkill`. All arguments are string literals; `variable`
/// names the note's object. Used at namespace scope in the file that opens the library, which
/// every binary that can open it links.
#define POLLKILL_DLOPEN_NOTE(variable, feature, description, priority, soname)           \
  POLLKILL_DLOPEN_NOTE_OF(variable,                                                      \
                          "[{\"feature\":\"" feature "\",\"description\":\"" description \
                          "\",\"priority\":\"" priority "\",\"soname\":[\"" soname "\"]}]")
#define POLLKILL_DLOPEN_NOTE_OF(variable, json)          \
  struct variable##_layout {                             \
    std::uint32_t name_size, description_size, type;     \
    char name[4];                                        \
    alignas(4) char json_text[sizeof(json)];             \
  };                                                     \
  [[gnu::used, gnu::section(".note.dlopen")]] alignas(4) \
      const variable##_layout variable = {4, sizeof(json), 0x407c0c0a, "FDO", json}
