// util: parse_json limits (duplicate keys at any depth, nesting depth at and
// over the limit, document size, string length), strictness (invalid UTF-8,
// lone surrogates, NUL bytes, huge numbers, malformed text), and RFC 3339
// time parsing, good and bad.
#include "util.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

using wf::json;

// Runs parse_json and returns the error code (WF_OK when accepted); the
// message goes to *msg.
int parse_code(const std::string &text, const wf::Limits &lim = wf::Limits{},
               size_t max_bytes = 1 << 22, std::string *msg = nullptr, json *out = nullptr) {
  try {
    json j = wf::parse_json(text, lim, "doc", max_bytes);
    if (out) *out = std::move(j);
    return WF_OK;
  } catch (const wf::Error &e) {
    if (msg) *msg = e.what();
    return e.code();
  }
}

std::string nested_arrays(int depth) {
  return std::string(static_cast<size_t>(depth), '[') +
         std::string(static_cast<size_t>(depth), ']');
}

// {"a":{"a":...{"a":1}...}} with `depth` objects.
std::string nested_objects(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "{\"a\":";
  s += "1";
  s += std::string(static_cast<size_t>(depth), '}');
  return s;
}

// ------------------------------------------------------------- basic parse

TEST(UtilParseJson, BuildsTheSameValueAsNlohmann) {
  const std::string text =
      R"({"s":"x\ny","i":-42,"u":18446744073709551615,"f":1.5,"b":true,"n":null,)"
      R"("a":[1,[2,{"k":[]}],{}],"o":{"p":{"q":"r"}},"e":"","z":0})";
  json got;
  ASSERT_EQ(parse_code(text, wf::Limits{}, 1 << 22, nullptr, &got), WF_OK);
  EXPECT_EQ(got, json::parse(text));
  EXPECT_TRUE(got["i"].is_number_integer());
  EXPECT_TRUE(got["u"].is_number_unsigned());
  EXPECT_TRUE(got["f"].is_number_float());
}

TEST(UtilParseJson, AcceptsScalarsAtTopLevel) {
  for (const char *t : {"1", "\"x\"", "null", "true", "[]", "{}", " 0 "})
    EXPECT_EQ(parse_code(t), WF_OK) << t;
}

TEST(UtilParseJson, RejectsMalformedText) {
  for (const char *t :
       {"", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1] [2]", "// c\n{}",
        "/* c */{}", "'x'", "01", "1.", ".5", "NaN", "Infinity", "{\"a\":1}}", "tru"}) {
    std::string msg;
    EXPECT_EQ(parse_code(t, wf::Limits{}, 1 << 22, &msg), WF_EINVAL) << t;
    EXPECT_NE(msg.find("doc: malformed JSON"), std::string::npos) << msg;
  }
}

// ------------------------------------------------------------ duplicate keys

TEST(UtilParseJson, RejectsDuplicateKeyAtTopLevel) {
  std::string msg;
  EXPECT_EQ(parse_code(R"({"effect":"x","effect":"y"})", wf::Limits{}, 1 << 22, &msg), WF_EINVAL);
  EXPECT_EQ(msg, "doc: duplicate key \"effect\"");
  // Same value twice is still a duplicate.
  EXPECT_EQ(parse_code(R"({"a":1,"b":2,"a":1})"), WF_EINVAL);
}

TEST(UtilParseJson, RejectsDuplicateKeyNested) {
  std::string msg;
  EXPECT_EQ(parse_code(R"({"x":{"y":[1,{"a":1,"b":{},"a":3}]}})", wf::Limits{}, 1 << 22, &msg),
            WF_EINVAL);
  EXPECT_EQ(msg, "doc: duplicate key \"a\"");
  EXPECT_EQ(parse_code(R"([[[{"k":1,"k":{}}]]])"), WF_EINVAL);
  // The duplicate comes after a nested object that closed.
  EXPECT_EQ(parse_code(R"({"a":{"b":{"c":1}},"d":2,"a":3})"), WF_EINVAL);
}

TEST(UtilParseJson, DuplicateKeysCompareDecoded) {
  // "\u0061" is "a": the same key spelled two ways.
  EXPECT_EQ(parse_code(R"({"a":1,"\u0061":2})"), WF_EINVAL);
  EXPECT_EQ(parse_code(R"({"":1,"":2})"), WF_EINVAL);
  // Keys differing only in case or by a NUL are different keys.
  EXPECT_EQ(parse_code(R"({"a":1,"A":2,"a\u0000":3})"), WF_OK);
}

TEST(UtilParseJson, SameKeyInSiblingObjectsIsFine) {
  json got;
  ASSERT_EQ(
      parse_code(R"([{"a":1},{"a":2},{"a":{"a":{"a":3}}}])", wf::Limits{}, 1 << 22, nullptr, &got),
      WF_OK);
  EXPECT_EQ(got[2]["a"]["a"]["a"], 3);
  EXPECT_EQ(parse_code(R"({"a":{"b":1},"b":{"b":2},"c":[{"b":3},{"b":4}]})"), WF_OK);
}

TEST(UtilParseJson, DuplicateKeyMessageIsBounded) {
  std::string key(5000, 'k');
  std::string msg;
  EXPECT_EQ(parse_code("{\"" + key + "\":1,\"" + key + "\":2}", wf::Limits{}, 1 << 22, &msg),
            WF_EINVAL);
  EXPECT_LT(msg.size(), 200u);
  EXPECT_NE(msg.find("duplicate key \"kkkk"), std::string::npos);
  // Cut on a UTF-8 boundary: the message stays valid UTF-8.
  std::string wide;
  for (int i = 0; i < 60; ++i) wide += "\xc3\xa9";  // e-acute, 2 bytes
  wide = "x" + wide;                                // odd offset: byte 100 is mid-character
  ASSERT_EQ(parse_code("{\"" + wide + "\":1,\"" + wide + "\":2}", wf::Limits{}, 1 << 22, &msg),
            WF_EINVAL);
  EXPECT_NO_THROW((void)json(msg).dump());
}

// --------------------------------------------------------------- depth limit

TEST(UtilParseJson, DepthExactlyAtTheLimitIsAccepted) {
  wf::Limits lim;  // max_depth 64
  EXPECT_EQ(parse_code(nested_arrays(64), lim), WF_OK);
  EXPECT_EQ(parse_code(nested_objects(64), lim), WF_OK);
  lim.max_depth = 2;
  EXPECT_EQ(parse_code(R"({"a":[1,2]})", lim), WF_OK);
  EXPECT_EQ(parse_code(R"([{"a":1},[]])", lim), WF_OK);
}

TEST(UtilParseJson, DepthOneOverTheLimitIsTooBig) {
  wf::Limits lim;
  std::string msg;
  EXPECT_EQ(parse_code(nested_arrays(65), lim, 1 << 22, &msg), WF_ETOOBIG);
  EXPECT_EQ(msg, "doc: nesting deeper than the limit of 64");
  EXPECT_EQ(parse_code(nested_objects(65), lim), WF_ETOOBIG);
  lim.max_depth = 2;
  EXPECT_EQ(parse_code(R"({"a":[[1]]})", lim), WF_ETOOBIG);
  EXPECT_EQ(parse_code(R"([{"a":{}}])", lim), WF_ETOOBIG);
  // Scalars do not count as a level.
  EXPECT_EQ(parse_code(R"([{"a":"[[[[["}])", lim), WF_OK);
}

TEST(UtilParseJson, VeryDeepInputFailsFast) {
  // Far deeper than any limit, unbalanced: rejected at the limit, never built.
  std::string text(1 << 20, '[');
  EXPECT_EQ(parse_code(text), WF_ETOOBIG);
}

// ---------------------------------------------------------------- size limit

TEST(UtilParseJson, SizeLimitIsInclusive) {
  std::string text = "\"" + std::string(98, 'a') + "\"";  // 100 bytes
  ASSERT_EQ(text.size(), 100u);
  EXPECT_EQ(parse_code(text, wf::Limits{}, 100), WF_OK);
  std::string msg;
  EXPECT_EQ(parse_code(text, wf::Limits{}, 99, &msg), WF_ETOOBIG);
  EXPECT_EQ(msg, "doc: document is 100 bytes, over the limit of 99");
}

TEST(UtilParseJson, StringLengthLimit) {
  // The limit is max(max_payload_bytes, 64 KiB), for values and keys alike.
  wf::Limits lim;
  lim.max_payload_bytes = 16;
  std::string at(65536, 's'), over(65537, 's');
  EXPECT_EQ(parse_code("[\"" + at + "\"]", lim), WF_OK);
  EXPECT_EQ(parse_code("{\"" + at + "\":1}", lim), WF_OK);
  std::string msg;
  EXPECT_EQ(parse_code("[\"" + over + "\"]", lim, 1 << 22, &msg), WF_ETOOBIG);
  EXPECT_EQ(msg, "doc: a string of 65537 bytes is over the limit of 65536");
  EXPECT_EQ(parse_code("{\"" + over + "\":1}", lim), WF_ETOOBIG);
  lim.max_payload_bytes = 100000;
  EXPECT_EQ(parse_code("[\"" + std::string(100000, 'x') + "\"]", lim), WF_OK);
  EXPECT_EQ(parse_code("[\"" + std::string(100001, 'x') + "\"]", lim), WF_ETOOBIG);
  // Length is counted after unescaping: 6-byte escapes make 1-byte characters.
  std::string esc;
  for (int i = 0; i < 100000; ++i) esc += "\\u0041";
  EXPECT_EQ(parse_code("\"" + esc + "\"", lim), WF_OK);
}

// ------------------------------------------------- encoding and odd content

TEST(UtilParseJson, RejectsInvalidUtf8) {
  const std::vector<std::string> bad = {
      "\"\xc3\x28\"",          // bad continuation byte
      "\"\xc0\xaf\"",          // overlong '/'
      "\"\xed\xa0\x80\"",      // UTF-8 encoded surrogate
      "\"\xf4\x90\x80\x80\"",  // over U+10FFFF
      "\"\xff\"",              // never valid
      "\"\xe2\x82\"",          // truncated sequence
      "[\"ok\"]\xff",          // outside a string
      "{\"\xc3\x28\":1}",      // in a key
  };
  for (const auto &t : bad) EXPECT_EQ(parse_code(t), WF_EINVAL) << json(t).dump(-1, ' ', true);
  json got;
  ASSERT_EQ(
      parse_code("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", wf::Limits{}, 1 << 22, nullptr, &got),
      WF_OK);
  EXPECT_EQ(got.get<std::string>(), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
}

TEST(UtilParseJson, RejectsLoneSurrogates) {
  for (const char *t : {R"("\ud800")", R"("\udbff x")", R"("\udc00")", R"("\ud800\u0041")",
                        R"("\ud800\ud800")", R"({"\udfff":1})"})
    EXPECT_EQ(parse_code(t), WF_EINVAL) << t;
  json got;
  ASSERT_EQ(parse_code(R"("\ud83d\ude00")", wf::Limits{}, 1 << 22, nullptr, &got), WF_OK);
  EXPECT_EQ(got.get<std::string>(), "\xf0\x9f\x98\x80");
}

TEST(UtilParseJson, NulBytes) {
  // A raw NUL (or any raw control character) in a string is invalid JSON.
  EXPECT_EQ(parse_code(std::string("\"a\0b\"", 5)), WF_EINVAL);
  EXPECT_EQ(parse_code(std::string("\"a\nb\"", 5)), WF_EINVAL);
  // So is a NUL outside strings, including after a complete document (the
  // underlying lexer would take it for the end of input).
  std::string msg;
  EXPECT_EQ(parse_code(std::string("{}\0", 3), wf::Limits{}, 1 << 22, &msg), WF_EINVAL);
  EXPECT_EQ(msg, "doc: malformed JSON: NUL byte at offset 2");
  EXPECT_EQ(parse_code(std::string("{\"a\":1}\0{\"a\":2}", 15)), WF_EINVAL);
  EXPECT_EQ(parse_code(std::string("[1,\0 2]", 7)), WF_EINVAL);
  // The escape \u0000 is valid JSON: the string holds a NUL and re-encodes
  // with the escape, so stored documents keep it intact.
  json got;
  ASSERT_EQ(parse_code(R"({"k\u0000":"a\u0000b"})", wf::Limits{}, 1 << 22, nullptr, &got), WF_OK);
  EXPECT_EQ(got["k" + std::string(1, '\0')].get<std::string>(), std::string("a\0b", 3));
  EXPECT_EQ(got.dump(), R"({"k\u0000":"a\u0000b"})");
}

TEST(UtilParseJson, HugeNumbers) {
  json got;
  // Out of double range: rejected, never infinity.
  for (const char *t : {"1e999999", "-1e999999", "[1e309]", "{\"n\":-2e308}"})
    EXPECT_EQ(parse_code(t), WF_EINVAL) << t;
  std::string digits = "1" + std::string(400, '0');
  EXPECT_EQ(parse_code(digits), WF_EINVAL);
  // Integer edges keep their exact type and value.
  ASSERT_EQ(parse_code("[-9223372036854775808,18446744073709551615]", wf::Limits{}, 1 << 22,
                       nullptr, &got),
            WF_OK);
  EXPECT_EQ(got[0].get<int64_t>(), INT64_MIN);
  EXPECT_EQ(got[1].get<uint64_t>(), UINT64_MAX);
  // One past: a (finite) double.
  ASSERT_EQ(parse_code("[18446744073709551616,-9223372036854775809]", wf::Limits{}, 1 << 22,
                       nullptr, &got),
            WF_OK);
  EXPECT_TRUE(got[0].is_number_float());
  EXPECT_TRUE(got[1].is_number_float());
  ASSERT_EQ(parse_code("[1e308,4.9e-324,1e-999999]", wf::Limits{}, 1 << 22, nullptr, &got), WF_OK);
  EXPECT_EQ(got[2].get<double>(), 0.0);  // underflow rounds to zero
}

// ---------------------------------------------------------------- RFC 3339

TEST(UtilRfc3339, ParsesGoodTimes) {
  struct Case {
    const char *text;
    int64_t ms;
  };
  const std::vector<Case> cases = {
      {"1970-01-01T00:00:00Z", 0},
      {"2026-11-23T10:00:00Z", INT64_C(1795428000000)},
      {"2026-11-23T10:00:00z", INT64_C(1795428000000)},
      {"2026-11-23t10:00:00Z", INT64_C(1795428000000)},
      {"2026-11-23 10:00:00Z", INT64_C(1795428000000)},
      {"2026-11-23T10:00:00+00:00", INT64_C(1795428000000)},
      {"2026-11-23T10:00:00-00:00", INT64_C(1795428000000)},
      {"2026-11-23T10:00:00+02:00", INT64_C(1795420800000)},
      {"2026-11-23T10:00:00-05:30", INT64_C(1795447800000)},
      {"2026-11-23T10:00:00.5+02:00", INT64_C(1795420800500)},
      {"2026-11-23T10:00:00.05Z", INT64_C(1795428000050)},
      {"2026-11-23T10:00:00.123Z", INT64_C(1795428000123)},
      {"2026-11-23T10:00:00.123999999Z", INT64_C(1795428000123)},  // truncated to ms
      {"2000-02-29T23:59:59Z", INT64_C(951868799000)},
      {"1969-12-31T23:59:59Z", -1000},
  };
  for (const auto &c : cases) {
    int64_t got = 0;
    EXPECT_NO_THROW(got = wf::parse_rfc3339(c.text)) << c.text;
    EXPECT_EQ(got, c.ms) << c.text;
  }
}

TEST(UtilRfc3339, RejectsBadTimes) {
  for (const char *t : {
           "",
           "2026-11-23",
           "2026-11-23T10:00:00",         // no offset
           "2026-11-23T10:00Z",           // no seconds
           "2026-11-23X10:00:00Z",        // bad separator
           "2026/11/23T10:00:00Z",        // bad date separator
           "2026-13-01T00:00:00Z",        // month
           "2026-00-01T00:00:00Z",        // month
           "2026-11-00T00:00:00Z",        // day
           "2026-11-32T00:00:00Z",        // day
           "2026-11-23T24:00:00Z",        // hour
           "2026-11-23T10:60:00Z",        // minute
           "2026-11-23T10:00:61Z",        // second
           "2026-11-23T10:00:00.Z",       // empty fraction
           "2026-11-23T10:00:00+2:00",    // short offset
           "2026-11-23T10:00:00+0200",    // offset without colon
           "2026-11-23T10:00:00+24:00",   // offset hour
           "2026-11-23T10:00:00+02:60",   // offset minute
           "2026-11-23T10:00:00+02",      // truncated offset
           "2026-11-23T10:00:00Zjunk",    // trailing
           "2026-11-23T10:00:00+02:00 ",  // trailing space
           "2026-1-23T10:00:00Z",         // one-digit month
           "20261123T100000Z",            // basic format
       }) {
    try {
      wf::parse_rfc3339(t);
      ADD_FAILURE() << "accepted " << t;
    } catch (const wf::Error &e) {
      EXPECT_EQ(e.code(), WF_EINVAL) << t;
      EXPECT_NE(std::string(e.what()).find("time \""), std::string::npos) << e.what();
    }
  }
}

TEST(UtilRfc3339, FormatRoundTrips) {
  for (int64_t ms :
       {INT64_C(0), INT64_C(1795428000123), INT64_C(951868799000), INT64_C(253402300799999)}) {
    std::string s = wf::format_rfc3339(ms);
    EXPECT_EQ(wf::parse_rfc3339(s), ms) << s;
  }
  EXPECT_EQ(wf::format_rfc3339(INT64_C(1795428000050)), "2026-11-23T10:00:00.050Z");
}

// ------------------------------------------------------- typed field access

int get_int_code(const char *text, int64_t lo, int64_t hi, int64_t *out = nullptr) {
  json doc = json::parse(text);
  try {
    int64_t v = wf::get_int(doc, "n", "doc", 7, lo, hi);
    if (out) *out = v;
    return WF_OK;
  } catch (const wf::Error &e) {
    return e.code();
  }
}

TEST(UtilGetInt, AcceptsWholeNumbersInRange) {
  int64_t v = 0;
  EXPECT_EQ(get_int_code(R"({"n":5})", 0, 10, &v), WF_OK);
  EXPECT_EQ(v, 5);
  EXPECT_EQ(get_int_code(R"({"n":5.0})", 0, 10, &v), WF_OK);
  EXPECT_EQ(v, 5);
  EXPECT_EQ(get_int_code(R"({"n":-1e3})", -1000, 0, &v), WF_OK);
  EXPECT_EQ(v, -1000);
  EXPECT_EQ(get_int_code(R"({"n":null})", 0, 10, &v), WF_OK);
  EXPECT_EQ(v, 7);
  EXPECT_EQ(get_int_code(R"({"n":9223372036854775807})", 0, INT64_MAX, &v), WF_OK);
  EXPECT_EQ(v, INT64_MAX);
  EXPECT_EQ(get_int_code(R"({"n":-9223372036854775808})", INT64_MIN, 0, &v), WF_OK);
  EXPECT_EQ(v, INT64_MIN);
  EXPECT_EQ(get_int_code(R"({"n":-9.223372036854775808e18})", INT64_MIN, 0, &v), WF_OK);
  EXPECT_EQ(v, INT64_MIN);
}

TEST(UtilGetInt, RejectsWhatDoesNotFit) {
  // Regression (fuzzing, UBSan float-cast-overflow): a float beyond int64 was
  // converted before the range check, e.g. {"effect":"x","priority":1e30}.
  for (const char *t : {R"({"n":1e30})", R"({"n":-1e30})", R"({"n":9.223372036854775808e18})",
                        R"({"n":1.8446744073709552e19})", R"({"n":1e308})"})
    EXPECT_EQ(get_int_code(t, INT64_MIN, INT64_MAX), WF_EINVAL) << t;
  // Unsigned values above INT64_MAX used to wrap to negative numbers that
  // passed the range check (18446744073709551615 read as -1).
  EXPECT_EQ(get_int_code(R"({"n":18446744073709551615})", -10, 10), WF_EINVAL);
  EXPECT_EQ(get_int_code(R"({"n":9223372036854775808})", INT64_MIN, INT64_MAX), WF_EINVAL);
  EXPECT_EQ(get_int_code(R"({"n":1.5})", 0, 10), WF_EINVAL);
  EXPECT_EQ(get_int_code(R"({"n":11})", 0, 10), WF_EINVAL);
  EXPECT_EQ(get_int_code(R"({"n":"5"})", 0, 10), WF_EINVAL);
  EXPECT_EQ(get_int_code(R"({"n":true})", 0, 10), WF_EINVAL);
}

TEST(UtilGetTime, AcceptsMillisecondsOrRfc3339) {
  json doc = json::parse(R"({"a":1000,"b":"1970-01-01T00:00:02Z","c":null,"d":"x","e":1.5})");
  EXPECT_EQ(wf::get_time(doc, "a", "doc", 7), 1000);
  EXPECT_EQ(wf::get_time(doc, "b", "doc", 7), 2000);
  EXPECT_EQ(wf::get_time(doc, "c", "doc", 7), 7);
  EXPECT_EQ(wf::get_time(doc, "missing", "doc", 7), 7);
  EXPECT_THROW(wf::get_time(doc, "d", "doc", 7), wf::Error);
  EXPECT_THROW(wf::get_time(doc, "e", "doc", 7), wf::Error);
  // Above INT64_MAX: refused, not wrapped to a time before 1970.
  json big = json::parse(R"({"t":18446744073709551615})");
  EXPECT_THROW(wf::get_time(big, "t", "doc", 7), wf::Error);
}

}  // namespace
