// SHA-256 (FIPS 180-4): content hashes for cache keys, manifests and model identities.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dt {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<uint8_t, 32> digest();  // finishes the hash; the object is spent afterwards
  std::string hex();                 // digest() as 64 lowercase hex digits

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  uint64_t length_ = 0;  // bytes hashed so far
};

std::string sha256_hex(std::string_view data);
// Hash of a file's bytes, read in chunks; throws dt::Error naming the file.
std::string sha256_file(const std::string& path);

}  // namespace dt
