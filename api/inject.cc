#include "api/inject.h"

#include <gmime/gmime.h>

#include <mutex>
#include <unordered_map>

#include "absl/strings/escaping.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace mxr::api {
namespace {

using json = nlohmann::json;

RequestError Bad(std::string field, std::string message, int status = 400) {
  return RequestError{status, std::move(field), std::move(message)};
}

bool Utf8Valid(std::string_view s) {
  // nlohmann rejects invalid UTF-8 at parse time; strings here are valid.
  return s.find('\0') == std::string_view::npos;
}

std::optional<RequestError> Str(const json& v, const std::string& field, std::string* out, bool allow_empty = true) {
  if (!v.is_string()) return Bad(field, "expected a string");
  *out = v.get<std::string>();
  if (!Utf8Valid(*out)) return Bad(field, "must not contain NUL characters");
  if (!allow_empty && out->empty()) return Bad(field, "must not be empty");
  return std::nullopt;
}

bool HasCrLf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

std::optional<RequestError> Vars(const json& v, const std::string& field, std::map<std::string, std::string>* out) {
  if (!v.is_object()) return Bad(field, "expected an object of name: value");
  for (auto it = v.begin(); it != v.end(); ++it) {
    const json& x = it.value();
    std::string name = it.key();
    if (x.is_string()) {
      (*out)[name] = x.get<std::string>();
    } else if (x.is_number() || x.is_boolean()) {
      (*out)[name] = x.dump();
    } else {
      return Bad(Cat(field, ".", name), "expected a string, a number or a boolean");
    }
  }
  return std::nullopt;
}

std::optional<RequestError> ParseStructured(const json& c, const InjectLimits& limits, Structured* s) {
  for (auto it = c.begin(); it != c.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    std::string f = "content." + k;
    std::optional<RequestError> e;
    if (k == "from") e = Str(v, f, &s->from, false);
    else if (k == "to") e = Str(v, f, &s->to);
    else if (k == "reply_to") e = Str(v, f, &s->reply_to);
    else if (k == "subject") e = Str(v, f, &s->subject);
    else if (k == "text") e = Str(v, f, &s->text);
    else if (k == "html") e = Str(v, f, &s->html);
    else if (k == "headers") {
      if (!v.is_object()) return Bad(f, "expected an object of \"Name\": \"value\"");
      for (auto h = v.begin(); h != v.end(); ++h) {
        std::string name = h.key(), value;
        if (auto he = Str(h.value(), f + "." + name, &value)) return he;
        bool ok = !name.empty();
        for (char ch : name) ok &= ch > ' ' && ch < 127 && ch != ':';
        if (!ok) return Bad(f + "." + name, "not a valid header field name");
        if (HasCrLf(value)) return Bad(f + "." + name, "must not contain line breaks");
        static const char* kOwn[] = {"from", "to", "subject", "reply-to", "content-type", "content-transfer-encoding",
                                     "mime-version"};
        for (const char* o : kOwn) {
          if (AsciiIEquals(name, o)) return Bad(f + "." + name, "set with its own field of content, not in headers");
        }
        s->headers.emplace_back(name, value);
      }
    } else if (k == "attachments") {
      if (!v.is_array()) return Bad(f, "expected an array");
      for (size_t i = 0; i < v.size(); ++i) {
        const json& a = v[i];
        std::string af = Cat(f, "[", i, "]");
        if (!a.is_object()) return Bad(af, "expected an object");
        Attachment at;
        bool have_data = false;
        for (auto x = a.begin(); x != a.end(); ++x) {
          std::string xf = af + "." + x.key();
          if (x.key() == "filename") e = Str(x.value(), xf, &at.filename, false);
          else if (x.key() == "content_type") e = Str(x.value(), xf, &at.content_type, false);
          else if (x.key() == "content_id") e = Str(x.value(), xf, &at.content_id);
          else if (x.key() == "inline") {
            if (!x.value().is_boolean()) return Bad(xf, "expected true or false");
            at.inline_part = x.value().get<bool>();
          } else if (x.key() == "data") {
            std::string b64;
            if (auto de = Str(x.value(), xf, &b64)) return de;
            if (b64.size() > limits.max_message_size * 4 / 3 + 4) return Bad(xf, "attachment too large", 413);
            if (!absl::Base64Unescape(b64, &at.data)) return Bad(xf, "not valid base64");
            have_data = true;
          } else {
            return Bad(xf, "unknown field (known: filename, content_type, data, inline, content_id)");
          }
          if (e) return e;
        }
        if (!have_data) return Bad(af + ".data", "required (the attachment's bytes, base64)");
        if (at.filename.empty()) return Bad(af + ".filename", "required");
        if (HasCrLf(at.filename) || HasCrLf(at.content_type) || at.content_type.find('/') == std::string::npos) {
          return Bad(af + ".content_type", "expected type/subtype");
        }
        s->attachments.push_back(std::move(at));
      }
    } else {
      return Bad(f, "unknown field (known: from, to, reply_to, subject, text, html, headers, attachments)");
    }
    if (e) return e;
  }
  if (s->from.empty()) return Bad("content.from", "required");
  if (s->text.empty() && s->html.empty() && s->attachments.empty()) {
    return Bad("content.text", "give text, html or attachments");
  }
  for (const auto* f : {&s->from, &s->to, &s->reply_to, &s->subject}) {
    if (HasCrLf(*f)) return Bad("content", "header values (from, to, reply_to, subject) must not contain line breaks");
  }
  return std::nullopt;
}

void EnsureGMime() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

bool AddAddresses(InternetAddressList* list, const std::string& text) {
  InternetAddressList* parsed = internet_address_list_parse(nullptr, text.c_str());
  if (parsed == nullptr) return false;
  bool ok = internet_address_list_length(parsed) > 0;
  internet_address_list_append(list, parsed);
  g_object_unref(parsed);
  return ok;
}

}  // namespace

bool PlausibleAddress(std::string_view a) {
  size_t at = a.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 >= a.size() || a.size() > 320) return false;
  for (char c : a) {
    if (c == ' ' || c == '<' || c == '>' || c == '\r' || c == '\n' || c == '\t' || c == '\0') return false;
  }
  return a.substr(at + 1).find('.') != std::string_view::npos || a.substr(at + 1) == "localhost";
}

std::optional<RequestError> ParseInjectRequest(std::string_view body, const InjectLimits& limits, InjectRequest* out) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("", "the body is not valid JSON (UTF-8)");
  if (!j.is_object()) return Bad("", "expected a JSON object");
  bool have_content = false, have_rcpts = false, have_sender = false;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    std::optional<RequestError> e;
    if (k == "envelope_sender") {
      e = Str(v, k, &out->envelope_sender);
      have_sender = true;
    } else if (k == "campaign") {
      e = Str(v, k, &out->campaign);
      if (!e) {
        bool ok = !out->campaign.empty() && out->campaign.size() <= 128;
        for (char c : out->campaign) ok &= c > ' ' && c <= '~';
        if (!ok) return Bad(k, "1 to 128 printable ASCII characters without spaces");
      }
    } else if (k == "substitutions") {
      e = Vars(v, k, &out->vars);
    } else if (k == "recipients") {
      have_rcpts = true;
      if (!v.is_array()) return Bad(k, "expected an array of {\"email\": ...}");
      if (v.empty()) return Bad(k, "at least one recipient is required");
      if (v.size() > limits.max_recipients) {
        return Bad(k, Cat(v.size(), " recipients; at most ", limits.max_recipients, " per request"), 413);
      }
      out->recipients.reserve(v.size());
      for (size_t i = 0; i < v.size(); ++i) {
        std::string f = Cat("recipients[", i, "]");
        const json& r = v[i];
        InjectRecipient rc;
        if (r.is_string()) {
          rc.email = r.get<std::string>();
        } else if (r.is_object()) {
          for (auto x = r.begin(); x != r.end(); ++x) {
            if (x.key() == "email") {
              if (auto re = Str(x.value(), f + ".email", &rc.email)) return re;
            } else if (x.key() == "substitutions") {
              if (auto re = Vars(x.value(), f + ".substitutions", &rc.vars)) return re;
            } else {
              return Bad(f + "." + x.key(), "unknown field (known: email, substitutions)");
            }
          }
        } else {
          return Bad(f, "expected an object {\"email\": ..., \"substitutions\": {...}} or a string");
        }
        if (!PlausibleAddress(rc.email)) return Bad(f + ".email", Cat("not an address: \"", rc.email.substr(0, 200), "\""));
        out->recipients.push_back(std::move(rc));
      }
    } else if (k == "content") {
      have_content = true;
      if (v.is_string()) {
        out->raw = v.get<std::string>();
        if (out->raw->empty()) return Bad(k, "the message is empty");
        if (out->raw->size() > limits.max_message_size) {
          return Bad(k, Cat("message of ", out->raw->size(), " bytes; at most ", limits.max_message_size), 413);
        }
      } else if (v.is_object()) {
        e = ParseStructured(v, limits, &out->parts);
      } else {
        return Bad(k, "expected a string (a complete RFC 5322 message) or an object (structured parts)");
      }
    } else {
      return Bad(k, "unknown field (known: envelope_sender, recipients, content, substitutions, campaign)");
    }
    if (e) return e;
  }
  if (!have_sender) return Bad("envelope_sender", "required");
  if (!out->envelope_sender.empty() && !PlausibleAddress(out->envelope_sender)) {
    return Bad("envelope_sender", Cat("not an address: \"", out->envelope_sender.substr(0, 200), "\""));
  }
  if (!have_rcpts) return Bad("recipients", "required");
  if (!have_content) return Bad("content", "required");
  return std::nullopt;
}

std::string Substitute(std::string_view text, const std::map<std::string, std::string>& vars,
                       const std::map<std::string, std::string>& defaults, std::string* missing) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t open = text.find("{{", pos);
    if (open == std::string_view::npos) break;
    size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) break;
    out.append(text.substr(pos, open - pos));
    std::string_view name = text.substr(open + 2, close - open - 2);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    std::string key(name);
    auto it = vars.find(key);
    if (it != vars.end()) {
      out += it->second;
    } else if (auto d = defaults.find(key); d != defaults.end()) {
      out += d->second;
    } else {
      if (missing && missing->empty()) *missing = key;
      out.append(text.substr(open, close + 2 - open));
    }
    pos = close + 2;
  }
  out.append(text.substr(pos));
  return out;
}

std::string ToCrlf(std::string_view t) {
  std::string o;
  o.reserve(t.size() + t.size() / 40);
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if (c == '\r') {
      o += "\r\n";
      if (i + 1 < t.size() && t[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      o += "\r\n";
    } else {
      o.push_back(c);
    }
  }
  if (o.size() < 2 || o.compare(o.size() - 2, 2, "\r\n") != 0) o += "\r\n";
  return o;
}

absl::StatusOr<std::string> BuildMime(const Structured& s) {
  EnsureGMime();
  GMimeMessage* msg = g_mime_message_new(TRUE);
  auto fail = [&](std::string why) {
    g_object_unref(msg);
    return absl::InvalidArgumentError(why);
  };
  if (!AddAddresses(g_mime_message_get_from(msg), s.from)) return fail("content.from: not an address list");
  if (!s.to.empty() && !AddAddresses(g_mime_message_get_to(msg), s.to)) return fail("content.to: not an address list");
  if (!s.reply_to.empty() && !AddAddresses(g_mime_message_get_reply_to(msg), s.reply_to)) {
    return fail("content.reply_to: not an address list");
  }
  if (!s.subject.empty()) g_mime_message_set_subject(msg, s.subject.c_str(), "utf-8");
  for (const auto& [k, v] : s.headers) g_mime_object_append_header(GMIME_OBJECT(msg), k.c_str(), v.c_str(), "utf-8");

  auto text_part = [](const char* subtype, const std::string& body) {
    GMimeTextPart* p = g_mime_text_part_new_with_subtype(subtype);
    g_mime_text_part_set_text(p, body.c_str());  // charset chosen by GMime (utf-8 when needed)
    return GMIME_OBJECT(p);
  };
  GMimeObject* body = nullptr;
  if (!s.text.empty() && !s.html.empty()) {
    GMimeMultipart* alt = g_mime_multipart_new_with_subtype("alternative");
    GMimeObject* t = text_part("plain", s.text);
    GMimeObject* h = text_part("html", s.html);
    g_mime_multipart_add(alt, t);
    g_mime_multipart_add(alt, h);
    g_object_unref(t);
    g_object_unref(h);
    body = GMIME_OBJECT(alt);
  } else if (!s.text.empty()) {
    body = text_part("plain", s.text);
  } else if (!s.html.empty()) {
    body = text_part("html", s.html);
  }
  if (!s.attachments.empty()) {
    GMimeMultipart* mixed = g_mime_multipart_new_with_subtype("mixed");
    if (body) {
      g_mime_multipart_add(mixed, body);
      g_object_unref(body);
    }
    for (const auto& a : s.attachments) {
      GMimeContentType* ct = g_mime_content_type_parse(nullptr, a.content_type.c_str());
      if (ct == nullptr) {
        g_object_unref(mixed);
        return fail("content.attachments: bad content_type");
      }
      GMimePart* part = g_mime_part_new();
      g_mime_object_set_content_type(GMIME_OBJECT(part), ct);  // with its parameters (charset=...)
      g_object_unref(ct);
      GMimeStream* stream = g_mime_stream_mem_new_with_buffer(a.data.data(), a.data.size());
      GMimeDataWrapper* w = g_mime_data_wrapper_new_with_stream(stream, GMIME_CONTENT_ENCODING_DEFAULT);
      g_mime_part_set_content(part, w);
      g_object_unref(w);
      g_object_unref(stream);
      g_mime_part_set_filename(part, a.filename.c_str());
      if (a.inline_part) g_mime_object_set_disposition(GMIME_OBJECT(part), "inline");
      if (!a.content_id.empty()) g_mime_part_set_content_id(part, a.content_id.c_str());
      g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_BASE64);
      g_mime_multipart_add(mixed, GMIME_OBJECT(part));
      g_object_unref(part);
    }
    body = GMIME_OBJECT(mixed);
  }
  g_mime_message_set_mime_part(msg, body);
  g_object_unref(body);
  // Transfer encodings chosen for 7-bit transport (quoted-printable/base64
  // where the text needs it): the message passes any relay unchanged.
  g_mime_object_encode(GMIME_OBJECT(msg), GMIME_ENCODING_CONSTRAINT_7BIT);
  GMimeFormatOptions* fo = g_mime_format_options_new();
  g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
  char* out = g_mime_object_to_string(GMIME_OBJECT(msg), fo);
  g_mime_format_options_free(fo);
  std::string result = out ? out : "";
  g_free(out);
  g_object_unref(msg);
  return ToCrlf(result);
}

std::optional<RequestError> BuildMessages(const InjectRequest& req, const InjectLimits& limits,
                                          std::vector<BuiltMessage>* out) {
  // Raw content without placeholders: one rendering for everyone (no
  // per-recipient copy, substitution or comparison of the content).
  if (req.raw && req.raw->find("{{") == std::string::npos) {
    BuiltMessage b{ToCrlf(*req.raw), {}};
    if (b.content.size() > limits.max_message_size) {
      return Bad("content", Cat("the message is ", b.content.size(), " bytes; at most ", limits.max_message_size), 413);
    }
    b.recipients.reserve(req.recipients.size());
    for (const auto& r : req.recipients) b.recipients.push_back(r.email);
    out->push_back(std::move(b));
    return std::nullopt;
  }
  std::unordered_map<std::string, size_t> by_content;
  for (size_t i = 0; i < req.recipients.size(); ++i) {
    const InjectRecipient& r = req.recipients[i];
    std::map<std::string, std::string> vars = r.vars;
    vars.emplace("email", r.email);
    std::string missing;
    auto sub = [&](const std::string& s) { return Substitute(s, vars, req.vars, &missing); };
    std::string content;
    if (req.raw) {
      content = ToCrlf(sub(*req.raw));
    } else {
      Structured s = req.parts;
      s.from = sub(s.from);
      s.to = s.to.empty() ? r.email : sub(s.to);
      s.reply_to = sub(s.reply_to);
      s.subject = sub(s.subject);
      s.text = sub(s.text);
      s.html = sub(s.html);
      for (auto& h : s.headers) h.second = sub(h.second);
      if (!missing.empty()) {
        return Bad(Cat("recipients[", i, "].substitutions"), Cat("no value for {{", missing, "}}"));
      }
      if (s.from.find_first_of("\r\n") != std::string::npos || s.to.find_first_of("\r\n") != std::string::npos ||
          s.subject.find_first_of("\r\n") != std::string::npos) {
        return Bad(Cat("recipients[", i, "].substitutions"), "a value put a line break into a header field");
      }
      auto built = BuildMime(s);
      if (!built.ok()) return Bad(std::string(built.status().message()).substr(0, built.status().message().find(':')),
                                  std::string(built.status().message()));
      content = std::move(*built);
    }
    if (!missing.empty()) return Bad(Cat("recipients[", i, "].substitutions"), Cat("no value for {{", missing, "}}"));
    if (content.size() > limits.max_message_size) {
      return Bad("content", Cat("the message for recipients[", i, "] is ", content.size(), " bytes; at most ",
                                limits.max_message_size), 413);
    }
    auto [it, fresh] = by_content.emplace(content, out->size());
    if (fresh) out->push_back(BuiltMessage{std::move(content), {}});
    (*out)[it->second].recipients.push_back(r.email);
  }
  return std::nullopt;
}

}  // namespace mxr::api
