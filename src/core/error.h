// One exception type for every mistake a user can make (bad file, bad flag, bad value).
// The CLI prints its message as one line on stderr and exits non-zero; anything else that
// escapes is a bug in deltatrain.
#pragma once
#include <stdexcept>
#include <string>

namespace dt {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "path: message" — every file-related error names the file first.
inline Error file_error(const std::string& path, const std::string& message) {
  return Error(path + ": " + message);
}

}  // namespace dt
