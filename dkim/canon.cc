#include "dkim/canon.h"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace mxr::dkim {
namespace {

inline bool IsWsp(char c) { return c == ' ' || c == '\t'; }

inline char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

// Relaxed body in one pass. Output differs from input only at runs of
// SP/HTAB (one SP, or nothing before a CRLF or the end) and at empty lines
// (held back until a non-empty line follows; dropped at the end), so
// unchanged stretches go to the sink as they are.
class RelaxedBody {
 public:
  RelaxedBody(std::string_view in, ByteSink* sink) : p_(in.data()), n_(in.size()), sink_(sink) {}

  void Run() {
    size_t i = 0;
    while (i < n_) {
      size_t j = NextCandidate(i);
      if (j >= n_) break;
      char c = p_[j];
      if (c == '\r') {
        if (j + 1 < n_ && p_[j + 1] == '\n') {
          if (j == line_start_) {  // an empty line (perhaps after dropped WSP)
            Flush(span_, j);
            ++pending_;
            span_ = j + 2;
          }
          line_start_ = j + 2;
          i = j + 2;
        } else {
          i = j + 1;  // bare CR: an ordinary character
        }
        continue;
      }
      // A run of WSP starting at j.
      size_t k = j;
      while (k < n_ && IsWsp(p_[k])) ++k;
      bool eol = k == n_ || (p_[k] == '\r' && k + 1 < n_ && p_[k + 1] == '\n');
      if (eol) {  // trailing WSP: dropped
        Flush(span_, j);
        span_ = k;
        if (j == line_start_) line_start_ = k;
      } else if (!(k == j + 1 && p_[j] == ' ')) {  // not already a single SP: one SP
        Flush(span_, j);
        Emit(" ", 1);
        span_ = k;
      }
      i = k;
    }
    Flush(span_, n_);
    if (line_start_ < n_) Emit("\r\n", 2);  // a last line without CRLF (see canon.h)
    // Empty lines at the end are dropped; an empty body stays empty.
  }

 private:
  // First position >= i that may need work: CR, HTAB, or SP followed by
  // SP, HTAB, CR or the end.
  size_t NextCandidate(size_t i) const {
#if defined(__SSE2__)
    const __m128i sp = _mm_set1_epi8(' ');
    const __m128i tab = _mm_set1_epi8('\t');
    const __m128i cr = _mm_set1_epi8('\r');
    while (i + 17 <= n_) {
      __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p_ + i));
      __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p_ + i + 1));
      __m128i next_special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(w, sp), _mm_cmpeq_epi8(w, tab)),
                                          _mm_cmpeq_epi8(w, cr));
      __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(v, cr)),
                                 _mm_and_si128(_mm_cmpeq_epi8(v, sp), next_special));
      int mask = _mm_movemask_epi8(hit);
      if (mask != 0) return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
      i += 16;
    }
#endif
    for (; i < n_; ++i) {
      char c = p_[i];
      if (c == '\r' || c == '\t') return i;
      if (c == ' ' && (i + 1 == n_ || IsWsp(p_[i + 1]) || p_[i + 1] == '\r')) return i;
    }
    return n_;
  }

  void Emit(const char* s, size_t len) {
    while (pending_ > 0) {  // empty lines held back, now followed by content
      static constexpr char kCrlfs[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";
      size_t k = pending_ < 8 ? pending_ : 8;
      sink_->Append(kCrlfs, 2 * k);
      pending_ -= k;
    }
    sink_->Append(s, len);
  }
  void Flush(size_t a, size_t b) {
    if (b > a) Emit(p_ + a, b - a);
  }

  const char* p_;
  size_t n_;
  ByteSink* sink_;
  size_t span_ = 0;        // start of input not yet written
  size_t line_start_ = 0;  // start of the current line (after WSP dropped at its start)
  size_t pending_ = 0;     // empty lines held back
};

void SimpleBody(std::string_view in, ByteSink* sink) {
  const char* p = in.data();
  size_t n = in.size();
  size_t span = 0, line_start = 0, pending = 0;
  bool any = false;
  auto emit = [&](const char* s, size_t len) {
    for (; pending > 0; --pending) sink->Append("\r\n", 2);
    sink->Append(s, len);
    any = true;
  };
  size_t i = 0;
  while (i < n) {
    const void* hit = std::memchr(p + i, '\r', n - i);
    if (hit == nullptr) break;
    size_t j = static_cast<size_t>(static_cast<const char*>(hit) - p);
    if (j + 1 < n && p[j + 1] == '\n') {
      if (j == line_start) {
        if (j > span) emit(p + span, j - span);
        ++pending;
        span = j + 2;
      }
      line_start = j + 2;
      i = j + 2;
    } else {
      i = j + 1;
    }
  }
  if (span < n) emit(p + span, n - span);
  if (line_start < n) emit("\r\n", 2);  // a last line without CRLF (see canon.h)
  if (!any) sink->Append("\r\n", 2);  // an empty body is one CRLF
}

}  // namespace

bool HeaderNameEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

ParsedMessage ParseMessage(std::string_view prefix, std::string_view message) {
  ParsedMessage m;
  // The header section of `message`: up to and including the CRLF before
  // the first empty line.
  size_t hdr_end = message.size();
  size_t body_begin = message.size();
  if (message.substr(0, 2) == "\r\n") {
    hdr_end = 0;
    body_begin = 2;
    m.has_empty_line = true;
  } else {
    size_t e = message.find("\r\n\r\n");
    if (e != std::string_view::npos) {
      hdr_end = e + 2;
      body_begin = e + 4;
      m.has_empty_line = true;
    }
  }
  m.body = message.substr(body_begin);
  m.storage.reserve(prefix.size() + hdr_end + 2);
  m.storage.append(prefix);
  m.storage.append(message.substr(0, hdr_end));
  if (!m.storage.empty() && !(m.storage.size() >= 2 && m.storage.compare(m.storage.size() - 2, 2, "\r\n") == 0)) {
    m.storage.append("\r\n");  // the last line without CRLF (BDAT): the wire will have one
  }
  std::string_view s(m.storage);
  size_t pos = 0;
  while (pos < s.size()) {
    size_t eol = s.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = s.size() - 2;  // not reached: storage ends with CRLF
    size_t line_end = eol + 2;
    bool continuation = IsWsp(s[pos]) && !m.fields.empty();
    if (continuation) {
      m.fields.back().raw_len = line_end - m.fields.back().begin;
    } else {
      HeaderField f;
      f.begin = pos;
      f.raw_len = line_end - pos;
      std::string_view first = s.substr(pos, eol - pos);
      size_t colon = first.find(':');
      if (colon != std::string_view::npos) {
        size_t nl = colon;
        while (nl > 0 && IsWsp(first[nl - 1])) --nl;
        f.name_len = nl;
      }
      m.fields.push_back(f);
    }
    pos = line_end;
  }
  return m;
}

std::string_view MissingHeaderEnd(const ParsedMessage& m, std::string_view message) {
  if (m.has_empty_line || m.fields.empty()) return "";
  return message.empty() || message.ends_with("\r\n") ? "\r\n" : "\r\n\r\n";
}

void CanonicalizeHeader(Canon c, std::string_view raw, std::string* out) {
  if (c == Canon::kSimple) {
    out->append(raw);
    return;
  }
  size_t colon = raw.find(':');
  std::string_view name = colon == std::string_view::npos ? raw : raw.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : raw.substr(colon + 1);
  while (!name.empty() && (IsWsp(name.back()) || name.back() == '\r' || name.back() == '\n')) {
    name.remove_suffix(1);
  }
  for (char ch : name) out->push_back(Lower(ch));
  out->push_back(':');
  // Unfold (drop every CRLF), compress WSP runs to one SP, trim both ends.
  bool pending_space = false;
  bool any = false;
  for (size_t i = 0; i < value.size(); ++i) {
    char ch = value[i];
    if (ch == '\r' && i + 1 < value.size() && value[i + 1] == '\n') {
      ++i;
      continue;
    }
    if (IsWsp(ch)) {
      pending_space = any;
      continue;
    }
    if (pending_space) out->push_back(' ');
    pending_space = false;
    out->push_back(ch);
    any = true;
  }
  out->append("\r\n");
}

std::string CanonicalizeHeader(Canon c, std::string_view raw) {
  std::string out;
  CanonicalizeHeader(c, raw, &out);
  return out;
}

void CanonicalizeBody(Canon c, std::string_view body, ByteSink* sink) {
  if (c == Canon::kSimple) return SimpleBody(body, sink);
  RelaxedBody(body, sink).Run();
}

std::string CanonicalizeBody(Canon c, std::string_view body) {
  std::string out;
  StringSink sink(&out);
  CanonicalizeBody(c, body, &sink);
  return out;
}

}  // namespace mxr::dkim
