#include "suppression/csv.h"

#include <istream>
#include <ostream>

#include "absl/time/time.h"
#include "common/strings.h"

namespace mxr::suppression {
namespace {

constexpr size_t kChunk = 10000;
constexpr size_t kMaxErrors = 20;

std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return o;
}

// "" -> 0; RFC 3339 -> µs since the epoch; false when unparsable.
bool ParseTime(const std::string& v, int64_t* us) {
  if (v.empty()) {
    *us = 0;
    return true;
  }
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, v, &t, &err)) return false;
  *us = absl::ToUnixMicros(t);
  return true;
}

}  // namespace

bool ReadCsvRecord(std::istream& in, std::vector<std::string>* fields, uint64_t* line) {
  fields->clear();
  std::string field;
  bool quoted = false, any = false, field_started = false;
  int c;
  while ((c = in.get()) != EOF) {
    any = true;
    char ch = static_cast<char>(c);
    if (quoted) {
      if (ch == '"') {
        if (in.peek() == '"') {
          in.get();
          field.push_back('"');
        } else {
          quoted = false;
        }
      } else {
        if (ch == '\n') ++*line;
        field.push_back(ch);
      }
      continue;
    }
    if (ch == '"' && !field_started) {
      quoted = true;
      field_started = true;
    } else if (ch == ',') {
      fields->push_back(std::move(field));
      field.clear();
      field_started = false;
    } else if (ch == '\n') {
      ++*line;
      if (!field.empty() && field.back() == '\r') field.pop_back();
      fields->push_back(std::move(field));
      return true;
    } else {
      field.push_back(ch);
      field_started = true;
    }
  }
  if (!any) return false;
  if (!field.empty() && field.back() == '\r') field.pop_back();
  fields->push_back(std::move(field));
  ++*line;
  return true;
}

std::string CsvField(std::string_view v) {
  if (v.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(v);
  std::string o = "\"";
  for (char c : v) {
    if (c == '"') o.push_back('"');
    o.push_back(c);
  }
  o.push_back('"');
  return o;
}

absl::StatusOr<ImportResult> ImportCsv(std::istream& in, const ImportDefaults& defaults, Store& store) {
  ImportResult r;
  std::vector<std::string> f;
  uint64_t line = 0;
  int col_addr = 0, col_scope = -1, col_reason = -1, col_cat = -1, col_src = -1, col_created = -1,
      col_expires = -1;
  bool first = true;
  std::vector<Entry> chunk;
  chunk.reserve(kChunk);
  auto error = [&r](uint64_t at, std::string why) {
    ++r.skipped;
    if (r.errors.size() < kMaxErrors) r.errors.push_back(Cat("line ", at, ": ", why));
  };
  auto flush = [&]() -> absl::Status {
    if (chunk.empty()) return absl::OkStatus();
    auto n = store.AddMany(chunk);
    if (!n.ok()) return n.status();
    r.written += *n;
    chunk.clear();
    return absl::OkStatus();
  };
  while (ReadCsvRecord(in, &f, &line)) {
    if (first) {
      first = false;
      bool header = false;
      for (size_t i = 0; i < f.size(); ++i) {
        std::string h = Lower(f[i]);
        int idx = static_cast<int>(i);
        if (h == "address") {
          col_addr = idx;
          header = true;
        } else if (h == "scope") {
          col_scope = idx;
        } else if (h == "reason") {
          col_reason = idx;
        } else if (h == "category") {
          col_cat = idx;
        } else if (h == "source") {
          col_src = idx;
        } else if (h == "created") {
          col_created = idx;
        } else if (h == "expires") {
          col_expires = idx;
        }
      }
      if (header) continue;
      col_scope = col_reason = col_cat = col_src = col_created = col_expires = -1;
      col_addr = 0;
    }
    if (f.size() == 1 && f[0].empty()) continue;  // blank line
    ++r.lines;
    auto get = [&f](int col) -> std::string {
      return col >= 0 && static_cast<size_t>(col) < f.size() ? f[static_cast<size_t>(col)] : std::string();
    };
    Entry e;
    e.address = get(col_addr);
    if (!NormalizeAddress(e.address)) {
      error(line, Cat("not an address: \"", e.address.substr(0, 80), "\""));
      continue;
    }
    e.scope = col_scope >= 0 ? get(col_scope) : defaults.scope;
    if (e.scope.find('\0') != std::string::npos) {
      error(line, "scope with a NUL byte");
      continue;
    }
    std::string reason = get(col_reason);
    if (reason.empty()) {
      e.reason = defaults.reason;
    } else if (auto p = ParseReason(Lower(reason))) {
      e.reason = *p;
    } else {
      error(line, Cat("unknown reason \"", reason.substr(0, 40),
                      "\" (hard_bounce, complaint, unsubscribe, manual)"));
      continue;
    }
    e.category = get(col_cat);
    e.source = col_src >= 0 && !get(col_src).empty() ? get(col_src) : defaults.source;
    if (!ParseTime(get(col_created), &e.created_us) || !ParseTime(get(col_expires), &e.expires_us)) {
      error(line, "created/expires is not an RFC 3339 time such as 2026-12-06T07:00:00Z");
      continue;
    }
    chunk.push_back(std::move(e));
    if (chunk.size() >= kChunk) {
      if (auto st = flush(); !st.ok()) return st;
    }
  }
  if (auto st = flush(); !st.ok()) return st;
  return r;
}

absl::StatusOr<uint64_t> ExportCsv(const Store& store, const std::string* scope, std::ostream& out) {
  out << "address,scope,reason,category,source,created,expires\r\n";
  uint64_t n = 0;
  auto st = store.ForEach([&](const Entry& e) {
    if (scope != nullptr && e.scope != *scope) return true;
    out << CsvField(e.address) << ',' << CsvField(e.scope) << ',' << ReasonName(e.reason) << ','
        << CsvField(e.category) << ',' << CsvField(e.source) << ','
        << (e.created_us ? IsoTimeUtc(e.created_us) : std::string()) << ','
        << (e.expires_us ? IsoTimeUtc(e.expires_us) : std::string()) << "\r\n";
    ++n;
    return static_cast<bool>(out);
  });
  if (!st.ok()) return st;
  if (!out) return absl::UnavailableError("writing the CSV failed");
  return n;
}

}  // namespace mxr::suppression
