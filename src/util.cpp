#include "util.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>

namespace wf {

namespace {
thread_local std::string g_last_error;
}

void set_last_error(std::string msg) { g_last_error = std::move(msg); }
const char *last_error() { return g_last_error.c_str(); }

json parse_json(std::string_view text, const Limits &lim, const char *what, size_t max_bytes) {
  if (text.size() > max_bytes) {
    fail(WF_ETOOBIG, std::string(what) + ": document is " + std::to_string(text.size()) +
                         " bytes, over the limit of " + std::to_string(max_bytes));
  }
  int max_depth = lim.max_depth;
  bool too_deep = false;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json &) {
    if ((ev == json::parse_event_t::object_start || ev == json::parse_event_t::array_start) &&
        depth >= max_depth) {
      too_deep = true;
      throw Error(WF_ETOOBIG, std::string(what) + ": nesting deeper than the limit of " +
                                  std::to_string(max_depth));
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb, true, false);
  } catch (const Error &) {
    throw;
  } catch (const json::exception &ex) {
    (void)too_deep;
    fail(WF_EINVAL, std::string(what) + ": malformed JSON: " + ex.what());
  }
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
  int64_t v;
  if (it->is_number_integer()) {
    v = it->get<int64_t>();
  } else if (it->is_number_float()) {
    double d = it->get<double>();
    if (d != static_cast<double>(static_cast<int64_t>(d)))
      fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\" must be an integer");
    v = static_cast<int64_t>(d);
  } else {
    fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\" must be an integer");
  }
  if (v < lo || v > hi)
    fail(WF_EINVAL, std::string(what) + ": field \"" + field + "\" must be between " +
                        std::to_string(lo) + " and " + std::to_string(hi));
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
  int Y, M, D, h, m, sec, n = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) !=
          6 ||
      n != 19)
    fail(WF_EINVAL, "time \"" + s + "\" is not RFC 3339 (YYYY-MM-DDTHH:MM:SSZ)");
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
    int oh, om, k = 0;
    if (std::sscanf(s.c_str() + i + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5 || oh > 23 ||
        om > 59)
      fail(WF_EINVAL, "time \"" + s + "\" has a malformed UTC offset");
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
  return (t - offset_min * 60) * 1000 + frac_ms;
}

std::string format_rfc3339(int64_t ms) {
  time_t t = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

int64_t get_time(const json &o, const char *field, const char *what, int64_t def) {
  auto it = o.find(field);
  if (it == o.end() || it->is_null()) return def;
  if (it->is_number_integer()) return it->get<int64_t>();
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
