// The pure parts of the HTTP webhook provider: address classifier (every
// range, by calling it directly: no traffic), Standard Webhooks signer
// against the specification's published vector, config decoder, URL
// templates, Retry-After, classification and the job result.
#include "providers/http_util.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>
#include <map>

#include "util.h"

using namespace wf::prov::http;
using json = nlohmann::json;

namespace {

SecretSource fake_secrets(std::map<std::string, std::string> env,
                          std::map<std::string, std::string> files) {
  SecretSource s;
  s.env = [env](const std::string &n) -> std::optional<std::string> {
    auto it = env.find(n);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  s.file = [files](const std::string &n) -> std::optional<std::string> {
    auto it = files.find(n);
    if (it == files.end()) return std::nullopt;
    return it->second;
  };
  return s;
}

Config parse(const json &doc) { return parse_config(doc, fake_secrets({}, {})); }

std::string parse_error(const json &doc, const SecretSource &s = fake_secrets({}, {})) {
  try {
    parse_config(doc, s);
  } catch (const wf::Error &e) {
    EXPECT_EQ(WF_EINVAL, e.code());
    return e.what();
  }
  ADD_FAILURE() << "accepted: " << doc.dump();
  return "";
}

}  // namespace

TEST(HttpAddr, EveryRange) {
  struct Case {
    const char *ip;
    AddrClass c;
  } cases[] = {
      {"0.0.0.0", AddrClass::kUnspecified},
      {"0.1.2.3", AddrClass::kUnspecified},
      {"127.0.0.1", AddrClass::kLoopback},
      {"127.255.255.254", AddrClass::kLoopback},
      {"10.0.0.1", AddrClass::kPrivate},
      {"10.255.255.255", AddrClass::kPrivate},
      {"172.16.0.1", AddrClass::kPrivate},
      {"172.31.255.255", AddrClass::kPrivate},
      {"172.32.0.1", AddrClass::kPublic},
      {"172.15.255.255", AddrClass::kPublic},
      {"192.168.1.1", AddrClass::kPrivate},
      {"169.254.169.254", AddrClass::kLinkLocal},
      {"169.254.0.1", AddrClass::kLinkLocal},
      {"100.64.0.1", AddrClass::kCgnat},
      {"100.127.255.255", AddrClass::kCgnat},
      {"100.128.0.1", AddrClass::kPublic},
      {"100.63.255.255", AddrClass::kPublic},
      {"224.0.0.1", AddrClass::kMulticast},
      {"239.255.255.250", AddrClass::kMulticast},
      {"240.0.0.1", AddrClass::kReserved},
      {"255.255.255.255", AddrClass::kReserved},
      {"192.0.0.8", AddrClass::kReserved},
      {"192.0.2.1", AddrClass::kReserved},
      {"198.51.100.7", AddrClass::kReserved},
      {"203.0.113.9", AddrClass::kReserved},
      {"198.18.0.1", AddrClass::kReserved},
      {"198.19.255.255", AddrClass::kReserved},
      {"192.88.99.1", AddrClass::kReserved},
      {"8.8.8.8", AddrClass::kPublic},
      {"1.1.1.1", AddrClass::kPublic},
      {"::", AddrClass::kUnspecified},
      {"::1", AddrClass::kLoopback},
      {"::ffff:127.0.0.1", AddrClass::kMapped},
      {"::ffff:8.8.8.8", AddrClass::kMapped},
      {"::ffff:169.254.169.254", AddrClass::kMapped},
      {"::127.0.0.1", AddrClass::kMapped},
      {"fc00::1", AddrClass::kUniqueLocal},
      {"fd12:3456::1", AddrClass::kUniqueLocal},
      {"fec0::1", AddrClass::kUniqueLocal},
      {"fe80::1", AddrClass::kLinkLocal},
      {"febf::1", AddrClass::kLinkLocal},
      {"ff02::1", AddrClass::kMulticast},
      {"2001:db8::1", AddrClass::kReserved},
      {"2001:0:4136:e378::1", AddrClass::kReserved},
      {"100::1", AddrClass::kReserved},
      {"64:ff9b::a9fe:a9fe", AddrClass::kLinkLocal},  // NAT64 of 169.254.169.254
      {"64:ff9b::7f00:1", AddrClass::kLoopback},
      {"64:ff9b::808:808", AddrClass::kPublic},
      {"64:ff9b:1::a00:1", AddrClass::kPrivate},
      {"64:ff9b:1::808:808", AddrClass::kReserved},
      {"2002:a00:1::1", AddrClass::kPrivate},  // 6to4 of 10.0.0.1
      {"2002:808:808::1", AddrClass::kPublic},
      {"2606:4700:4700::1111", AddrClass::kPublic},
      {"2a00:1450::1", AddrClass::kPublic},
      {"4000::1", AddrClass::kReserved},
      {"not an address", AddrClass::kReserved},
  };
  for (const auto &c : cases) EXPECT_EQ(c.c, classify(std::string(c.ip))) << c.ip;
}

TEST(HttpAddr, SockaddrAndPolicy) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
  EXPECT_EQ(AddrClass::kLoopback, classify(reinterpret_cast<sockaddr *>(&in)));
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "fd00::5", &in6.sin6_addr);
  EXPECT_EQ(AddrClass::kUniqueLocal, classify(reinterpret_cast<sockaddr *>(&in6)));
  sockaddr un{};
  un.sa_family = AF_UNIX;
  EXPECT_EQ(AddrClass::kReserved, classify(&un));
  EXPECT_TRUE(addr_allowed(AddrClass::kPublic, false));
  for (AddrClass c :
       {AddrClass::kUnspecified, AddrClass::kLoopback, AddrClass::kPrivate, AddrClass::kLinkLocal,
        AddrClass::kCgnat, AddrClass::kUniqueLocal, AddrClass::kReserved, AddrClass::kMapped}) {
    EXPECT_FALSE(addr_allowed(c, false)) << addr_class_name(c);
    EXPECT_TRUE(addr_allowed(c, true)) << addr_class_name(c);
  }
  EXPECT_FALSE(addr_allowed(AddrClass::kMulticast, true));
}

// The vector published with the Standard Webhooks reference libraries.
TEST(HttpSign, StandardWebhooksVector) {
  Signer s({decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret")});
  EXPECT_EQ("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, R"({"test": 2432232314})"));
  // Without the prefix the secret is the same key.
  Signer bare({decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret")});
  EXPECT_EQ(s.sign("a", 1, "b"), bare.sign("a", 1, "b"));
}

TEST(HttpSign, RotationSignsWithEveryKey) {
  std::string k1 = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "s");
  std::string k2 = decode_secret("whsec_" + base64("0123456789abcdef0123456789abcdef"), "s");
  Signer both({k1, k2});
  Signer one({k1}), two({k2});
  std::string sig = both.sign("id", 5, "{}");
  EXPECT_EQ(one.sign("id", 5, "{}") + " " + two.sign("id", 5, "{}"), sig);
  EXPECT_NE(one.sign("id", 5, "{}"), one.sign("id", 6, "{}"));
}

TEST(HttpSign, BadSecretsNeverQuoted) {
  for (const char *bad : {"whsec_", "whsec_!!!notbase64!!!", "whsec_c2hvcnQ="}) {
    try {
      decode_secret(bad, "\"secrets\"[0]");
      ADD_FAILURE() << bad;
    } catch (const wf::Error &e) {
      EXPECT_EQ(WF_EINVAL, e.code());
      std::string m = e.what();
      EXPECT_NE(std::string::npos, m.find("\"secrets\"[0]")) << m;
      if (std::strlen(bad) > 6) {
        EXPECT_EQ(std::string::npos, m.find(bad + 6)) << m;
      }
    }
  }
}

TEST(HttpConfig, Defaults) {
  Config c = parse({{"type", "http"}, {"url", "https://example.com/hook"}});
  EXPECT_EQ("POST", c.method);
  EXPECT_EQ(30000, c.timeout_ms);
  EXPECT_FALSE(c.allow_private_networks);
  EXPECT_EQ(65536u, c.max_body_bytes);
  EXPECT_TRUE(c.secret_keys.empty());
  EXPECT_FALSE(c.uses_payload);
}

TEST(HttpConfig, EveryKeyAndPolicyKeys) {
  json doc = {{"type", "http"},
              {"url", "https://example.com/t/{tenant}/{payload.order.id}?k={key}"},
              {"method", "PUT"},
              {"headers", {{"Authorization", "Bearer x"}, {"X-A", "b"}}},
              {"timeout_ms", 5000},
              {"connect_timeout_ms", 700},
              {"secrets", {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "env:WH2", "file:/s"}},
              {"allow_private_networks", true},
              {"ca_file", "/etc/ssl/ca.pem"},
              {"result_headers", {"X-Request-Id", "etag"}},
              {"max_body_bytes", 100},
              {"max_retry_after_ms", 60000},
              {"user_agent", "me/1"},
              {"max_attempts", 3},
              {"backoff", {{"base_ms", 10}}},
              {"concurrency", 8},
              {"tenant_concurrency", 2},
              {"circuit", json::object()},
              {"max_interruptions", 2},
              {"abandon_after_ms", 1000}};
  Config c = parse_config(doc, fake_secrets({{"WH2", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"}},
                                            {{"/s", "  MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw  \n"}}));
  EXPECT_EQ("PUT", c.method);
  ASSERT_EQ(2u, c.headers.size());
  EXPECT_EQ(5000, c.timeout_ms);
  EXPECT_EQ(700, c.connect_timeout_ms);
  EXPECT_EQ(3u, c.secret_keys.size());
  EXPECT_EQ(c.secret_keys[0], c.secret_keys[2]);
  EXPECT_TRUE(c.allow_private_networks);
  EXPECT_EQ("/etc/ssl/ca.pem", c.ca_file);
  EXPECT_EQ((std::vector<std::string>{"x-request-id", "etag"}), c.result_headers);
  EXPECT_EQ(100u, c.max_body_bytes);
  EXPECT_EQ(60000, c.max_retry_after_ms);
  EXPECT_TRUE(c.uses_payload);
}

TEST(HttpConfig, ErrorsNameTheKey) {
  json base = {{"type", "http"}, {"url", "https://example.com/"}};
  auto with = [&](const char *k, json v) {
    json d = base;
    d[k] = std::move(v);
    return d;
  };
  EXPECT_NE(std::string::npos, parse_error(with("bogus", 1)).find("unknown key \"bogus\""));
  EXPECT_NE(std::string::npos, parse_error({{"type", "http"}}).find("\"url\""));
  EXPECT_NE(std::string::npos, parse_error(with("url", "ftp://x/")).find("\"url\""));
  EXPECT_NE(std::string::npos, parse_error(with("url", "file:///etc/passwd")).find("\"url\""));
  EXPECT_NE(std::string::npos, parse_error(with("url", "https:///x")).find("no host"));
  EXPECT_NE(std::string::npos, parse_error(with("url", "https://x/{nope}")).find("{nope}"));
  EXPECT_NE(std::string::npos, parse_error(with("url", "https://x/{tenant")).find("'{'"));
  EXPECT_NE(std::string::npos, parse_error(with("url", "https://x/a b")).find("\"url\""));
  EXPECT_NE(std::string::npos, parse_error(with("url", "https://x/{payload.}")).find("payload"));
  EXPECT_NE(std::string::npos, parse_error(with("method", "TRACE")).find("\"method\""));
  EXPECT_NE(std::string::npos, parse_error(with("headers", {{"Bad Name", "x"}})).find("headers"));
  EXPECT_NE(std::string::npos, parse_error(with("headers", {{"X", "a\r\nB: c"}})).find("\"X\""));
  EXPECT_NE(std::string::npos,
            parse_error(with("headers", {{"Webhook-Signature", "x"}})).find("set by the provider"));
  EXPECT_NE(std::string::npos, parse_error(with("headers", {{"X", 1}})).find("\"X\""));
  EXPECT_NE(std::string::npos, parse_error(with("timeout_ms", -1)).find("timeout_ms"));
  EXPECT_NE(std::string::npos, parse_error(with("max_body_bytes", 1 << 21)).find("max_body_bytes"));
  EXPECT_NE(std::string::npos,
            parse_error(with("allow_private_networks", "yes")).find("allow_private_networks"));
  EXPECT_NE(std::string::npos, parse_error(with("ca_file", "")).find("ca_file"));
  EXPECT_NE(std::string::npos, parse_error(with("result_headers", {"a b"})).find("result_headers"));
  EXPECT_NE(std::string::npos, parse_error(with("secrets", json::array())).find("secrets"));
  EXPECT_NE(std::string::npos, parse_error(with("secrets", {"hunter2"})).find("\"secrets\"[0]"));
  EXPECT_NE(std::string::npos, parse_error(with("secrets", {"env:NOPE"})).find("NOPE"));
  EXPECT_NE(std::string::npos, parse_error(with("secrets", {"file:/nope"})).find("/nope"));
  // A secret from the environment that is not a valid secret: named, not quoted.
  std::string m = parse_error(with("secrets", {"env:BAD"}),
                              fake_secrets({{"BAD", "whsec_sup3r-s3cret-value!"}}, {}));
  EXPECT_NE(std::string::npos, m.find("env:BAD")) << m;
  EXPECT_EQ(std::string::npos, m.find("sup3r")) << m;
}

TEST(HttpTemplate, FillsAndEncodes) {
  Config c = parse({{"type", "http"},
                    {"url",
                     "https://example.com/{tenant}/o/{payload.order.id}?k={key}&n="
                     "{payload.n}&b={payload.ok}&i={id}"}});
  json p = {{"order", {{"id", "a/b c?&=#"}}}, {"n", 42}, {"ok", true}};
  EXPECT_EQ("https://example.com/acme%20co/o/a%2Fb%20c%3F%26%3D%23?k=k%C3%A9y&n=42&b=true&i=7",
            expand_url(c, "7", "acme co", "k\xc3\xa9y", &p));
  json missing = {{"order", json::object()}, {"n", 1}, {"ok", true}};
  EXPECT_THROW(expand_url(c, "7", "t", "k", &missing), std::runtime_error);
  json obj = {{"order", {{"id", json::object()}}}, {"n", 1}, {"ok", true}};
  EXPECT_THROW(expand_url(c, "7", "t", "k", &obj), std::runtime_error);
  EXPECT_EQ("-._~%2F%40", url_encode("-._~/@"));
}

TEST(HttpResponse, Classification) {
  for (long s : {200L, 201L, 204L, 299L}) EXPECT_EQ(Verdict::kComplete, classify_status(s)) << s;
  for (long s : {408L, 425L, 429L, 500L, 502L, 503L, 504L, 599L})
    EXPECT_EQ(Verdict::kRetry, classify_status(s)) << s;
  for (long s : {0L, 100L, 301L, 302L, 304L, 307L, 400L, 401L, 403L, 404L, 409L, 410L, 422L, 600L})
    EXPECT_EQ(Verdict::kFail, classify_status(s)) << s;
}

TEST(HttpResponse, RetryAfter) {
  int64_t now = INT64_C(1445412480000);  // Wed, 21 Oct 2015 07:28:00 GMT
  EXPECT_EQ(120000, retry_after_ms("120", now, 86400000));
  EXPECT_EQ(0, retry_after_ms(" 0 ", now, 86400000));
  EXPECT_EQ(86400000, retry_after_ms("99999999999999999", now, 86400000));
  EXPECT_EQ(60000, retry_after_ms("120", now, 60000));
  EXPECT_EQ(30000, retry_after_ms("Wed, 21 Oct 2015 07:28:30 GMT", now, 86400000));
  EXPECT_EQ(0, retry_after_ms("Wed, 21 Oct 2015 07:27:00 GMT", now, 86400000));  // past
  EXPECT_EQ(-1, retry_after_ms("", now, 86400000));
  EXPECT_EQ(-1, retry_after_ms("soon", now, 86400000));
  EXPECT_EQ(-1, retry_after_ms("-5", now, 86400000));
  // A date in a far-off year (fuzz/http found this one overflowing seconds * 1000):
  // whatever curl_getdate makes of it, the delay stays within [0, cap] or is -1.
  int64_t far = retry_after_ms("Wed, 21 Oct 2012015007:)6:00 GMT5007:)6:00 GMT", now, 86400000);
  EXPECT_TRUE(far == -1 || (far >= 0 && far <= 86400000)) << far;
  EXPECT_EQ(86400000, retry_after_ms("Wed, 21 Oct 9999 07:28:30 GMT", now, 86400000));
}

TEST(HttpResponse, HeadersAndResult) {
  std::vector<std::string> keep = {"x-id", "content-type", "retry-after"};
  HeaderList h;
  collect_header("HTTP/1.1 100 Continue", keep, h);
  collect_header("X-Id: old", keep, h);
  collect_header("HTTP/1.1 200 OK", keep, h);  // a new response: forget the 1xx's headers
  collect_header("X-Id:  abc ", keep, h);
  collect_header("x-id: def", keep, h);
  collect_header("Content-Type: application/json; charset=utf-8", keep, h);
  collect_header("Set-Cookie: secret", keep, h);
  collect_header("garbage", keep, h);
  ASSERT_NE(nullptr, find_header(h, "x-id"));
  EXPECT_EQ("abc, def", *find_header(h, "x-id"));
  EXPECT_EQ(nullptr, find_header(h, "set-cookie"));
  json r = make_result(200, h, {"x-id", "etag"}, R"({"ok":true})", false);
  EXPECT_EQ(json::parse(R"({"status":200,"headers":{"x-id":"abc, def"},"body":{"ok":true}})"), r);
  json t = make_result(201, h, {}, R"({"ok":tr)", true);
  EXPECT_EQ("{\"ok\":tr", t["body"]);
  EXPECT_EQ(true, t["body_truncated"]);
  HeaderList text;
  collect_header("Content-Type: text/plain", keep, text);
  json b = make_result(204, text, {}, "a\xff", false);
  EXPECT_EQ("a\xef\xbf\xbd", b["body"]);
  EXPECT_FALSE(b.contains("body_truncated"));
  EXPECT_TRUE(header_value_ok("00-abc-01"));
  EXPECT_FALSE(header_value_ok("a\nb"));
  EXPECT_FALSE(header_value_ok(std::string(10, 'a'), 5));
}
