#include "main/dkim_cli.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <iterator>

#include "common/strings.h"
#include "dkim/canon.h"
#include "dkim/keys.h"
#include "dkim/signer.h"
#include "dkim/txt_lookup.h"

namespace mxr {
namespace {

using dkim::Algorithm;
using dkim::PrivateKey;

// Exit codes: 0 ok, 1 the check failed (mismatch, missing, revoked), 2 usage
// or local error (bad arguments, unreadable key, DNS unreachable).
constexpr int kOk = 0, kFailed = 1, kError = 2;

absl::Status WriteNewFile(const std::string& path, const std::string& data, bool force) {
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (force ? O_TRUNC : O_EXCL);
  int fd = open(path.c_str(), flags, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return absl::AlreadyExistsError(Cat(path, " exists (use --force to replace it)"));
    return absl::InternalError(Cat("cannot create ", path, ": ", strerror(errno)));
  }
  // 0600 whatever the umask or the mode of a file replaced with --force.
  bool ok = fchmod(fd, 0600) == 0;
  size_t done = 0;
  while (ok && done < data.size()) {
    ssize_t w = write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) done += static_cast<size_t>(w);
  }
  ok = ok && fsync(fd) == 0;
  int err = errno;
  ok = close(fd) == 0 && ok;
  if (!ok) return absl::InternalError(Cat("cannot write ", path, ": ", strerror(err)));
  return absl::OkStatus();
}

}  // namespace

int DkimKeygen(const DkimCliArgs& a) {
  Algorithm alg;
  int bits = 0;
  if (a.algorithm == "ed25519") {
    alg = Algorithm::kEd25519Sha256;
  } else if (a.algorithm == "rsa1024" || a.algorithm == "rsa2048" || a.algorithm == "rsa3072" ||
             a.algorithm == "rsa4096") {
    alg = Algorithm::kRsaSha256;
    bits = std::stoi(a.algorithm.substr(3));
  } else {
    fmt::print(stderr, "mxrelay: --algorithm must be rsa2048 (or rsa1024, rsa3072, rsa4096) or ed25519\n");
    return kError;
  }
  if (a.domain.empty() || a.selector.empty()) {
    fmt::print(stderr, "mxrelay: --domain and --selector are required\n");
    return kError;
  }
  auto key = PrivateKey::Generate(alg, bits);
  if (!key.ok()) {
    fmt::print(stderr, "mxrelay: {}\n", key.status().message());
    return kError;
  }
  std::string path = a.out.empty() ? Cat(a.domain, ".", a.selector, ".pem") : a.out;
  std::string pem = (*key)->ToPem();
  absl::Status st = WriteNewFile(path, pem, a.force);
  WipeString(pem);
  if (!st.ok()) {
    fmt::print(stderr, "mxrelay: {}\n", st.message());
    return kError;
  }
  std::error_code ec;
  std::string abs = std::filesystem::absolute(path, ec).string();
  fmt::print("Wrote the private key to {} ({}, {} bits, mode 0600).\n\n", abs, dkim::AlgorithmName(alg),
             (*key)->bits());
  fmt::print("Publish this DNS TXT record (before signing with it):\n\n{}\n\n",
             dkim::KeyRecordZoneLine(**key, a.domain, a.selector));
  fmt::print("Add the key to a rule in the relay's configuration, e.g.:\n\n"
             "[[dkim.rule]]\nfrom_domain = \"{}\"\nkeys = [{{ domain = \"{}\", selector = \"{}\", key_file = \"{}\" }}]\n\n"
             "then check the published record: mxrelay dkim check --domain {} --selector {} -c mxrelay.toml\n",
             a.domain, a.domain, a.selector, abs, a.domain, a.selector);
  return kOk;
}

int DkimCheck(const DkimCliArgs& a, const Config* cfg) {
  if (a.domain.empty() || a.selector.empty()) {
    fmt::print(stderr, "mxrelay: --domain and --selector are required\n");
    return kError;
  }
  std::string key_file = a.key_file;
  if (key_file.empty() && cfg != nullptr) {
    for (const auto& r : cfg->dkim.rules) {
      for (const auto& k : r.keys) {
        if (k.domain == a.domain && k.selector == a.selector) key_file = k.key_file;
      }
    }
  }
  if (key_file.empty()) {
    fmt::print(stderr, "mxrelay: no key for d={} s={}: give --key-file, or -c with a [[dkim.rule]] naming it\n",
               a.domain, a.selector);
    return kError;
  }
  auto key = PrivateKey::LoadFile(key_file);
  if (!key.ok()) {
    fmt::print(stderr, "mxrelay: {}\n", key.status().message());
    return kError;
  }
  std::string resolver = !a.resolver.empty() ? a.resolver : cfg != nullptr ? cfg->delivery.resolver : "";
  std::string name = Cat(a.selector, "._domainkey.", a.domain);
  auto txt = dkim::LookupTxt(name, resolver, a.timeout_ms);
  std::string via = resolver.empty() ? "the system resolver" : resolver;
  if (!txt.ok()) {
    if (txt.status().code() == absl::StatusCode::kNotFound) {
      fmt::print("MISSING: {} has no DKIM key record ({} via {}). Publish:\n{}\n", name, txt.status().message(), via,
                 dkim::KeyRecordZoneLine(**key, a.domain, a.selector));
      return kFailed;
    }
    fmt::print(stderr, "mxrelay: {} (via {})\n", txt.status().message(), via);
    return kError;
  }
  std::string want_type = (*key)->algorithm() == Algorithm::kEd25519Sha256 ? "ed25519" : "rsa";
  std::string want_p = (*key)->PublicKeyBase64();
  std::string seen;
  for (const auto& t : *txt) {
    auto rec = dkim::ParseKeyRecord(t);
    if (!rec.ok()) {
      seen += Cat("\n  not a DKIM key record (", rec.status().message(), "): ", t.substr(0, 120));
      continue;
    }
    if (rec->public_key.empty()) {
      fmt::print("REVOKED: {} publishes an empty p= (the key is revoked)\n", name);
      return kFailed;
    }
    if (rec->key_type == want_type && rec->public_key == want_p) {
      std::string note;
      if (rec->flags.find('y') != std::string::npos) note += " (t=y: the domain says it is testing DKIM)";
      if (!rec->hashes.empty() && rec->hashes.find("sha256") == std::string::npos) {
        fmt::print("MISMATCH: {} allows only h={}, not sha256\n", name, rec->hashes);
        return kFailed;
      }
      fmt::print("OK: {} publishes the public key of {} ({}, {} bits){}\n", name, key_file,
                 dkim::AlgorithmName((*key)->algorithm()), (*key)->bits(), note);
      return kOk;
    }
    seen += Cat("\n  k=", rec->key_type, " p=", rec->public_key);
  }
  fmt::print("MISMATCH: {} does not publish the public key of {} ({}); found:{}\nExpected:\n{}\n", name, key_file,
             dkim::AlgorithmName((*key)->algorithm()), seen, dkim::KeyRecordZoneLine(**key, a.domain, a.selector));
  return kFailed;
}

int DkimSign(const DkimCliArgs& a) {
  if (a.domain.empty() || a.selector.empty() || a.key_file.empty()) {
    fmt::print(stderr, "mxrelay: --domain, --selector and --key-file are required\n");
    return kError;
  }
  auto key = PrivateKey::LoadFile(a.key_file);
  if (!key.ok()) {
    fmt::print(stderr, "mxrelay: {}\n", key.status().message());
    return kError;
  }
  DkimConfig cfg;
  if (!a.canonicalization.empty()) {
    auto one = [](std::string_view s) { return s == "simple" ? DkimCanon::kSimple : DkimCanon::kRelaxed; };
    size_t slash = a.canonicalization.find('/');
    std::string_view c(a.canonicalization);
    cfg.header_canon = one(c.substr(0, slash));
    cfg.body_canon = slash == std::string::npos ? DkimCanon::kSimple : one(c.substr(slash + 1));
  }
  std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  // Lines ending in a bare LF (a file from an editor) become CRLF lines.
  std::string msg;
  msg.reserve(in.size() + in.size() / 32);
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) msg += '\r';
    msg += in[i];
  }
  dkim::ParsedMessage m = dkim::ParseMessage("", msg);
  int64_t now = a.time > 0 ? a.time : static_cast<int64_t>(::time(nullptr));
  dkim::SignResult r = dkim::Sign(m, dkim::SignOptions::FromConfig(cfg), {{a.domain, a.selector, *key}}, now);
  if (!r.per_key[0].ok()) {
    fmt::print(stderr, "mxrelay: {}\n", r.per_key[0].message());
    return kError;
  }
  std::string out = r.fields + msg + std::string(dkim::MissingHeaderEnd(m, msg));
  fwrite(out.data(), 1, out.size(), stdout);
  return kOk;
}

}  // namespace mxr
