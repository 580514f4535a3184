// The Unicode pieces of byte-level BPE: UTF-8 checks, NFC (ICU), and the GPT-2 byte-level alphabet
// that maps every byte to one printable code point so that vocabularies are plain strings.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace dt {

// Length of the valid UTF-8 prefix of s (== s.size() when all of s is valid).
size_t valid_utf8_prefix(std::string_view s);

// Bytes → text, each invalid sequence replaced by U+FFFD (maximal subparts, as WHATWG and Python's
// errors="replace" do).
std::string utf8_replace_invalid(std::string_view bytes);

// Unicode normalization form C of valid UTF-8.
std::string nfc(std::string_view s);

// Code point of each byte in the byte-level alphabet (33..126, 161..172, 174..255 map to
// themselves; the other 68 bytes to 256, 257, ... in byte order).
const std::array<char32_t, 256>& byte_to_code_point();

// UTF-8 encoding of one code point.
std::string utf8_encode(char32_t c);

// The byte-level string of raw bytes (each byte becomes its alphabet character).
std::string to_byte_level(std::string_view bytes);

}  // namespace dt
