// SMTP command-line parsing (RFC 5321, 6531, 1870, 6152, 3030). No I/O, no
// allocation except for the returned address strings; every function is
// pure and fuzzable.
//
//   std::string_view line;
//   size_t used;
//   switch (NextLine(buf, 1000, &used, &line)) { ... }
//   Command c = ParseCommand(line);         // verb + argument
//   auto mail = ParseMailFrom(c.arg, utf8); // <addr> + SIZE/BODY/SMTPUTF8
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mxr::relay {

enum class LineStatus {
  kLine,      // *line holds one command line (without CRLF), *consumed bytes used
  kNeedMore,  // no complete line yet and under the limit
  kTooLong,   // no line end within max_len bytes
};

// Finds the first line ending in CRLF (a bare LF also ends a command line;
// the line is then flagged by `*bare_lf`). `max_len` counts the CRLF.
LineStatus NextLine(std::string_view buf, size_t max_len, size_t* consumed,
                    std::string_view* line, bool* bare_lf = nullptr);

enum class Verb {
  kHelo, kEhlo, kMail, kRcpt, kData, kBdat, kRset, kNoop, kQuit, kVrfy, kExpn,
  kHelp, kStartTls, kAuth, kUnknown,
};

struct Command {
  Verb verb = Verb::kUnknown;
  std::string_view arg;  // after the verb and one or more spaces; trailing spaces trimmed
};

Command ParseCommand(std::string_view line);
std::string_view VerbName(Verb v);

// Result of parsing a path argument. `code`/`enhanced`/`text` describe the
// SMTP error when !ok (e.g. 501 5.1.7).
struct PathResult {
  bool ok = false;
  std::string address;  // without angle brackets; "" for the null sender
  bool has_utf8 = false;  // address contains non-ASCII (needs SMTPUTF8)
  // MAIL parameters.
  bool size_given = false;
  uint64_t size = 0;
  bool body_8bit = false;
  bool smtputf8 = false;
  // RFC 3461 (relay/dsn_params.h): MAIL RET/ENVID, RCPT NOTIFY/ORCPT.
  uint8_t dsn_ret = 0;      // queue::DsnRet
  std::string envid;        // xtext as given
  uint8_t notify = 0;       // queue::kNotify* bits
  std::string orcpt;        // addr-type;xtext as given
  int code = 0;
  std::string enhanced;
  std::string text;
};

// `arg` is what follows "MAIL" (i.e. "FROM:<a@b> SIZE=10").
PathResult ParseMailFrom(std::string_view arg);
// `arg` is what follows "RCPT" (i.e. "TO:<a@b>").
PathResult ParseRcptTo(std::string_view arg);

// Validates a mailbox (local@domain) per RFC 5321 4.1.2 / RFC 6531.
// Returns "" if valid, else the reason.
std::string CheckMailbox(std::string_view mailbox, bool* has_utf8);

// BDAT argument: "<size> [LAST]".
struct BdatArgs {
  bool ok = false;
  uint64_t size = 0;
  bool last = false;
};
BdatArgs ParseBdat(std::string_view arg);

}  // namespace mxr::relay
