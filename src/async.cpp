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

void Engine::async_write(std::function<void(WriteCtx &, std::string *, int *)> fn, size_t bytes,
                         wf_done_fn cb, void *user) {
  struct State {
    std::function<void(WriteCtx &, std::string *, int *)> fn;
    std::string id;
    int rc = WF_OK;
  };
  auto st = std::make_shared<State>();
  st->fn = std::move(fn);
  WriteReq r;
  // Bare (no savepoint): a request that fails on its own data is dropped and
  // the rest of its batch runs again, isolated (see run_batch).
  r.durable = true;
  r.fn = [st](WriteCtx &w) {
    st->id.clear();
    st->rc = WF_OK;
    st->fn(w, &st->id, &st->rc);
  };
  r.after = [this, st, cb, user, bytes](int rc, const std::string &err) {
    AsyncDone d{cb,    user, rc == WF_OK ? st->rc : rc, {}, rc == WF_OK ? std::string() : err,
                bytes, false};
    if (d.rc == WF_OK || d.rc == WF_EEXIST) {
      d.id = std::move(st->id);
      d.has_id = true;
    }
    std::lock_guard<std::mutex> g(aq_mu);
    aq_results.push_back(std::move(d));
    if (aq_results.size() == 1) aq_cv.notify_one();
  };
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
    aq_room_cv.wait(lk, room);
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

void Engine::notifier_main() {
  std::deque<AsyncDone> batch;
  std::unique_lock<std::mutex> lk(aq_mu);
  for (;;) {
    aq_cv.wait(lk, [&] { return aq_stop || !aq_results.empty(); });
    if (aq_results.empty()) return;  // stopping, everything delivered
    batch.swap(aq_results);
    lk.unlock();
    for (size_t i = 0; i < batch.size(); ++i) {
      AsyncDone &d = batch[i];
      if (d.cb) {
        set_last_error(d.err);
        try {
          d.cb(d.user, d.rc, d.has_id ? d.id.c_str() : nullptr);
        } catch (...) {
          // A C callback cannot throw; a C++ host's exception stops here.
        }
      }
      std::lock_guard<std::mutex> g(aq_mu);
      --aq_count;
      aq_bytes -= static_cast<int64_t>(d.bytes);
      ++aq_delivered;
      aq_room_cv.notify_all();
      aq_done_cv.notify_all();
    }
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

void enqueue_async(Engine &e, const char *job_json, wf_done_fn cb, void *user) {
  check_writable(e);
  if (!job_json) fail(WF_EINVAL, "job: NULL document");
  size_t len = strlen(job_json);
  json doc =
      parse_json(job_json, e.opt.limits, "job", e.opt.limits.max_payload_bytes + 65536 + 1024);
  auto j = std::make_shared<NewJob>(decode_job(doc, e.opt, e.now(), "job"));
  e.async_write(
      [&e, j](WriteCtx &w, std::string *id, int *rc) {
        int64_t p = g_fail_async_priority.load(std::memory_order_relaxed);
        if (p != 0 && j->priority == p) fail(WF_EINTERNAL, "injected failure (test)");
        bool existing = false;
        e.insert_job(w, *j, id, &existing);
        *rc = existing ? WF_EEXIST : WF_OK;
      },
      len, cb, user);
}

void submit_event_async(Engine &e, const char *event_json, wf_done_fn cb, void *user) {
  check_writable(e);
  if (!event_json) fail(WF_EINVAL, "event: NULL document");
  size_t len = strlen(event_json);
  json doc =
      parse_json(event_json, e.opt.limits, "event", e.opt.limits.max_payload_bytes + 65536 + 1024);
  auto ev = std::make_shared<NewEvent>(decode_event(doc, e.opt, e.now(), "event"));
  e.async_write(
      [&e, ev](WriteCtx &w, std::string *id, int *rc) {
        *rc = e.insert_event(w, *ev) ? WF_OK : WF_EEXIST;
        *id = ev->event_id;
      },
      len, cb, user);
}

}  // namespace wf
