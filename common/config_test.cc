#include "common/config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mxr {
namespace {

using ::testing::HasSubstr;

TEST(ConfigTest, EmptyFileGivesDefaults) {
  auto c = ParseConfig("", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->listeners.size(), 3u);
  EXPECT_EQ(c->listeners[2].mode, ListenerMode::kImplicitTls);
  EXPECT_TRUE(c->trusted_networks.empty());  // never an open relay by default
  EXPECT_EQ(c->limits.max_recipients, 1000);
  EXPECT_EQ(c->SpoolPath(), "./mxrelay-data/spool");
}

TEST(ConfigTest, ParsesEverySection) {
  auto c = ParseConfig(R"(
hostname = "mx.example"
data_dir = "/var/lib/mxrelay"
threads = 2
trusted_networks = ["127.0.0.0/8", "::1"]
[log]
level = "debug"
[[listener]]
address = "0.0.0.0"
port = 465
mode = "implicit_tls"
[[listener]]
name = "bench"
port = 2600
mode = "plain"
auth_without_tls = true
[tls]
cert_file = "/c.pem"
key_file = "/k.pem"
min_version = "1.3"
[auth]
users_file = "/u"
max_failures = 5
failure_delay_ms = 10
[limits]
max_message_size = 1048576
max_recipients = 50
max_connections = 10
max_connections_per_ip = 3
max_line_length = 2048
max_errors = 7
[timeouts]
greeting = 1
command = 2
data = 3
tls_handshake = 4
spool_write = 5
[spool]
path = "/s"
write_buffer_size = 2097152
max_write_buffer_number = 4
max_total_wal_size = 4194304
)",
                       "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hostname, "mx.example");
  ASSERT_EQ(c->listeners.size(), 2u);
  EXPECT_EQ(c->listeners[0].port, 465);
  EXPECT_EQ(c->listeners[0].name, "implicit_tls-465");
  EXPECT_EQ(c->listeners[1].name, "bench");
  EXPECT_TRUE(c->listeners[1].auth_without_tls);
  ASSERT_EQ(c->trusted_networks.size(), 2u);
  EXPECT_TRUE(c->trusted_networks[1].Contains(*IpAddress::Parse("::1")));
  EXPECT_EQ(c->tls.min_version, "1.3");
  EXPECT_EQ(c->auth.max_failures, 5);
  EXPECT_EQ(c->limits.max_message_size, 1048576u);
  EXPECT_EQ(c->limits.max_errors, 7);
  EXPECT_EQ(c->timeouts.spool_write, 5);
  EXPECT_EQ(c->SpoolPath(), "/s");
  EXPECT_EQ(c->UsersFile(), "/u");
  EXPECT_EQ(c->spool.max_write_buffer_number, 4);
}

TEST(ConfigTest, ErrorsNameKeyAndLine) {
  auto c = ParseConfig("threads = 1\n[limits]\nmax_recipients = \"many\"\n", "x.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("x.toml:3: limits.max_recipients: expected an integer"));

  c = ParseConfig("[limits]\nmax_recipients = 0\n", "x.toml");
  EXPECT_THAT(c.status().message(), HasSubstr("x.toml:2: limits.max_recipients: must be between 1"));

  c = ParseConfig("\n\n[limits]\nmax_recipent = 10\n", "x.toml");
  EXPECT_THAT(c.status().message(), HasSubstr("x.toml:4: unknown key 'limits.max_recipent'"));

  c = ParseConfig("[[listener]]\nport = 25\nmode = \"tls\"\n", "x.toml");
  EXPECT_THAT(c.status().message(), HasSubstr("x.toml:3: listener[0].mode: must be"));

  c = ParseConfig("trusted_networks = [\"10.0.0.0/33\"]\n", "x.toml");
  EXPECT_THAT(c.status().message(), HasSubstr("x.toml:1: trusted_networks: bad prefix length"));

  c = ParseConfig("[tls]\ncert_file = \"/a\"\n", "x.toml");
  EXPECT_THAT(c.status().message(), HasSubstr("tls.key_file: cert_file and key_file must be set together"));

  c = ParseConfig("threads = [\n", "x.toml");
  EXPECT_THAT(c.status().message(), HasSubstr("x.toml:"));
  EXPECT_FALSE(c.ok());
}

}  // namespace
}  // namespace mxr
