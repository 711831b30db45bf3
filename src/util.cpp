#include "util.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <vector>

namespace wf {

namespace {
thread_local std::string g_last_error;
}

void set_last_error(std::string msg) { g_last_error = std::move(msg); }
const char *last_error() { return g_last_error.c_str(); }

namespace {

// Longest string (value or key) any document may hold: the largest field is a
// payload (max_payload_bytes) or metadata (64 KiB); ids are shorter still.
constexpr size_t kMinStringLimit = 65536;

// Key for an error message: at most 100 bytes, cut on a UTF-8 boundary.
std::string key_for_message(const std::string &k) {
  if (k.size() <= 100) return k;
  size_t n = 100;
  while (n > 0 && (static_cast<unsigned char>(k[n]) & 0xC0) == 0x80) --n;
  return k.substr(0, n) + "...";
}

// SAX handler building the DOM like json::parse, enforcing the limits while
// it reads: nesting depth, string length, and no duplicate keys in an object.
// The first violation stops the parse; parse_json turns it into an Error.
class LimitedBuilder {
 public:
  LimitedBuilder(json &root, const Limits &lim)
      : root_(root),
        max_depth_(lim.max_depth < 0 ? 0 : static_cast<size_t>(lim.max_depth)),
        max_string_(std::max(lim.max_payload_bytes, kMinStringLimit)) {}

  bool null() { return put(json(nullptr)) != nullptr; }
  bool boolean(bool v) { return put(json(v)) != nullptr; }
  bool number_integer(json::number_integer_t v) { return put(json(v)) != nullptr; }
  bool number_unsigned(json::number_unsigned_t v) { return put(json(v)) != nullptr; }
  bool number_float(json::number_float_t v, const std::string &) { return put(json(v)) != nullptr; }
  bool string(std::string &v) { return check_string(v) && put(json(std::move(v))) != nullptr; }
  bool binary(json::binary_t &) { return stop(WF_EINVAL, "binary value in JSON text"); }
  bool start_object(size_t) { return open(json::value_t::object); }
  bool start_array(size_t) { return open(json::value_t::array); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(std::string &k) {
    if (!check_string(k)) return false;
    auto &obj = stack_.back()->get_ref<json::object_t &>();
    auto [it, inserted] = obj.try_emplace(std::move(k));  // k is left alone if present
    if (!inserted) return stop(WF_EINVAL, "duplicate key \"" + key_for_message(k) + "\"");
    slot_ = &it->second;
    return true;
  }
  // The parser's own message quotes the input near the error; documents may
  // hold secrets (payloads, saga states), so only the offset is reported.
  bool parse_error(size_t pos, const std::string &, const json::exception &) {
    return stop(WF_EINVAL, "malformed JSON at byte " + std::to_string(pos));
  }

  int code = WF_OK;
  std::string message;

 private:
  bool stop(int c, std::string msg) {
    code = c;
    message = std::move(msg);
    return false;
  }
  bool check_string(const std::string &s) {
    if (s.size() <= max_string_) return true;
    return stop(WF_ETOOBIG, "a string of " + std::to_string(s.size()) +
                                " bytes is over the limit of " + std::to_string(max_string_));
  }
  // Places a value in the open container (or as the root); returns it.
  json *put(json &&v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json &top = *stack_.back();
    if (top.is_array()) {
      auto &arr = top.get_ref<json::array_t &>();
      arr.push_back(std::move(v));
      return &arr.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }
  bool open(json::value_t t) {
    if (stack_.size() >= max_depth_)
      return stop(WF_ETOOBIG, "nesting deeper than the limit of " + std::to_string(max_depth_));
    stack_.push_back(put(json(t)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  json &root_;
  size_t max_depth_, max_string_;
  // Open containers, outermost first. A pointer stays valid while its
  // container is open: only the innermost open container is ever modified.
  std::vector<json *> stack_;
  json *slot_ = nullptr;  // value of the key just read
};

}  // namespace

json parse_json(std::string_view text, const Limits &lim, const char *what, size_t max_bytes) {
  if (text.size() > max_bytes) {
    fail(WF_ETOOBIG, std::string(what) + ": document is " + std::to_string(text.size()) +
                         " bytes, over the limit of " + std::to_string(max_bytes));
  }
  // A raw NUL is never valid JSON, but nlohmann's lexer reads it as the end
  // of input and would ignore whatever follows.
  if (size_t nul = text.find('\0'); nul != std::string_view::npos)
    fail(WF_EINVAL,
         std::string(what) + ": malformed JSON: NUL byte at offset " + std::to_string(nul));
  json root;
  LimitedBuilder b(root, lim);
  bool ok;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &b);
  } catch (const json::exception &ex) {
    fail(WF_EINVAL, std::string(what) + ": malformed JSON (error " + std::to_string(ex.id) + ")");
  }
  if (!ok || b.code != WF_OK)
    fail(b.code != WF_OK ? b.code : WF_EINVAL,
         std::string(what) + ": " + (b.message.empty() ? "malformed JSON" : b.message));
  return root;
}

std::string get_string(const json &o, const char *field, const char *what, bool required,
                       const std::string &def) {
  auto it = o.find(field);
  if (it == o.end() || it->is_null()) {
    if (required) fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\" is required");
    return def;
  }
  if (!it->is_string())
    fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\" must be a string");
  return it->get<std::string>();
}

int64_t get_int(const json &o, const char *field, const char *what, int64_t def, int64_t lo,
                int64_t hi) {
  auto it = o.find(field);
  if (it == o.end() || it->is_null()) return def;
  auto out_of_range = [&] {
    fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\" must be between " +
                        std::to_string(lo) + " and " + std::to_string(hi));
  };
  int64_t v;
  if (it->is_number_unsigned()) {
    // Above INT64_MAX it would wrap to a negative value that may pass the check.
    uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) out_of_range();
    v = static_cast<int64_t>(u);
  } else if (it->is_number_integer()) {
    v = it->get<int64_t>();
  } else if (it->is_number_float()) {
    double d = it->get<double>();
    if (d != std::trunc(d))
      fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\" must be an integer");
    // Converting a double outside int64's range [-2^63, 2^63) is undefined.
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) out_of_range();
    v = static_cast<int64_t>(d);
  } else {
    fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\" must be an integer");
  }
  if (v < lo || v > hi) out_of_range();
  return v;
}

double get_double(const json &o, const char *field, const char *what, double def, double lo,
                  double hi) {
  auto it = o.find(field);
  if (it == o.end() || it->is_null()) return def;
  if (!it->is_number())
    fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\" must be a number");
  double v = it->get<double>();
  if (!(v >= lo && v <= hi))
    fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\" must be between " +
                        std::to_string(lo) + " and " + std::to_string(hi));
  return v;
}

int64_t parse_rfc3339(const std::string &s) {
  // YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|-HH:MM]
  static const char *shape = "dddd-dd-ddTdd:dd:dd";
  if (s.size() < 19) fail(WF_EINVAL, "time \"" + s + "\" is not RFC 3339 (YYYY-MM-DDTHH:MM:SSZ)");
  for (size_t k = 0; k < 19; ++k) {
    char c = s[k], want = shape[k];
    bool ok = want == 'd'   ? (c >= '0' && c <= '9')
              : want == 'T' ? (c == 'T' || c == 't' || c == ' ')
                            : c == want;
    if (!ok) fail(WF_EINVAL, "time \"" + s + "\" is not RFC 3339 (YYYY-MM-DDTHH:MM:SSZ)");
  }
  // The shape check above guarantees digits at these positions.
  auto num = [&s](size_t at, size_t len) {
    int v = 0;
    for (size_t k = at; k < at + len; ++k) v = v * 10 + (s[k] - '0');
    return v;
  };
  const int Y = num(0, 4), M = num(5, 2), D = num(8, 2), h = num(11, 2), m = num(14, 2),
            sec = num(17, 2);
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
    fail(WF_EINVAL, "time \"" + s + "\" has a field out of range");
  size_t i = 19;
  int64_t frac_ms = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (digits < 3) frac_ms = frac_ms * 10 + (s[i] - '0');
      ++digits;
      ++i;
    }
    if (digits == 0) fail(WF_EINVAL, "time \"" + s + "\": empty fraction");
    for (int d = digits; d < 3; ++d) frac_ms *= 10;
  }
  int64_t offset_min = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    auto digit = [&s](size_t at) { return at < s.size() && s[at] >= '0' && s[at] <= '9'; };
    if (!digit(i + 1) || !digit(i + 2) || i + 3 >= s.size() || s[i + 3] != ':' || !digit(i + 4) ||
        !digit(i + 5))
      fail(WF_EINVAL, "time \"" + s + "\" has a malformed UTC offset");
    const int64_t oh = (s[i + 1] - '0') * 10 + (s[i + 2] - '0');
    const int64_t om = (s[i + 4] - '0') * 10 + (s[i + 5] - '0');
    if (oh > 23 || om > 59) fail(WF_EINVAL, "time \"" + s + "\" has a malformed UTC offset");
    offset_min = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
    i += 6;
  } else {
    fail(WF_EINVAL, "time \"" + s + "\" needs a UTC offset (Z or +HH:MM)");
  }
  if (i != s.size()) fail(WF_EINVAL, "time \"" + s + "\" has trailing characters");
  struct tm tm = {};
  tm.tm_year = Y - 1900;
  tm.tm_mon = M - 1;
  tm.tm_mday = D;
  tm.tm_hour = h;
  tm.tm_min = m;
  tm.tm_sec = sec;
  int64_t t = static_cast<int64_t>(timegm(&tm));
  if (tm.tm_mday != D || tm.tm_mon != M - 1)  // timegm rolled e.g. Feb 31 over
    fail(WF_EINVAL, "time \"" + s + "\" names a day that does not exist");
  return (t - offset_min * 60) * 1000 + frac_ms;
}

std::string format_rfc3339(int64_t ms) {
  time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&t, &tm)) return std::to_string(ms);  // beyond struct tm's years
  char buf[96];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        static_cast<int>(ms % 1000));
  if (n < 0) return std::to_string(ms);
  return buf;
}

int64_t get_time(const json &o, const char *field, const char *what, int64_t def) {
  auto it = o.find(field);
  if (it == o.end() || it->is_null()) return def;
  if (it->is_number_integer() &&
      !(it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)))
    return it->get<int64_t>();
  if (it->is_string()) {
    try {
      return parse_rfc3339(it->get<std::string>());
    } catch (const Error &e) {
      fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\": " + e.what());
    }
  }
  fail(WF_EINVAL, std::string(what) + ": field \"" + field +
                      "\" must be milliseconds since the epoch or an RFC 3339 string");
}

void check_keys(const json &o, std::initializer_list<const char *> allowed, const char *what) {
  if (!o.is_object()) fail(WF_EINVAL, std::string(what) + " must be a JSON object");
  for (auto it = o.begin(); it != o.end(); ++it) {
    bool ok = false;
    for (const char *a : allowed)
      if (it.key() == a) ok = true;
    if (!ok) fail(WF_EINVAL, std::string(what) + ": unknown key \"" + it.key() + "\"");
  }
}

void check_no_nul(const std::string &v, const char *field, const char *what) {
  if (v.find('\0') != std::string::npos)
    fail(WF_EINVAL, std::string(what) + ": \"" + field + "\" must not contain NUL characters");
}

namespace {
// Length of the valid UTF-8 sequence at s[i], or 0 when it is invalid.
size_t utf8_seq(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlongs
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // no overlongs
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  return n;
}
}  // namespace

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_seq(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void check_utf8(std::string_view v, const char *field, const char *what) {
  if (!valid_utf8(v)) fail(WF_EINVAL, std::string(what) + ": \"" + field + "\" is not valid UTF-8");
}

std::string sanitize_utf8(std::string_view s, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes));
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_seq(s, i);
    std::string_view piece = n ? s.substr(i, n) : std::string_view("\xEF\xBF\xBD", 3);
    if (out.size() + piece.size() > max_bytes) break;
    out.append(piece);
    i += n ? n : 1;
  }
  return out;
}

int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_add_overflow(a, b, &r)) return r;
  return b > 0 ? INT64_MAX : INT64_MIN;
}

int64_t sat_sub(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_sub_overflow(a, b, &r)) return r;
  return b < 0 ? INT64_MAX : INT64_MIN;
}

int64_t system_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string random_hex(size_t bytes) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char *hex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (size_t i = 0; i < bytes; ++i) {
    unsigned b = static_cast<unsigned>(rng() & 0xff);
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 15]);
  }
  return out;
}

}  // namespace wf
