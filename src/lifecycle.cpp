// Engine life cycle: start, drain, close, effect registration.
#include <chrono>

#include "outbox.h"

namespace wf {

void start(Engine &e) {
  if (e.opt.read_only) fail(WF_ESTATE, std::string("wf_start: ") + kReadOnlyRefusal);
  if (e.closed || e.draining) fail(WF_ECLOSED, "engine is draining or closed");
  bool expected = false;
  if (!e.started.compare_exchange_strong(expected, true))
    fail(WF_ESTATE, "wf_start: the engine is already started");
  e.loop_thread = std::thread([&e] { e.loop_main(); });
  e.log(WF_LOG_INFO, "engine started", json{{"event", "engine.started"}, {"path", e.path}});
}

void close_started(Engine &e) {
  {
    std::lock_guard<std::mutex> g(e.drain_mu);
    e.close_started = true;
  }
  e.drain_cv.notify_all();
}

int drain(Engine &e, int64_t timeout_ms, bool for_close) {
  if (e.started && std::this_thread::get_id() == e.loop_tid)
    fail(WF_EBUSY, "wf_drain cannot be called from a provider callback");
  e.check_own_tx("wf_drain");
  e.draining = true;
  if (e.started) {
    e.notify_loop([](Engine::Inbox &in) { in.wake = true; });
    std::unique_lock<std::mutex> lk(e.drain_mu);
    // Done when no attempt is in flight and the host holds no handle the
    // engine gave up on (timed out, lease lost): those are still the host's
    // work in progress. A wf_close started meanwhile ends a wf_drain at once.
    bool done =
        e.drain_cv.wait_for(lk, std::chrono::milliseconds(std::max<int64_t>(0, timeout_ms)), [&] {
          return (e.inflight_count.load() == 0 && e.held_count.load() == 0) ||
                 (!for_close && e.close_started);
        });
    if (!for_close && e.close_started)
      fail(WF_ECLOSED, "wf_drain: wf_close was called meanwhile (it drains in its turn)");
    if (!done) {
      set_last_error("wf_drain: after " + std::to_string(timeout_ms) + " ms, " +
                     std::to_string(e.inflight_count.load()) + " attempts still in flight and " +
                     std::to_string(e.held_count.load()) +
                     " job handles still held by the host after the engine gave up on them "
                     "(timed out or lease lost; complete them to release them)");
      return WF_ETIMEDOUT;
    }
  }
  // Outcomes are committed asynchronously: wait until everything the loop
  // has taken in is durable. The barrier goes through the loop (as wf_sync's
  // does): the loop counts an attempt out of flight before it queues the
  // outcome's write, so a barrier queued from here could run first (and,
  // with an idle writer, on this very thread) and return before the outcome
  // is committed.
  sync(e);
  return WF_OK;
}

void sync(Engine &e) {
  if (e.opt.read_only) return;  // nothing is ever written: nothing to wait for
  if (e.started && std::this_thread::get_id() == e.loop_tid)
    fail(WF_EBUSY, "wf_sync cannot be called from a provider callback");
  e.check_own_tx("wf_sync");
  bool via_loop = false;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int rc = WF_OK;
  std::string err;
  auto barrier = [&] {
    WriteReq r;
    r.fn = [](WriteCtx &) {};
    r.durable = true;
    r.after = [&](int c, const std::string &m) {
      std::lock_guard<std::mutex> g(mu);
      rc = c;
      err = m;
      done = true;
      cv.notify_all();
    };
    e.submit(std::move(r));
  };
  {
    std::lock_guard<std::mutex> g(e.inbox_mu);
    if (e.loop_alive) {
      e.inbox.barriers.push_back(barrier);
      e.inbox.wake = true;
      via_loop = true;
    }
  }
  if (via_loop)
    e.notify_loop([](Engine::Inbox &) {});
  else
    barrier();
  {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return done; });
  }
  if (rc != WF_OK) fail(rc, err);
  // Callbacks of wf_enqueue_async / wf_submit_async calls accepted before.
  e.wait_async_delivered();
}

void close_engine(Engine *e) {
  if (e->started && std::this_thread::get_id() == e->loop_tid)
    fail(WF_EBUSY, "wf_close cannot be called from a provider callback");
  if (e->opt.read_only) {
    // Nothing runs and nothing was registered in the file.
    e->closed = true;
    delete e;
    return;
  }
  try {
    drain(*e, e->opt.drain_timeout_ms, true);
  } catch (const Error &) {
  }
  // Job handles the host still holds stay valid memory (each keeps itself
  // alive until completed), but from here on their completion returns
  // WF_ESTATE without touching the engine: wait for completions in progress,
  // then cut the link. Completions that returned WF_OK before are in the
  // loop's inbox; the loop commits them before it stops.
  {
    std::unique_lock<std::shared_mutex> g(e->link->mu);
    e->link->e = nullptr;
  }
  if (e->started) {
    e->notify_loop([](Engine::Inbox &in) { in.stop = true; });
    if (e->loop_thread.joinable()) e->loop_thread.join();
  }
  e->closed = true;
  // Handles the host still holds outlive the engine (see EngineLink).
  for (auto *m : {&e->inflight, &e->zombies})
    for (auto &kv : *m) {
      std::lock_guard<std::mutex> g(kv.second->host_mu);
      if (kv.second->host_ref) adopt_orphan(kv.second.get());
    }
  // Jobs still leased by this engine go back to the queue now rather than
  // after their lease expires; the attempt is recorded (and counted) as
  // interrupted.
  std::string boot = e->boot_id;
  e->submit_wait([boot](WriteCtx &w) {
    lease::interrupt_owner(w.db, w.counts, boot, w.now, "engine closed during the attempt", false);
    auto b = w.db.prepare("DELETE FROM wf_boots WHERE boot_id = ?1");
    b->bind(1, boot).exec();
    forget_boot_effects(w.db);
  });
  e->log(WF_LOG_INFO, "engine closed", json{{"event", "engine.closed"}});
  delete e;
}

void check_effect_name(const Engine &e, const char *effect, const char *what) {
  if (e.closed) fail(WF_ECLOSED, "engine is closed");
  if (!effect || !*effect || strlen(effect) > 200)
    fail(WF_EINVAL, std::string(what) + ": effect name must be 1 to 200 bytes");
  check_utf8(effect, "effect", what);
}

void install_effect(Engine &e, const std::shared_ptr<EffectState> &st, const char *what) {
  {
    std::lock_guard<std::shared_mutex> g(e.reg_mu);
    if (e.effects.count(st->name))
      fail(WF_EEXIST, std::string(what) + ": effect \"" + st->name + "\" is already registered");
    e.effects[st->name] = st;
  }
  record_effect(e, st->name, st->policy.tenant_concurrency > 0);
  bool builtin = st->builtin != nullptr;
  e.notify_loop([builtin](Engine::Inbox &in) {
    in.wake = true;
    in.providers = in.providers || builtin;
  });
}

void record_effect(Engine &e, const std::string &effect, bool capped) {
  if (e.opt.read_only) return;
  // Not awaited: the row is for other processes' diagnostics (wfctl stuck);
  // the mark is there before the effect's first claim (the writer takes
  // requests in order, and claim_capped marks it too).
  WriteReq r;
  std::string boot = e.boot_id;
  r.fn = [boot, effect, capped](WriteCtx &w) {
    if (capped) lease::mark_capped(w.db, effect);
    auto st = w.db.prepare(
        "INSERT OR REPLACE INTO wf_boot_effects(boot_id, effect, registered_at) "
        "VALUES(?1, ?2, ?3)");
    st->bind(1, boot).bind(2, effect).bind(3, w.now).exec();
  };
  r.after = [](int, const std::string &) {};
  e.submit(std::move(r));
}

void record_circuit(Engine &e, const std::string &effect, int64_t open_until) {
  if (e.opt.read_only) return;
  WriteReq r;
  std::string boot = e.boot_id;
  r.fn = [boot, effect, open_until](WriteCtx &w) {
    auto st = w.db.prepare(
        "UPDATE wf_boot_effects SET circuit_until = ?3 WHERE boot_id = ?1 AND effect = ?2");
    st->bind(1, boot).bind(2, effect);
    if (open_until > 0)
      st->bind(3, open_until);
    else
      st->bind_null(3);
    st->exec();
  };
  r.after = [](int, const std::string &) {};
  e.submit(std::move(r));
}

void forget_boot_effects(Db &db) {
  auto st =
      db.prepare("DELETE FROM wf_boot_effects WHERE boot_id NOT IN (SELECT boot_id FROM wf_boots)");
  st->exec();
}

void register_effect(Engine &e, const char *effect, const char *policy_json, wf_effect_fn fn,
                     void *user) {
  check_effect_name(e, effect, "wf_effect_register");
  if (!fn) fail(WF_EINVAL, "wf_effect_register: callback is NULL");
  auto st = std::make_shared<EffectState>();
  st->name = effect;
  st->policy = parse_policy(policy_json, e.opt.limits);
  st->fn = fn;
  st->user = user;
  install_effect(e, st, "wf_effect_register");
}

}  // namespace wf
