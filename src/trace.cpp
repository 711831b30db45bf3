// trace: W3C Trace Context checks and per-attempt span ids (trace.h).
#include "trace.h"

namespace wf::trace {

namespace {
bool lower_hex(const std::string &s, size_t from, size_t n) {
  for (size_t i = from; i < from + n; ++i) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}
bool all_zero(const std::string &s, size_t from, size_t n) {
  for (size_t i = from; i < from + n; ++i)
    if (s[i] != '0') return false;
  return true;
}
}  // namespace

void check_traceparent(const std::string &tp, const std::string &what) {
  auto bad = [&](const char *why) {
    fail(WF_EINVAL, what + ": \"traceparent\" is not a W3C traceparent (" + why +
                        "; expected 00-<32 hex>-<16 hex>-<2 hex>)");
  };
  if (tp.size() < 55) bad("too short");
  if (tp.size() > 256) bad("too long");
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-') bad("misplaced '-'");
  if (!lower_hex(tp, 0, 2) || !lower_hex(tp, 3, 32) || !lower_hex(tp, 36, 16) ||
      !lower_hex(tp, 53, 2))
    bad("not lowercase hex");
  if (tp.compare(0, 2, "ff") == 0) bad("version ff");
  if (tp.compare(0, 2, "00") == 0 && tp.size() != 55) bad("version 00 is 55 characters");
  if (tp.size() > 55 && tp[55] != '-') bad("misplaced '-'");
  if (all_zero(tp, 3, 32)) bad("trace id all zeros");
  if (all_zero(tp, 36, 16)) bad("parent id all zeros");
}

void check_tracestate(const std::string &ts, const std::string &what) {
  if (ts.size() > 512) fail(WF_EINVAL, what + ": \"tracestate\" is longer than 512 characters");
  for (char c : ts)
    if (c < 0x20 || c > 0x7e) fail(WF_EINVAL, what + ": \"tracestate\" must be printable ASCII");
}

void check_fields(const json &obj, const std::string &what) {
  if (!obj.is_object()) return;
  auto tp = obj.find("traceparent");
  if (tp != obj.end() && !tp->is_null()) {
    if (!tp->is_string()) fail(WF_EINVAL, what + ": \"traceparent\" must be a string");
    check_traceparent(tp->get_ref<const std::string &>(), what);
  }
  auto ts = obj.find("tracestate");
  if (ts != obj.end() && !ts->is_null()) {
    if (!ts->is_string()) fail(WF_EINVAL, what + ": \"tracestate\" must be a string");
    check_tracestate(ts->get_ref<const std::string &>(), what);
  }
}

std::string with_new_span(const std::string &tp, std::mt19937_64 &rng) {
  static const char *hex = "0123456789abcdef";
  uint64_t v;
  do v = rng();
  while (v == 0);
  std::string span(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) span[static_cast<size_t>(i)] = hex[v & 15];
  return "00-" + tp.substr(3, 32) + "-" + span + "-" + tp.substr(53, 2);
}

Context from_metadata(const std::string &metadata) {
  Context c;
  bool tp = metadata.find("\"traceparent\"") != std::string::npos;
  bool corr = metadata.find("\"correlation_id\"") != std::string::npos;
  if (!tp && !corr) return c;
  json m = json::parse(metadata, nullptr, false);
  if (!m.is_object()) return c;
  auto str = [&](const char *k) {
    auto it = m.find(k);
    return it != m.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  c.traceparent = str("traceparent");
  c.tracestate = str("tracestate");
  c.correlation_id = str("correlation_id");
  // Stored metadata was checked at enqueue; a row written otherwise is not
  // trusted to be well formed.
  if (!c.traceparent.empty()) {
    try {
      check_traceparent(c.traceparent, "metadata");
    } catch (const Error &) {
      c.traceparent.clear();
      c.tracestate.clear();
    }
  }
  return c;
}

std::string attempt_metadata(const std::string &metadata, const Context &c, std::mt19937_64 &rng) {
  if (c.traceparent.empty()) return metadata;
  json m = json::parse(metadata, nullptr, false);
  if (!m.is_object()) return metadata;
  m["traceparent"] = with_new_span(c.traceparent, rng);
  m["parent_span_id"] = c.traceparent.substr(36, 16);
  return m.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace wf::trace
