#include "delivery/egress.h"

#include <fstream>
#include <sstream>

#include "delivery/classify.h"

#include "common/strings.h"
#include "spdlog/spdlog.h"

namespace mxr::delivery {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(Cat(what, " ", path, ": cannot be read"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<ShapingSetup> LoadShapingSetup(const Config& cfg) {
  const ShapingConfig& sc = cfg.shaping;
  std::vector<std::pair<std::string, std::string>> files;
  if (sc.shipped) files.emplace_back("shipped shaping.toml", kShippedShaping);
  if (!sc.file.empty()) {
    auto text = ReadFile(sc.file, "shaping.file");
    if (!text.ok()) return text.status();
    files.emplace_back(sc.file, std::move(*text));
  }
  ShapingSetup out;
  auto table = ShapingTable::Load(files);
  if (!table.ok()) return table.status();
  out.table = *table;
  std::vector<std::pair<std::string, std::string>> cfiles;  // the operator's rules first
  if (!sc.classification_file.empty()) {
    auto text = ReadFile(sc.classification_file, "shaping.classification_file");
    if (!text.ok()) return text.status();
    cfiles.emplace_back(sc.classification_file, std::move(*text));
  }
  cfiles.emplace_back("shipped classify.toml", kShippedClassification);
  auto cls = Classifier::Load(cfiles);
  if (!cls.ok()) return cls.status();
  out.classifier = *cls;
  auto eg = Egress::Create(cfg, "check", *out.table);
  if (!eg.ok()) return eg.status();
  return out;
}

absl::StatusOr<std::unique_ptr<Egress>> Egress::Create(const Config& cfg, const std::string& default_ehlo,
                                                       const ShapingTable& shaping) {
  auto e = std::make_unique<Egress>();
  auto add_source = [&](const std::string& name, const std::string& addr, const std::string& ehlo,
                        const std::string& wstart, const std::vector<int64_t>& schedule) -> absl::Status {
    auto s = std::make_unique<Source>();
    s->name = name;
    s->address = addr;
    s->ehlo = ehlo.empty() ? default_ehlo : ehlo;
    auto w = Warmup::Make(wstart, schedule);
    if (!w.ok()) return w.status();
    s->warmup = *w;
    if (const PathLimits* l = shaping.SourceLimits(name); l && l->max_message_rate) {
      s->rate.Configure(*l->max_message_rate, l->max_burst.value_or(1));
    }
    e->sources_.push_back(std::move(s));
    return absl::OkStatus();
  };
  auto st = add_source("default", cfg.delivery.source_address, "", "", {});
  if (!st.ok()) return st;
  for (const SourceConfig& sc : cfg.sources) {
    st = add_source(sc.name, sc.address, sc.ehlo_name, sc.warmup_start, sc.warmup);
    if (!st.ok()) return absl::InvalidArgumentError(Cat("source '", sc.name, "': ", st.message()));
  }
  for (const PoolConfig& pc : cfg.pools) {
    auto p = std::make_unique<Pool>();
    p->name = pc.name;
    for (const auto& m : pc.sources) {
      Source* s = e->FindSource(m.source);
      if (s == nullptr) return absl::InvalidArgumentError(Cat("pool '", pc.name, "': unknown source '", m.source, "'"));
      p->members.push_back({s, m.weight, 0});
    }
    e->by_name_[p->name] = p.get();
    e->pools_.push_back(std::move(p));
  }
  if (auto it = e->by_name_.find("default"); it != e->by_name_.end()) {
    e->default_ = it->second;
  } else {
    auto p = std::make_unique<Pool>();
    p->name = "default";
    p->members.push_back({e->sources_.front().get(), 1, 0});
    e->default_ = p.get();
    e->by_name_["default"] = p.get();
    e->pools_.push_back(std::move(p));
  }
  return e;
}

Source* Egress::FindSource(const std::string& name) {
  for (auto& s : sources_) {
    if (s->name == name) return s.get();
  }
  return nullptr;
}

Pool* Egress::PoolFor(const std::string& meta_pool, const std::string& route_pool) {
  for (const std::string* n : {&meta_pool, &route_pool}) {
    if (n->empty()) continue;
    auto it = by_name_.find(*n);
    if (it != by_name_.end()) return it->second;
    spdlog::warn("event=unknown_pool pool=\"{}\" effect=\"next choice used\"", *n);
  }
  return default_;
}

Egress::Choice Egress::Choose(Pool* pool, int64_t now_us) {
  // Smooth weighted round-robin (nginx): every eligible member gains its
  // weight, the largest wins and pays the total. Members over today's
  // warm-up cap sit out (their share goes to the others).
  for (int round = 0; round < static_cast<int>(pool->members.size()) + 1; ++round) {
    Pool::Member* best = nullptr;
    int64_t total = 0;
    for (auto& m : pool->members) {
      int64_t cap = m.source->warmup.Cap(now_us);
      if (cap >= 0 && m.source->warmup.SentToday(now_us) >= cap) {
        if (round == 0) m.source->warmup_overflow++;  // its share goes to the others
        continue;
      }
      m.current += m.weight;
      total += m.weight;
      if (best == nullptr || m.current > best->current) best = &m;
    }
    if (best == nullptr) break;
    best->current -= total;
    if (!best->source->warmup.TryTake(now_us)) {
      best->source->warmup_overflow++;
      continue;
    }
    best->source->assigned++;
    pool->assigned++;
    return Choice{best->source, 0};
  }
  return Choice{nullptr, Warmup::NextDayUs(now_us)};
}

}  // namespace mxr::delivery
