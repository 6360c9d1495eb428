// `mxrelay dkim keygen|check|sign`: DKIM key tooling for operators.
//
//   mxrelay dkim keygen --domain example.com --selector s2026 --algorithm ed25519
//       writes example.com.s2026.pem (0600), prints the TXT record to publish
//       and the [[dkim.rule]] to add
//   mxrelay dkim check --domain example.com --selector s2026 [-c mxrelay.toml]
//       fetches s2026._domainkey.example.com (through delivery.resolver, or the
//       system's) and says whether it publishes the key's public half
//   mxrelay dkim sign --domain D --selector S --key-file F < message
//       prints the message with its DKIM-Signature (trying a key by hand)
#pragma once

#include <string>

#include "common/config.h"

namespace mxr {

struct DkimCliArgs {
  std::string domain, selector, algorithm, out, key_file, resolver, canonicalization;
  bool force = false;
  int64_t time = 0;  // sign: t= (0 = now)
  int timeout_ms = 5000;
};

int DkimKeygen(const DkimCliArgs& a);
// `cfg` may be null (no -c): the key must then come from --key-file.
int DkimCheck(const DkimCliArgs& a, const Config* cfg);
int DkimSign(const DkimCliArgs& a);

}  // namespace mxr
