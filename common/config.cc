#include "common/config.h"

#include <unistd.h>

#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "common/strings.h"

#include "common/status.h"
#include "toml++/toml.h"

namespace mxr {
namespace {

std::string Where(std::string_view source, const toml::node& node) {
  const auto& src = node.source();
  return Cat(source, ":", static_cast<unsigned>(src.begin.line));
}

// Walks one TOML table: typed getters that record which keys were used, then
// Finish() rejects any key nobody asked for (typos must not pass silently).
class TableReader {
 public:
  TableReader(const toml::table& table, std::string prefix, std::string_view source)
      : table_(table), prefix_(std::move(prefix)), source_(source) {}

  absl::Status Str(const char* key, std::string* out) {
    return Get<std::string>(key, "a string", [&](const toml::node& n) {
      *out = *n.value<std::string>();
      return absl::OkStatus();
    });
  }
  absl::Status Bool(const char* key, bool* out) {
    return Get<bool>(key, "true or false", [&](const toml::node& n) {
      *out = *n.value<bool>();
      return absl::OkStatus();
    });
  }
  template <typename T>
  absl::Status Int(const char* key, T* out, int64_t min, int64_t max) {
    return Get<int64_t>(key, "an integer", [&](const toml::node& n) -> absl::Status {
      int64_t v = *n.value<int64_t>();
      if (v < min || v > max) {
        return Error(key, n, Cat("must be between ", min, " and ", max, ", got ", v));
      }
      *out = static_cast<T>(v);
      return absl::OkStatus();
    });
  }
  absl::Status StrList(const char* key, std::vector<std::string>* out) {
    const toml::node* n = Find(key);
    if (n == nullptr) return absl::OkStatus();
    const toml::array* arr = n->as_array();
    if (arr == nullptr) return Error(key, *n, "expected an array of strings");
    out->clear();
    for (const toml::node& el : *arr) {
      auto s = el.value<std::string>();
      if (!s) return Error(key, el, "expected an array of strings");
      out->push_back(*s);
    }
    return absl::OkStatus();
  }
  const toml::table* SubTable(const char* key, absl::Status* status) {
    const toml::node* n = Find(key);
    if (n == nullptr) return nullptr;
    if (!n->is_table()) {
      *status = Error(key, *n, "expected a table");
      return nullptr;
    }
    return n->as_table();
  }
  const toml::array* ArrayOfTables(const char* key, absl::Status* status) {
    const toml::node* n = Find(key);
    if (n == nullptr) return nullptr;
    if (!n->is_array_of_tables()) {
      *status = Error(key, *n, Cat("expected an array of tables ([[", key, "]])"));
      return nullptr;
    }
    return n->as_array();
  }
  absl::Status Error(std::string_view key, const toml::node& n, std::string_view what) const {
    return absl::InvalidArgumentError(
        Cat(Where(source_, n), ": ", prefix_, key, ": ", what));
  }
  absl::Status Finish() const {
    for (const auto& [k, v] : table_) {
      if (!used_.count(std::string(k.str()))) {
        return absl::InvalidArgumentError(Cat(
            source_, ":", static_cast<unsigned>(k.source().begin.line), ": unknown key '", prefix_, k.str(), "'"));
      }
    }
    return absl::OkStatus();
  }

 private:
  const toml::node* Find(const char* key) {
    used_.insert(key);
    return table_.get(key);
  }
  template <typename T>
  absl::Status Get(const char* key, const char* expected,
                   const std::function<absl::Status(const toml::node&)>& set) {
    const toml::node* n = Find(key);
    if (n == nullptr) return absl::OkStatus();
    if (!n->value<T>() || (std::is_same_v<T, int64_t> && !n->is_integer()) ||
        (std::is_same_v<T, bool> && !n->is_boolean()) ||
        (std::is_same_v<T, std::string> && !n->is_string())) {
      return Error(key, *n, Cat("expected ", expected));
    }
    return set(*n);
  }

  const toml::table& table_;
  std::string prefix_;
  std::string_view source_;
  std::set<std::string> used_;
};

absl::Status ParseListener(const toml::table& t, std::string prefix, std::string_view source,
                           ListenerConfig* l) {
  TableReader r(t, prefix, source);
  MXR_RETURN_IF_ERROR(r.Str("name", &l->name));
  MXR_RETURN_IF_ERROR(r.Str("address", &l->address));
  MXR_RETURN_IF_ERROR(r.Int("port", &l->port, 1, 65535));
  std::string mode(ListenerModeName(l->mode));
  MXR_RETURN_IF_ERROR(r.Str("mode", &mode));
  if (mode == "starttls") {
    l->mode = ListenerMode::kStartTls;
  } else if (mode == "implicit_tls") {
    l->mode = ListenerMode::kImplicitTls;
  } else if (mode == "plain") {
    l->mode = ListenerMode::kPlain;
  } else {
    return r.Error("mode", *t.get("mode"), "must be 'starttls', 'implicit_tls' or 'plain'");
  }
  MXR_RETURN_IF_ERROR(r.Bool("auth_without_tls", &l->auth_without_tls));
  if (!IpAddress::Parse(l->address).ok()) {
    return r.Error("address", *t.get("address"), "must be an IP address (e.g. 0.0.0.0 or ::)");
  }
  if (l->name.empty()) l->name = Cat(mode, "-", l->port);
  return r.Finish();
}

absl::Status ParseRoot(const toml::table& root, std::string_view source, Config* c) {
  TableReader r(root, "", source);
  MXR_RETURN_IF_ERROR(r.Str("hostname", &c->hostname));
  MXR_RETURN_IF_ERROR(r.Str("data_dir", &c->data_dir));
  MXR_RETURN_IF_ERROR(r.Int("threads", &c->threads, 0, 256));
  std::vector<std::string> nets;
  MXR_RETURN_IF_ERROR(r.StrList("trusted_networks", &nets));
  if (root.get("trusted_networks")) {
    c->trusted_networks.clear();
    for (const auto& n : nets) {
      auto cidr = Cidr::Parse(n);
      if (!cidr.ok()) {
        return r.Error("trusted_networks", *root.get("trusted_networks"),
                       std::string(cidr.status().message()));
      }
      c->trusted_networks.push_back(*cidr);
    }
  }
  absl::Status st;
  if (const toml::table* t = r.SubTable("log", &st)) {
    TableReader s(*t, "log.", source);
    MXR_RETURN_IF_ERROR(s.Str("level", &c->log_level));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::array* arr = r.ArrayOfTables("listener", &st)) {
    c->listeners.clear();
    int i = 0;
    for (const toml::node& n : *arr) {
      ListenerConfig l;
      MXR_RETURN_IF_ERROR(
          ParseListener(*n.as_table(), Cat("listener[", i++, "]."), source, &l));
      c->listeners.push_back(l);
    }
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("tls", &st)) {
    TableReader s(*t, "tls.", source);
    MXR_RETURN_IF_ERROR(s.Str("cert_file", &c->tls.cert_file));
    MXR_RETURN_IF_ERROR(s.Str("key_file", &c->tls.key_file));
    MXR_RETURN_IF_ERROR(s.Str("min_version", &c->tls.min_version));
    if (c->tls.min_version != "1.2" && c->tls.min_version != "1.3") {
      return s.Error("min_version", *t->get("min_version"), "must be \"1.2\" or \"1.3\"");
    }
    if (c->tls.cert_file.empty() != c->tls.key_file.empty()) {
      return s.Error(c->tls.cert_file.empty() ? "cert_file" : "key_file", *t,
                     "cert_file and key_file must be set together");
    }
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("auth", &st)) {
    TableReader s(*t, "auth.", source);
    MXR_RETURN_IF_ERROR(s.Str("users_file", &c->auth.users_file));
    MXR_RETURN_IF_ERROR(s.Int("max_failures", &c->auth.max_failures, 1, 100));
    MXR_RETURN_IF_ERROR(s.Int("failure_delay_ms", &c->auth.failure_delay_ms, 0, 60000));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("limits", &st)) {
    TableReader s(*t, "limits.", source);
    auto& l = c->limits;
    MXR_RETURN_IF_ERROR(s.Int("max_message_size", &l.max_message_size, 1024, int64_t{1} << 34));
    MXR_RETURN_IF_ERROR(s.Int("max_recipients", &l.max_recipients, 1, 100000));
    MXR_RETURN_IF_ERROR(s.Int("max_connections", &l.max_connections, 1, 1000000));
    MXR_RETURN_IF_ERROR(s.Int("max_connections_per_ip", &l.max_connections_per_ip, 1, 1000000));
    MXR_RETURN_IF_ERROR(s.Int("max_line_length", &l.max_line_length, 512, 65536));
    MXR_RETURN_IF_ERROR(s.Int("max_errors", &l.max_errors, 1, 1000));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("timeouts", &st)) {
    TableReader s(*t, "timeouts.", source);
    auto& x = c->timeouts;
    MXR_RETURN_IF_ERROR(s.Int("greeting", &x.greeting, 1, 3600));
    MXR_RETURN_IF_ERROR(s.Int("command", &x.command, 1, 3600));
    MXR_RETURN_IF_ERROR(s.Int("data", &x.data, 1, 3600));
    MXR_RETURN_IF_ERROR(s.Int("tls_handshake", &x.tls_handshake, 1, 600));
    MXR_RETURN_IF_ERROR(s.Int("spool_write", &x.spool_write, 1, 600));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  if (const toml::table* t = r.SubTable("spool", &st)) {
    TableReader s(*t, "spool.", source);
    auto& x = c->spool;
    MXR_RETURN_IF_ERROR(s.Str("path", &x.path));
    MXR_RETURN_IF_ERROR(s.Int("write_buffer_size", &x.write_buffer_size, 1 << 20, int64_t{1} << 34));
    MXR_RETURN_IF_ERROR(s.Int("max_write_buffer_number", &x.max_write_buffer_number, 2, 16));
    MXR_RETURN_IF_ERROR(s.Int("max_total_wal_size", &x.max_total_wal_size, 1 << 20, int64_t{1} << 40));
    MXR_RETURN_IF_ERROR(s.Finish());
  }
  MXR_RETURN_IF_ERROR(st);
  MXR_RETURN_IF_ERROR(r.Finish());
  if (c->listeners.empty()) {
    return absl::InvalidArgumentError(Cat(source, ": at least one [[listener]] is required"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view ListenerModeName(ListenerMode m) {
  switch (m) {
    case ListenerMode::kStartTls: return "starttls";
    case ListenerMode::kImplicitTls: return "implicit_tls";
    case ListenerMode::kPlain: return "plain";
  }
  return "?";
}

std::string Config::SpoolPath() const {
  return spool.path.empty() ? data_dir + "/spool" : spool.path;
}
std::string Config::UsersFile() const {
  return auth.users_file.empty() ? data_dir + "/users" : auth.users_file;
}

Config DefaultConfig() {
  Config c;
  c.listeners = {
      {"submission-2525", "127.0.0.1", 2525, ListenerMode::kStartTls, false},
      {"submission-587", "127.0.0.1", 5587, ListenerMode::kStartTls, false},
      {"submissions-465", "127.0.0.1", 5465, ListenerMode::kImplicitTls, false},
  };
  return c;
}

absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view source) {
  Config c = DefaultConfig();
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(Cat(source, ":", static_cast<unsigned>(e.source().begin.line), ": ",
                                                   e.description()));
  }
  MXR_RETURN_IF_ERROR(ParseRoot(root, source, &c));
  return c;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(Cat("cannot read config file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

}  // namespace mxr
