// CSV import and export of the suppression lists (RFC 4180).
//
// Columns (header line, any order, names case-insensitive):
//   address (required), scope (tenant; empty = global), reason
//   (hard_bounce|complaint|unsubscribe|manual), category, source,
//   created, expires (RFC 3339 UTC such as 2026-12-06T07:00:00Z; empty:
//   now / never).
// A file whose first line has no "address" column is read as one address
// per line (the first line included). Export writes every column.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "suppression/store.h"

namespace mxr::suppression {

struct ImportDefaults {
  std::string scope;                  // where the file names none
  Reason reason = Reason::kManual;    // where the file names none
  std::string source = "csv";         // where the file names none
};

struct ImportResult {
  uint64_t lines = 0;    // data lines read
  uint64_t written = 0;  // entries stored (new or replaced)
  uint64_t skipped = 0;  // lines that were not an entry
  std::vector<std::string> errors;  // the first 20: "line N: why"
};

// Reads `in` to the end, storing entries in batches. A bad line is skipped
// and reported; a storage error stops the import (what was written stays).
absl::StatusOr<ImportResult> ImportCsv(std::istream& in, const ImportDefaults& defaults, Store& store);

// Writes every entry (header first); returns how many. `scope` filters when set.
absl::StatusOr<uint64_t> ExportCsv(const Store& store, const std::string* scope, std::ostream& out);

// One CSV record (fields) from `in`: quoted fields may hold commas, quotes
// ("") and line breaks. false at the end of the input. `line` counts lines.
bool ReadCsvRecord(std::istream& in, std::vector<std::string>* fields, uint64_t* line);
// A field quoted when it needs to be.
std::string CsvField(std::string_view v);

}  // namespace mxr::suppression
