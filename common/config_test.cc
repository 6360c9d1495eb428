#include "common/config.h"
#include "common/strings.h"

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

TEST(ConfigTest, Issue15LimitsDefaultsAndKeys) {
  auto d = ParseConfig("", "t.toml");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->limits.ipv6_prefix, 64);
  EXPECT_EQ(d->limits.max_hops, 50);
  auto c = ParseConfig("[limits]\nipv6_prefix = 56\nmax_hops = 30\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->limits.ipv6_prefix, 56);
  EXPECT_EQ(c->limits.max_hops, 30);
  EXPECT_FALSE(ParseConfig("[limits]\nipv6_prefix = 16\n", "t.toml").ok());
  EXPECT_FALSE(ParseConfig("[limits]\nmax_hops = 0\n", "t.toml").ok());
}

// Issue 15, item 7: IPv4 clients are stored as ::ffff:a.b.c.d, so an IPv6
// prefix such as ::/64 used to trust every IPv4 client without a word.
TEST(ConfigTest, TrustedNetworksCoveringIpv4MappedSpaceRefused) {
  for (const char* net : {"::/0", "::/64", "::/80", "0::/16"}) {
    SCOPED_TRACE(net);
    auto c = ParseConfig(Cat("trusted_networks = [\"10.0.0.0/8\", \"", net, "\"]\n"), "t.toml");
    ASSERT_FALSE(c.ok());
    EXPECT_THAT(std::string(c.status().message()),
                ::testing::HasSubstr(Cat("t.toml:1: trusted_networks: '", net,
                                         "' would trust every IPv4 client: IPv4 clients are matched as "
                                         "IPv4-mapped IPv6 addresses (::ffff:a.b.c.d)")));
  }
  for (const char* net : {"::1", "::/96", "::/81", "2001:db8::/32", "fe80::/10", "0.0.0.0/0", "127.0.0.0/8",
                          "::ffff:10.0.0.1"}) {
    SCOPED_TRACE(net);
    auto c = ParseConfig(Cat("trusted_networks = [\"", net, "\"]\n"), "t.toml");
    EXPECT_TRUE(c.ok()) << c.status();
  }
  // What the accepted ones match: ::/81 and ::/96 hold no IPv4-mapped address.
  auto c = ParseConfig("trusted_networks = [\"::/81\"]\n", "t.toml");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->trusted_networks[0].Contains(*IpAddress::Parse("192.0.2.1")));
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
commit_delay_us = 0
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
  EXPECT_EQ(c->spool.commit_delay_us, 0);
  EXPECT_EQ(DefaultConfig().spool.commit_delay_us, 200);
  EXPECT_FALSE(ParseConfig("[spool]\ncommit_delay_us = 20000\n", "x.toml").ok());
}

TEST(ConfigTest, ErrorsNameKeyAndLine) {
  auto c = ParseConfig("threads = 1\n[limits]\nmax_recipients = \"many\"\n", "x.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("x.toml:3: limits.max_recipients: expected an integer"));

  // A float where an integer is expected, even one no int64_t can hold (fuzz
  // finding toml-float-int: reading it as an integer first was UB under UBSan).
  for (const char* v : {"1e30", "-1e30", "2.5", "inf", "nan"}) {
    c = ParseConfig(Cat("threads = ", v, "\n"), "x.toml");
    ASSERT_FALSE(c.ok()) << v;
    EXPECT_THAT(c.status().message(), HasSubstr("x.toml:1: threads: expected an integer")) << v;
  }

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

TEST(ConfigTest, MetricsSection) {
  auto d = ParseConfig("", "x.toml");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->metrics.enabled);
  EXPECT_EQ(d->metrics.listen, "127.0.0.1:9465");
  EXPECT_EQ(d->metrics.site_labels, 20);
  auto c = ParseConfig("[metrics]\nenabled = false\nlisten = \"[::1]:0\"\nsite_labels = 5\n", "x.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->metrics.enabled);
  EXPECT_EQ(c->metrics.listen, "[::1]:0");
  EXPECT_EQ(c->metrics.site_labels, 5);
  c = ParseConfig("[metrics]\n\nlisten = \"localhost:9465\"\n", "x.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("x.toml:3: metrics.listen: "));
  EXPECT_THAT(c.status().message(), HasSubstr("is not an IP address"));
  c = ParseConfig("[metrics]\nlisten = \"::1:9465\"\n", "x.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("needs brackets"));
  c = ParseConfig("[metrics]\nlisten = \"127.0.0.1:70000\"\n", "x.toml");
  EXPECT_FALSE(c.ok());
  c = ParseConfig("[metrics]\nlisen = \"127.0.0.1:1\"\n", "x.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("unknown key 'metrics.lisen'"));
}

TEST(ConfigTest, DeliveryDefaults) {
  auto c = ParseConfig("", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  const DeliveryConfig& d = c->delivery;
  EXPECT_TRUE(d.enabled);
  EXPECT_EQ(d.port, 25);
  EXPECT_EQ(d.tls, TlsPolicy::kOpportunistic);
  EXPECT_EQ(d.initial_window, 4);
  EXPECT_EQ(d.retry_initial, 300);
  EXPECT_EQ(d.retry_max, 14400);
  EXPECT_EQ(d.max_age, 432000);
  EXPECT_EQ(d.event_log, "");
  EXPECT_TRUE(c->routes.empty());
}

TEST(ConfigTest, ParsesEveryDeliveryKey) {
  auto c = ParseConfig(R"(
[delivery]
enabled = false
port = 2526
helo_name = "out.example"
source_address = "2001:db8::25"
resolver = "127.0.0.1:5353,[::1]:53"
tls = "required_verify"
max_connections_per_site = 7
initial_window = 3
max_messages_per_connection = 50
max_recipients_per_transaction = 25
idle_timeout = 0
retry_initial = 60
retry_max = 600
max_age = 3600
site_backoff_initial = 10
site_backoff_max = 100
dns_ttl_min = 5
dns_ttl_max = 50
dns_timeout_ms = 250
event_log = "/var/log/mxrelay/events.jsonl"
connect_timeout = 11
banner_timeout = 12
command_timeout = 13
data_timeout = 14
)",
                       "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  const DeliveryConfig& d = c->delivery;
  EXPECT_FALSE(d.enabled);
  EXPECT_EQ(d.port, 2526);
  EXPECT_EQ(d.helo_name, "out.example");
  EXPECT_EQ(d.source_address, "2001:db8::25");
  EXPECT_EQ(d.resolver, "127.0.0.1:5353,[::1]:53");
  EXPECT_EQ(d.tls, TlsPolicy::kRequiredVerify);
  EXPECT_EQ(d.max_connections_per_site, 7);
  EXPECT_EQ(d.initial_window, 3);
  EXPECT_EQ(d.max_messages_per_connection, 50);
  EXPECT_EQ(d.max_recipients_per_transaction, 25);
  EXPECT_EQ(d.idle_timeout, 0);
  EXPECT_EQ(d.retry_initial, 60);
  EXPECT_EQ(d.retry_max, 600);
  EXPECT_EQ(d.max_age, 3600);
  EXPECT_EQ(d.site_backoff_initial, 10);
  EXPECT_EQ(d.site_backoff_max, 100);
  EXPECT_EQ(d.dns_ttl_min, 5);
  EXPECT_EQ(d.dns_ttl_max, 50);
  EXPECT_EQ(d.dns_timeout_ms, 250);
  EXPECT_EQ(d.event_log, "/var/log/mxrelay/events.jsonl");
  EXPECT_EQ(d.connect_timeout, 11);
  EXPECT_EQ(d.banner_timeout, 12);
  EXPECT_EQ(d.command_timeout, 13);
  EXPECT_EQ(d.data_timeout, 14);
}

TEST(ConfigTest, DeliveryTlsPolicies) {
  struct Row {
    const char* text;
    TlsPolicy want;
  } rows[] = {{"none", TlsPolicy::kNone},
              {"opportunistic", TlsPolicy::kOpportunistic},
              {"required", TlsPolicy::kRequired},
              {"required_verify", TlsPolicy::kRequiredVerify}};
  for (const Row& r : rows) {
    auto c = ParseConfig(std::string("[delivery]\ntls = \"") + r.text + "\"\n", "t.toml");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->delivery.tls, r.want) << r.text;
    EXPECT_EQ(TlsPolicyName(r.want), r.text);
  }
}

TEST(ConfigTest, DeliveryInitialWindowClampedToSiteMax) {
  auto c = ParseConfig("[delivery]\nmax_connections_per_site = 2\ninitial_window = 10\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->delivery.initial_window, 2);
}

TEST(ConfigTest, ParsesEveryRouteKey) {
  auto c = ParseConfig(R"(
[[route]]
domain = "Example.COM"
host = "smarthost.example.net"
port = 587
tls = "required_verify"
auth_user = "relay"
auth_password = "s3cret"
max_connections = 5

[[route]]
domain = "*"
tls = "none"

[[route]]
domain = "auth.example"
host = "10.0.0.5"
auth_user = "u"
auth_password = "p"
)",
                       "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->routes.size(), 3u);
  const RouteConfig& r0 = c->routes[0];
  EXPECT_EQ(r0.domain, "example.com");  // lower-cased
  EXPECT_EQ(r0.host, "smarthost.example.net");
  EXPECT_EQ(r0.port, 587);
  EXPECT_EQ(r0.tls, TlsPolicy::kRequiredVerify);
  EXPECT_TRUE(r0.tls_set);
  EXPECT_EQ(r0.auth_user, "relay");
  EXPECT_EQ(r0.auth_password, "s3cret");
  EXPECT_EQ(r0.max_connections, 5);
  const RouteConfig& r1 = c->routes[1];
  EXPECT_EQ(r1.domain, "*");
  EXPECT_EQ(r1.host, "");
  EXPECT_EQ(r1.port, 0);
  EXPECT_EQ(r1.tls, TlsPolicy::kNone);
  EXPECT_TRUE(r1.tls_set);
  EXPECT_EQ(r1.max_connections, 0);
  // AUTH without an explicit tls forces verified TLS: a password never goes
  // in clear, nor to a peer whose certificate was not checked (issue 15).
  const RouteConfig& r2 = c->routes[2];
  EXPECT_EQ(r2.tls, TlsPolicy::kRequiredVerify);
  EXPECT_TRUE(r2.tls_set);
  EXPECT_FALSE(r2.auth_over_unverified_tls);
}

// Issue 15, item 4: a route with auth_user and tls = "required" sent the
// password over TLS without checking the certificate; now that needs the
// explicit auth_over_unverified_tls = true.
TEST(ConfigTest, AuthOverUnverifiedTlsNeedsTheExplicitKey) {
  const char* route = "[[route]]\ndomain = \"*\"\nhost = \"10.0.0.5\"\nauth_user = \"u\"\ntls = \"required\"\n";
  auto bad = ParseConfig(route, "t.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("t.toml:5: route[0].tls: 'required' does not verify the certificate"));
  auto ok = ParseConfig(Cat(route, "auth_over_unverified_tls = true\n"), "t.toml");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->routes[0].tls, TlsPolicy::kRequired);
  EXPECT_TRUE(ok->routes[0].auth_over_unverified_tls);
  auto stray = ParseConfig("[[route]]\ndomain = \"*\"\nauth_over_unverified_tls = true\n", "t.toml");
  ASSERT_FALSE(stray.ok());
  EXPECT_THAT(std::string(stray.status().message()),
              HasSubstr("route[0].auth_over_unverified_tls: only applies to a route with auth_user"));
}

TEST(ConfigTest, RouteWithoutTlsKeyIsNotSet) {
  auto c = ParseConfig("[[route]]\ndomain = \"a.example\"\nhost = \"b.example\"\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->routes.size(), 1u);
  EXPECT_FALSE(c->routes[0].tls_set);
}

// The documented default (0 = delivery.max_connections_per_site) can be
// written out, as the packaged conffile's commented keys are.
TEST(ConfigTest, RouteMaxConnectionsZeroIsTheDeliveryDefault) {
  auto c = ParseConfig("[[route]]\ndomain = \"a.example\"\nmax_connections = 0\n", "x.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->routes[0].max_connections, 0);
}

TEST(ConfigTest, DeliveryAndRouteErrorsNameFileLineAndKey) {
  struct Row {
    const char* toml;
    const char* want;
  } rows[] = {
      {"[delivery]\nport = 25\ntls = \"sometimes\"\n",
       "x.toml:3: delivery.tls: must be 'none', 'opportunistic', 'required' or 'required_verify'"},
      {"[delivery]\ntls = 1\n", "x.toml:2: delivery.tls: expected a string"},
      {"[[route]]\ndomain = \"a.example\"\ntls = \"yes\"\n", "x.toml:3: route[0].tls: must be"},
      {"[[route]]\ndomain = \"a.example\"\n\n[[route]]\ndomain = \"b.example\"\nauth_user = \"u\"\n",
       "x.toml:6: route[1].auth_user: needs 'host'"},
      {"[[route]]\ndomain = \"a.example\"\nhost = \"h.example\"\nauth_user = \"u\"\n"
       "tls = \"opportunistic\"\n",
       "x.toml:5: route[0].tls: must be 'required' or 'required_verify' when auth_user is set"},
      {"[[route]]\ndomain = \"a.example\"\nhost = \"h.example\"\nauth_user = \"u\"\ntls = \"none\"\n",
       "x.toml:5: route[0].tls: must be 'required' or 'required_verify'"},
      {"[delivery]\nretry_initial = 600\nretry_max = 300\n",
       "x.toml:3: delivery.retry_max: must be >= retry_initial"},
      {"[delivery]\nretry_initial = 20000\n", "x.toml:2: delivery.retry_max: must be >= retry_initial"},
      {"[delivery]\n\nsource_address = \"10.0.0.256\"\n",
       "x.toml:3: delivery.source_address: must be an IP address"},
      {"[delivery]\nsource_address = \"mail.example.com\"\n",
       "x.toml:2: delivery.source_address: must be an IP address"},
      {"[delivery]\ndns_ttl_min = 100\ndns_ttl_max = 10\n",
       "x.toml:3: delivery.dns_ttl_max: must be >= dns_ttl_min"},
      {"[delivery]\nport = 0\n", "x.toml:2: delivery.port: must be between 1 and 65535"},
      {"[delivery]\nretry_intial = 5\n", "x.toml:2: unknown key 'delivery.retry_intial'"},
      {"[[route]]\nhost = \"h.example\"\n", "x.toml:1: route[0].domain: is required"},
      {"[[route]]\ndomain = \"a.example\"\nmax_connections = -1\n",
       "x.toml:3: route[0].max_connections: must be between 0"},
      {"[[route]]\ndomain = \"a.example\"\nhots = \"h\"\n", "x.toml:3: unknown key 'route[0].hots'"},
      {"route = 1\n", "x.toml:1: route: expected an array of tables ([[route]])"},
      {"delivery = 1\n", "x.toml:1: delivery: expected a table"},
  };
  for (const Row& r : rows) {
    auto c = ParseConfig(r.toml, "x.toml");
    ASSERT_FALSE(c.ok()) << r.toml;
    EXPECT_THAT(c.status().message(), HasSubstr(r.want)) << r.toml;
  }
}


TEST(ConfigTest, DkimDefaultsAndEveryKey) {
  auto d = ParseConfig("", "t.toml");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->dkim.rules.empty());
  EXPECT_EQ(d->dkim.header_canon, DkimCanon::kRelaxed);
  EXPECT_EQ(d->dkim.body_canon, DkimCanon::kRelaxed);
  EXPECT_EQ(d->dkim.on_no_rule, DkimFallback::kSendUnsigned);
  EXPECT_EQ(d->dkim.on_key_error, DkimFallback::kSendUnsigned);
  EXPECT_EQ(d->dkim.expire_after, 0);
  auto c = ParseConfig(R"([dkim]
canonicalization = "simple/relaxed"
expire_after = 864000
headers = ["Reply-To", "Cc"]
oversign_headers = ["From", "Subject"]
on_no_rule = "defer"
on_key_error = "defer"
threads = 3
domain_labels = 7
[[dkim.rule]]
from_domain = "Customer.Example"
keys = [{ domain = "Customer.Example", selector = "s1", key_file = "/k/a.pem" },
        { domain = "platform.example", selector = "p.2026", algorithm = "ed25519-sha256", key_file = "/k/b.pem" }]
[[dkim.rule]]
envelope_domain = "*.bounces.example"
[[dkim.rule.keys]]
domain = "platform.example"
selector = "env"
key_file = "/k/c.pem"
[[dkim.rule]]
auth_user = "tenant7"
keys = [{ domain = "t7.example", selector = "x", key_file = "/k/d.pem" }]
)",
                       "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  const DkimConfig& k = c->dkim;
  EXPECT_EQ(k.header_canon, DkimCanon::kSimple);
  EXPECT_EQ(k.body_canon, DkimCanon::kRelaxed);
  EXPECT_EQ(k.expire_after, 864000);
  EXPECT_EQ(k.headers, (std::vector<std::string>{"Reply-To", "Cc"}));
  EXPECT_EQ(k.oversign_headers, (std::vector<std::string>{"From", "Subject"}));
  EXPECT_EQ(k.on_no_rule, DkimFallback::kDefer);
  EXPECT_EQ(k.on_key_error, DkimFallback::kDefer);
  EXPECT_EQ(k.threads, 3);
  EXPECT_EQ(k.domain_labels, 7);
  ASSERT_EQ(k.rules.size(), 3u);
  EXPECT_EQ(k.rules[0].match, DkimMatch::kFromDomain);
  EXPECT_EQ(k.rules[0].value, "customer.example");
  ASSERT_EQ(k.rules[0].keys.size(), 2u);
  EXPECT_EQ(k.rules[0].keys[0].domain, "customer.example");
  EXPECT_EQ(k.rules[0].keys[1].selector, "p.2026");
  EXPECT_EQ(k.rules[0].keys[1].algorithm, "ed25519-sha256");
  EXPECT_EQ(k.rules[1].match, DkimMatch::kEnvelopeDomain);
  EXPECT_EQ(k.rules[1].value, "*.bounces.example");
  EXPECT_EQ(k.rules[1].keys[0].key_file, "/k/c.pem");
  EXPECT_EQ(k.rules[2].match, DkimMatch::kAuthUser);
  EXPECT_EQ(k.rules[2].value, "tenant7");
  // "simple" alone means simple/simple (RFC 6376 c= default body).
  auto s = ParseConfig("[dkim]\ncanonicalization = \"relaxed\"\n", "t.toml");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->dkim.body_canon, DkimCanon::kSimple);
}

TEST(ConfigTest, DkimErrorsNameFileLineAndKey) {
  const char* kKey = "keys = [{ domain = \"a.example\", selector = \"s\", key_file = \"/k.pem\" }]\n";
  struct Case {
    std::string text;
    std::string want;
  } cases[] = {
      {"[dkim]\ncanonicalization = \"loose\"\n", "t.toml:2: dkim.canonicalization: must be"},
      {"[dkim]\non_no_rule = \"bounce\"\n", "t.toml:2: dkim.on_no_rule: must be 'send_unsigned' or 'defer'"},
      {"[dkim]\nexpire_after = 60\n", "t.toml:2: dkim.expire_after: must be 0 (no x= tag) or at least 3600"},
      {"[dkim]\nheaders = [\"Sub ject\"]\n", "dkim.headers: 'Sub ject' is not a header field name"},
      {"[dkim]\nbogus = 1\n", "unknown key 'dkim.bogus'"},
      {Cat("[[dkim.rule]]\n", kKey), "dkim.rule[0].from_domain: needs exactly one of from_domain, envelope_domain"},
      {Cat("[[dkim.rule]]\nfrom_domain = \"a.example\"\nauth_user = \"u\"\n", kKey), "needs exactly one of"},
      {"[[dkim.rule]]\nfrom_domain = \"a.example\"\n", "dkim.rule[0].keys: needs at least one key"},
      {"[[dkim.rule]]\nfrom_domain = \"a@example\"\n", "'a@example' is not a domain"},
      {"[[dkim.rule]]\nfrom_domain = \"a.example\"\nkeys = [{ domain = \"a.example\", selector = \"s\" }]\n",
       "dkim.rule[0].keys[0].key_file: is required"},
      {"[[dkim.rule]]\nfrom_domain = \"a.example\"\nkeys = [{ domain = \"a example\", selector = \"s\", key_file = \"/k\" }]\n",
       "dkim.rule[0].keys[0].domain: 'a example' is not a domain name"},
      {"[[dkim.rule]]\nfrom_domain = \"a.example\"\nkeys = [{ domain = \"a.example\", selector = \"s;x\", key_file = \"/k\" }]\n",
       "dkim.rule[0].keys[0].selector: 's;x' is not a selector"},
      {"[[dkim.rule]]\nfrom_domain = \"a.example\"\nkeys = [{ domain = \"a.example\", selector = \"s\", key_file = \"/k\", "
       "algorithm = \"rsa-sha1\" }]\n",
       "dkim.rule[0].keys[0].algorithm: must be 'rsa-sha256' or 'ed25519-sha256'"},
      {"[[dkim.rule]]\nfrom_domain = \"a.example\"\nkeys = [{ domain = \"a.example\", selector = \"s\", key_file = \"/k\", "
       "l = 100 }]\n",
       "unknown key 'dkim.rule[0].keys[0].l'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto r = ParseConfig(c.text, "t.toml");
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.want));
  }
}

// Issue 20: PROXY protocol per listener, only from the listed proxies.
TEST(ConfigTest, ProxyProtocolListenerKeys) {
  auto c = ParseConfig(R"(
[[listener]]
port = 2525
proxy_protocol = true
proxy_from = ["10.0.0.5", "2001:db8::/64"]
[timeouts]
proxy_header = 7
)", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->listeners.size(), 1u);
  EXPECT_TRUE(c->listeners[0].proxy_protocol);
  ASSERT_EQ(c->listeners[0].proxy_from.size(), 2u);
  EXPECT_TRUE(c->listeners[0].proxy_from[0].Contains(*IpAddress::Parse("10.0.0.5")));
  EXPECT_FALSE(c->listeners[0].proxy_from[0].Contains(*IpAddress::Parse("10.0.0.6")));
  EXPECT_EQ(c->timeouts.proxy_header, 7);
  auto d = ParseConfig("", "t.toml");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->listeners[0].proxy_protocol);
  EXPECT_EQ(d->timeouts.proxy_header, 10);
  auto no_from = ParseConfig("[[listener]]\nport = 2525\nproxy_protocol = true\n", "t.toml");
  ASSERT_FALSE(no_from.ok());
  EXPECT_THAT(std::string(no_from.status().message()), HasSubstr("needs proxy_from"));
  EXPECT_FALSE(ParseConfig("[[listener]]\nport = 2525\nproxy_from = [\"10.0.0.5\"]\n", "t.toml").ok());
  EXPECT_FALSE(
      ParseConfig("[[listener]]\nport = 2525\nproxy_protocol = true\nproxy_from = [\"10.0.0.x\"]\n", "t.toml")
          .ok());
}

}  // namespace
}  // namespace mxr

namespace mxr {
namespace {

TEST(ConfigTest, EgressSourcesPoolsShaping) {
  auto c = ParseConfig(R"(
[[source]]
name = "a"
address = "192.0.2.10"
ehlo_name = "a.example"
warmup_start = "2026-12-01"
warmup = [10, 20]
[[source]]
name = "b"
address = "2001:db8::1"
[[pool]]
name = "mkt"
sources = ["a", "b"]
weights = [3, 1]
users = ["alice"]
[shaping]
shipped = false
file = "/etc/x.toml"
pool_header = "X-Pool"
[[route]]
domain = "example.com"
pool = "mkt"
)", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->sources.size(), 2u);
  EXPECT_EQ(c->sources[0].warmup, (std::vector<int64_t>{10, 20}));
  ASSERT_EQ(c->pools.size(), 1u);
  EXPECT_EQ(c->pools[0].sources[0].weight, 3);
  EXPECT_EQ(c->pools[0].users, std::vector<std::string>{"alice"});
  EXPECT_FALSE(c->shaping.shipped);
  EXPECT_EQ(c->shaping.pool_header, "X-Pool");
  EXPECT_EQ(c->routes[0].pool, "mkt");
}

TEST(ConfigTest, EgressMistakesAreRefused) {
  const char* bad[] = {
      "[[source]]\nname = \"a\"\naddress = \"not-an-ip\"\n",
      "[[source]]\nname = \"default\"\naddress = \"192.0.2.1\"\n",
      "[[source]]\nname = \"a\"\naddress = \"192.0.2.1\"\nwarmup = [1]\n",
      "[[source]]\nname = \"a\"\naddress = \"192.0.2.1\"\nwarmup_start = \"12/01/2026\"\nwarmup = [1]\n",
      "[[pool]]\nname = \"p\"\nsources = [\"nope\"]\n",
      "[[source]]\nname = \"a\"\naddress = \"192.0.2.1\"\n[[pool]]\nname = \"p\"\nsources = [\"a\"]\nweights = [1, 2]\n",
      "[[source]]\nname = \"a\"\naddress = \"192.0.2.1\"\n[[pool]]\nname = \"p\"\nsources = [\"a\"]\nusers = [\"u\"]\n"
      "[[pool]]\nname = \"q\"\nsources = [\"a\"]\nusers = [\"u\"]\n",
      "[[route]]\ndomain = \"x.com\"\npool = \"missing\"\n",
      "[shaping]\nfiel = \"x\"\n",
  };
  for (const char* text : bad) {
    EXPECT_FALSE(ParseConfig(text, "t.toml").ok()) << text;
  }
}

}  // namespace
}  // namespace mxr
