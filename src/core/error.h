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

// A name taken from a file, fit for a one-line message: in single quotes, control characters
// escaped, cut after 120 characters.
inline std::string quoted_name(const std::string& name) {
  static const char* hex = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < name.size(); ++i) {
    if (i == 120) return out + "...'";
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c == '\n') out += "\\n";
    else if (c < 0x20 || c == 0x7f) out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    else out += static_cast<char>(c);
  }
  return out + "'";
}

// Whether a LibTorch error message is an allocation that failed: CUDA's "CUDA out of memory", and
// the CPU allocator's "can't allocate memory" (LibTorch 1.13) or "not enough memory" (2.x).
inline bool is_out_of_memory(const std::string& what) {
  for (const char* sign : {"out of memory", "can't allocate memory", "not enough memory"})
    if (what.find(sign) != std::string::npos) return true;
  return false;
}

}  // namespace dt
