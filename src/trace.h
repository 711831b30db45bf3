// trace: W3C Trace Context (traceparent / tracestate) checks and the
// per-attempt span id handed to providers (docs/tracing.md).
#pragma once

#include <random>
#include <string>

#include "util.h"

namespace wf::trace {

// Throws Error(WF_EINVAL) naming `what` unless `tp` is a W3C traceparent:
// "vv-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", lowercase hex,
// version not "ff", ids not all zeros; version 00 is exactly 55 characters,
// a later version may carry more fields after a '-'.
void check_traceparent(const std::string &tp, const std::string &what);
// tracestate: at most 512 printable ASCII characters (passed on as is).
void check_tracestate(const std::string &ts, const std::string &what);
// Checks "traceparent" / "tracestate" of an object (job metadata, event
// envelope) when present: strings, valid as above.
void check_fields(const json &obj, const std::string &what);
// The trace id of a checked traceparent.
inline std::string trace_id(const std::string &tp) { return tp.substr(3, 32); }
// The same trace and flags with a new random span id (version 00).
std::string with_new_span(const std::string &tp, std::mt19937_64 &rng);

// What a job's metadata says about its trace (filled only for the fields
// present; metadata that is not an object yields nothing).
struct Context {
  std::string traceparent, tracestate, correlation_id;
};
// Reads the context of stored metadata; cheap when it has none (a substring
// test before any parse).
Context from_metadata(const std::string &metadata);
// The metadata a provider sees for one attempt: traceparent with a new span
// id and "parent_span_id" the stored one; `metadata` unchanged when it has no
// traceparent.
std::string attempt_metadata(const std::string &metadata, const Context &c, std::mt19937_64 &rng);

}  // namespace wf::trace
