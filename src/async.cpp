// Pipelined enqueue: wf_enqueue_async / wf_submit_async. The caller's thread
// validates the document and queues one write request; the writer commits it
// with whatever else is queued (one fsync for the whole group) and queues the
// result; the notifier thread calls the host's callbacks in that order.
//
// Back pressure: every accepted call holds a slot (count and document bytes,
// bounded by the options async_queue_max / async_queue_bytes) from acceptance
// until its callback returned. A full queue blocks a host thread until there
// is room; on an engine thread (a callback) it is WF_EBUSY at once, since the
// slots it would wait for may only be freed by that very thread.
#include <cstring>

#include "outbox.h"

namespace wf {

std::atomic<int64_t> g_fail_async_priority{0};

// One accepted call: what to write, and its result once written. The write
// request's two functions capture only a shared pointer to it (no further
// allocation), and the notifier receives the same object.
struct Engine::AsyncReq {
  Engine *engine = nullptr;
  std::optional<NewJob> job;
  std::optional<NewEvent> event;
  wf_done_fn cb = nullptr;
  void *user = nullptr;
  size_t bytes = 0;
  // Result: set by the writer, read by the notifier after the hand-over
  // under aq_mu.
  int rc = WF_OK;
  std::string id, err;
};

void fail_if_injected(const NewJob &j) {
  int64_t p = g_fail_async_priority.load(std::memory_order_relaxed);
  if (p != 0 && j.priority == p) fail(WF_EINTERNAL, "injected failure (test)");
}

void Engine::async_write(const std::shared_ptr<AsyncReq> &a) {
  WriteReq r;
  // Bare (no savepoint): a request that fails on its own data is dropped and
  // the rest of its batch runs again, isolated (see run_batch).
  r.durable = true;
  a->engine = this;
  r.fn = [a](WriteCtx &w) {
    a->id.clear();
    a->rc = WF_OK;
    if (a->job) {
      fail_if_injected(*a->job);
      bool existing = false;
      a->engine->insert_job(w, *a->job, &a->id, &existing);
      a->rc = existing ? WF_EEXIST : WF_OK;
    } else {
      a->rc = a->engine->insert_event(w, *a->event) ? WF_OK : WF_EEXIST;
      a->id = a->event->event_id;
    }
  };
  if (a->job) {
    r.job = &*a->job;
    r.job_rc = &a->rc;
    r.job_id = &a->id;
  }
  r.after = [a](int rc, const std::string &err) {
    if (rc != WF_OK) {
      a->rc = rc;
      a->err = err;
      a->id.clear();
    }
    a->engine->aq_done_now.push_back(a);  // handed over once per batch
  };
  const size_t bytes = a->bytes;
  const bool engine_thread = on_engine_thread();
  std::unique_lock<std::mutex> lk(aq_mu);
  auto room = [&] {
    return aq_count == 0 || (aq_count < opt.async_queue_max &&
                             aq_bytes + static_cast<int64_t>(bytes) <= opt.async_queue_bytes);
  };
  if (!room()) {
    if (engine_thread)
      fail(WF_EBUSY,
           "async queue full (async_queue_max / async_queue_bytes): an engine callback cannot "
           "wait for room; retry later or use the synchronous call");
    n_async_waits.fetch_add(1, std::memory_order_relaxed);
    aq_waiting.fetch_add(1);
    aq_room_cv.wait(lk, room);
    aq_waiting.fetch_sub(1);
  }
  if (!notifier.joinable())
    notifier = std::thread([this] {
      notifier_tid = std::this_thread::get_id();
      notifier_main();
    });
  // Queued under aq_mu so that the writer's order is the acceptance order
  // (wait_async_delivered relies on it).
  submit(std::move(r));
  ++aq_count;
  aq_bytes += static_cast<int64_t>(bytes);
  ++aq_accepted;
  n_async_accepted.fetch_add(1, std::memory_order_relaxed);
}

void Engine::flush_async_results() {
  if (aq_done_now.empty()) return;
  std::lock_guard<std::mutex> g(aq_mu);
  bool was_empty = aq_results.empty();
  if (was_empty)
    aq_results.swap(aq_done_now);
  else {
    for (auto &a : aq_done_now) aq_results.push_back(std::move(a));
    aq_done_now.clear();
  }
  if (was_empty) aq_cv.notify_one();
}

void Engine::notifier_main() {
  std::vector<std::shared_ptr<AsyncReq>> batch;
  std::unique_lock<std::mutex> lk(aq_mu);
  for (;;) {
    aq_cv.wait(lk, [&] { return aq_stop || !aq_results.empty(); });
    if (aq_results.empty()) return;  // stopping, everything delivered
    batch.swap(aq_results);
    lk.unlock();
    // Slots are given back every few callbacks (one lock per group), and
    // each right after its callback when producers are waiting for room.
    constexpr size_t kGroup = 64;
    size_t i = 0, released = 0;
    int64_t bytes = 0;
    auto release = [&] {
      std::lock_guard<std::mutex> g(aq_mu);
      aq_count -= static_cast<int64_t>(i - released);
      aq_bytes -= bytes;
      aq_delivered += i - released;
      released = i;
      bytes = 0;
      aq_room_cv.notify_all();
      aq_done_cv.notify_all();
    };
    for (; i < batch.size();) {
      AsyncReq &d = *batch[i];
      if (d.cb) {
        set_last_error(d.err);
        try {
          d.cb(d.user, d.rc, (d.rc == WF_OK || d.rc == WF_EEXIST) ? d.id.c_str() : nullptr);
        } catch (...) {
          // A C callback cannot throw; a C++ host's exception stops here.
        }
      }
      bytes += static_cast<int64_t>(d.bytes);
      ++i;
      if (i - released >= kGroup || aq_waiting.load() > 0) release();
    }
    if (i != released) release();
    batch.clear();
    lk.lock();
  }
}

void Engine::stop_notifier() {
  {
    std::lock_guard<std::mutex> g(aq_mu);
    aq_stop = true;
  }
  aq_cv.notify_all();
  if (notifier.joinable()) notifier.join();
}

void Engine::wait_async_delivered() {
  if (std::this_thread::get_id() == notifier_tid.load()) return;
  std::unique_lock<std::mutex> lk(aq_mu);
  uint64_t target = aq_accepted;
  aq_done_cv.wait(lk, [&] { return aq_delivered >= target; });
}

namespace {
// The common part of wf_enqueue_async and wf_submit_async: checks, parses
// (limits enforced while parsing), lets `decode` fill the request, queues it.
template <class Decode>
void accept_async(Engine &e, const char *text, const char *what, wf_done_fn cb, void *user,
                  Decode decode) {
  check_writable(e);
  if (!text) fail(WF_EINVAL, std::string(what) + ": NULL document");
  auto a = std::make_shared<Engine::AsyncReq>();
  a->bytes = strlen(text);
  json doc = parse_json(text, e.opt.limits, what, e.opt.limits.max_payload_bytes + 65536 + 1024);
  decode(*a, doc);
  a->cb = cb;
  a->user = user;
  e.async_write(a);
}
}  // namespace

void enqueue_async(Engine &e, const char *job_json, wf_done_fn cb, void *user) {
  accept_async(e, job_json, "job", cb, user, [&e](Engine::AsyncReq &a, const json &doc) {
    a.job.emplace(decode_job(doc, e.opt, e.now(), "job"));
  });
}

void submit_event_async(Engine &e, const char *event_json, wf_done_fn cb, void *user) {
  accept_async(e, event_json, "event", cb, user, [&e](Engine::AsyncReq &a, const json &doc) {
    a.event.emplace(decode_event(doc, e.opt, e.now(), "event"));
  });
}

}  // namespace wf
