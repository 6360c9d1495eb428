#include "delivery/tls_rpt_sender.h"

#include <zlib.h>

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

std::string Gunzip(const std::string& in) {
  z_stream z{};
  inflateInit2(&z, 15 + 16);
  std::string out(1 << 20, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&z, Z_FINISH);
  EXPECT_EQ(rc, Z_STREAM_END);
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

TEST(TlsRptSender, GzipRoundTrips) {
  std::string json = "{\"organization-name\":\"x\"}";
  std::string gz = Gzip(json);
  ASSERT_GE(gz.size(), 18u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);  // gzip magic
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  EXPECT_EQ(Gunzip(gz), json);
}

TEST(TlsRptSender, MessageShape) {
  queue::QueueId id{1'700'000'000'000'000, 3};
  queue::NewMessage m = BuildTlsRptMessage("tlsrpt@d.test", "d.test", Gzip("{}"), "relay.test", "r1", 100, 200,
                                           "relay.test", id, 1'700'000'000'000'000);
  EXPECT_EQ(m.meta.sender, "");
  ASSERT_EQ(m.meta.recipients.size(), 1u);
  EXPECT_EQ(m.meta.recipients[0].address, "tlsrpt@d.test");
  EXPECT_NE(m.body.find("report-type=\"tlsrpt\""), std::string::npos);
  EXPECT_NE(m.body.find("Content-Type: application/tlsrpt+gzip"), std::string::npos);
  EXPECT_NE(m.body.find("filename=\"relay.test!d.test!100!200!r1.json.gz\""), std::string::npos);
  EXPECT_NE(m.body.find("TLS-Report-Domain: d.test\r\n"), std::string::npos);
  EXPECT_NE(m.body.find("TLS-Report-Submitter: relay.test\r\n"), std::string::npos);
  EXPECT_EQ(m.meta.body_size, m.body.size());
}

}  // namespace
}  // namespace mxr::delivery
