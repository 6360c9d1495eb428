#include "feedback/arf.h"

#include <gmime/gmime.h>

#include <cctype>
#include <mutex>

namespace mxr::feedback {
namespace {

void InitGMime() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

// Owns a GObject reference.
template <typename T>
struct Ref {
  T* p = nullptr;
  explicit Ref(T* x) : p(x) {}
  ~Ref() {
    if (p != nullptr) g_object_unref(p);
  }
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
};

std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// Whitespace runs (folding included) to one space.
std::string Squeeze(std::string_view s) {
  std::string o;
  bool space = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = true;
      continue;
    }
    if (space && !o.empty()) o.push_back(' ');
    space = false;
    o.push_back(c);
  }
  return o;
}

// An address we can act on: an '@', no whitespace, no control character.
bool UsableAddress(std::string_view a) {
  if (a.find('@') == std::string_view::npos) return false;
  for (char c : a) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  }
  return true;
}

// "rfc822; <a@b>" / "<a@b>" / "a@b" -> "a@b"; "" when no address.
std::string AddressOf(std::string_view v) {
  std::string s = Trim(v);
  size_t semi = s.find(';');
  if (semi != std::string::npos && s.find('@') > semi) s = Trim(std::string_view(s).substr(semi + 1));
  if (!s.empty() && s.front() == '<') {
    size_t close = s.find('>');
    s = s.substr(1, close == std::string::npos ? std::string::npos : close - 1);
  }
  s = Trim(s);
  return UsableAddress(s) ? s : "";
}

// The decoded content of a leaf part.
std::string PartContent(GMimePart* part) {
  GMimeDataWrapper* w = g_mime_part_get_content(part);
  if (w == nullptr) return "";
  Ref<GMimeStream> out(g_mime_stream_mem_new());
  g_mime_data_wrapper_write_to_stream(w, out.p);
  GByteArray* a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out.p));
  return std::string(reinterpret_cast<const char*>(a->data), a->len);
}

// Parses `text` as a header section (a message with no body); nullptr when
// GMime cannot.
GMimeMessage* ParseHeaders(const std::string& text) {
  std::string t = text;
  if (t.find("\n\n") == std::string::npos && t.find("\r\n\r\n") == std::string::npos) t += "\r\n\r\n";
  Ref<GMimeStream> st(g_mime_stream_mem_new_with_buffer(t.data(), t.size()));
  Ref<GMimeParser> parser(g_mime_parser_new_with_stream(st.p));
  return g_mime_parser_construct_message(parser.p, nullptr);
}

template <typename Fn>
void ForEachHeader(GMimeObject* obj, Fn&& fn) {
  GMimeHeaderList* list = g_mime_object_get_header_list(obj);
  int n = g_mime_header_list_get_count(list);
  for (int i = 0; i < n; ++i) {
    GMimeHeader* h = g_mime_header_list_get_header_at(list, i);
    const char* name = g_mime_header_get_name(h);
    const char* raw = g_mime_header_get_raw_value(h);
    fn(std::string_view(name ? name : ""), std::string_view(raw ? raw : ""));
  }
}

void Addresses(InternetAddressList* list, std::vector<std::string>* out) {
  if (list == nullptr) return;
  int n = internet_address_list_length(list);
  for (int i = 0; i < n; ++i) {
    InternetAddress* a = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_MAILBOX(a)) {
      const char* addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a));
      if (addr != nullptr && UsableAddress(addr)) {
        out->push_back(addr);
      }
    } else if (INTERNET_ADDRESS_IS_GROUP(a)) {
      Addresses(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a)), out);
    }
  }
}

bool IsHex24(std::string_view s) {
  if (s.size() != 24) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// "from x ([1.2.3.4]) by HOST (mxrelay) with ESMTPSA id QID; date" -> QID
// when HOST is ours.
std::string OurQueueId(std::string_view received, std::string_view host) {
  std::string v = Squeeze(received);
  std::string lv = Lower(v);
  std::string by = Lower(std::string("by ") + std::string(host) + " (mxrelay)");
  size_t at = lv.find(by);
  if (at == std::string::npos) return "";
  size_t id = lv.find(" id ", at + by.size());
  if (id == std::string::npos) return "";
  std::string_view rest = std::string_view(v).substr(id + 4, 24);
  return IsHex24(rest) ? Lower(rest) : "";
}

void ReadFeedbackFields(GMimeMessage* fr, ArfReport* r) {
  ForEachHeader(GMIME_OBJECT(fr), [r](std::string_view name, std::string_view raw) {
    std::string n = Lower(name);
    std::string v = Trim(Squeeze(raw));
    if (n == "feedback-type") {
      r->feedback_type = Lower(v);
    } else if (n == "user-agent") {
      r->user_agent = v;
    } else if (n == "version") {
      r->version = v;
    } else if (n == "original-envelope-id") {
      r->original_envelope_id = v;
    } else if (n == "original-mail-from") {
      r->original_mail_from = AddressOf(v);
    } else if (n == "original-rcpt-to") {
      std::string a = AddressOf(v);
      if (!a.empty()) r->original_rcpt_to.push_back(a);
    } else if (n == "arrival-date" || n == "received-date") {
      r->arrival_date = v;
    } else if (n == "reporting-mta") {
      r->reporting_mta = v;
    } else if (n == "source-ip") {
      r->source_ip = v;
    } else if (n == "reported-domain") {
      r->reported_domain = v;
    }
  });
}

void ReadOriginal(GMimeMessage* m, std::string_view host, ArfReport* r) {
  r->has_original = true;
  if (const char* id = g_mime_message_get_message_id(m)) r->message_id = id;
  if (const char* s = g_mime_message_get_subject(m)) r->subject = s;
  std::vector<std::string> from;
  Addresses(g_mime_message_get_from(m), &from);
  if (!from.empty()) r->original_from = from[0];
  Addresses(g_mime_message_get_to(m), &r->original_to);
  Addresses(g_mime_message_get_cc(m), &r->original_to);
  ForEachHeader(GMIME_OBJECT(m), [r, host](std::string_view name, std::string_view raw) {
    std::string n = Lower(name);
    if (n == "received") {
      std::string q = OurQueueId(raw, host);
      if (!q.empty()) r->queue_ids.push_back(q);
    } else if (n.rfind("x-mxrelay-", 0) == 0) {
      r->relay_fields.emplace_back(n, Trim(Squeeze(raw)));
    } else if (n == "x-hmxmroriginalrecipient") {
      std::string a = AddressOf(raw);
      if (!a.empty()) r->provider_recipients.push_back(a);
    }
  });
}

}  // namespace

std::vector<std::string> ArfReport::Recipients() const {
  if (!original_rcpt_to.empty()) return original_rcpt_to;
  if (!provider_recipients.empty()) return provider_recipients;
  return original_to;
}

absl::StatusOr<ArfReport> ParseArf(std::string_view raw, std::string_view our_hostname) {
  InitGMime();
  Ref<GMimeStream> st(g_mime_stream_mem_new_with_buffer(raw.data(), raw.size()));
  Ref<GMimeParser> parser(g_mime_parser_new_with_stream(st.p));
  Ref<GMimeMessage> msg(g_mime_parser_construct_message(parser.p, nullptr));
  if (msg.p == nullptr) return absl::InvalidArgumentError("not a MIME message");
  GMimeObject* top = g_mime_message_get_mime_part(msg.p);
  if (top == nullptr || !GMIME_IS_MULTIPART(top)) {
    return absl::InvalidArgumentError("not multipart/report (RFC 5965 section 2)");
  }
  GMimeContentType* ct = g_mime_object_get_content_type(top);
  const char* rt = g_mime_content_type_get_parameter(ct, "report-type");
  if (!g_mime_content_type_is_type(ct, "multipart", "report") || rt == nullptr ||
      Lower(rt) != "feedback-report") {
    return absl::InvalidArgumentError(
        "not multipart/report; report-type=feedback-report (RFC 5965 section 2)");
  }
  ArfReport r;
  bool have_fields = false;
  GMimeMultipart* mp = GMIME_MULTIPART(top);
  int n = g_mime_multipart_get_count(mp);
  for (int i = 0; i < n; ++i) {
    GMimeObject* part = g_mime_multipart_get_part(mp, i);
    GMimeContentType* pct = g_mime_object_get_content_type(part);
    if (g_mime_content_type_is_type(pct, "message", "feedback-report") && GMIME_IS_PART(part)) {
      Ref<GMimeMessage> fields(ParseHeaders(PartContent(GMIME_PART(part))));
      if (fields.p != nullptr) {
        ReadFeedbackFields(fields.p, &r);
        have_fields = true;
      }
    } else if (GMIME_IS_MESSAGE_PART(part)) {
      GMimeMessage* orig = g_mime_message_part_get_message(GMIME_MESSAGE_PART(part));
      if (orig != nullptr) ReadOriginal(orig, our_hostname, &r);
    } else if (g_mime_content_type_is_type(pct, "text", "rfc822-headers") && GMIME_IS_PART(part)) {
      Ref<GMimeMessage> orig(ParseHeaders(PartContent(GMIME_PART(part))));
      if (orig.p != nullptr) ReadOriginal(orig.p, our_hostname, &r);
    }
  }
  if (!have_fields) {
    return absl::InvalidArgumentError("no message/feedback-report part (RFC 5965 section 2)");
  }
  if (r.feedback_type.empty()) {
    return absl::InvalidArgumentError("the feedback report has no Feedback-Type (RFC 5965 section 3.1)");
  }
  return r;
}

}  // namespace mxr::feedback
