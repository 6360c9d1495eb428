// DKIM micro-benchmarks (bench/RESULTS.md, issue 16):
//  - canonicalization alone (bytes/s; the target is >= 1 GB/s) and
//    with SHA-256 (the body hash), on realistic mail text;
//  - our canonicalizer + signer against OpenDKIM's library (libopendkim)
//    signing the same message with the same key and algorithm: the
//    measurement behind "own canonicalizer rather than libopendkim";
//  - the raw signature operations (compare with `openssl speed`).
//
//   build/bench/dkim_bench --benchmark_filter=Canon
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include "dkim/canon.h"
#include "dkim/keys.h"
#include "dkim/signer.h"

#define _Bool bool
#include <dkim.h>
#undef _Bool

namespace mxr::dkim {
namespace {

// Mail-like text: lines of words up to ~76 columns, a double space now and
// then, some trailing whitespace, a blank line between paragraphs.
std::string Text(size_t bytes, uint32_t seed = 16) {
  static const char* kWords[] = {"the", "relay", "signs", "every", "message", "with", "a", "key",
                                 "of", "its", "domain;", "verifiers", "check", "it.", "Offer:", "50%"};
  std::mt19937 rng(seed);
  std::string out;
  size_t col = 0;
  while (out.size() < bytes) {
    std::string w = kWords[rng() % 16];
    if (col + w.size() + 1 > 76) {
      if (rng() % 8 == 0) out += "  ";  // trailing whitespace
      out += "\r\n";
      col = 0;
      if (rng() % 6 == 0) out += "\r\n";  // paragraph
      continue;
    }
    if (col > 0) out += rng() % 20 == 0 ? "  " : " ";
    out += w;
    col += w.size() + 1;
  }
  return out + "\r\n";
}

class NullSink final : public ByteSink {
 public:
  void Append(const char* data, size_t n) override {
    bytes += n;
    benchmark::DoNotOptimize(data);
  }
  size_t bytes = 0;
};

void BM_CanonBody(benchmark::State& state) {
  Canon c = state.range(1) == 0 ? Canon::kRelaxed : Canon::kSimple;
  std::string body = Text(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    NullSink sink;
    CanonicalizeBody(c, body, &sink);
    benchmark::DoNotOptimize(sink.bytes);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.SetLabel(c == Canon::kRelaxed ? "relaxed" : "simple");
}
BENCHMARK(BM_CanonBody)->ArgsProduct({{1024, 102400, 1 << 20}, {0, 1}});

void BM_BodyHash(benchmark::State& state) {
  std::string body = Text(static_cast<size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(BodyHash(Canon::kRelaxed, body));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_BodyHash)->Arg(1024)->Arg(1 << 20);

void BM_CanonHeaders(benchmark::State& state) {
  std::string prefix = "Received: from c ([127.0.0.1])\r\n\tby relay.test (mxrelay) with ESMTP id 1;\r\n"
                       "\tSun, 22 Nov 2026 00:30:24 +0000\r\n";
  std::string msg = "From: \"News\" <news@customer.test>\r\nTo: <r@dest.test>\r\nSubject: Your  weekly\r\n\tnews\r\n"
                    "Date: Sun, 22 Nov 2026 00:30:00 +0000\r\nMessage-ID: <1@customer.test>\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\nList-Unsubscribe: <https://customer.test/u>\r\n\r\nb\r\n";
  SignOptions opt = SignOptions::FromConfig(DkimConfig{});
  size_t bytes = 0;
  for (auto _ : state) {
    ParsedMessage m = ParseMessage(prefix, msg);
    std::string out;
    StringSink sink(&out);
    AppendSignedFields(m, Canon::kRelaxed, SignedHeaderNames(m, opt), &sink);
    bytes += m.storage.size();
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_CanonHeaders);

// A 1 KB / 100 KB message as the relay signs it.
std::string Message(size_t body) {
  return "From: \"News\" <news@customer.test>\r\nTo: <r@dest.test>\r\nSubject: Your weekly news\r\n"
         "Date: Sun, 22 Nov 2026 00:30:00 +0000\r\nMessage-ID: <1@customer.test>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=utf-8\r\n\r\n" +
         Text(body);
}

std::shared_ptr<const PrivateKey> Key(int which) {
  static auto rsa = *PrivateKey::Generate(Algorithm::kRsaSha256, 2048);
  static auto ed = *PrivateKey::Generate(Algorithm::kEd25519Sha256);
  return which == 0 ? rsa : ed;
}

// Our whole signing of one message: parse, canonicalize, hash, sign.
// range(0): body bytes; range(1): 0 RSA-2048, 1 Ed25519, 2 both.
void BM_SignMessage(benchmark::State& state) {
  std::string msg = Message(static_cast<size_t>(state.range(0)));
  std::vector<SigningKey> keys;
  if (state.range(1) != 1) keys.push_back({"customer.test", "rsa", Key(0)});
  if (state.range(1) != 0) keys.push_back({"customer.test", "ed", Key(1)});
  SignOptions opt = SignOptions::FromConfig(DkimConfig{});
  for (auto _ : state) {
    ParsedMessage m = ParseMessage("", msg);
    SignResult r = Sign(m, opt, keys, 1'800'000'000);
    benchmark::DoNotOptimize(r.fields);
  }
  state.SetLabel(state.range(1) == 0 ? "ours rsa2048" : state.range(1) == 1 ? "ours ed25519" : "ours rsa+ed");
}
BENCHMARK(BM_SignMessage)->ArgsProduct({{1024, 102400, 1 << 20}, {0, 1, 2}})->Unit(benchmark::kMicrosecond);

// libopendkim signing the same message with the same key (relaxed/relaxed).
void BM_OpenDkimSignMessage(benchmark::State& state) {
  std::string msg = Message(static_cast<size_t>(state.range(0)));
  bool ed = state.range(1) == 1;
  std::string pem = Key(ed ? 1 : 0)->ToPem();
  DKIM_LIB* lib = dkim_init(nullptr, nullptr);
  for (auto _ : state) {
    DKIM_STAT st;
    DKIM* d = dkim_sign(lib, reinterpret_cast<const unsigned char*>("bench"), nullptr,
                        reinterpret_cast<dkim_sigkey_t>(pem.data()), reinterpret_cast<const unsigned char*>("s"),
                        reinterpret_cast<const unsigned char*>("customer.test"), DKIM_CANON_RELAXED,
                        DKIM_CANON_RELAXED, ed ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256, -1, &st);
    if (d == nullptr) {
      state.SkipWithError("dkim_sign failed");
      break;
    }
    dkim_chunk(d, reinterpret_cast<unsigned char*>(msg.data()), msg.size());
    dkim_chunk(d, nullptr, 0);
    st = dkim_eom(d, nullptr);
    unsigned char hdr[4096];
    if (st != DKIM_STAT_OK || dkim_getsighdr(d, hdr, sizeof hdr, 0) != DKIM_STAT_OK) {
      state.SkipWithError("libopendkim signing failed");
      dkim_free(d);
      break;
    }
    benchmark::DoNotOptimize(hdr);
    dkim_free(d);
  }
  dkim_close(lib);
  state.SetLabel(ed ? "libopendkim ed25519" : "libopendkim rsa2048");
}
BENCHMARK(BM_OpenDkimSignMessage)->ArgsProduct({{1024, 102400, 1 << 20}, {0, 1}})->Unit(benchmark::kMicrosecond);

// The signature operation alone, on a 32-byte digest.
void BM_SignDigest(benchmark::State& state) {
  auto key = Key(static_cast<int>(state.range(0)));
  Digest d{};
  for (auto _ : state) benchmark::DoNotOptimize(key->SignDigest(d));
  state.SetLabel(state.range(0) == 0 ? "rsa2048" : "ed25519");
}
BENCHMARK(BM_SignDigest)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace mxr::dkim

BENCHMARK_MAIN();
