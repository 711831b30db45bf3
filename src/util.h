// util: errors, JSON decoding with limits, time helpers, ids. Depends on nothing
// of ours; everything else depends on it.
#pragma once

#include <atomic>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

#include "wfengine.h"

namespace wf {

using json = nlohmann::json;

// Error carried inside the library; converted to a status + wf_last_error()
// at the C boundary.
class Error : public std::runtime_error {
 public:
  Error(int code, const std::string &msg) : std::runtime_error(msg), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

[[noreturn]] inline void fail(int code, const std::string &msg) { throw Error(code, msg); }

// Thread-local last error message (wf_last_error).
void set_last_error(std::string msg);
const char *last_error();

struct Limits {
  size_t max_payload_bytes = 1 << 20;
  int max_depth = 64;
};

// Parses `text` as JSON (RFC 8259, strict: no comments, no trailing content,
// valid UTF-8, no lone surrogates, no raw control characters or NUL bytes
// anywhere; the escape "\u0000" is valid and yields a NUL in the string).
// Limits, checked before or while parsing so a violating document is never
// built whole:
//  - size: over `max_bytes` is WF_ETOOBIG;
//  - nesting: more than lim.max_depth open arrays/objects is WF_ETOOBIG;
//  - strings: a string or key longer than max(lim.max_payload_bytes, 64 KiB)
//    is WF_ETOOBIG (no field may hold more: payloads are bounded by
//    max_payload_bytes, metadata by 64 KiB);
//  - duplicate keys in any object, at any depth, are WF_EINVAL naming the key
//    (such documents are ambiguous: parsers disagree on which value wins).
// Other malformed input is WF_EINVAL. `what` names the document in errors.
json parse_json(std::string_view text, const Limits &lim, const char *what, size_t max_bytes);

// Typed field access with errors that name the field.
std::string get_string(const json &o, const char *field, const char *what, bool required,
                       const std::string &def = "");
int64_t get_int(const json &o, const char *field, const char *what, int64_t def, int64_t lo,
                int64_t hi);
double get_double(const json &o, const char *field, const char *what, double def, double lo,
                  double hi);
// Time value: integer ms since epoch or RFC 3339 string.
int64_t get_time(const json &o, const char *field, const char *what, int64_t def);
int64_t parse_rfc3339(const std::string &s);  // throws Error(WF_EINVAL)
std::string format_rfc3339(int64_t ms);
// Rejects an identifier (tenant, key, effect, event id, ...) holding a NUL
// byte: it could not cross the C API intact.
void check_no_nul(const std::string &v, const char *field, const char *what);
// Rejects keys not in `allowed`.
void check_keys(const json &o, std::initializer_list<const char *> allowed, const char *what);

// Host strings that did not come through parse_json (C string arguments:
// names, error texts). valid_utf8 is strict (no overlongs, no surrogates, no
// code points above U+10FFFF); check_utf8 throws WF_EINVAL naming the field;
// sanitize_utf8 replaces each invalid sequence with U+FFFD and cuts the
// result to at most `max_bytes` bytes on a character boundary.
bool valid_utf8(std::string_view s);
void check_utf8(std::string_view v, const char *field, const char *what);
std::string sanitize_utf8(std::string_view s, size_t max_bytes = SIZE_MAX);

// Saturating arithmetic for instants and durations in ms: results are clamped
// to [INT64_MIN, INT64_MAX] instead of overflowing.
int64_t sat_add(int64_t a, int64_t b);
int64_t sat_sub(int64_t a, int64_t b);

int64_t system_now_ms();
std::string random_hex(size_t bytes);

}  // namespace wf
