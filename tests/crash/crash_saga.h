// The saga of the kill -9 test, shared by wf_crash_child (which submits its
// events) and crash_test.cpp (whose final drain applies the rest). Both must
// register the very same reducer, before wf_start and before any wf_submit.
//
// Instances are "i0" .. "i<kCrashSagaInstances-1>", shared by all children, so
// an instance lives across many kills. Every event has type "inc" (a start
// type) and the reducer appends its event_id to the instance's state:
//   {"ids": ["c3-e0-17", ...]}
// so the final state lists every applied event in application order, once
// per application: a duplicate id means an event was applied twice.
#ifndef WF_CRASH_SAGA_H
#define WF_CRASH_SAGA_H

#include <cstddef>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>

#include "wfengine.h"

namespace crash {

constexpr const char* kSagaName = "counter";
constexpr const char* kSagaSpec = "{\"start\":[\"inc\"],\"correlation\":\"correlation_id\"}";
constexpr const char* kSchedEffect = "sched";
constexpr int kSagaInstances = 16;

inline std::string instance_id(long k) { return "i" + std::to_string(k % kSagaInstances); }

// Pure and deterministic: the same input always gives the same output.
inline int saga_reducer(void* /*user*/, const char* input_json, size_t len, wf_buf* out) {
  try {
    nlohmann::json in = nlohmann::json::parse(input_json, input_json + len);
    nlohmann::json state = in.at("state");
    if (state.is_null()) state = nlohmann::json{{"ids", nlohmann::json::array()}};
    state.at("ids").push_back(in.at("event").at("event_id"));
    nlohmann::json res{{"state", std::move(state)}, {"done", false}};
    std::string s = res.dump();
    return wf_buf_set(out, s.data(), s.size()) == WF_OK ? 0 : 1;
  } catch (const std::exception&) {
    return 1;  // parks the event: the final checks report it
  }
}

}  // namespace crash

#endif  // WF_CRASH_SAGA_H
