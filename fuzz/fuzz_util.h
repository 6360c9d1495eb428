// Helpers shared by the fuzz targets: a loud invariant check that libFuzzer
// reports as a crash (with the message), and a tiny deterministic PRNG that
// turns a few input bytes into split points.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace mxr::fuzz {

[[noreturn]] inline void InvariantFailed(const char* file, int line, const char* cond,
                                         const std::string& detail) {
  std::fprintf(stderr, "\n%s:%d: fuzz invariant violated: %s\n", file, line, cond);
  if (!detail.empty()) std::fprintf(stderr, "  %s\n", detail.c_str());
  std::abort();
}

// FUZZ_CHECK(cond) / FUZZ_CHECK(cond, "detail " + x): abort (libFuzzer saves the input).
#define FUZZ_CHECK(cond, ...)                                                        \
  do {                                                                               \
    if (!(cond)) ::mxr::fuzz::InvariantFailed(__FILE__, __LINE__, #cond, std::string(__VA_ARGS__)); \
  } while (0)

// Printable rendering of bytes for invariant messages ("\r" -> "\\r" ...).
inline std::string Escape(std::string_view s, size_t max = 300) {
  std::string o;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\r') {
      o += "\\r";
    } else if (c == '\n') {
      o += "\\n";
    } else if (c < 32 || c >= 127 || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      o += buf;
    } else {
      o += static_cast<char>(c);
    }
  }
  if (s.size() > max) o += "...";
  return o;
}

// True if every CR is followed by LF and every LF preceded by CR.
inline bool OnlyCrlf(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return false;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
  }
  return true;
}

// Known bugs, already reported and not yet fixed, that a long run may be
// told to step over so that it keeps finding new ones (a target asks
// `if (fuzz::KnownBug("name")) ...` around the invariant the bug breaks):
//   MXRELAY_FUZZ_KNOWN=name,other-name scripts/fuzz.sh long 600
// CI (scripts/fuzz.sh smoke) never sets it: there the regression inputs in
// fuzz/corpus/ fail until the bug is fixed. Names: fuzz/README.md.
inline bool KnownBug(std::string_view name) {
  const char* env = std::getenv("MXRELAY_FUZZ_KNOWN");
  if (env == nullptr) return false;
  std::string_view list(env);
  while (!list.empty()) {
    size_t comma = list.find(',');
    if (list.substr(0, comma) == name) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// Deterministic split points: xorshift32 seeded from the input.
class Splitter {
 public:
  explicit Splitter(uint32_t seed) : x_(seed | 1) {}
  uint32_t Next() {
    x_ ^= x_ << 13;
    x_ ^= x_ >> 17;
    x_ ^= x_ << 5;
    return x_;
  }
  // Next piece length in [1, max_piece], biased towards small pieces so that
  // every state boundary (CR|LF, dot|CR, ...) gets split sooner or later.
  size_t Piece(size_t max_piece) {
    uint32_t r = Next();
    size_t cap = (r & 3) == 0 ? max_piece : (r & 3) == 1 ? 16 : 3;
    if (cap > max_piece) cap = max_piece;
    return 1 + (r >> 8) % cap;
  }

 private:
  uint32_t x_;
};

}  // namespace mxr::fuzz
