// Built-in providers (wf_effect_register_builtin) behind one small interface.
//
// A provider sees this header and the public C API (wfengine.h) only, never
// the engine's internals: adding a provider type is one file in
// src/providers/ plus one line in registry.cpp.
//
// Threads. attach, detach and dispatch run on the engine's loop thread (the
// libuv loop that dispatches every effect), so a provider may put its own
// handles (sockets, timers, a curl multi handle, a NATS connection adapter) on
// that loop and must never block it. A job handle may be completed from any
// thread (wf_job_complete / wf_job_retry / wf_job_fail), exactly as a host's
// effect callback may.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "wfengine.h"

struct uv_loop_s;

namespace wf::prov {

// What the engine offers a provider.
class Host {
 public:
  virtual ~Host() = default;
  // The engine's public handle, for the C API (wf_submit_async, wf_stats, ...).
  // Valid from registration until wf_close; never call wf_close/wf_drain on it.
  virtual wf_engine *engine() const = 0;
  // A structured log line through the engine's logger. Never pass payloads or
  // secrets. level: WF_LOG_*.
  virtual void log(int level, const std::string &msg, const nlohmann::json &fields) = 0;
};

class Provider {
 public:
  virtual ~Provider() = default;
  // Loop thread, once per run of the loop (wf_start), before the first
  // dispatch; also for a provider registered while the loop runs.
  virtual void attach(uv_loop_s *loop) = 0;
  // Loop thread, when the loop stops (wf_close): close every handle the
  // provider put on the loop (the loop runs until their close callbacks ran)
  // and stop using it. Attempts still running are abandoned: the engine gives
  // their leases back and they run again.
  virtual void detach() = 0;
  // Loop thread, once per attempt of a job of this effect (as wf_effect_fn).
  // The provider owns the handle until it completes it. A provider that only
  // consumes (an inbound source) has no jobs and may ignore this.
  virtual void dispatch(wf_job *job) = 0;
};

// The keys of the effect policy (wf_effect_register's document) that a
// built-in configuration may carry beside its own; the engine reads them.
const std::vector<std::string> &policy_keys();

// Builds a provider of one type from its whole configuration document (the
// policy keys included; ignore them). Throws wf::Error (WF_EINVAL, naming the
// key) on a bad configuration; resolves secret references here.
using Factory = std::unique_ptr<Provider> (*)(Host &host, const std::string &effect,
                                              const nlohmann::json &config);

// The factory for `type`, or nullptr (registry.cpp).
Factory find_factory(const std::string &type);
// Every known type, for error messages.
std::vector<std::string> known_types();

}  // namespace wf::prov
