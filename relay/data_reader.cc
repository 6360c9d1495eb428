#include "relay/data_reader.h"

#include <cstring>

namespace mxr::relay {

void DataReader::Append(const char* p, size_t n) {
  size_ += n;
  if (oversize_) return;
  if (size_ > max_size_) {
    oversize_ = true;
    out_->clear();  // it will be rejected; stop holding memory
    out_->shrink_to_fit();
    return;
  }
  out_->append(p, n);
}

size_t DataReader::Feed(std::string_view in) {
  const char* p = in.data();
  const char* end = p + in.size();
  while (p < end) {
    switch (state_) {
      case State::kInLine: {
        // Fast path: copy everything up to the next CR or LF in one go.
        const char* cr = static_cast<const char*>(std::memchr(p, '\r', end - p));
        const char* stop = cr ? cr : end;
        const char* lf = static_cast<const char*>(std::memchr(p, '\n', stop - p));
        if (lf != nullptr) {  // bare LF before any CR
          bare_ = true;
          Append(p, lf + 1 - p);
          p = lf + 1;
          continue;
        }
        Append(p, stop - p);
        p = stop;
        if (cr != nullptr) {
          state_ = State::kCr;
          ++p;
        }
        break;
      }
      case State::kLineStart:
        if (*p == '.') {
          state_ = State::kDot;
          ++p;
        } else {
          state_ = State::kInLine;
        }
        break;
      case State::kCr:
        if (*p == '\n') {
          Append("\r\n", 2);
          state_ = State::kLineStart;
          ++p;
        } else {
          bare_ = true;  // CR not followed by LF
          Append('\r');
          state_ = State::kInLine;  // re-examine *p there (it may be another CR)
        }
        break;
      case State::kDot:
        // The line began with a dot: drop it (dot-unstuffing) unless this is
        // the end-of-data line ".\r\n".
        if (*p == '\r') {
          state_ = State::kDotCr;
          ++p;
        } else {
          state_ = State::kInLine;
        }
        break;
      case State::kDotCr:
        if (*p == '\n') {
          state_ = State::kDone;
          return p + 1 - in.data();
        }
        bare_ = true;  // ".\r" + something other than LF
        Append('\r');
        state_ = State::kInLine;
        break;
      case State::kDone:
        return p - in.data();
    }
  }
  return in.size();
}

void LineEndingCheck::Feed(std::string_view in) {
  for (char c : in) {
    if (pending_cr_) {
      if (c != '\n') bare_ = true;
      pending_cr_ = false;
      if (c == '\n') continue;
    }
    if (c == '\r') {
      pending_cr_ = true;
    } else if (c == '\n') {
      bare_ = true;
    }
  }
}

}  // namespace mxr::relay
