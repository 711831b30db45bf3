// Pure parts of the NATS JetStream providers: configuration decoding,
// templates, and the inbound message-to-event mapping (see nats_map.h).
#include "providers/nats_map.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "providers/provider.h"
#include "util.h"

namespace wf::prov::natsmap {

namespace {

const char *const kPub = "nats config";
const char *const kCon = "nats_consumer config";

bool is_policy_key(const std::string &k) {
  const auto &p = policy_keys();
  return std::find(p.begin(), p.end(), k) != p.end();
}

void check_known(const json &doc, std::initializer_list<const char *> own, const char *what) {
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string &k = it.key();
    if (k == "type" || is_policy_key(k)) continue;
    bool ok = false;
    for (const char *o : own)
      if (k == o) ok = true;
    if (!ok) fail(WF_EINVAL, std::string(what) + ": unknown key \"" + k + "\"");
  }
}

std::string str(const json &doc, const char *key, const char *what, bool required,
                const std::string &def = "") {
  std::string v = get_string(doc, key, what, required, def);
  if (required && v.empty())
    fail(WF_EINVAL, std::string(what) + ": \"" + key + "\" must not be empty");
  if (v.size() > 4096) fail(WF_EINVAL, std::string(what) + ": \"" + key + "\" is too long");
  check_no_nul(v, key, what);
  return v;
}

// nats://host:port[,nats://...]; schemes nats, tls, ws, wss.
void check_url(const std::string &url, const char *what) {
  size_t start = 0;
  while (start <= url.size()) {
    size_t end = url.find(',', start);
    if (end == std::string::npos) end = url.size();
    std::string u = url.substr(start, end - start);
    bool ok = false;
    for (const char *s : {"nats://", "tls://", "ws://", "wss://"})
      if (u.rfind(s, 0) == 0 && u.size() > strlen(s)) ok = true;
    for (char c : u)
      if (static_cast<unsigned char>(c) <= ' ') ok = false;
    if (!ok)
      fail(WF_EINVAL,
           std::string(what) + ": \"url\" must be nats://host:port (several separated by commas)");
    start = end + 1;
  }
}

// A NATS name for streams and durables: no '.', '*', '>', whitespace, '/' or '\'.
void check_name(const std::string &v, const char *key, const char *what) {
  for (char c : v)
    if (c == '.' || c == '*' || c == '>' || c == '/' || c == '\\' ||
        static_cast<unsigned char>(c) <= ' ')
      fail(WF_EINVAL, std::string(what) + ": \"" + key +
                          "\" must not contain '.', '*', '>', '/', '\\' or whitespace");
}

bool valid_subscribe_subject(const std::string &s) {
  if (s.empty()) return false;
  size_t start = 0;
  while (true) {
    size_t end = s.find('.', start);
    std::string tok = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (tok.empty()) return false;
    for (char c : tok)
      if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return false;
    if ((tok.find('*') != std::string::npos && tok != "*") ||
        (tok.find('>') != std::string::npos && tok != ">"))
      return false;
    if (tok == ">" && end != std::string::npos) return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

}  // namespace

Template parse_template(const std::string &text, const char *key) {
  Template t;
  size_t i = 0;
  std::string lit;
  while (i < text.size()) {
    char c = text[i];
    if (c == '}') fail(WF_EINVAL, std::string("\"") + key + "\": unmatched '}' in template");
    if (c != '{') {
      lit += c;
      ++i;
      continue;
    }
    size_t close = text.find('}', i);
    if (close == std::string::npos)
      fail(WF_EINVAL, std::string("\"") + key + "\": unmatched '{' in template");
    std::string name = text.substr(i + 1, close - i - 1);
    Template::Part p;
    if (name == "tenant")
      p.kind = Template::Part::Tenant;
    else if (name == "key")
      p.kind = Template::Part::Key;
    else if (name == "id")
      p.kind = Template::Part::Id;
    else if (name == "effect")
      p.kind = Template::Part::Effect;
    else if (name.rfind("meta.", 0) == 0 && name.size() > 5 &&
             name.find('{') == std::string::npos) {
      p.kind = Template::Part::Meta;
      p.text = name.substr(5);
    } else {
      fail(WF_EINVAL, std::string("\"") + key + "\": unknown placeholder {" + name +
                          "} (known: {tenant} {key} {id} {effect} {meta.NAME})");
    }
    if (!lit.empty()) t.parts.push_back({Template::Part::Literal, std::move(lit)});
    lit.clear();
    t.parts.push_back(std::move(p));
    i = close + 1;
  }
  if (!lit.empty()) t.parts.push_back({Template::Part::Literal, std::move(lit)});
  return t;
}

Source parse_source(const json &v, const char *key) {
  std::string what = std::string("\"") + key + "\"";
  if (!v.is_string())
    fail(WF_EINVAL, what + " must be a string: \"header:NAME\", \"token:N\" or \"const:TEXT\"");
  std::string s = v.get<std::string>();
  check_no_nul(s, key, "nats_consumer config");
  Source src;
  if (s.rfind("header:", 0) == 0 && s.size() > 7) {
    src.kind = Source::Header;
    src.text = s.substr(7);
    for (char c : src.text)
      if (static_cast<unsigned char>(c) <= ' ' || c == ':' || c == 0x7f)
        fail(WF_EINVAL, what + ": bad header name");
    return src;
  }
  if (s.rfind("token:", 0) == 0 && s.size() > 6 && s.size() <= 9) {
    std::string n = s.substr(6);
    size_t digits = n[0] == '-' ? 1 : 0;
    if (digits < n.size() && std::all_of(n.begin() + static_cast<std::ptrdiff_t>(digits), n.end(),
                                         [](char c) { return c >= '0' && c <= '9'; })) {
      int t = std::stoi(n);
      if (t >= -32 && t < 32) {
        src.kind = Source::Token;
        src.token = t;
        return src;
      }
    }
    fail(WF_EINVAL, what + ": \"token:N\" needs an integer N in [-32, 31]");
  }
  if (s.rfind("const:", 0) == 0) {
    src.kind = Source::Const;
    src.text = s.substr(6);
    return src;
  }
  fail(WF_EINVAL, what + " must be \"header:NAME\", \"token:N\" or \"const:TEXT\"");
}

PublisherConfig decode_publisher(const json &doc) {
  if (!doc.is_object()) fail(WF_EINVAL, std::string(kPub) + " must be a JSON object");
  check_known(doc,
              {"url", "subject", "headers", "connect_timeout_ms", "max_pending", "stream", "name"},
              kPub);
  PublisherConfig c;
  c.url = str(doc, "url", kPub, true);
  check_url(c.url, kPub);
  std::string subj = str(doc, "subject", kPub, true);
  c.subject = parse_template(subj, "subject");
  // The literal parts alone must already form a publishable subject shape.
  JobView probe{"t", "k", "i", "e", json::object()};
  if (!valid_publish_subject(expand(c.subject, probe, true)))
    fail(WF_EINVAL, std::string(kPub) +
                        ": \"subject\" must be tokens separated by '.', none empty, without "
                        "wildcards or whitespace");
  if (doc.contains("headers") && !doc["headers"].is_null()) {
    const json &h = doc["headers"];
    if (!h.is_object())
      fail(WF_EINVAL, std::string(kPub) + ": \"headers\" must be an object of strings");
    if (h.size() > 64) fail(WF_EINVAL, std::string(kPub) + ": \"headers\": at most 64");
    for (auto it = h.begin(); it != h.end(); ++it) {
      const std::string &name = it.key();
      bool ok = !name.empty() && name.size() <= 256;
      for (char ch : name)
        if (static_cast<unsigned char>(ch) <= ' ' || ch == ':' || ch == 0x7f) ok = false;
      if (!ok) fail(WF_EINVAL, std::string(kPub) + ": \"headers\": bad header name");
      if (name == "Nats-Msg-Id")
        fail(WF_EINVAL,
             std::string(kPub) + ": \"headers\": Nats-Msg-Id is set by the provider (the job key)");
      if (!it.value().is_string())
        fail(WF_EINVAL, std::string(kPub) + ": \"headers\": \"" + name + "\" must be a string");
      std::string v = it.value().get<std::string>();
      if (!valid_header_value(v))
        fail(WF_EINVAL,
             std::string(kPub) + ": \"headers\": \"" + name + "\" must not contain CR, LF or NUL");
      c.headers.emplace_back(name, parse_template(v, "headers"));
    }
  }
  c.ack_timeout_ms = get_int(doc, "timeout_ms", kPub, 5000, 1, 86400000);
  c.connect_timeout_ms = get_int(doc, "connect_timeout_ms", kPub, 2000, 1, 600000);
  c.max_pending = get_int(doc, "max_pending", kPub, 4096, 1, 1000000);
  c.expect_stream = str(doc, "stream", kPub, false);
  check_name(c.expect_stream, "stream", kPub);
  c.name = str(doc, "name", kPub, false);
  return c;
}

ConsumerConfig decode_consumer(const json &doc) {
  if (!doc.is_object()) fail(WF_EINVAL, std::string(kCon) + " must be a JSON object");
  check_known(doc,
              {"url", "stream", "durable", "subject", "event_type", "correlation", "tenant",
               "id_header", "batch", "ack_wait_ms", "fetch_wait_ms", "max_deliver",
               "max_ack_pending", "connect_timeout_ms", "name"},
              kCon);
  ConsumerConfig c;
  c.url = str(doc, "url", kCon, true);
  check_url(c.url, kCon);
  c.stream = str(doc, "stream", kCon, true);
  check_name(c.stream, "stream", kCon);
  c.durable = str(doc, "durable", kCon, true);
  check_name(c.durable, "durable", kCon);
  c.subject = str(doc, "subject", kCon, false);
  if (!c.subject.empty() && !valid_subscribe_subject(c.subject))
    fail(WF_EINVAL, std::string(kCon) + ": \"subject\" is not a valid subject filter");
  if (!doc.contains("event_type") || doc["event_type"].is_null())
    fail(WF_EINVAL, std::string(kCon) + ": \"event_type\" is required");
  c.event_type = parse_source(doc["event_type"], "event_type");
  if (c.event_type.kind == Source::Const && c.event_type.text.empty())
    fail(WF_EINVAL, std::string(kCon) + ": \"event_type\": const must not be empty");
  if (doc.contains("correlation") && !doc["correlation"].is_null())
    c.correlation = parse_source(doc["correlation"], "correlation");
  if (doc.contains("tenant") && !doc["tenant"].is_null())
    c.tenant = parse_source(doc["tenant"], "tenant");
  c.id_header = str(doc, "id_header", kCon, false, "Nats-Msg-Id");
  if (c.id_header.empty()) fail(WF_EINVAL, std::string(kCon) + ": \"id_header\" is empty");
  c.batch = static_cast<int>(get_int(doc, "batch", kCon, 64, 1, 10000));
  c.ack_wait_ms = get_int(doc, "ack_wait_ms", kCon, 30000, 100, 86400000);
  c.fetch_wait_ms = get_int(doc, "fetch_wait_ms", kCon, 500, 10, 60000);
  c.max_deliver = get_int(doc, "max_deliver", kCon, -1, -1, 1000000000);
  if (c.max_deliver == 0) fail(WF_EINVAL, std::string(kCon) + ": \"max_deliver\" must not be 0");
  c.max_ack_pending = get_int(doc, "max_ack_pending", kCon, -1, -1, 1000000000);
  if (c.max_ack_pending == 0)
    fail(WF_EINVAL, std::string(kCon) + ": \"max_ack_pending\" must not be 0");
  c.connect_timeout_ms = get_int(doc, "connect_timeout_ms", kCon, 2000, 1, 600000);
  c.name = str(doc, "name", kCon, false);
  return c;
}

std::string expand(const Template &t, const JobView &j, bool subject, bool *bad) {
  std::string out;
  for (const auto &p : t.parts) {
    std::string v;
    switch (p.kind) {
      case Template::Part::Literal:
        out += p.text;
        continue;
      case Template::Part::Tenant:
        v = j.tenant;
        break;
      case Template::Part::Key:
        v = j.key.empty() ? j.id : j.key;
        break;
      case Template::Part::Id:
        v = j.id;
        break;
      case Template::Part::Effect:
        v = j.effect;
        break;
      case Template::Part::Meta:
        if (j.metadata.is_object()) {
          auto it = j.metadata.find(p.text);
          if (it != j.metadata.end()) {
            if (it->is_string())
              v = it->get<std::string>();
            else if (!it->is_null())
              v = it->dump();
          }
        }
        break;
    }
    if (subject && v.empty()) v = "_";
    if (subject && bad)
      for (char c : v)
        if (c == '.' || c == '*' || c == '>' || static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
          *bad = true;
    out += v;
  }
  return out;
}

bool valid_publish_subject(const std::string &s) {
  if (s.empty() || s.size() > 4096) return false;
  size_t start = 0;
  while (true) {
    size_t end = s.find('.', start);
    size_t len = (end == std::string::npos ? s.size() : end) - start;
    if (len == 0) return false;
    for (size_t i = start; i < start + len; ++i) {
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (c <= ' ' || c == 0x7f || c == '*' || c == '>') return false;
    }
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

bool valid_header_value(const std::string &s) {
  return s.find_first_of(std::string("\r\n\0", 3)) == std::string::npos;
}

const std::string *find_header(const InMsg &m, const std::string &name) {
  for (const auto &h : m.headers)
    if (h.first == name) return &h.second;
  for (const auto &h : m.headers)
    if (h.first.size() == name.size() &&
        std::equal(h.first.begin(), h.first.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        }))
      return &h.second;
  return nullptr;
}

namespace {

// The value of a source for `m`; false (and `err`) when it is missing.
bool resolve(const Source &s, const InMsg &m, const char *field, std::string &out,
             std::string &err) {
  switch (s.kind) {
    case Source::None:
      out.clear();
      return true;
    case Source::Const:
      out = s.text;
      return true;
    case Source::Header: {
      const std::string *v = find_header(m, s.text);
      if (!v || v->empty()) {
        err = std::string(field) + ": header " + s.text + " is missing";
        return false;
      }
      out = *v;
      return true;
    }
    case Source::Token: {
      std::vector<std::string> toks;
      size_t start = 0;
      while (true) {
        size_t end = m.subject.find('.', start);
        toks.push_back(m.subject.substr(start, end == std::string::npos ? end : end - start));
        if (end == std::string::npos) break;
        start = end + 1;
      }
      int n = static_cast<int>(toks.size());
      int i = s.token < 0 ? n + s.token : s.token;
      if (i < 0 || i >= n || toks[static_cast<size_t>(i)].empty()) {
        err = std::string(field) + ": the subject has no token " + std::to_string(s.token);
        return false;
      }
      out = toks[static_cast<size_t>(i)];
      return true;
    }
  }
  return false;
}

}  // namespace

Mapped map_message(const ConsumerConfig &c, const InMsg &m) {
  Mapped r;
  std::string id;
  const std::string *hid = find_header(m, c.id_header);
  if (hid && !hid->empty()) {
    id = *hid;
  } else if (!m.stream.empty() && m.stream_seq > 0) {
    id = "nats:" + m.stream + ":" + std::to_string(m.stream_seq);
  } else {
    r.error = "event_id: header " + c.id_header + " is missing and the stream sequence is unknown";
    return r;
  }
  std::string type, corr, tenant;
  if (!resolve(c.event_type, m, "event_type", type, r.error)) return r;
  if (type.empty()) {
    r.error = "event_type: empty";
    return r;
  }
  if (!resolve(c.correlation, m, "correlation", corr, r.error)) return r;
  if (!resolve(c.tenant, m, "tenant", tenant, r.error)) return r;
  for (const std::string *v : {&id, &type, &corr, &tenant})
    if (!valid_utf8(*v)) {
      r.error = "a header or subject token is not valid UTF-8";
      return r;
    }
  json payload;
  if (!m.data.empty()) {
    try {
      payload = parse_json(m.data, Limits{}, "message data", size_t{1} << 24);
    } catch (const Error &e) {
      r.error = std::string("payload: ") + e.what();
      return r;
    }
  }
  json ev = {{"event_id", id}, {"type", type}, {"payload", std::move(payload)}};
  if (!tenant.empty()) ev["tenant"] = tenant;
  if (!corr.empty()) ev["correlation_id"] = corr;
  if (const std::string *tp = find_header(m, "traceparent");
      tp && !tp->empty() && tp->size() <= 256 && valid_utf8(*tp))
    ev["traceparent"] = *tp;
  r.ok = true;
  r.event = std::move(ev);
  return r;
}

}  // namespace wf::prov::natsmap
