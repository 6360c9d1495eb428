// Reads a DATA payload (RFC 5321 4.1.1.4 / 4.5.2): finds the end-of-data
// marker, removes dot-stuffing and enforces the size limit. No I/O.
//
// Smuggling defence: ONLY <CRLF>.<CRLF> ends the data. A bare CR or a bare
// LF anywhere is recorded (bare_line_ending()) and the message must then be
// rejected by the caller, so "\n.\n", "\r.\r\n", "\n.\r\n" and friends can
// never end one message and start another.
//
//   DataReader r(max_size, &body);
//   size_t used = r.Feed(bytes);       // call again with more bytes until done()
//   if (r.done()) { bytes.remove_prefix(used); /* rest is the next command */ }
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mxr::relay {

class DataReader {
 public:
  // Appends unstuffed content to *out (not more than max_size bytes).
  DataReader(uint64_t max_size, std::string* out) : max_size_(max_size), out_(out) {}

  // Consumes bytes up to and including the end-of-data marker; returns how
  // many were consumed (all of `in` unless done() became true).
  size_t Feed(std::string_view in);

  bool done() const { return state_ == State::kDone; }
  bool oversize() const { return oversize_; }
  bool bare_line_ending() const { return bare_; }
  uint64_t size() const { return size_; }  // unstuffed bytes seen (even past the limit)

 private:
  enum class State { kLineStart, kInLine, kCr, kDot, kDotCr, kDone };
  void Append(const char* p, size_t n);
  void Append(char c) { Append(&c, 1); }

  uint64_t max_size_;
  std::string* out_;
  State state_ = State::kLineStart;
  bool oversize_ = false;
  bool bare_ = false;
  uint64_t size_ = 0;
};

// Incremental check that a BDAT stream uses only CRLF line endings.
class LineEndingCheck {
 public:
  void Feed(std::string_view in);
  // Call at the end of the message (a trailing CR is bare).
  bool ok_at_end() const { return !bare_ && !pending_cr_; }
  bool bare() const { return bare_; }

 private:
  bool pending_cr_ = false;
  bool bare_ = false;
};

}  // namespace mxr::relay
