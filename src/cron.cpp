// cron: parsing and next-fire computation. The grammar and the daylight-saving
// policy are described in cron.h; the notes below cover the details.
//
// Representation: one bitset per field. Day-of-week 7 is folded into 0
// (Sunday). `*` and `a/n` in day-of-week end at 6, so `1/2` is Mon,Wed,Fri.
//
// Day-of-month / day-of-week, as in Vixie cron (and cronie): a field whose
// text begins with `*` (`*` or `*/n`) counts as unrestricted. If either field
// is unrestricted a day must match both; otherwise it must match either. So
// "0 0 13 * FRI" fires on every 13th and every Friday, while "0 0 */2 * MON"
// fires on Mondays that fall on an odd day of the month.
//
// Next fire: candidates are matching local wall-clock times L (whole seconds)
// in the zone. Each maps to an instant f(L):
//  - L exists once: that instant;
//  - L is repeated by a fall-back: its first occurrence;
//  - L is skipped by a spring-forward: the transition instant (the first valid
//    instant after the gap), so every skipped candidate of one gap, and a
//    candidate right at the end of the gap, fire once, together.
// f never decreases as L grows, so next_after(t) is f of the first candidate
// L with f(L) > t. The search starts at the local second after t, or, when t
// lies in the second pass of a repeated hour (whose wall times all fired in
// the first pass), at the end of the repeat. Consequently an hourly or
// minutely expression does not fire during the second pass of a repeated
// hour ("0 * * * *" fires at 01:00 EDT and then 02:00 EST in New York on a
// fall-back day: wall-clock semantics).
//
// The search walks local days, skipping months that do not match and days
// that do not match, and within a day picks the next matching hour, minute
// and second directly from the bitsets, so a call costs a few zone lookups.
//
// Range: fire instants lie in years 1 to 9999 (UTC); an earlier `after`
// searches from year 1, and nothing fires after 9999-12-31T23:59:59Z. "Within 5 years" means the
// matching local time is at most 1827 days after the local time of `after`.
#include "cron.h"

#include <date/tz.h>

#include <bit>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "util.h"

namespace wf {

struct Cron::Impl {
  std::string expr, tz;
  uint64_t sec = 0;    // bits 0..59
  uint64_t min = 0;    // bits 0..59
  uint64_t hour = 0;   // bits 0..23
  uint64_t dom = 0;    // bits 1..31
  uint64_t month = 0;  // bits 1..12
  uint64_t dow = 0;    // bits 0..6, 0 = Sunday
  bool dom_star = false, dow_star = false;
  const date::time_zone *zone = nullptr;  // nullptr: UTC (needs no zoneinfo)
};

namespace {

constexpr size_t kMaxExprBytes = 256;
constexpr size_t kMaxTzBytes = 128;
constexpr int64_t kDay = 86400;
constexpr int64_t kMinSec = -62135596800;  // 0001-01-01T00:00:00Z
constexpr int64_t kMaxSec = 253402300799;  // 9999-12-31T23:59:59Z
constexpr int64_t kHorizon = 1827 * kDay;  // "5 years"

const char *const kMonthNames[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                   "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
const char *const kDowNames[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

struct FieldSpec {
  const char *name;
  int lo, hi;                // accepted values
  int star_hi;               // where `*` and `a/n` end
  const char *const *names;  // nullptr: numbers only
  int n_names, name_base;
  const char *name_kind;
};

const FieldSpec kSecond{"second", 0, 59, 59, nullptr, 0, 0, nullptr};
const FieldSpec kMinute{"minute", 0, 59, 59, nullptr, 0, 0, nullptr};
const FieldSpec kHour{"hour", 0, 23, 23, nullptr, 0, 0, nullptr};
const FieldSpec kDom{"day-of-month", 1, 31, 31, nullptr, 0, 0, nullptr};
const FieldSpec kMonth{"month", 1, 12, 12, kMonthNames, 12, 1, "month name"};
const FieldSpec kDow{"day-of-week", 0, 7, 6, kDowNames, 7, 0, "weekday name"};

// Error messages quote user input; keep them printable ASCII (they may end
// up in JSON documents or logs).
std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto u = static_cast<unsigned char>(ch);
    out.push_back(u >= 0x20 && u < 0x7f ? ch : '?');
  }
  return out;
}

char upper(char ch) { return (ch >= 'a' && ch <= 'z') ? static_cast<char>(ch - 'a' + 'A') : ch; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (upper(a[i]) != upper(b[i])) return false;
  return true;
}

class Parser {
 public:
  explicit Parser(const std::string &expr) : prefix_("cron \"" + printable(expr) + "\": ") {}

  [[noreturn]] void err(const std::string &msg) const { fail(WF_EINVAL, prefix_ + msg); }

  // Parses one field into a bitset; `star` is set when its text begins with
  // `*` (Vixie's notion of an unrestricted day field).
  uint64_t field(std::string_view text, const FieldSpec &f, bool *star = nullptr) const {
    if (star) *star = !text.empty() && text[0] == '*';
    uint64_t mask = 0;
    size_t pos = 0;
    for (;;) {
      size_t comma = text.find(',', pos);
      std::string_view part =
          text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
      if (part.empty()) err(std::string(f.name) + " has an empty list item");
      mask |= item(part, f);
      if (comma == std::string_view::npos) break;
      pos = comma + 1;
    }
    return mask;
  }

 private:
  // One list item: `*`, `a`, or `a-b`, optionally followed by `/step`.
  uint64_t item(std::string_view text, const FieldSpec &f) const {
    std::string_view base = text, step_text;
    bool has_step = false;
    if (size_t slash = text.find('/'); slash != std::string_view::npos) {
      base = text.substr(0, slash);
      step_text = text.substr(slash + 1);
      has_step = true;
    }
    int a, b;
    if (base == "*") {
      a = f.lo;
      b = f.star_hi;
    } else if (size_t dash = base.find('-'); dash != std::string_view::npos) {
      a = value(base.substr(0, dash), f);
      b = value(base.substr(dash + 1), f);
      if (a > b) err(std::string(f.name) + " range " + printable(base) + " is reversed");
    } else {
      a = value(base, f);
      b = has_step ? f.star_hi : a;
      // "7/2" in day-of-week: nothing after Sunday-as-7.
      if (b < a) b = a;
    }
    int step = 1;
    if (has_step) {
      int n = number(step_text);
      if (n < 0)
        err(std::string(f.name) + " step \"" + printable(step_text) + "\" is not a number");
      if (n < 1 || n > f.hi)
        err(std::string(f.name) + " step " + printable(step_text) + " out of range 1-" +
            std::to_string(f.hi));
      step = n;
    }
    uint64_t mask = 0;
    for (int v = a; v <= b; v += step) mask |= uint64_t{1} << v;
    return mask;
  }

  // A decimal number (capped so it cannot overflow), or -1.
  static int number(std::string_view s) {
    if (s.empty()) return -1;
    int n = 0;
    for (char ch : s) {
      if (ch < '0' || ch > '9') return -1;
      n = n * 10 + (ch - '0');
      if (n > 1000000) n = 1000000;
    }
    return n;
  }

  int value(std::string_view s, const FieldSpec &f) const {
    int n = number(s);
    if (n < 0) {
      for (int i = 0; i < f.n_names; ++i)
        if (iequals(s, f.names[i])) return i + f.name_base;
      if (f.names)
        err(std::string(f.name) + " value \"" + printable(s) + "\" is not a number or " +
            f.name_kind);
      err(std::string(f.name) + " value \"" + printable(s) + "\" is not a number");
    }
    if (n < f.lo || n > f.hi)
      err(std::string(f.name) + " value " + printable(s) + " out of range " + std::to_string(f.lo) +
          "-" + std::to_string(f.hi));
    return n;
  }

  std::string prefix_;
};

struct Macro {
  const char *name, *expansion;
};
const Macro kMacros[] = {{"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"},
                         {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
                         {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
                         {"@hourly", "0 * * * *"}};

std::vector<std::string_view> split_fields(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) --q;
  return q;
}

// Smallest set bit >= from, or -1.
int next_bit(uint64_t mask, int from) {
  if (from >= 64) return -1;
  uint64_t m = mask & (~uint64_t{0} << from);
  return m ? std::countr_zero(m) : -1;
}

date::year_month_day civil(int64_t days) {
  return date::year_month_day{date::sys_days{date::days{static_cast<int>(days)}}};
}

int64_t days_from_civil(int y, unsigned m, unsigned d) {
  return date::sys_days{date::year{y} / date::month{m} / date::day{d}}.time_since_epoch().count();
}

bool day_matches(const Cron::Impl &c, int64_t days, const date::year_month_day &ymd) {
  bool dom_ok = (c.dom >> static_cast<unsigned>(ymd.day())) & 1;
  unsigned wd = date::weekday{date::sys_days{date::days{static_cast<int>(days)}}}.c_encoding();
  bool dow_ok = (c.dow >> wd) & 1;
  if (c.dom_star || c.dow_star) return dom_ok && dow_ok;
  return dom_ok || dow_ok;
}

// Smallest second-of-day >= tod matching hour, minute and second, or -1.
int64_t time_in_day(const Cron::Impl &c, int64_t tod) {
  int h0 = static_cast<int>(tod / 3600), m0 = static_cast<int>(tod / 60 % 60),
      s0 = static_cast<int>(tod % 60);
  for (int h = next_bit(c.hour, h0); h >= 0; h = next_bit(c.hour, h + 1)) {
    for (int m = next_bit(c.min, h == h0 ? m0 : 0); m >= 0; m = next_bit(c.min, m + 1)) {
      int s = next_bit(c.sec, (h == h0 && m == m0) ? s0 : 0);
      if (s >= 0) return h * 3600 + m * 60 + s;
    }
  }
  return -1;
}

// Smallest matching local time (seconds since the local epoch) in
// [start, limit], or INT64_MAX.
int64_t next_local_match(const Cron::Impl &c, int64_t start, int64_t limit) {
  int64_t days = floor_div(start, kDay);
  int64_t tod = start - days * kDay;
  while (days * kDay <= limit) {
    date::year_month_day ymd = civil(days);
    auto mo = static_cast<unsigned>(ymd.month());
    if (!((c.month >> mo) & 1)) {
      int y = static_cast<int>(ymd.year());
      int next = next_bit(c.month, static_cast<int>(mo) + 1);
      if (next < 0) {
        ++y;
        next = next_bit(c.month, 1);
      }
      days = days_from_civil(y, static_cast<unsigned>(next), 1);
      tod = 0;
      continue;
    }
    if (day_matches(c, days, ymd)) {
      int64_t t = time_in_day(c, tod);
      if (t >= 0) {
        int64_t local = days * kDay + t;
        return local <= limit ? local : INT64_MAX;
      }
    }
    ++days;
    tod = 0;
  }
  return INT64_MAX;
}

date::local_seconds as_local(int64_t s) { return date::local_seconds{std::chrono::seconds{s}}; }
date::sys_seconds as_sys(int64_t s) { return date::sys_seconds{std::chrono::seconds{s}}; }

// The instant at which local time `local` fires (see the notes at the top).
int64_t fire_instant(const Cron::Impl &c, int64_t local) {
  if (!c.zone) return local;
  date::local_info li = c.zone->get_info(as_local(local));
  if (li.result == date::local_info::nonexistent) return li.second.begin.time_since_epoch().count();
  // unique, or the first occurrence of an ambiguous time
  return local - li.first.offset.count();
}

}  // namespace

Cron Cron::parse(const std::string &expr, const std::string &tz) {
  if (expr.size() > kMaxExprBytes)
    fail(WF_EINVAL, "cron expression is " + std::to_string(expr.size()) +
                        " bytes, over the limit of " + std::to_string(kMaxExprBytes));
  Parser p(expr);
  auto impl = std::make_shared<Impl>();
  impl->expr = expr;
  impl->tz = tz;

  std::vector<std::string_view> fields = split_fields(expr);
  if (fields.empty()) p.err("empty expression");
  if (fields[0][0] == '@') {
    const char *expansion = nullptr;
    for (const Macro &m : kMacros)
      if (iequals(fields[0], m.name)) expansion = m.expansion;
    if (!expansion) p.err("unknown macro " + printable(fields[0]));
    if (fields.size() != 1) p.err("macro " + printable(fields[0]) + " takes no other fields");
    fields = split_fields(expansion);
  }
  if (fields.size() != 5 && fields.size() != 6)
    p.err(
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with leading "
        "seconds), got " +
        std::to_string(fields.size()));
  size_t i = 0;
  impl->sec = fields.size() == 6 ? p.field(fields[i++], kSecond) : uint64_t{1};
  impl->min = p.field(fields[i++], kMinute);
  impl->hour = p.field(fields[i++], kHour);
  impl->dom = p.field(fields[i++], kDom, &impl->dom_star);
  impl->month = p.field(fields[i++], kMonth);
  impl->dow = p.field(fields[i++], kDow, &impl->dow_star);
  if (impl->dow & (uint64_t{1} << 7)) impl->dow = (impl->dow & 0x7f) | 1;

  if (tz.empty() || tz.size() > kMaxTzBytes || tz == "localtime")
    p.err("unknown time zone \"" + printable(tz.substr(0, kMaxTzBytes)) + "\"");
  if (tz != "UTC") {
    try {
      impl->zone = date::locate_zone(tz);
      // Loads the zone's data now, so next_after cannot fail on it later.
      (void)impl->zone->get_info(as_sys(0));
    } catch (const std::exception &) {
      p.err("unknown time zone \"" + printable(tz) + "\"");
    }
  }
  Cron c;
  c.impl_ = std::move(impl);
  return c;
}

int64_t Cron::next_after(int64_t after_ms) const {
  if (!impl_) return INT64_MAX;  // default-constructed: never fires
  const Impl &c = *impl_;
  if (after_ms >= kMaxSec * 1000) return INT64_MAX;
  // Fire instants are whole seconds: "> after_ms" is "> after_s".
  int64_t after_s = floor_div(after_ms, 1000);
  if (after_s < kMinSec) after_s = kMinSec - 1;

  int64_t local = after_s, start = after_s + 1;
  if (c.zone) {
    date::sys_info si = c.zone->get_info(as_sys(after_s));
    local = after_s + si.offset.count();
    start = local + 1;
    date::local_info li = c.zone->get_info(as_local(local));
    if (li.result == date::local_info::ambiguous && as_sys(after_s) >= li.second.begin) {
      // Second pass of a repeated period: its wall times fired in the first
      // pass. Resume where the repeat ends in local time.
      start = (li.first.end.time_since_epoch() + li.first.offset).count();
    }
  }
  int64_t limit = local + kHorizon;
  while (true) {
    int64_t l = next_local_match(c, start, limit);
    if (l == INT64_MAX) return INT64_MAX;
    int64_t f = fire_instant(c, l);
    if (f > kMaxSec) return INT64_MAX;
    if (f > after_s) return f * 1000;
    start = l + 1;  // not reached with regular zones; kept for odd transitions
  }
}

const std::string &Cron::expr() const {
  static const std::string empty;
  return impl_ ? impl_->expr : empty;
}

const std::string &Cron::tz() const {
  static const std::string empty;
  return impl_ ? impl_->tz : empty;
}

}  // namespace wf
