// The C ABI: every entry point catches everything and maps it to a status
// and a thread-local message (wf_last_error).
#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>

#include "outbox.h"

// The handle is a small shell around the engine. wf_close destroys the
// engine but never frees the shell: it stays, marked closed, for the life of
// the process (a tombstone, reachable from g_handles), so that a late call on
// it returns WF_ECLOSED instead of reading freed memory. Every call on the
// handle is counted in `active` while it runs; wf_close marks the handle
// closing (new calls get WF_ECLOSED) and waits for the count to reach zero
// before it touches the engine.
struct wf_engine {
  std::atomic<wf::Engine *> e{nullptr};
  std::atomic<int> active{0};
  std::atomic<bool> closing{false};
  std::mutex mu;  // with cv: wf_close waits for active == 0
  std::condition_variable cv;
  uint64_t fork_gen = 0;                   // process generation at open
  wf::Engine *inherited = nullptr;         // left alone by a child's wf_close
  std::atomic<wf_engine *> next{nullptr};  // g_handles list
};

namespace {

template <typename F>
int guard(F &&f) {
  wf::set_last_error(std::string());  // wf_last_error describes this call only
  try {
    return f();
  } catch (const wf::Error &ex) {
    wf::set_last_error(ex.what());
    return ex.code();
  } catch (const std::bad_alloc &) {
    wf::set_last_error("out of memory");
    return WF_ENOMEM;
  } catch (const std::exception &ex) {
    wf::set_last_error(std::string("internal error: ") + ex.what());
    return WF_EINTERNAL;
  } catch (...) {
    wf::set_last_error("internal error");
    return WF_EINTERNAL;
  }
}

char *dup(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = 0;
  return p;
}

std::atomic<wf_engine *> g_handles{nullptr};  // every handle ever opened (lock-free push)

void remember(wf_engine *h) {
  wf_engine *head = g_handles.load();
  do {
    h->next.store(head);
  } while (!g_handles.compare_exchange_weak(head, h));
}

void check_process(const wf_engine *h) {
  if (h->fork_gen != wf::fork_generation())
    wf::fail(WF_EFORKED,
             "the engine was opened in the parent process before fork(): it cannot be used in "
             "the child; call wf_open in this process (wf_close on the inherited handle only "
             "marks it closed)");
}

// One counted call on a handle (see struct wf_engine).
class EngineCall {
 public:
  explicit EngineCall(wf_engine *h) : h_(h) {
    if (!h) wf::fail(WF_EINVAL, "engine handle is NULL");
    check_process(h);
    h->active.fetch_add(1);
    if (h->closing.load()) {
      leave();
      wf::fail(WF_ECLOSED, "engine is closed (wf_close was called)");
    }
  }
  ~EngineCall() { leave(); }
  EngineCall(const EngineCall &) = delete;
  EngineCall &operator=(const EngineCall &) = delete;
  wf::Engine &engine() const { return *h_->e.load(); }

 private:
  void leave() {
    if (!h_) return;
    if (h_->active.fetch_sub(1) == 1 && h_->closing.load()) {
      std::lock_guard<std::mutex> g(h_->mu);
      h_->cv.notify_all();
    }
    h_ = nullptr;
  }
  wf_engine *h_;
};

// A call on an engine handle: counted, and only while it is open.
template <typename F>
int guard(wf_engine *h, F &&f) {
  return guard([&] {
    EngineCall c(h);
    return f();
  });
}

// Valid inside guard(h, ...) only.
wf::Engine &eng(wf_engine *h) { return *h->e.load(); }

wf::JobCtx *job(wf_job *j) {
  if (!j) wf::fail(WF_EINVAL, "job handle is NULL");
  return reinterpret_cast<wf::JobCtx *>(j);
}
const wf::JobCtx *cjob(const wf_job *j) { return reinterpret_cast<const wf::JobCtx *>(j); }

// Completes a handle exactly once. The handle's memory is valid until then
// (it owns itself while the host holds it). If its engine was closed, the
// handle is released here and WF_ESTATE returned; `make` may validate input
// against the engine's limits and throw, leaving the handle valid.
template <typename F>
int complete_job(wf_job *j, F &&make) {
  wf::JobCtx *c = job(j);
  std::shared_ptr<wf::EngineLink> link = c->link;  // outlives c
  std::shared_lock<std::shared_mutex> lk(link->mu);
  if (!link->e) {
    wf::AttemptState st = c->state.load();
    if (st == wf::AttemptState::kReported || st == wf::AttemptState::kReleased) {
      wf::set_last_error("job " + c->id_str + " was already completed");
      return WF_ESTATE;
    }
    c->state.store(wf::AttemptState::kReleased);
    wf::set_last_error("job " + c->id_str + " attempt " + std::to_string(c->attempt) +
                       ": the engine was closed; the outcome is ignored (the job was returned "
                       "to the queue)");
    std::shared_ptr<wf::JobCtx> self;
    {
      std::lock_guard<std::mutex> g(c->host_mu);
      self.swap(c->host_ref);
    }
    wf::forget_orphan(c);
    return WF_ESTATE;  // frees the handle
  }
  wf::Outcome o = make(*link->e);
  return link->e->complete(c, std::move(o));
}

wf::HostTx *htx(wf_tx *t) {
  if (!t) wf::fail(WF_EINVAL, "transaction handle is NULL");
  return reinterpret_cast<wf::HostTx *>(t);
}

}  // namespace

namespace {
// A read call returning one JSON document through `out`.
template <typename F>
int read_call(wf_engine *e, char **out, const char *what, F &&f) {
  if (out) *out = nullptr;
  return guard(e, [&] {
    if (!out) wf::fail(WF_EINVAL, std::string(what) + ": json_out is NULL");
    *out = dup(f(eng(e)));
    return WF_OK;
  });
}
}  // namespace

extern "C" {

WF_API const char *wf_version(void) { return "0.1.0"; }

WF_API const char *wf_strerror(int status) {
  switch (status) {
    case WF_OK:
      return "ok";
    case WF_EINVAL:
      return "invalid argument or document";
    case WF_ENOTFOUND:
      return "not found";
    case WF_EEXIST:
      return "already exists";
    case WF_EBUSY:
      return "busy";
    case WF_ECLOSED:
      return "engine draining or closed";
    case WF_EIO:
      return "I/O error";
    case WF_ECORRUPT:
      return "database corrupt or not a wfengine database";
    case WF_ENOMEM:
      return "out of memory";
    case WF_ETIMEDOUT:
      return "timed out";
    case WF_ETOOBIG:
      return "over a size or depth limit";
    case WF_ESTATE:
      return "object already finished or in the wrong state";
    case WF_EUNSUPPORTED:
      return "not supported";
    case WF_EINTERNAL:
      return "internal error";
    case WF_ECONFLICT:
      return "conflict: changed concurrently, retry";
    case WF_EFORKED:
      return "engine inherited across fork(): open it in this process";
    default:
      return "unknown status";
  }
}

WF_API const char *wf_last_error(void) { return wf::last_error(); }

WF_API void wf_free(void *p) { std::free(p); }

WF_API int wf_open(const char *path, const char *options_json, wf_engine **out) {
  return guard([&] {
    if (!out) wf::fail(WF_EINVAL, "wf_open: out is NULL");
    *out = nullptr;
    if (!path || !*path) wf::fail(WF_EINVAL, "wf_open: path is empty");
    wf::Options o = wf::parse_options(options_json);
    auto *en = new wf::Engine(path, o);
    wf_engine *h = nullptr;
    try {
      h = new wf_engine;
    } catch (...) {
      wf::close_engine(en);
      throw;
    }
    h->e = en;
    h->fork_gen = en->fork_gen;
    remember(h);
    *out = h;
    return WF_OK;
  });
}

WF_API int wf_start(wf_engine *e) {
  return guard(e, [&] {
    wf::start(eng(e));
    return WF_OK;
  });
}

WF_API int wf_drain(wf_engine *e, int64_t timeout_ms) {
  return guard(e, [&] { return wf::drain(eng(e), timeout_ms); });
}

WF_API int wf_close(wf_engine *e) {
  wf::set_last_error(std::string());
  if (!e) return WF_OK;
  return guard([&] {
    if (e->fork_gen != wf::fork_generation()) {
      // Inherited across fork(): the parent's threads do not exist here and
      // its connections, locks and leases are the parent's. Touch none of
      // it: mark the handle closed and leave the engine's memory as it is.
      if (!e->closing.exchange(true)) e->inherited = e->e.exchange(nullptr);
      return WF_OK;
    }
    {
      EngineCall c(e);  // WF_ECLOSED if already closed or closing
      wf::Engine &en = c.engine();
      if (en.on_engine_thread())
        wf::fail(WF_EBUSY,
                 "wf_close cannot be called from an engine callback (provider, saga reducer, "
                 "logger or clock): it would wait for itself");
      en.check_own_tx("wf_close");
    }
    if (e->closing.exchange(true)) wf::fail(WF_ECLOSED, "engine is closed (wf_close was called)");
    wf::Engine *en = e->e.load();
    wf::close_started(*en);  // wakes a wf_drain waiting in another thread
    {
      std::unique_lock<std::mutex> lk(e->mu);
      e->cv.wait(lk, [&] { return e->active.load() == 0; });
    }
    e->e.store(nullptr);
    wf::close_engine(en);
    return WF_OK;
  });
}

WF_API int wf_set_clock(wf_engine *e, wf_clock_fn fn, void *user) {
  return guard(e, [&] {
    wf::Engine &en = eng(e);
    {
      std::lock_guard<std::mutex> g(en.clock_mu);
      en.clock_fn = fn;
      en.clock_user = user;
    }
    en.notify_loop([](wf::Engine::Inbox &in) { in.wake = true; });
    return WF_OK;
  });
}

WF_API int wf_wake(wf_engine *e) {
  return guard(e, [&] {
    eng(e).notify_loop([](wf::Engine::Inbox &in) { in.wake = true; });
    return WF_OK;
  });
}

WF_API int wf_sync(wf_engine *e) {
  return guard(e, [&] {
    wf::sync(eng(e));
    return WF_OK;
  });
}

WF_API int wf_effect_register(wf_engine *e, const char *effect, const char *policy_json,
                              wf_effect_fn fn, void *user) {
  return guard(e, [&] {
    wf::register_effect(eng(e), effect, policy_json, fn, user);
    return WF_OK;
  });
}

WF_API int wf_effect_register_builtin(wf_engine *e, const char *effect, const char *config_json) {
  return guard(e, [&] {
    wf::register_builtin(eng(e), e, effect, config_json);
    return WF_OK;
  });
}

WF_API const char *wf_job_id(const wf_job *j) { return j ? cjob(j)->id_str.c_str() : ""; }
WF_API const char *wf_job_key(const wf_job *j) { return j ? cjob(j)->key.c_str() : ""; }
WF_API const char *wf_job_tenant(const wf_job *j) { return j ? cjob(j)->tenant.c_str() : ""; }
WF_API const char *wf_job_effect(const wf_job *j) { return j ? cjob(j)->effect.c_str() : ""; }
WF_API const char *wf_job_payload(const wf_job *j, size_t *len) {
  if (!j) {
    if (len) *len = 0;
    return "";
  }
  if (len) *len = cjob(j)->payload.size();
  return cjob(j)->payload.c_str();
}
WF_API const char *wf_job_metadata(const wf_job *j) { return j ? cjob(j)->metadata.c_str() : "{}"; }
WF_API int wf_job_attempt(const wf_job *j) { return j ? cjob(j)->attempt : 0; }

WF_API int wf_job_complete(wf_job *j, const char *result_json) {
  return guard([&] {
    return complete_job(j, [&](wf::Engine &en) {
      wf::Outcome o{wf::Outcome::kComplete, "", -1, ""};
      if (result_json) {
        // Validate so a bad result is reported, not stored; j stays valid then.
        wf::parse_json(result_json, en.opt.limits, "result", en.opt.limits.max_payload_bytes);
        o.result = result_json;
      }
      return o;
    });
  });
}

// Error texts from providers are stored, logged and (for saga jobs) put into
// the outcome event: invalid UTF-8 is replaced with U+FFFD and the text is cut
// to 64 KiB, so no provider string can make an outcome unstorable.
constexpr size_t kMaxErrorText = 65536;
// Longest retry delay (about 1115 years); longer ones are cut to it.
constexpr int64_t kMaxRetryDelayMs = INT64_C(1) << 45;

WF_API int wf_job_retry(wf_job *j, const char *error, int64_t delay_ms) {
  return guard([&] {
    return complete_job(j, [&](wf::Engine &) {
      std::string text = error ? wf::sanitize_utf8(error, kMaxErrorText) : std::string("retry");
      int64_t delay = delay_ms < 0 ? -1 : std::min(delay_ms, kMaxRetryDelayMs);
      return wf::Outcome{wf::Outcome::kRetry, std::move(text), delay, ""};
    });
  });
}

WF_API int wf_job_fail(wf_job *j, const char *error) {
  return guard([&] {
    return complete_job(j, [&](wf::Engine &) {
      std::string text = error ? wf::sanitize_utf8(error, kMaxErrorText) : std::string("failed");
      return wf::Outcome{wf::Outcome::kFail, std::move(text), -1, ""};
    });
  });
}

WF_API int wf_enqueue(wf_engine *e, const char *job_json, char **id_out) {
  if (id_out) *id_out = nullptr;
  return guard(e, [&] {
    std::string id;
    bool existing = wf::enqueue(eng(e), job_json, &id);
    if (id_out) *id_out = dup(id);
    if (existing) {
      wf::set_last_error("job key already exists (job " + id + ")");
      return WF_EEXIST;
    }
    return WF_OK;
  });
}

WF_API int wf_enqueue_batch(wf_engine *e, const char *jobs_json_array, char **ids_json_out) {
  if (ids_json_out) *ids_json_out = nullptr;
  return guard(e, [&] {
    std::string ids = wf::enqueue_batch(eng(e), jobs_json_array);
    if (ids_json_out) *ids_json_out = dup(ids);
    return WF_OK;
  });
}

WF_API int wf_enqueue_async(wf_engine *e, const char *job_json, wf_done_fn cb, void *user) {
  return guard(e, [&] {
    wf::enqueue_async(eng(e), job_json, cb, user);
    return WF_OK;
  });
}

WF_API int wf_submit_async(wf_engine *e, const char *event_json, wf_done_fn cb, void *user) {
  return guard(e, [&] {
    wf::submit_event_async(eng(e), event_json, cb, user);
    return WF_OK;
  });
}

WF_API int wf_cancel(wf_engine *e, const char *tenant, const char *id_or_key) {
  return guard(e, [&] {
    wf::cancel(eng(e), tenant, id_or_key);
    return WF_OK;
  });
}

WF_API int wf_tx_begin(wf_engine *e, wf_tx **out) {
  if (out) *out = nullptr;
  return guard(e, [&] {
    if (!out) wf::fail(WF_EINVAL, "wf_tx_begin: out is NULL");
    *out = reinterpret_cast<wf_tx *>(wf::tx_begin(eng(e)));
    return WF_OK;
  });
}

WF_API int wf_tx_exec(wf_tx *t, const char *sql, const char *params_json, char **rows_json_out) {
  if (rows_json_out) *rows_json_out = nullptr;
  return guard([&] {
    std::string rows = wf::tx_exec(htx(t), sql, params_json, rows_json_out != nullptr);
    if (rows_json_out) *rows_json_out = dup(rows);
    return WF_OK;
  });
}

WF_API int wf_tx_enqueue(wf_tx *t, const char *job_json, char **id_out) {
  if (id_out) *id_out = nullptr;
  return guard([&] {
    std::string id;
    bool existing = wf::tx_enqueue(htx(t), job_json, &id);
    if (id_out) *id_out = dup(id);
    if (existing) {
      wf::set_last_error("job key already exists (job " + id + ")");
      return WF_EEXIST;
    }
    return WF_OK;
  });
}

WF_API int wf_tx_schedule(wf_tx *t, const char *schedule_json) {
  return guard([&] {
    wf::tx_schedule(htx(t), schedule_json);
    return WF_OK;
  });
}

WF_API int wf_tx_submit(wf_tx *t, const char *event_json) {
  return guard([&] {
    if (!wf::tx_submit(htx(t), event_json)) {
      wf::set_last_error("event id already submitted");
      return WF_EEXIST;
    }
    return WF_OK;
  });
}

WF_API int wf_schedule(wf_engine *e, const char *schedule_json) {
  return guard(e, [&] {
    wf::schedule(eng(e), schedule_json);
    return WF_OK;
  });
}

WF_API int wf_unschedule(wf_engine *e, const char *tenant, const char *key) {
  return guard(e, [&] {
    wf::unschedule(eng(e), tenant, key);
    return WF_OK;
  });
}

WF_API int wf_submit(wf_engine *e, const char *event_json) {
  return guard(e, [&] {
    if (!wf::submit_event(eng(e), event_json)) {
      wf::set_last_error("event id already submitted");
      return WF_EEXIST;
    }
    return WF_OK;
  });
}

WF_API int wf_saga_register(wf_engine *e, const char *saga, const char *spec_json, wf_saga_fn fn,
                            void *user) {
  return guard(e, [&] {
    wf::register_saga(eng(e), saga, spec_json, fn, user);
    return WF_OK;
  });
}

WF_API int wf_saga_get(wf_engine *e, const char *tenant, const char *saga,
                       const char *correlation_id, char **state_json_out) {
  if (state_json_out) *state_json_out = nullptr;
  return guard(e, [&] {
    if (!state_json_out) wf::fail(WF_EINVAL, "wf_saga_get: state_json_out is NULL");
    *state_json_out = dup(wf::saga_get(eng(e), tenant, saga, correlation_id));
    return WF_OK;
  });
}

WF_API int wf_saga_replay(wf_engine *e, const char *tenant, const char *saga,
                          const char *correlation_id, const char *options_json,
                          char **state_json_out) {
  if (state_json_out) *state_json_out = nullptr;
  return guard(e, [&] {
    std::string s = wf::saga_replay(eng(e), tenant, saga, correlation_id, options_json);
    if (state_json_out) *state_json_out = dup(s);
    return WF_OK;
  });
}

WF_API int wf_tx_commit(wf_tx *t) {
  return guard([&] { return wf::tx_commit(htx(t)); });
}

WF_API int wf_tx_rollback(wf_tx *t) {
  wf::set_last_error(std::string());
  if (!t) return WF_OK;
  return guard([&] {
    wf::tx_rollback(htx(t));
    return WF_OK;
  });
}

WF_API int wf_stats(wf_engine *e, const char *filter_json, char **json_out) {
  if (json_out) *json_out = nullptr;
  return guard(e, [&] {
    if (!json_out) wf::fail(WF_EINVAL, "wf_stats: json_out is NULL");
    *json_out = dup(
        wf::stats(eng(e), filter_json).dump(-1, ' ', false, wf::json::error_handler_t::replace));
    return WF_OK;
  });
}

WF_API int wf_metrics(wf_engine *e, char **text_out) {
  if (text_out) *text_out = nullptr;
  return guard(e, [&] {
    if (!text_out) wf::fail(WF_EINVAL, "wf_metrics: text_out is NULL");
    *text_out = dup(wf::metrics(eng(e)));
    return WF_OK;
  });
}

WF_API int wf_dead_list(wf_engine *e, const char *filter_json, char **json_out) {
  if (json_out) *json_out = nullptr;
  return guard(e, [&] {
    if (!json_out) wf::fail(WF_EINVAL, "wf_dead_list: json_out is NULL");
    *json_out = dup(wf::dead_list(eng(e), filter_json));
    return WF_OK;
  });
}

WF_API int wf_dead_requeue(wf_engine *e, const char *filter_json, int64_t *count_out) {
  return guard(e, [&] {
    int64_t n = wf::dead_requeue(eng(e), filter_json);
    if (count_out) *count_out = n;
    return WF_OK;
  });
}

WF_API int wf_dead_purge(wf_engine *e, const char *filter_json, int64_t *count_out) {
  return guard(e, [&] {
    int64_t n = wf::dead_purge(eng(e), filter_json);
    if (count_out) *count_out = n;
    return WF_OK;
  });
}

WF_API int wf_set_logger(wf_engine *e, int min_level, wf_log_fn fn, void *user) {
  return guard(e, [&] {
    wf::Engine &en = eng(e);
    if (min_level < WF_LOG_DEBUG || min_level > WF_LOG_ERROR)
      wf::fail(WF_EINVAL, "wf_set_logger: min_level must be WF_LOG_DEBUG..WF_LOG_ERROR");
    en.set_logger(min_level, fn, user);
    return WF_OK;
  });
}

WF_API int wf_set_default_logger(int min_level, wf_log_fn fn, void *user) {
  return guard([&] {
    if (min_level < WF_LOG_DEBUG || min_level > WF_LOG_ERROR)
      wf::fail(WF_EINVAL, "wf_set_default_logger: min_level must be WF_LOG_DEBUG..WF_LOG_ERROR");
    wf::set_default_logger(min_level, fn, user);
    return WF_OK;
  });
}

// ------------------------------------------------------------- read API

WF_API int wf_jobs_list(wf_engine *e, const char *filter_json, char **json_out) {
  return read_call(e, json_out, "wf_jobs_list",
                   [&](wf::Engine &en) { return wf::jobs_list(en, filter_json); });
}

WF_API int wf_job_get(wf_engine *e, const char *tenant, const char *id_or_key, char **json_out) {
  return read_call(e, json_out, "wf_job_get",
                   [&](wf::Engine &en) { return wf::job_get(en, tenant, id_or_key); });
}

WF_API int wf_schedules_list(wf_engine *e, const char *filter_json, char **json_out) {
  return read_call(e, json_out, "wf_schedules_list",
                   [&](wf::Engine &en) { return wf::schedules_list(en, filter_json); });
}

WF_API int wf_sagas_list(wf_engine *e, const char *filter_json, char **json_out) {
  return read_call(e, json_out, "wf_sagas_list",
                   [&](wf::Engine &en) { return wf::sagas_list(en, filter_json); });
}

WF_API int wf_saga_show(wf_engine *e, const char *tenant, const char *saga,
                        const char *correlation_id, char **json_out) {
  return read_call(e, json_out, "wf_saga_show",
                   [&](wf::Engine &en) { return wf::saga_show(en, tenant, saga, correlation_id); });
}

WF_API int wf_events_list(wf_engine *e, const char *filter_json, char **json_out) {
  return read_call(e, json_out, "wf_events_list",
                   [&](wf::Engine &en) { return wf::events_list(en, filter_json); });
}

WF_API int wf_engines_list(wf_engine *e, char **json_out) {
  return read_call(e, json_out, "wf_engines_list",
                   [&](wf::Engine &en) { return wf::engines_list(en); });
}

WF_API int wf_check(wf_engine *e, const char *options_json, char **json_out) {
  return read_call(e, json_out, "wf_check",
                   [&](wf::Engine &en) { return wf::check(en, options_json); });
}

WF_API int wf_backup(wf_engine *e, const char *path) {
  return guard(e, [&] {
    wf::backup(eng(e), path);
    return WF_OK;
  });
}

}  // extern "C"

namespace wf {
// A whole retention pass on the calling thread (tests; see engine.h).
int purge_now(wf_engine *h, int64_t *removed_out, bool vacuum) {
  return guard(h, [&] {
    if (eng(h).opt.read_only) wf::fail(WF_ESTATE, wf::kReadOnlyRefusal);
    int64_t n = eng(h).purge_now(vacuum);
    if (removed_out) *removed_out = n;
    return WF_OK;
  });
}
}  // namespace wf
