// Cron: parsing (valid and invalid expressions, time zones), next-fire
// computation against hand-computed instants (steps, lists, names, macros,
// the Vixie day rule, leap years, month ends, DST in New York, Berlin and
// Lord Howe both ways), iteration properties, a brute-force cross-check of
// the DST policy, and a speed check.
#include "cron.h"

#include <date/tz.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "util.h"

namespace {

using wf::Cron;

int64_t T(const char *rfc3339) { return wf::parse_rfc3339(rfc3339); }

std::string fmt(int64_t ms) { return ms == INT64_MAX ? "INT64_MAX" : wf::format_rfc3339(ms); }

// ------------------------------------------------------------------ parsing

struct BadCase {
  std::string expr;
  const char *tz;
  const char *mention;  // substring expected in the error message
};

TEST(CronParse, RejectsBadInput) {
  const std::vector<BadCase> cases = {
      {"", "UTC", "empty expression"},
      {"   \t ", "UTC", "empty expression"},
      {"* * * *", "UTC", "got 4"},
      {"* * * * * * *", "UTC", "got 7"},
      {"61 * * * *", "UTC", "minute value 61 out of range 0-59"},
      {"60 * * * * *", "UTC", "second value 60 out of range 0-59"},
      {"* 24 * * *", "UTC", "hour value 24 out of range 0-23"},
      {"* * 0 * *", "UTC", "day-of-month value 0 out of range 1-31"},
      {"* * 32 * *", "UTC", "day-of-month value 32 out of range 1-31"},
      {"* * * 0 *", "UTC", "month value 0 out of range 1-12"},
      {"* * * 13 *", "UTC", "month value 13 out of range 1-12"},
      {"* * * * 8", "UTC", "day-of-week value 8 out of range 0-7"},
      {"99999999999999999999 * * * *", "UTC", "minute value 99999999999999999999 out of range"},
      {"*/0 * * * *", "UTC", "minute step 0 out of range 1-59"},
      {"* */0 * * *", "UTC", "hour step 0 out of range 1-23"},
      {"*/60 * * * *", "UTC", "minute step 60 out of range 1-59"},
      {"*/ * * * *", "UTC", "minute step \"\" is not a number"},
      {"*/x * * * *", "UTC", "minute step \"x\" is not a number"},
      {"5-3 * * * *", "UTC", "minute range 5-3 is reversed"},
      {"* * * DEC-JAN *", "UTC", "month range DEC-JAN is reversed"},
      {"* * * * FRI-MON", "UTC", "day-of-week range FRI-MON is reversed"},
      {"* * * FOO *", "UTC", "month value \"FOO\" is not a number or month name"},
      {"* * * JANUARY *", "UTC", "month value \"JANUARY\" is not a number or month name"},
      {"* * * * FUNDAY", "UTC", "day-of-week value \"FUNDAY\" is not a number or weekday name"},
      {"* * * * JAN", "UTC", "day-of-week value \"JAN\""},
      {"jan-DEC/3 * * * *", "UTC", "minute value \"jan\" is not a number"},
      {"JAN * * * *", "UTC", "minute value \"JAN\" is not a number"},
      {"* * MON * *", "UTC", "day-of-month value \"MON\" is not a number"},
      {"1,,2 * * * *", "UTC", "minute has an empty list item"},
      {"1, * * * *", "UTC", "minute has an empty list item"},
      {"-1 * * * *", "UTC", "minute value \"\" is not a number"},
      {"1-2-3 * * * *", "UTC", "minute value \"2-3\" is not a number"},
      {"1.5 * * * *", "UTC", "minute value \"1.5\" is not a number"},
      {"*-5 * * * *", "UTC", "minute value \"*\" is not a number"},
      {"?", "UTC", "got 1"},
      {"* * ? * *", "UTC", "day-of-month value \"?\""},
      {"* * L * *", "UTC", "day-of-month value \"L\""},
      {"* * * * *\n*", "UTC", "day-of-week value"},   // newline is not a separator
      {"* *\n* * * *", "UTC", "hour value \"*?*\""},  // control bytes are not echoed
      {"@reboot", "UTC", "unknown macro @reboot"},
      {"@", "UTC", "unknown macro @"},
      {"@daily *", "UTC", "macro @daily takes no other fields"},
      {std::string(257, ' '), "UTC", "257 bytes, over the limit of 256"},
      {"0 0 * * *", "Mars/Olympus_Mons", "unknown time zone \"Mars/Olympus_Mons\""},
      {"0 0 * * *", "", "unknown time zone \"\""},
      {"0 0 * * *", "localtime", "unknown time zone \"localtime\""},
      {"0 0 * * *", "america/new_york", "unknown time zone"},
      {"0 0 * * *", "../../../etc/passwd", "unknown time zone"},
      {"0 0 * * *", "right/UTC", "unknown time zone"},
  };
  for (const BadCase &c : cases) {
    try {
      Cron::parse(c.expr, c.tz);
      ADD_FAILURE() << "accepted \"" << c.expr << "\" tz \"" << c.tz << "\"";
    } catch (const wf::Error &e) {
      EXPECT_EQ(WF_EINVAL, e.code()) << c.expr;
      EXPECT_NE(std::string(e.what()).find(c.mention), std::string::npos)
          << "expr \"" << c.expr << "\": message \"" << e.what() << "\" lacks \"" << c.mention
          << "\"";
    }
  }
}

TEST(CronParse, MessageNamesExpressionAndField) {
  try {
    Cron::parse("61 * * * *");
    FAIL() << "accepted";
  } catch (const wf::Error &e) {
    EXPECT_STREQ("cron \"61 * * * *\": minute value 61 out of range 0-59", e.what());
  }
  try {
    Cron::parse("0 9 * * *", "Europe/Atlantis");
    FAIL() << "accepted";
  } catch (const wf::Error &e) {
    EXPECT_STREQ("cron \"0 9 * * *\": unknown time zone \"Europe/Atlantis\"", e.what());
  }
}

TEST(CronParse, AcceptsValidInput) {
  const std::vector<std::string> ok = {
      "* * * * *",
      "* * * * * *",
      "0-59 0-23 1-31 1-12 0-7",
      "59 23 31 12 7",
      "*/1 */23 */31 */12 */7",
      "0/15 5/5 10/3 2/2 1/2",
      "1,2,3 4,5 6,7,8 9 0",
  };
  for (const std::string &e : ok) EXPECT_NO_THROW(Cron::parse(e)) << e;
  for (const char *e :
       {"0 0 1 jan-DEC/3 *", "0 0 * Jan,feB,MAR sun-sat", "0 0 * * Mon-Fri", "0 0 * * 5-7",
        "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "@DAILY",
        "  @hourly  ", "\t0\t0  *   * *\t", "00 000 01 01 00", "0 0 29 2 *", "0 0 30 2 *"})
    EXPECT_NO_THROW(Cron::parse(e)) << e;
  // 256 bytes is the limit, inclusive.
  std::string padded = "0 0 * * *" + std::string(256 - 9, ' ');
  ASSERT_EQ(256u, padded.size());
  EXPECT_NO_THROW(Cron::parse(padded));
  for (const char *tz : {"UTC", "Etc/UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata",
                         "Australia/Lord_Howe", "US/Eastern"})
    EXPECT_NO_THROW(Cron::parse("0 0 * * *", tz)) << tz;
}

TEST(CronParse, AccessorsReturnOriginalStrings) {
  Cron c = Cron::parse("  */5 9-17 * * mon-fri ", "Europe/Berlin");
  EXPECT_EQ("  */5 9-17 * * mon-fri ", c.expr());
  EXPECT_EQ("Europe/Berlin", c.tz());
  Cron d = Cron::parse("@daily");
  EXPECT_EQ("@daily", d.expr());
  EXPECT_EQ("UTC", d.tz());
  Cron copy = c;
  EXPECT_EQ(c.expr(), copy.expr());
}

TEST(CronParse, MacrosEqualTheirExpansions) {
  const std::vector<std::pair<const char *, const char *>> pairs = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"}};
  for (auto [macro, expansion] : pairs) {
    Cron a = Cron::parse(macro, "Europe/Berlin"), b = Cron::parse(expansion, "Europe/Berlin");
    int64_t t = T("2026-01-01T00:00:00Z");
    for (int i = 0; i < 20; ++i) {
      int64_t na = a.next_after(t), nb = b.next_after(t);
      ASSERT_EQ(nb, na) << macro;
      t = na;
    }
  }
}

// --------------------------------------------------------------- next fire

struct NextCase {
  const char *expr;
  const char *tz;
  const char *after;
  const char *want;  // nullptr: none within 5 years (INT64_MAX)
};

void check_cases(const std::vector<NextCase> &cases) {
  for (const NextCase &c : cases) {
    Cron cron = Cron::parse(c.expr, c.tz);
    int64_t got = cron.next_after(T(c.after));
    int64_t want = c.want ? T(c.want) : INT64_MAX;
    EXPECT_EQ(want, got) << "\"" << c.expr << "\" tz " << c.tz << " after " << c.after << ": want "
                         << fmt(want) << " got " << fmt(got);
  }
}

TEST(CronNext, Fields) {
  // 2026-01-01 is a Thursday; 2026-03-01 a Sunday.
  check_cases({
      {"* * * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"},
      {"* * * * *", "UTC", "2026-01-01T00:00:59.999Z", "2026-01-01T00:01:00Z"},
      {"* * * * *", "UTC", "2026-01-01T00:00:00.001Z", "2026-01-01T00:01:00Z"},
      {"* * * * *", "UTC", "2025-12-31T23:59:59.999Z", "2026-01-01T00:00:00Z"},
      {"*/15 * * * *", "UTC", "2026-01-01T00:14:59Z", "2026-01-01T00:15:00Z"},
      {"*/15 * * * *", "UTC", "2026-01-01T00:45:00Z", "2026-01-01T01:00:00Z"},
      {"0 9-17/2 * * *", "UTC", "2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"},
      {"0 9-17/2 * * *", "UTC", "2026-01-01T17:00:00Z", "2026-01-02T09:00:00Z"},
      {"50/5 * * * *", "UTC", "2026-01-01T00:56:00Z", "2026-01-01T01:50:00Z"},
      {"5,10,45 * * * *", "UTC", "2026-01-01T00:10:00Z", "2026-01-01T00:45:00Z"},
      {"5,10,45 * * * *", "UTC", "2026-01-01T00:45:00Z", "2026-01-01T01:05:00Z"},
      {"1-3,50-52/2 4 * * *", "UTC", "2026-01-01T04:03:00Z", "2026-01-01T04:50:00Z"},
      // Seconds field.
      {"*/10 * * * * *", "UTC", "2026-01-01T00:00:05Z", "2026-01-01T00:00:10Z"},
      {"*/10 * * * * *", "UTC", "2026-01-01T00:00:50Z", "2026-01-01T00:01:00Z"},
      {"30 15 10 * * *", "UTC", "2026-01-01T10:15:30Z", "2026-01-02T10:15:30Z"},
      {"30 15 10 * * *", "UTC", "2026-01-01T10:15:29.999Z", "2026-01-01T10:15:30Z"},
      {"0 0 * * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"},
      {"59 59 23 31 12 *", "UTC", "2026-01-01T00:00:00Z", "2026-12-31T23:59:59Z"},
      {"* * * * * *", "UTC", "2026-01-01T00:00:00.500Z", "2026-01-01T00:00:01Z"},
      // Names, case-insensitive; dom is *, so the day must match dow (and month).
      {"0 12 * JAN,MAR MON-FRI", "UTC", "2026-01-31T12:00:00Z", "2026-03-02T12:00:00Z"},
      {"0 0 * feb sun", "UTC", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"},
      {"0 0 * * Sat", "UTC", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"},
      {"0 0 1 jul-aug/1 *", "UTC", "2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z"},
      // Day-of-week 0 and 7 are Sunday; * and a/n end at Saturday.
      {"0 0 * * 7", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
      {"0 0 * * 0", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
      {"0 0 * * 5-7", "UTC", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z"},
      {"0 0 * * 6-7", "UTC", "2026-01-04T00:00:00Z", "2026-01-10T00:00:00Z"},
      {"0 0 * * 1/2", "UTC", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},  // Fri
      {"0 0 * * 1/2", "UTC", "2026-01-02T00:00:00Z", "2026-01-05T00:00:00Z"},  // not Sun
      // Vixie: dom and dow both restricted -> either matches.
      {"0 0 13 * FRI", "UTC", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
      {"0 0 13 * FRI", "UTC", "2026-01-10T00:00:00Z", "2026-01-13T00:00:00Z"},
      {"0 0 1,15 * 3", "UTC", "2026-01-01T00:00:00Z", "2026-01-07T00:00:00Z"},
      // ...but a field starting with * (including */n) is unrestricted -> both.
      {"0 0 */2 * MON", "UTC", "2026-01-06T00:00:00Z", "2026-01-19T00:00:00Z"},
      {"0 0 13 * */1", "UTC", "2026-01-01T00:00:00Z", "2026-01-13T00:00:00Z"},
      {"0 0 * * MON", "UTC", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z"},
      // Macros.
      {"@hourly", "UTC", "2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z"},
      {"@daily", "UTC", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
      {"@midnight", "UTC", "2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z"},
      {"@weekly", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"},
      {"@monthly", "UTC", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"},
      {"@yearly", "UTC", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"},
      {"@ANNUALLY", "UTC", "2026-06-15T08:00:00Z", "2027-01-01T00:00:00Z"},
      // Leap years and month ends.
      {"0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z"},
      {"0 0 29 FEB *", "UTC", "2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"},
      {"0 0 29 2 *", "UTC", "2099-03-01T00:00:00Z", "2104-02-29T00:00:00Z"},  // 2100: no
      {"0 0 29 2 *", "UTC", "1999-03-01T00:00:00Z", "2000-02-29T00:00:00Z"},  // 2000: yes
      {"0 0 31 * *", "UTC", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z"},
      {"0 0 31 * *", "UTC", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"},
      {"0 0 30 * *", "UTC", "2026-01-30T00:00:00Z", "2026-03-30T00:00:00Z"},
      {"0 0 28-31 2 *", "UTC", "2028-02-28T00:00:00Z", "2028-02-29T00:00:00Z"},
      {"0 0 28-31 2 *", "UTC", "2026-02-28T00:00:00Z", "2027-02-28T00:00:00Z"},
      {"59 23 31 12 *", "UTC", "2026-06-01T00:00:00Z", "2026-12-31T23:59:00Z"},
      {"0 0 1 1 *", "UTC", "2026-12-31T23:59:59.999Z", "2027-01-01T00:00:00Z"},
      // Never (or not within 5 years).
      {"0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z", nullptr},
      {"0 0 31 4,6,9,11 *", "UTC", "2026-01-01T00:00:00Z", nullptr},
      {"0 0 31 2 *", "Europe/Berlin", "2026-01-01T00:00:00Z", nullptr},
      {"0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", nullptr},  // 2104 is > 5 years on
      // Fixed-offset zones.
      {"0 9 * * *", "Asia/Tokyo", "2026-01-01T00:00:00Z", "2026-01-02T09:00:00+09:00"},
      {"0 9 * * *", "Asia/Kolkata", "2026-01-01T03:29:59Z", "2026-01-01T09:00:00+05:30"},
      {"0 0 1 1 *", "Asia/Tokyo", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00+09:00"},
      {"0 0 * * MON", "Pacific/Kiritimati", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00+14:00"},
      // Out of the supported range.
      {"* * * * *", "UTC", "9999-12-31T23:59:59Z", nullptr},
      {"* * * * *", "UTC", "9999-12-31T23:58:59Z", "9999-12-31T23:59:00Z"},
      {"* * * * *", "UTC", "9999-12-31T23:59:00Z", nullptr},
      {"0 0 * * *", "Asia/Tokyo", "9999-12-30T15:00:00Z", "9999-12-31T15:00:00Z"},
      {"0 0 * * *", "Asia/Tokyo", "9999-12-31T15:00:00Z", nullptr},
      {"0 0 1 1 *", "UTC", "0001-01-01T00:00:00Z", "0002-01-01T00:00:00Z"},
  });
}

TEST(CronNext, ExtremeInputs) {
  Cron c = Cron::parse("0 0 1 1 *", "America/New_York");
  EXPECT_EQ(INT64_MAX, c.next_after(INT64_MAX));
  EXPECT_EQ(INT64_MAX, c.next_after(INT64_MAX - 1));
  int64_t first = c.next_after(INT64_MIN);
  EXPECT_GT(first, INT64_MIN);
  EXPECT_LT(first, T("0003-01-01T00:00:00Z"));
  Cron u = Cron::parse("* * * * * *");
  EXPECT_EQ(1000, u.next_after(0));
  EXPECT_EQ(0, u.next_after(-1));
  EXPECT_EQ(0, u.next_after(-999));
  EXPECT_EQ(-1000, u.next_after(-1001));
  Cron none;  // default-constructed: never fires
  EXPECT_EQ(INT64_MAX, none.next_after(0));
  EXPECT_EQ("", none.expr());
}

// America/New_York 2026: 02:00 EST -> 03:00 EDT on 2026-03-08 at 07:00Z;
// 02:00 EDT -> 01:00 EST on 2026-11-01 at 06:00Z (01:00-02:00 repeats).
TEST(CronNext, DstNewYork) {
  const char *ny = "America/New_York";
  check_cases({
      // Spring forward: skipped 02:30 fires once, at 03:00 EDT.
      {"30 2 * * *", ny, "2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z"},
      {"30 2 * * *", ny, "2026-03-08T07:00:00Z", "2026-03-09T02:30:00-04:00"},
      {"0 30 2 * * *", ny, "2026-03-08T06:59:59Z", "2026-03-08T03:00:00-04:00"},
      {"30 1 * * *", ny, "2026-03-07T12:00:00Z", "2026-03-08T01:30:00-05:00"},
      {"0 3 * * *", ny, "2026-03-08T00:00:00-05:00", "2026-03-08T03:00:00-04:00"},
      {"0 0 * * *", ny, "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"},
      // Several skipped times and 03:00 itself fire together, once.
      {"0,30 2,3 * * *", ny, "2026-03-08T01:59:00-05:00", "2026-03-08T07:00:00Z"},
      {"0,30 2,3 * * *", ny, "2026-03-08T07:00:00Z", "2026-03-08T03:30:00-04:00"},
      {"*/15 * * * *", ny, "2026-03-08T01:45:00-05:00", "2026-03-08T07:00:00Z"},
      {"*/15 * * * *", ny, "2026-03-08T07:00:00Z", "2026-03-08T07:15:00Z"},
      {"0 * * * *", ny, "2026-03-08T01:00:00-05:00", "2026-03-08T07:00:00Z"},
      {"0 * * * *", ny, "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"},
      // Fall back: 01:30 fires at its first occurrence (EDT) only.
      {"30 1 * * *", ny, "2026-10-31T12:00:00Z", "2026-11-01T05:30:00Z"},
      {"30 1 * * *", ny, "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"},
      {"30 1 * * *", ny, "2026-11-01T05:29:59.999Z", "2026-11-01T05:30:00Z"},
      {"30 1 * * *", ny, "2026-11-01T06:00:00Z", "2026-11-02T01:30:00-05:00"},
      {"30 1 * * *", ny, "2026-11-01T06:30:00Z", "2026-11-02T01:30:00-05:00"},
      {"30 1 * * *", ny, "2026-11-01T06:29:59Z", "2026-11-02T01:30:00-05:00"},
      {"0 2 * * *", ny, "2026-11-01T05:30:00Z", "2026-11-01T02:00:00-05:00"},
      {"59 1 * * *", ny, "2026-11-01T05:59:00Z", "2026-11-02T01:59:00-05:00"},
      // Hourly / sub-hourly: wall-clock semantics, the repeated hour is not
      // run a second time.
      {"0 * * * *", ny, "2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z"},
      {"0 * * * *", ny, "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z"},
      {"*/30 * * * *", ny, "2026-11-01T05:30:00Z", "2026-11-01T07:00:00Z"},
      {"*/30 * * * *", ny, "2026-11-01T06:15:00Z", "2026-11-01T07:00:00Z"},
      {"* * * * * *", ny, "2026-11-01T05:59:59Z", "2026-11-01T07:00:00Z"},
      {"* * * * * *", ny, "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"},
      {"* * * * * *", ny, "2026-11-01T05:59:58Z", "2026-11-01T05:59:59Z"},
  });
}

// Europe/Berlin 2026: 02:00 CET -> 03:00 CEST on 2026-03-29 at 01:00Z;
// 03:00 CEST -> 02:00 CET on 2026-10-25 at 01:00Z (02:00-03:00 repeats).
TEST(CronNext, DstBerlin) {
  const char *be = "Europe/Berlin";
  check_cases({
      {"30 2 * * *", be, "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"},
      {"30 2 * * *", be, "2026-03-29T01:00:00Z", "2026-03-30T02:30:00+02:00"},
      {"0 2 * * *", be, "2026-03-28T12:00:00Z", "2026-03-29T03:00:00+02:00"},
      {"0 * * * *", be, "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"},
      {"0 * * * *", be, "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"},
      {"59 1 * * *", be, "2026-03-28T12:00:00Z", "2026-03-29T01:59:00+01:00"},
      {"30 2 * * *", be, "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"},
      {"30 2 * * *", be, "2026-10-25T00:30:00Z", "2026-10-26T02:30:00+01:00"},
      {"30 2 * * *", be, "2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"},
      {"30 2 * * *", be, "2026-10-25T01:00:00Z", "2026-10-26T01:30:00Z"},
      {"0 * * * *", be, "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z"},
      {"0 3 * * *", be, "2026-10-24T12:00:00Z", "2026-10-25T03:00:00+01:00"},
      {"0 0 25 10 *", be, "2026-01-01T00:00:00Z", "2026-10-25T00:00:00+02:00"},
  });
}

// Australia/Lord_Howe moves by 30 minutes: 02:00 -> 02:30 (+11:00) on
// 2026-10-04 at 15:30Z on the 3rd; 02:00 -> 01:30 (+10:30) on 2026-04-05 at
// 15:00Z on the 4th (01:30-02:00 repeats).
TEST(CronNext, DstHalfHour) {
  const char *lh = "Australia/Lord_Howe";
  check_cases({
      {"15 2 * * *", lh, "2026-10-03T00:00:00Z", "2026-10-03T15:30:00Z"},
      {"45 2 * * *", lh, "2026-10-03T00:00:00Z", "2026-10-04T02:45:00+11:00"},
      {"45 1 * * *", lh, "2026-04-04T00:00:00Z", "2026-04-05T01:45:00+11:00"},
      {"45 1 * * *", lh, "2026-04-04T14:45:00Z", "2026-04-06T01:45:00+10:30"},
  });
}

// --------------------------------------------------------------- iteration

std::vector<int64_t> iterate(const Cron &c, int64_t from, int64_t until) {
  std::vector<int64_t> out;
  int64_t t = from;
  while (true) {
    int64_t n = c.next_after(t);
    if (n == INT64_MAX || n >= until) break;
    EXPECT_GT(n, t) << c.expr();
    if (n <= t) break;
    out.push_back(n);
    t = n;
  }
  return out;
}

TEST(CronIterate, DailyAcrossAYearInNewYork) {
  for (const char *e : {"30 2 * * *", "30 1 * * *", "0 0 * * *", "@daily", "0 12 * * *"}) {
    Cron c = Cron::parse(e, "America/New_York");
    std::vector<int64_t> fires =
        iterate(c, T("2025-12-31T23:59:59-05:00"), T("2027-01-01T00:00:00-05:00"));
    EXPECT_EQ(365u, fires.size()) << e;
    // Consecutive fires are a day apart, except across the two transitions.
    int short_days = 0, long_days = 0;
    for (size_t i = 1; i < fires.size(); ++i) {
      int64_t d = fires[i] - fires[i - 1];
      if (d == 86400000) continue;
      if (d < 86400000) ++short_days;
      if (d > 86400000) ++long_days;
      EXPECT_GE(d, 82800000) << e << " at " << fmt(fires[i]);
      EXPECT_LE(d, 90000000) << e << " at " << fmt(fires[i]);
    }
    EXPECT_GE(short_days, 1) << e;
    EXPECT_GE(long_days, 1) << e;
  }
}

TEST(CronIterate, StrictlyIncreasingAndConsistent) {
  const std::vector<std::pair<const char *, const char *>> exprs = {
      {"*/7 * * * *", "America/New_York"},    {"13 */5 * * 1-5", "Europe/Berlin"},
      {"*/20 1-3 * * *", "America/New_York"}, {"0 0 13 * FRI", "Europe/Berlin"},
      {"*/17 * 1-3 * * *", "Europe/Berlin"},  {"15,45 1,2 * * SUN", "Australia/Lord_Howe"},
  };
  std::mt19937_64 rng(42);
  for (auto [e, tz] : exprs) {
    Cron c = Cron::parse(e, tz);
    int64_t from = T("2026-01-01T00:00:00Z");
    std::vector<int64_t> fires = iterate(c, from, T("2027-01-01T00:00:00Z"));
    ASSERT_FALSE(fires.empty()) << e;
    for (size_t i = 1; i < fires.size(); ++i) ASSERT_LT(fires[i - 1], fires[i]) << e;
    for (int64_t f : fires) ASSERT_EQ(0, f % 1000) << e;
    // Any instant between two fires leads to the later one.
    for (int k = 0; k < 200; ++k) {
      size_t i = rng() % fires.size();
      int64_t lo = i == 0 ? from : fires[i - 1];
      int64_t t = lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(fires[i] - lo));
      ASSERT_EQ(fires[i], c.next_after(t)) << e << " after " << fmt(t);
      ASSERT_EQ(fires[i], c.next_after(fires[i] - 1)) << e;
    }
  }
}

// Brute force: walk every minute of 2026 in UTC and decide from the policy
// whether a fire happens there, then compare with iterating next_after.
// A minute u fires when its local wall time matches and u is that wall
// time's first occurrence, or when u ends a spring-forward gap and a skipped
// wall time (or u's own) matches.
TEST(CronIterate, MatchesBruteForcePolicy) {
  struct Spec {
    const char *expr;
    std::function<bool(int mon, int dom, int dow, int h, int m)> match;
  };
  const std::vector<Spec> specs = {
      {"30 2 * * *", [](int, int, int, int h, int m) { return h == 2 && m == 30; }},
      {"0 * * * *", [](int, int, int, int, int m) { return m == 0; }},
      {"*/20 1-3 * * *",
       [](int, int, int, int h, int m) { return h >= 1 && h <= 3 && m % 20 == 0; }},
      {"15,45 1,2 * * SUN",
       [](int, int, int w, int h, int m) { return w == 0 && (h == 1 || h == 2) && m % 30 == 15; }},
      {"0 2 1,25 * 0", [](int, int d, int w, int h,
                          int m) { return h == 2 && m == 0 && (d == 1 || d == 25 || w == 0); }},
      {"*/10 2 */2 MAR,OCT,NOV *",
       [](int mo, int d, int, int h, int m) {
         return (mo == 3 || mo == 10 || mo == 11) && d % 2 == 1 && h == 2 && m % 10 == 0;
       }},
  };
  auto wall_matches = [](const Spec &s, int64_t local_min) {
    date::local_days ld =
        date::floor<date::days>(date::local_seconds{std::chrono::minutes{local_min}});
    date::year_month_day ymd{ld};
    int64_t mod =
        local_min - std::chrono::duration_cast<std::chrono::minutes>(ld.time_since_epoch()).count();
    return s.match(static_cast<int>(static_cast<unsigned>(ymd.month())),
                   static_cast<int>(static_cast<unsigned>(ymd.day())),
                   static_cast<int>(date::weekday{ld}.c_encoding()), static_cast<int>(mod / 60),
                   static_cast<int>(mod % 60));
  };
  for (const char *tz : {"America/New_York", "Europe/Berlin", "Australia/Lord_Howe"}) {
    const date::time_zone *z = date::locate_zone(tz);
    const int64_t from = T("2026-01-01T00:00:00Z") / 60000, to = T("2027-01-01T00:00:00Z") / 60000;
    std::vector<int64_t> local(static_cast<size_t>(to - from + 1));
    std::vector<bool> first(local.size());
    for (int64_t u = from - 1; u <= to; ++u) {
      date::sys_seconds s{std::chrono::minutes{u}};
      auto info = z->get_info(s);
      int64_t l = u + info.offset.count() / 60;
      if (u >= from) {
        local[static_cast<size_t>(u - from)] = l;
        auto li = z->get_info(date::local_seconds{std::chrono::minutes{l}});
        first[static_cast<size_t>(u - from)] =
            li.result != date::local_info::ambiguous || s < li.second.begin;
      }
    }
    for (const Spec &s : specs) {
      std::vector<int64_t> want;
      for (int64_t u = from + 1; u < to; ++u) {
        size_t i = static_cast<size_t>(u - from);
        bool fire = first[i] && wall_matches(s, local[i]);
        for (int64_t l = local[i - 1] + 1; !fire && l < local[i]; ++l) fire = wall_matches(s, l);
        if (fire) want.push_back(u * 60000);
      }
      Cron c = Cron::parse(s.expr, tz);
      std::vector<int64_t> got = iterate(c, from * 60000, to * 60000);
      ASSERT_FALSE(want.empty()) << s.expr;
      ASSERT_EQ(want.size(), got.size()) << s.expr << " in " << tz;
      for (size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(want[i], got[i])
            << s.expr << " in " << tz << ": want " << fmt(want[i]) << " got " << fmt(got[i]);
    }
  }
}

// Prints the cost of next_after (tests never fail on timing; the figure is
// informational, the scheduler benchmark measures firing).
TEST(CronSpeed, NextAfterManyCalls) {
  const std::vector<std::pair<const char *, const char *>> exprs = {
      {"*/5 * * * *", "America/New_York"},
      {"0 9 * * MON-FRI", "Europe/Berlin"},
      {"0 0 1 * *", "UTC"},
      {"30 2 29 2 *", "America/New_York"},
      {"*/10 * * * * *", "Europe/Berlin"},
  };
  int64_t calls = 0;
  auto start = std::chrono::steady_clock::now();
  for (auto [e, tz] : exprs) {
    Cron c = Cron::parse(e, tz);
    int64_t t = T("2026-01-01T00:00:00Z");
    for (int i = 0; i < 20000; ++i, ++calls) {
      int64_t n = c.next_after(t + i * 3'600'000LL);
      ASSERT_NE(INT64_MAX, n);
    }
  }
  double us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() /
      static_cast<double>(calls);
  RecordProperty("next_after_us", std::to_string(us));
  std::printf("next_after: %.2f us per call\n", us);
}

}  // namespace
