#include "relay/data_reader.h"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace mxr::relay {
namespace {

// How many bytes from the start of [p, end) are ordinary message content:
// lines ended by CRLF, no bare CR or LF, no line beginning with '.'. The
// caller is in mid-line (the byte before p is neither a CR nor the LF that
// starts a line). Never ends right after a CR (the state machine must see
// the CR and its LF together); *line_start says it ended right after a
// CRLF, at a line that begins with a dot. 16 bytes per step: a CR mask
// shifted by one must equal the LF mask (with the carry across blocks), and
// an LF followed by a dot ends the run (one byte of lookahead, so a block
// needs 17 bytes).
size_t PlainPrefix(const char* p, const char* end, bool* line_start) {
  size_t n = static_cast<size_t>(end - p), i = 0;
  *line_start = false;
#if defined(__SSE2__)
  const __m128i vcr = _mm_set1_epi8('\r'), vlf = _mm_set1_epi8('\n'), vdot = _mm_set1_epi8('.');
  unsigned carry = 0;  // the previous block ended with a CR
  for (; i + 17 <= n; i += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    unsigned cr = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vcr)));
    unsigned lf = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, vlf)));
    if ((cr | lf | carry) == 0) continue;
    if (lf != (((cr << 1) | carry) & 0xffffu)) break;  // a bare CR or LF in this block
    if (lf != 0) {
      __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 1));
      unsigned dot = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(next, vdot)));
      if (unsigned hit = lf & dot; hit != 0) {  // a line starting with '.': stop at it
        *line_start = true;
        return i + static_cast<size_t>(__builtin_ctz(hit)) + 1;
      }
    }
    carry = (cr >> 15) & 1;
  }
  if (carry != 0) --i;  // leave the block's final CR to the state machine
#endif
  return i;
}

}  // namespace

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
        // Fastest path: whole runs of ordinary lines in one copy.
        bool line_start = false;
        if (size_t plain = PlainPrefix(p, end, &line_start); plain > 0) {
          Append(p, plain);
          p += plain;
          if (line_start) state_ = State::kLineStart;
          continue;
        }
        // Else copy everything up to the next CR or LF in one go.
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
