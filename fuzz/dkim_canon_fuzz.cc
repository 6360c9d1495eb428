// Fuzz target: DKIM canonicalization (dkim/canon.h) and the From: parsing
// that chooses a signing rule (dkim/address.h).
//
// Input: a message (header section, empty line, body) as a client could
// send it; the relay's own trace field is put in front, as at reception.
//
// Invariants:
//  - ParseMessage: the fields' raw texts, in order, are exactly the header
//    copy; each ends with CRLF and holds no CRLF that is not followed by
//    SP/HTAB except its last; a name has no ':' and no trailing SP/HTAB;
//    `body` is a suffix of the input; appending MissingHeaderEnd() gives a
//    message whose header section ends with an empty line;
//  - header fields: simple is the raw text; relaxed equals the line-by-line
//    reference (dkim/canon_reference.h); for a field with a ':' it has a
//    lower-case name, one CRLF (at the end), no SP/HTAB run in the value,
//    and is idempotent (a line without ':' has no name: never signed);
//  - body, both algorithms: differential against the reference; relaxed has
//    no HTAB, no SP run, no SP before CRLF, does not end in two CRLFs, and
//    is idempotent; simple is never empty and is idempotent; every non-empty
//    canonical body ends with CRLF;
//  - FromDomain of every From: value: an accepted domain is non-empty, has
//    no '@', no ASCII upper case, no whitespace;
//  - the signed-field selection (over-signing) never picks a field twice.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dkim/address.h"
#include "dkim/canon.h"
#include "dkim/canon_reference.h"
#include "dkim/signer.h"
#include "fuzz/fuzz_util.h"

namespace {

using namespace mxr::dkim;
using mxr::fuzz::Escape;

constexpr char kPrefix[] = "Received: from c ([127.0.0.1])\r\n\tby relay.test (mxrelay) with ESMTP id 1;\r\n"
                           "\tSun, 22 Nov 2026 00:30:24 +0000\r\n";

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

void CheckRelaxedBody(const std::string& c) {
  FUZZ_CHECK(c.find('\t') == std::string::npos, "HTAB left: " + Escape(c));
  FUZZ_CHECK(c.find("  ") == std::string::npos, "SP run left: " + Escape(c));
  FUZZ_CHECK(c.find(" \r\n") == std::string::npos, "SP before CRLF: " + Escape(c));
  FUZZ_CHECK(!c.ends_with("\r\n\r\n"), "empty line at the end: " + Escape(c));
  FUZZ_CHECK(c.empty() || c.ends_with("\r\n"), Escape(c));
  FUZZ_CHECK(!(c.size() >= 2 && c.ends_with(" \r\n")), Escape(c));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view msg(reinterpret_cast<const char*>(data), size);
  ParsedMessage m = ParseMessage(kPrefix, msg);

  // Fields tile the header copy.
  std::string joined;
  for (size_t i = 0; i < m.fields.size(); ++i) {
    std::string_view raw = m.raw(i), name = m.name(i);
    FUZZ_CHECK(raw.ends_with("\r\n"), Escape(raw));
    for (size_t p = raw.find("\r\n"); p + 2 < raw.size(); p = raw.find("\r\n", p + 2)) {
      FUZZ_CHECK(IsWsp(raw[p + 2]), "a field continues without WSP: " + Escape(raw));
    }
    FUZZ_CHECK(name.find(':') == std::string_view::npos, Escape(name));
    FUZZ_CHECK(name.empty() || !IsWsp(name.back()), Escape(name));
    FUZZ_CHECK(raw.substr(0, name.size()) == name);
    joined.append(raw);

    std::string simple = CanonicalizeHeader(Canon::kSimple, raw);
    FUZZ_CHECK(simple == raw);
    std::string relaxed = CanonicalizeHeader(Canon::kRelaxed, raw);
    std::string ref = reference::RelaxedHeader(raw);
    FUZZ_CHECK(relaxed == ref, "relaxed header " + Escape(relaxed) + " != reference " + Escape(ref));
    // A line without ':' is not a field anyone can name in h= (never
    // signed); the forms below hold for real fields.
    if (raw.substr(0, raw.find("\r\n")).find(':') != std::string_view::npos) {
      FUZZ_CHECK(relaxed.ends_with("\r\n") && relaxed.find("\r\n") == relaxed.size() - 2, Escape(relaxed));
      FUZZ_CHECK(relaxed.find('\t', relaxed.find(':')) == std::string::npos, Escape(relaxed));
      FUZZ_CHECK(relaxed.find("  ", relaxed.find(':')) == std::string::npos, Escape(relaxed));
      for (char c : relaxed.substr(0, relaxed.find(':'))) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'), Escape(relaxed));
      FUZZ_CHECK(CanonicalizeHeader(Canon::kRelaxed, relaxed) == relaxed, "relaxed not idempotent: " + Escape(relaxed));
    } else {
      FUZZ_CHECK(name.empty());
    }

    if (HeaderNameEquals(name, "from")) {
      auto d = FromDomain(raw.substr(raw.find(':') + 1));
      if (d.ok()) {
        FUZZ_CHECK(!d->empty());
        for (char c : *d) {
          FUZZ_CHECK(c != '@' && !(c >= 'A' && c <= 'Z') && c != ' ' && c != '\t' && c != '\r' && c != '\n',
                     "domain " + Escape(*d));
        }
      }
    }
  }
  FUZZ_CHECK(joined == m.storage, "fields do not tile the header copy");
  FUZZ_CHECK(m.body.size() <= msg.size() && msg.substr(msg.size() - m.body.size()) == m.body);
  std::string completed = std::string(msg) + std::string(MissingHeaderEnd(m, msg));
  ParsedMessage again = ParseMessage(kPrefix, completed);
  FUZZ_CHECK(again.has_empty_line, "MissingHeaderEnd did not end the header section: " + Escape(completed));
  FUZZ_CHECK(again.fields.size() == m.fields.size());

  // Bodies.
  std::string relaxed = CanonicalizeBody(Canon::kRelaxed, m.body);
  std::string ref = reference::RelaxedBody(m.body);
  FUZZ_CHECK(relaxed == ref, "relaxed body " + Escape(relaxed) + " != reference " + Escape(ref));
  CheckRelaxedBody(relaxed);
  FUZZ_CHECK(CanonicalizeBody(Canon::kRelaxed, relaxed) == relaxed, "relaxed body not idempotent");
  std::string simple = CanonicalizeBody(Canon::kSimple, m.body);
  std::string sref = reference::SimpleBody(m.body);
  FUZZ_CHECK(simple == sref, "simple body " + Escape(simple) + " != reference " + Escape(sref));
  FUZZ_CHECK(!simple.empty() && simple.ends_with("\r\n"));
  FUZZ_CHECK(CanonicalizeBody(Canon::kSimple, simple) == simple, "simple body not idempotent");
  // The whole input as a body too (no header split), for long bodies.
  FUZZ_CHECK(CanonicalizeBody(Canon::kRelaxed, msg) == reference::RelaxedBody(msg));
  FUZZ_CHECK(CanonicalizeBody(Canon::kSimple, msg) == reference::SimpleBody(msg));

  // Over-signing picks every present field at most once.
  mxr::DkimConfig cfg;
  SignOptions opt = SignOptions::FromConfig(cfg);
  std::vector<std::string> names = SignedHeaderNames(m, opt);
  std::string signed_fields;
  StringSink sink(&signed_fields);
  AppendSignedFields(m, Canon::kSimple, names, &sink);
  FUZZ_CHECK(signed_fields.size() <= m.storage.size(), "a field signed twice");
  return 0;
}
