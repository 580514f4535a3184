// A 64-bit FNV-1a hash for identities (plans, configs): stable across machines and runs, not
// cryptographic. Values are fed in a fixed little-endian byte form, so the digest does not
// depend on the platform.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace dt {

class Hash64 {
 public:
  Hash64& bytes(const void* data, size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < size; ++i) state_ = (state_ ^ p[i]) * 0x100000001b3ull;
    return *this;
  }
  // Strings carry their length, so ("ab", "c") and ("a", "bc") differ.
  Hash64& str(std::string_view s) { return u64(s.size()).bytes(s.data(), s.size()); }
  Hash64& u64(uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    return bytes(b, 8);
  }
  Hash64& i64(int64_t v) { return u64(static_cast<uint64_t>(v)); }
  Hash64& f64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    return u64(bits);
  }
  uint64_t value() const { return state_; }
  std::string hex() const {
    static const char* digits = "0123456789abcdef";
    std::string s(16, '0');
    for (int i = 0; i < 16; ++i) s[15 - i] = digits[(state_ >> (4 * i)) & 15];
    return s;
  }

 private:
  uint64_t state_ = 0xcbf29ce484222325ull;
};

}  // namespace dt
