// The pure parts of the HTTP webhook provider (see http_util.h).
#include "providers/http_util.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "providers/provider.h"
#include "util.h"

namespace wf::prov::http {

namespace {

const char *kWhat = "http config";

[[noreturn]] void bad(const std::string &msg) { fail(WF_EINVAL, std::string(kWhat) + ": " + msg); }

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto &c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

bool in4(uint32_t a, uint32_t net, int bits) {
  uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  return (a & mask) == (net & mask);
}

constexpr uint32_t ip4(unsigned a, unsigned b, unsigned c, unsigned d) {
  return (uint32_t{a} << 24) | (uint32_t{b} << 16) | (uint32_t{c} << 8) | uint32_t{d};
}

AddrClass classify4(uint32_t a) {
  if (in4(a, ip4(0, 0, 0, 0), 8)) return AddrClass::kUnspecified;
  if (in4(a, ip4(127, 0, 0, 0), 8)) return AddrClass::kLoopback;
  if (in4(a, ip4(10, 0, 0, 0), 8) || in4(a, ip4(172, 16, 0, 0), 12) ||
      in4(a, ip4(192, 168, 0, 0), 16))
    return AddrClass::kPrivate;
  if (in4(a, ip4(169, 254, 0, 0), 16)) return AddrClass::kLinkLocal;
  if (in4(a, ip4(100, 64, 0, 0), 10)) return AddrClass::kCgnat;
  if (in4(a, ip4(224, 0, 0, 0), 4)) return AddrClass::kMulticast;
  if (in4(a, ip4(240, 0, 0, 0), 4) ||      // reserved + 255.255.255.255
      in4(a, ip4(192, 0, 0, 0), 24) ||     // IETF protocol assignments
      in4(a, ip4(192, 0, 2, 0), 24) ||     // TEST-NET-1
      in4(a, ip4(198, 51, 100, 0), 24) ||  // TEST-NET-2
      in4(a, ip4(203, 0, 113, 0), 24) ||   // TEST-NET-3
      in4(a, ip4(198, 18, 0, 0), 15) ||    // benchmarking
      in4(a, ip4(192, 88, 99, 0), 24))     // 6to4 relay anycast
    return AddrClass::kReserved;
  return AddrClass::kPublic;
}

AddrClass classify6(const unsigned char *b) {
  auto all_zero = [&](int from, int to) {
    for (int i = from; i < to; i++)
      if (b[i]) return false;
    return true;
  };
  auto v4_at = [&](int off) {
    return (uint32_t{b[off]} << 24) | (uint32_t{b[off + 1]} << 16) | (uint32_t{b[off + 2]} << 8) |
           uint32_t{b[off + 3]};
  };
  if (all_zero(0, 16)) return AddrClass::kUnspecified;
  if (all_zero(0, 15) && b[15] == 1) return AddrClass::kLoopback;
  if (all_zero(0, 10) && b[10] == 0xff && b[11] == 0xff) return AddrClass::kMapped;
  if (all_zero(0, 12)) return AddrClass::kMapped;  // IPv4-compatible (deprecated)
  if (b[0] == 0xff) return AddrClass::kMulticast;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return AddrClass::kLinkLocal;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return AddrClass::kUniqueLocal;  // site-local
  if ((b[0] & 0xfe) == 0xfc) return AddrClass::kUniqueLocal;
  // NAT64: 64:ff9b::/96 and 64:ff9b:1::/48 carry an IPv4 address at the end.
  if (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) {
    if (all_zero(4, 12)) return classify4(v4_at(12));
    if (b[4] == 0 && b[5] == 1) {
      AddrClass c = classify4(v4_at(12));
      return c == AddrClass::kPublic ? AddrClass::kReserved : c;  // local-use prefix
    }
  }
  if (b[0] == 0x20 && b[1] == 0x02) return classify4(v4_at(2));  // 6to4
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
    return AddrClass::kReserved;  // documentation
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0)
    return AddrClass::kReserved;                                                 // Teredo
  if (b[0] == 0x01 && b[1] == 0 && all_zero(2, 8)) return AddrClass::kReserved;  // discard
  // Only 2000::/3 is allocated as global unicast.
  if ((b[0] & 0xe0) != 0x20) return AddrClass::kReserved;
  return AddrClass::kPublic;
}

}  // namespace

const char *addr_class_name(AddrClass c) {
  switch (c) {
    case AddrClass::kPublic:
      return "public";
    case AddrClass::kUnspecified:
      return "unspecified";
    case AddrClass::kLoopback:
      return "loopback";
    case AddrClass::kPrivate:
      return "private (RFC 1918)";
    case AddrClass::kLinkLocal:
      return "link-local (incl. cloud metadata)";
    case AddrClass::kCgnat:
      return "carrier-grade NAT (100.64.0.0/10)";
    case AddrClass::kUniqueLocal:
      return "unique-local / site-local";
    case AddrClass::kMulticast:
      return "multicast";
    case AddrClass::kReserved:
      return "reserved";
    case AddrClass::kMapped:
      return "IPv4-mapped IPv6";
  }
  return "reserved";
}

AddrClass classify(const sockaddr *sa) {
  if (!sa) return AddrClass::kReserved;
  if (sa->sa_family == AF_INET) {
    sockaddr_in in;
    std::memcpy(&in, sa, sizeof in);
    return classify4(ntohl(in.sin_addr.s_addr));
  }
  if (sa->sa_family == AF_INET6) {
    sockaddr_in6 in6;
    std::memcpy(&in6, sa, sizeof in6);
    return classify6(in6.sin6_addr.s6_addr);
  }
  return AddrClass::kReserved;
}

AddrClass classify(const std::string &ip) {
  in_addr a4;
  if (inet_pton(AF_INET, ip.c_str(), &a4) == 1) return classify4(ntohl(a4.s_addr));
  in6_addr a6;
  if (inet_pton(AF_INET6, ip.c_str(), &a6) == 1) return classify6(a6.s6_addr);
  return AddrClass::kReserved;
}

bool addr_allowed(AddrClass c, bool allow_private_networks) {
  if (c == AddrClass::kPublic) return true;
  if (c == AddrClass::kMulticast) return false;  // never a TCP peer
  return allow_private_networks;
}

// ------------------------------------------------------------------ signing

Signer::~Signer() {
  for (auto &k : keys_)
    if (!k.empty()) mbedtls_platform_zeroize(k.data(), k.size());
}

std::string base64(std::string_view bytes) {
  size_t olen = 0;
  mbedtls_base64_encode(nullptr, 0, &olen, reinterpret_cast<const unsigned char *>(bytes.data()),
                        bytes.size());
  std::string out(olen, '\0');
  if (mbedtls_base64_encode(reinterpret_cast<unsigned char *>(out.data()), out.size(), &olen,
                            reinterpret_cast<const unsigned char *>(bytes.data()),
                            bytes.size()) != 0)
    throw std::runtime_error("base64 encoding failed");
  out.resize(olen);
  return out;
}

std::string Signer::sign(std::string_view id, int64_t timestamp_s, std::string_view body) const {
  std::string ts = std::to_string(timestamp_s);
  const mbedtls_md_info_t *info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
  std::string out;
  for (const auto &k : keys_) {
    mbedtls_md_context_t ctx;
    mbedtls_md_init(&ctx);
    unsigned char mac[32];
    auto feed = [&](std::string_view s) {
      return mbedtls_md_hmac_update(&ctx, reinterpret_cast<const unsigned char *>(s.data()),
                                    s.size());
    };
    int rc = mbedtls_md_setup(&ctx, info, 1);
    if (rc == 0)
      rc =
          mbedtls_md_hmac_starts(&ctx, reinterpret_cast<const unsigned char *>(k.data()), k.size());
    if (rc == 0) rc = feed(id);
    if (rc == 0) rc = feed(".");
    if (rc == 0) rc = feed(ts);
    if (rc == 0) rc = feed(".");
    if (rc == 0) rc = feed(body);
    if (rc == 0) rc = mbedtls_md_hmac_finish(&ctx, mac);
    mbedtls_md_free(&ctx);
    if (rc != 0) throw std::runtime_error("HMAC-SHA256 failed");
    if (!out.empty()) out += ' ';
    out += "v1,";
    out += base64(std::string_view(reinterpret_cast<const char *>(mac), sizeof mac));
    mbedtls_platform_zeroize(mac, sizeof mac);
  }
  return out;
}

std::string decode_secret(const std::string &secret, const std::string &what) {
  std::string_view s = secret;
  if (s.substr(0, 6) == "whsec_") s.remove_prefix(6);
  if (s.empty()) bad(what + " is empty");
  size_t olen = 0;
  std::string out(s.size(), '\0');
  int rc = mbedtls_base64_decode(reinterpret_cast<unsigned char *>(out.data()), out.size(), &olen,
                                 reinterpret_cast<const unsigned char *>(s.data()), s.size());
  if (rc != 0 || olen == 0) {
    mbedtls_platform_zeroize(out.data(), out.size());
    bad(what + " is not \"whsec_\" followed by base64");
  }
  if (olen < 16 || olen > 128) {
    mbedtls_platform_zeroize(out.data(), out.size());
    bad(what + " must decode to 16..128 bytes (24..64 recommended)");
  }
  out.resize(olen);
  return out;
}

SecretSource system_secrets() {
  SecretSource s;
  s.env = [](const std::string &name) -> std::optional<std::string> {
    // Read once, at registration on the host's thread; hosts must not change
    // the environment concurrently (as for every getenv in a library).
    const char *v = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe)
    if (!v) return std::nullopt;
    return std::string(v);
  };
  s.file = [](const std::string &path) -> std::optional<std::string> {
    std::ifstream f(path, std::ios::binary);
    if (!f) return std::nullopt;
    std::string v(65537, '\0');
    f.read(v.data(), static_cast<std::streamsize>(v.size()));
    v.resize(static_cast<size_t>(f.gcount()));
    if (v.size() > 65536) return std::nullopt;
    return v;
  };
  return s;
}

// ------------------------------------------------------------ configuration

namespace {

bool token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c);
}

bool token(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  for (char c : s)
    if (!token_char(c)) return false;
  return true;
}

std::string trim(std::string s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) b++;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) e--;
  return s.substr(b, e - b);
}

std::vector<UrlPiece> parse_template(const std::string &url, bool &uses_payload) {
  std::vector<UrlPiece> out;
  std::string lit;
  for (size_t i = 0; i < url.size(); i++) {
    char c = url[i];
    if (c == '}') bad("\"url\": unmatched '}' at offset " + std::to_string(i));
    if (c != '{') {
      lit += c;
      continue;
    }
    size_t end = url.find('}', i);
    if (end == std::string::npos) bad("\"url\": unterminated '{' at offset " + std::to_string(i));
    std::string name = url.substr(i + 1, end - i - 1);
    UrlPiece p;
    p.var = true;
    p.text = name;
    if (name == "tenant" || name == "key" || name == "id") {
    } else if (name.rfind("payload.", 0) == 0) {
      std::string rest = name.substr(8);
      size_t start = 0;
      while (true) {
        size_t dot = rest.find('.', start);
        std::string part = rest.substr(start, dot == std::string::npos ? dot : dot - start);
        if (part.empty() || part.find_first_of("{ ") != std::string::npos)
          bad("\"url\": bad payload field \"{" + name + "}\"");
        p.path.push_back(part);
        if (dot == std::string::npos) break;
        start = dot + 1;
      }
      if (p.path.size() > 16) bad("\"url\": payload field path \"{" + name + "}\" is too deep");
      uses_payload = true;
    } else {
      bad("\"url\": unknown variable \"{" + name +
          "}\" (known: {tenant}, {key}, {id}, {payload.<field>})");
    }
    if (!lit.empty()) out.push_back(UrlPiece{false, lit, {}});
    lit.clear();
    out.push_back(std::move(p));
    i = end;
  }
  if (!lit.empty()) out.push_back(UrlPiece{false, lit, {}});
  return out;
}

}  // namespace

Config parse_config(const json &doc, const SecretSource &secrets) {
  if (!doc.is_object()) bad("must be a JSON object");
  static const std::vector<std::string> own = {"type",
                                               "url",
                                               "method",
                                               "headers",
                                               "timeout_ms",
                                               "secrets",
                                               "connect_timeout_ms",
                                               "allow_private_networks",
                                               "ca_file",
                                               "result_headers",
                                               "max_body_bytes",
                                               "max_retry_after_ms",
                                               "user_agent"};
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string &k = it.key();
    if (std::find(own.begin(), own.end(), k) != own.end()) continue;
    const auto &pk = policy_keys();
    if (std::find(pk.begin(), pk.end(), k) != pk.end()) continue;
    bad("unknown key \"" + sanitize_utf8(k, 200) + "\"");
  }
  Config c;
  // url
  auto u = doc.find("url");
  if (u == doc.end() || !u->is_string()) bad("\"url\" is required (a string)");
  c.url = u->get<std::string>();
  if (c.url.size() > 8192) bad("\"url\" is longer than 8192 bytes");
  for (char ch : c.url)
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f)
      bad("\"url\" must not contain spaces or control characters");
  std::string lu = lower(c.url);
  size_t scheme_len = lu.rfind("https://", 0) == 0 ? 8 : lu.rfind("http://", 0) == 0 ? 7 : 0;
  if (!scheme_len) bad("\"url\" must start with http:// or https:// (only http and https)");
  if (scheme_len >= c.url.size() || c.url[scheme_len] == '/' || c.url[scheme_len] == '?')
    bad("\"url\" has no host");
  c.pieces = parse_template(c.url, c.uses_payload);
  {
    // The template with every variable filled must be a URL curl accepts.
    std::string sample;
    for (const auto &p : c.pieces) sample += p.var ? "x" : p.text;
    CURLU *h = curl_url();
    if (!h) throw std::bad_alloc();
    CURLUcode rc = curl_url_set(h, CURLUPART_URL, sample.c_str(), 0);
    curl_url_cleanup(h);
    if (rc != CURLUE_OK) bad(std::string("\"url\" is not a valid URL: ") + curl_url_strerror(rc));
  }
  // method
  c.method = get_string(doc, "method", kWhat, false, "POST");
  {
    static const char *ok[] = {"POST", "PUT", "PATCH", "DELETE", "GET"};
    bool found = false;
    for (const char *m : ok) found = found || c.method == m;
    if (!found) bad("\"method\" must be one of POST, PUT, PATCH, DELETE, GET");
  }
  // headers
  if (auto h = doc.find("headers"); h != doc.end()) {
    if (!h->is_object()) bad("\"headers\" must be an object of strings");
    if (h->size() > 100) bad("\"headers\": at most 100");
    static const char *reserved[] = {"content-length",    "transfer-encoding", "host",
                                     "connection",        "webhook-id",        "webhook-timestamp",
                                     "webhook-signature", "idempotency-key",   "expect"};
    for (auto it = h->begin(); it != h->end(); ++it) {
      std::string name = it.key();
      if (!token(name))
        bad("\"headers\": \"" + sanitize_utf8(name, 200) + "\" is not a header name");
      std::string ln = lower(name);
      for (const char *r : reserved)
        if (ln == r) bad("\"headers\": \"" + name + "\" is set by the provider");
      if (!it->is_string()) bad("\"headers\": \"" + name + "\" must be a string");
      std::string v = it->get<std::string>();
      if (!header_value_ok(v))
        bad("\"headers\": \"" + name + "\" has a control character or is too long");
      c.headers.emplace_back(name, v);
    }
  }
  c.timeout_ms = get_int(doc, "timeout_ms", kWhat, 30000, 0, INT64_C(86400000) * 7);
  c.connect_timeout_ms = get_int(doc, "connect_timeout_ms", kWhat, 10000, 1, 3600000);
  if (auto a = doc.find("allow_private_networks"); a != doc.end()) {
    if (!a->is_boolean()) bad("\"allow_private_networks\" must be true or false");
    c.allow_private_networks = a->get<bool>();
  }
  c.ca_file = get_string(doc, "ca_file", kWhat, false, "");
  if (auto a = doc.find("ca_file"); a != doc.end()) {
    if (c.ca_file.empty() || c.ca_file.find('\0') != std::string::npos)
      bad("\"ca_file\" must be a file path");
  }
  if (auto r = doc.find("result_headers"); r != doc.end()) {
    if (!r->is_array() || r->size() > 64)
      bad("\"result_headers\" must be an array of at most 64 names");
    for (const auto &n : *r) {
      if (!n.is_string() || !token(n.get<std::string>()))
        bad("\"result_headers\": each entry must be a header name");
      c.result_headers.push_back(lower(n.get<std::string>()));
    }
  }
  c.max_body_bytes = static_cast<size_t>(get_int(doc, "max_body_bytes", kWhat, 65536, 0, 1 << 20));
  c.max_retry_after_ms =
      get_int(doc, "max_retry_after_ms", kWhat, 86400000, 0, INT64_C(86400000) * 30);
  c.user_agent = get_string(doc, "user_agent", kWhat, false, c.user_agent);
  if (!header_value_ok(c.user_agent, 512))
    bad("\"user_agent\" has a control character or is too long");
  // secrets (resolved now; never logged or stored)
  if (auto s = doc.find("secrets"); s != doc.end()) {
    if (!s->is_array() || s->empty() || s->size() > 8)
      bad("\"secrets\" must be an array of 1 to 8 secrets");
    for (size_t i = 0; i < s->size(); i++) {
      std::string what = "\"secrets\"[" + std::to_string(i) + "]";
      const json &v = (*s)[i];
      if (!v.is_string()) bad(what + " must be a string");
      std::string ref = v.get<std::string>();
      std::string value;
      if (ref.rfind("env:", 0) == 0) {
        std::string name = ref.substr(4);
        auto got = name.empty() || !secrets.env ? std::nullopt : secrets.env(name);
        if (!got)
          bad(what + ": environment variable \"" + sanitize_utf8(name, 200) + "\" is not set");
        value = trim(*got);
        what += " (from env:" + sanitize_utf8(name, 200) + ")";
      } else if (ref.rfind("file:", 0) == 0) {
        std::string path = ref.substr(5);
        auto got = path.empty() || !secrets.file ? std::nullopt : secrets.file(path);
        if (!got) bad(what + ": cannot read \"" + sanitize_utf8(path, 200) + "\"");
        value = trim(*got);
        what += " (from file:" + sanitize_utf8(path, 200) + ")";
      } else if (ref.rfind("whsec_", 0) == 0) {
        value = ref;
      } else {
        bad(what + " must be \"whsec_...\", \"env:NAME\" or \"file:/path\"");
      }
      std::string key = decode_secret(value, what);
      if (!value.empty()) mbedtls_platform_zeroize(value.data(), value.size());
      c.secret_keys.push_back(std::move(key));
    }
  }
  return c;
}

std::string url_encode(std::string_view s) {
  static const char *hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += hex[ch >> 4];
      out += hex[ch & 15];
    }
  }
  return out;
}

std::string expand_url(const Config &c, const std::string &id, const std::string &tenant,
                       const std::string &key, const json *payload) {
  std::string out;
  for (const auto &p : c.pieces) {
    if (!p.var) {
      out += p.text;
      continue;
    }
    if (p.text == "tenant") {
      out += url_encode(tenant);
    } else if (p.text == "key") {
      out += url_encode(key);
    } else if (p.text == "id") {
      out += url_encode(id);
    } else {
      const json *v = payload;
      for (const auto &part : p.path) {
        if (!v || !v->is_object()) {
          v = nullptr;
          break;
        }
        auto it = v->find(part);
        v = it == v->end() ? nullptr : &*it;
      }
      if (!v) throw std::runtime_error("url template: the payload has no field {" + p.text + "}");
      if (v->is_string())
        out += url_encode(v->get<std::string>());
      else if (v->is_number() || v->is_boolean())
        out += url_encode(v->dump());
      else
        throw std::runtime_error("url template: payload field {" + p.text +
                                 "} is not a string, number or boolean");
    }
  }
  return out;
}

// ----------------------------------------------------------------- responses

Verdict classify_status(long status) {
  if (status >= 200 && status < 300) return Verdict::kComplete;
  if (status == 408 || status == 425 || status == 429 || (status >= 500 && status < 600))
    return Verdict::kRetry;
  return Verdict::kFail;
}

int64_t retry_after_ms(std::string_view value, int64_t now_ms, int64_t cap_ms) {
  std::string v = trim(std::string(value));
  if (v.empty() || v.size() > 64) return -1;
  bool digits = std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  int64_t ms;
  if (digits) {
    if (v.size() > 12) return cap_ms;  // beyond any cap
    ms = std::stoll(v) * 1000;
  } else {
    time_t t = curl_getdate(v.c_str(), nullptr);
    if (t == -1) return -1;
    // curl_getdate accepts years far beyond any cap; bound the seconds before
    // scaling so the product cannot overflow (found by fuzz/http).
    int64_t secs = static_cast<int64_t>(t);
    int64_t lo = now_ms / 1000 - 1, hi = now_ms / 1000 + cap_ms / 1000 + 1;
    secs = std::clamp<int64_t>(secs, lo, hi);
    ms = secs * 1000 - now_ms;
  }
  return std::clamp<int64_t>(ms, 0, cap_ms);
}

void collect_header(std::string_view line, const std::vector<std::string> &keep, HeaderList &h) {
  if (line.substr(0, 5) == "HTTP/") {
    h.clear();
    return;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return;
  std::string name = lower(line.substr(0, colon));
  if (std::find(keep.begin(), keep.end(), name) == keep.end()) return;
  std::string value = trim(std::string(line.substr(colon + 1)));
  for (auto &kv : h)
    if (kv.first == name) {
      if (kv.second.size() < 8192) kv.second += ", " + value;
      return;
    }
  h.emplace_back(std::move(name), std::move(value));
}

const std::string *find_header(const HeaderList &h, std::string_view lower_name) {
  for (const auto &kv : h)
    if (kv.first == lower_name) return &kv.second;
  return nullptr;
}

json make_result(long status, const HeaderList &h, const std::vector<std::string> &selected,
                 const std::string &body, bool truncated) {
  json r = json::object();
  r["status"] = status;
  json hs = json::object();
  for (const auto &name : selected)
    if (const std::string *v = find_header(h, name)) hs[name] = sanitize_utf8(*v, 8192);
  r["headers"] = std::move(hs);
  bool is_json = false;
  if (const std::string *ct = find_header(h, "content-type")) {
    std::string l = lower(*ct);
    is_json = l.rfind("application/json", 0) == 0 ||
              (l.find("+json") != std::string::npos && l.find("+json") < l.find(';'));
  }
  if (is_json && !truncated && !body.empty()) {
    try {
      Limits lim;
      lim.max_depth = 32;
      r["body"] = parse_json(body, lim, "response body", body.size());
      return r;
    } catch (const Error &) {
      // not JSON after all: kept as text
    }
  }
  r["body"] = sanitize_utf8(body);
  if (truncated) r["body_truncated"] = true;
  return r;
}

bool header_value_ok(std::string_view v, size_t max) {
  if (v.size() > max) return false;
  for (unsigned char ch : v)
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return false;
  return true;
}

}  // namespace wf::prov::http
