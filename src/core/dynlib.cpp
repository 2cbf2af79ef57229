#include "pollkill/dynlib.h"

#include <dlfcn.h>

#include <utility>

#include "pollkill/error.h"

namespace pollkill {
namespace {

// dlerror()'s text for the call that just failed; it is reset by being read.
std::string dl_error() {
  const char* text = ::dlerror();
  return text ? text : "unknown dlopen error";
}

}  // namespace

Dynlib Dynlib::open(const DynlibSpec& spec) {
  ::dlerror();  // clear a stale message
  void* handle = ::dlopen(spec.soname, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    throw Error(
        "cannot load " + std::string(spec.soname) + " (needed " + spec.purpose + "): " + dl_error(),
        "install the package that ships " + std::string(spec.soname) + " (" + spec.packages + ")");
  }
  return Dynlib(handle, spec.soname, spec.packages);
}

Dynlib::Dynlib(void* handle, std::string soname, std::string packages) noexcept
    : handle_(handle), soname_(std::move(soname)), packages_(std::move(packages)) {}

Dynlib::Dynlib(Dynlib&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      soname_(std::move(other.soname_)),
      packages_(std::move(other.packages_)) {}

Dynlib& Dynlib::operator=(Dynlib&& other) noexcept {
  if (this != &other) {
    if (handle_) ::dlclose(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
    soname_ = std::move(other.soname_);
    packages_ = std::move(other.packages_);
  }
  return *this;
}

Dynlib::~Dynlib() {
  if (handle_) ::dlclose(handle_);
}

void* Dynlib::address(const char* name) const {
  ::dlerror();
  // A function's address is never null; dlerror() tells a missing symbol apart all the same.
  void* address = ::dlsym(handle_, name);
  if (const char* text = ::dlerror(); text || !address) {
    throw Error("cannot use " + soname_ + ": it has no symbol '" + name +
                    "': " + (text ? text : "null address"),
                "the library is older than the headers pollkill was built with; update the "
                "package that ships it (" +
                    packages_ + ")");
  }
  return address;
}

}  // namespace pollkill
