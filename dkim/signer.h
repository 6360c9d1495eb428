// DKIM-Signature fields for one message (RFC 6376 5; Ed25519: RFC 8463).
// Pure: no threads, no I/O, no clock (the caller gives the time).
//
//   SignOptions opt = SignOptions::FromConfig(cfg.dkim);
//   ParsedMessage m = ParseMessage(prefix, body);
//   SignResult r = Sign(m, opt, {{"example.com", "s1", key}}, now_s);
//   // r.fields: "DKIM-Signature: ...\r\n" per key that signed, to put first
//
// The body hash and the canonical signed header fields are computed once;
// each key adds its own DKIM-Signature field to a copy of the header hash.
// Tags: v a c d s t [x] h bh b (never l=: a length limit lets anyone
// append content). Lines are folded below 78 characters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/config.h"
#include "dkim/canon.h"
#include "dkim/keys.h"

namespace mxr::dkim {

struct SignOptions {
  Canon header_canon = Canon::kRelaxed;
  Canon body_canon = Canon::kRelaxed;
  int expire_after = 0;  // s; 0 = no x=
  // Listed once per instance present (absent: not listed).
  std::vector<std::string> headers;
  // Listed once more than they occur, when present (From always, at least
  // once: RFC 6376 5.4 requires it signed).
  std::vector<std::string> oversign;

  static SignOptions FromConfig(const DkimConfig& c);
};

// The default lists (docs/CONFIG.md).
const std::vector<std::string>& DefaultSignedHeaders();
const std::vector<std::string>& DefaultOversignedHeaders();

struct SigningKey {
  std::string domain;    // d=
  std::string selector;  // s=
  std::shared_ptr<const PrivateKey> key;
};

struct SignResult {
  std::string fields;  // the DKIM-Signature fields made, in key order, CRLF-terminated
  // One status per key, in order: OK when its field is in `fields`.
  std::vector<absl::Status> per_key;
};

// The h= list for `m`: names in the order signed (lower case).
std::vector<std::string> SignedHeaderNames(const ParsedMessage& m, const SignOptions& opt);

SignResult Sign(const ParsedMessage& m, const SignOptions& opt, const std::vector<SigningKey>& keys,
                int64_t now_s);

// The canonical fields named in `names` (h= order; for each name the last
// instance not yet used, RFC 6376 5.4.2) into `out`.
void AppendSignedFields(const ParsedMessage& m, Canon c, const std::vector<std::string>& names, ByteSink* out);
// Everything a signature covers (RFC 6376 3.7): those fields, then
// `sig_field` (a DKIM-Signature field whose b= value is empty, without
// CRLF) canonicalized without its CRLF. Sign() hashes the same bytes; this
// form is for known-answer tests and verification.
std::string SignedData(const ParsedMessage& m, Canon c, const std::vector<std::string>& names,
                       std::string_view sig_field);

// The base64 SHA-256 of the canonical body (the bh= value).
std::string BodyHash(Canon c, std::string_view body);

}  // namespace mxr::dkim
