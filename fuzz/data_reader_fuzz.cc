// Fuzz target: the DATA payload reader and the BDAT line-ending check
// (relay/data_reader.h), differentially against a slow, obviously correct
// reference written from RFC 5321 4.1.1.4 / 4.5.2:
//
//  - the data ends at the first <CRLF>.<CRLF>, the DATA command's CRLF
//    counting as the first CRLF (so ".\r\n" right away is an empty message);
//  - a line starts after a CRLF pair only (never after a bare LF or CR);
//    a leading dot on a line is removed;
//  - bare_line_ending() is set iff the payload holds a CR not followed by LF
//    or an LF not preceded by CR (the smuggling defence);
//  - size() counts the unstuffed bytes, oversize() is size() > max_size and
//    then the body is dropped.
//
// Input: byte 0 picks max_size, bytes 1-2 seed the split points; the rest is
// the client's stream after "354", fed in pieces.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "relay/data_reader.h"

namespace {

using mxr::fuzz::Escape;

struct Reference {
  bool done = false;
  size_t consumed = 0;    // bytes of the stream that belong to the DATA payload
  std::string body;       // unstuffed, excluding a trailing CR still undecided
  bool bare = false;
};

Reference Model(std::string_view s) {
  Reference r;
  std::string t = "\r\n" + std::string(s);
  size_t k = t.find("\r\n.\r\n");
  std::string_view content = s;  // what precedes the terminating ".\r\n"
  if (k != std::string::npos) {
    r.done = true;
    r.consumed = k + 3;  // t index k+5 is s index k+3
    content = s.substr(0, k);
  } else {
    r.consumed = s.size();
    // A final CR is not decided yet (CRLF or bare CR): the reader holds it.
    if (!content.empty() && content.back() == '\r') content.remove_suffix(1);
  }
  for (size_t i = 0; i < content.size(); ++i) {
    bool line_start = i == 0 || (i >= 2 && content[i - 2] == '\r' && content[i - 1] == '\n');
    if (line_start && content[i] == '.') continue;  // dot-unstuffing
    r.body += content[i];
  }
  for (size_t i = 0; i < content.size(); ++i) {
    // (content never ends with an undecided CR: complete data ends with
    // CRLF, and a final CR of incomplete data was removed above; a CR left
    // last here was followed by that removed CR, so it is bare.)
    if (content[i] == '\r' && (i + 1 >= content.size() || content[i + 1] != '\n')) r.bare = true;
    if (content[i] == '\n' && (i == 0 || content[i - 1] != '\r')) r.bare = true;
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  static constexpr uint64_t kSizes[] = {0, 1, 2, 3, 5, 8, 16, 64, 1000, 1u << 20};
  uint64_t max_size = kSizes[data[0] % (sizeof kSizes / sizeof kSizes[0])];
  mxr::fuzz::Splitter split(static_cast<uint32_t>(data[1]) << 8 | data[2]);
  std::string_view in(reinterpret_cast<const char*>(data) + 3, size - 3);

  // DataReader, fed in pieces (and once more with nothing after the end).
  std::string body;
  mxr::relay::DataReader reader(max_size, &body);
  mxr::relay::LineEndingCheck check;
  size_t consumed = 0;
  for (size_t pos = 0; pos < in.size();) {
    size_t n = std::min(split.Piece(64), in.size() - pos);
    std::string_view piece = in.substr(pos, n);
    bool was_done = reader.done();
    size_t used = reader.Feed(piece);
    FUZZ_CHECK(used <= n);
    if (was_done) FUZZ_CHECK(used == 0, "bytes consumed after the end of data");
    if (!reader.done()) FUZZ_CHECK(used == n, "short consume without reaching the end");
    consumed += used;
    check.Feed(piece);
    pos += n;
  }
  FUZZ_CHECK(reader.Feed(std::string_view()) == 0);

  Reference ref = Model(in);
  FUZZ_CHECK(reader.done() == ref.done, Escape(in));
  FUZZ_CHECK(consumed == ref.consumed,
             std::to_string(consumed) + " vs " + std::to_string(ref.consumed) + ": " + Escape(in));
  FUZZ_CHECK(reader.bare_line_ending() == ref.bare, Escape(in));
  FUZZ_CHECK(reader.size() == ref.body.size(),
             std::to_string(reader.size()) + " vs " + std::to_string(ref.body.size()));
  bool oversize = ref.body.size() > max_size;
  FUZZ_CHECK(reader.oversize() == oversize);
  if (oversize) {
    FUZZ_CHECK(body.empty());
  } else {
    FUZZ_CHECK(body == ref.body, Escape(body) + " vs " + Escape(ref.body));
  }
  // The smuggling defence in one line: an accepted body has CRLF endings only.
  if (reader.done() && !reader.bare_line_ending() && !oversize) {
    FUZZ_CHECK(mxr::fuzz::OnlyCrlf(body), Escape(body));
  }

  // LineEndingCheck over the whole stream (BDAT: no terminator, no stuffing).
  std::string_view all = in;
  bool pending_cr = !all.empty() && all.back() == '\r';
  if (pending_cr) all.remove_suffix(1);
  bool bare = !mxr::fuzz::OnlyCrlf(all);
  FUZZ_CHECK(check.bare() == bare, Escape(in));
  FUZZ_CHECK(check.ok_at_end() == (!bare && !pending_cr), Escape(in));
  return 0;
}
