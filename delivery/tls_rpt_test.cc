#include "delivery/tls_rpt.h"

#include "gtest/gtest.h"

namespace mxr::delivery {
namespace {

TEST(TlsRpt, CountsAndJson) {
  TlsRptCollector c;
  StsPolicy p;
  p.mode = StsMode::kTesting;
  p.mx = {"mx.d.test"};
  p.text = "version: STSv1\r\nmode: testing\r\nmx: mx.d.test\r\nmax_age: 86400\r\n";
  c.Success("d.test", p);
  c.Failure("d.test", p, "starttls-not-supported", "mx.d.test", "192.0.2.1");
  c.Failure("d.test", p, "starttls-not-supported", "mx.d.test", "192.0.2.1");
  auto ds = c.Take();
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(c.domains(), 0u);
  std::string j = TlsRptReportJson(ds[0], "relay.test", "postmaster@relay.test", "r1", 0, 86400);
  EXPECT_EQ(j,
            "{\"organization-name\":\"relay.test\",\"date-range\":{\"start-datetime\":\"1970-01-01T00:00:00Z\","
            "\"end-datetime\":\"1970-01-02T00:00:00Z\"},\"contact-info\":\"postmaster@relay.test\",\"report-id\":"
            "\"r1\",\"policies\":[{\"policy\":{\"policy-type\":\"sts\",\"policy-string\":[\"version: STSv1\","
            "\"mode: testing\",\"mx: mx.d.test\",\"max_age: 86400\"],\"policy-domain\":\"d.test\",\"mx-host\":"
            "[\"mx.d.test\"]},\"summary\":{\"total-successful-session-count\":1,\"total-failure-session-count\":2},"
            "\"failure-details\":[{\"result-type\":\"starttls-not-supported\",\"receiving-ip\":\"192.0.2.1\","
            "\"receiving-mx-hostname\":\"mx.d.test\",\"failed-session-count\":2}]}]}");
}

TEST(TlsRpt, BoundedRows) {
  TlsRptCollector c;
  StsPolicy p;
  for (size_t i = 0; i < TlsRptCollector::kMaxFailureRows + 10; ++i) {
    c.Failure("d.test", p, "validation-failure", "mx" + std::to_string(i), "");
  }
  auto ds = c.Take();
  EXPECT_EQ(ds[0].failures, TlsRptCollector::kMaxFailureRows + 10);
  EXPECT_EQ(ds[0].failure_rows.size(), TlsRptCollector::kMaxFailureRows);
}

TEST(TlsRpt, TxtRecord) {
  EXPECT_EQ(ParseTlsRptTxt("v=TLSRPTv1; rua=mailto:tls@d.test,https://r.d.test/v1"),
            (std::vector<std::string>{"mailto:tls@d.test", "https://r.d.test/v1"}));
  EXPECT_TRUE(ParseTlsRptTxt("v=TLSRPTv2; rua=mailto:a@b").empty());
  EXPECT_TRUE(ParseTlsRptTxt("rua=mailto:a@b; v=TLSRPTv1").empty());
  EXPECT_EQ(ParseTlsRptTxt("v=TLSRPTv1;rua=ftp://x,mailto:a@b"), (std::vector<std::string>{"mailto:a@b"}));
}

}  // namespace
}  // namespace mxr::delivery
