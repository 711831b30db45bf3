// The relay: an engine-owned libuv loop that claims ready jobs (through the
// writer), dispatches them to providers, takes completions from any thread,
// enforces timeouts, concurrency limits and circuit breakers, and keeps one
// timer armed for the earliest instant that matters. Everything here runs on
// the loop thread unless it says otherwise.
#include <uv.h>

#include <climits>
#include <cstdlib>
#include <map>

#include "engine.h"
#include "failpoint.h"
#include "outbox.h"
#include "trace.h"

namespace wf {

namespace {
void on_wake_cb(uv_async_t *a) { static_cast<Engine *>(a->data)->on_async(); }
void on_timer_cb(uv_timer_t *t) { static_cast<Engine *>(t->data)->on_async(); }
// Retries after a failed write (claim or saga step) are paced in real time,
// independent of an injected clock.
void on_retry_cb(uv_timer_t *t) {
  auto *e = static_cast<Engine *>(t->data);
  e->maybe_ready = true;
  e->saga_wake = true;
  e->sched_hold = false;
  e->refresh_next_due();
  e->refresh_next_sched();
  e->on_async();
}
void on_close_cb(uv_handle_t *) {}

// Milliseconds from `now` until `at` (INT64_MAX: never), without overflow.
int64_t until(int64_t at, int64_t now) {
  if (at == INT64_MAX) return INT64_MAX;
  int64_t d;
  if (__builtin_sub_overflow(at, now, &d)) return at > now ? INT64_MAX : INT64_MIN;
  return d;
}

struct ClaimSpec {
  std::string effect;
  int limit;
  int tenant_cap = 0;                               // tenant_concurrency, 0: none
  std::map<std::string, int> tenant_inflight = {};  // with tenant_cap: attempts in flight
  std::shared_ptr<EffectState> eff = nullptr;
};
}  // namespace

// Any thread.
void Engine::notify_loop(const std::function<void(Inbox &)> &fill) {
  std::lock_guard<std::mutex> g(inbox_mu);
  fill(inbox);
  if (loop_alive) uv_async_send(async);
}

std::shared_ptr<EffectState> Engine::find_effect(const std::string &name) {
  std::shared_lock<std::shared_mutex> g(reg_mu);
  auto it = effects.find(name);
  return it == effects.end() ? nullptr : it->second;
}

void Engine::loop_main() {
  uv_loop_t lp;
  uv_async_t as;
  uv_timer_t tm, rt;
  uv_loop_init(&lp);
  uv_async_init(&lp, &as, on_wake_cb);
  uv_timer_init(&lp, &tm);
  uv_timer_init(&lp, &rt);
  as.data = this;
  tm.data = this;
  rt.data = this;
  retry_timer = &rt;
  loop = &lp;
  async = &as;
  timer = &tm;
  loop_tid = std::this_thread::get_id();
  int64_t m = mono();
  next_renew = m + opt.lease_ms / 3;
  next_poll = m + opt.poll_ms;
  wall_offset = now() - m;
  maybe_ready = true;
  refresh_next_due();
  refresh_next_sched();
  saga_wake = true;
  attach_providers();
  admin_attach();
  {
    std::lock_guard<std::mutex> g(inbox_mu);
    loop_alive = true;
  }
  on_async();
  uv_run(&lp, UV_RUN_DEFAULT);
  uv_loop_close(&lp);
  loop = nullptr;
}

void Engine::on_async() {
  if (stopping) return;
  Inbox in;
  {
    std::lock_guard<std::mutex> g(inbox_mu);
    std::swap(in, inbox);
    if (in.stop) loop_alive = false;
  }
  try {
    on_async_body(in);
  } catch (const std::exception &ex) {
    // A read failed (database locked by a checkpoint, I/O error): nothing is
    // lost, the state is in the database; try again shortly.
    log(WF_LOG_ERROR, "relay loop error; retrying", json{{"error", ex.what()}});
    if (!stopping) uv_timer_start(retry_timer, on_retry_cb, 100, 0);
  }
  for (auto &b : in.barriers) b();  // whatever happened, waiters are released
}

void Engine::on_async_body(Inbox &in) {
  // Outcomes first, also when stopping: a completion that returned WF_OK
  // before wf_close cleared the handles' link is committed by the writer.
  for (auto &[j, o] : in.outcomes) {
    if (o.kind == Outcome::kZombieRelease) {
      int64_t id = j->id;
      auto z = zombies.find(id);
      if (z == zombies.end() || z->second != j) continue;
      zombies.erase(z);
      held_count.store(static_cast<int>(zombies.size()));
      notify_drain();
      auto d = deferred.find(id);
      if (d != deferred.end()) {
        auto sp = d->second;
        deferred.erase(d);
        if (draining || stopping || in.stop)
          release_jobs({sp});
        else
          dispatch(sp);
      }
      continue;
    }
    auto it = inflight.find(j->id);
    // The attempt is no longer ours (its lease was lost): nothing to record.
    if (it == inflight.end() || it->second != j) continue;
    finish_attempt(j, o);
  }
  in.outcomes.clear();
  if (in.stop) {
    for (auto &b : in.barriers) b();
    in.barriers.clear();
    stopping = true;
    detach_providers();
    admin_detach();
    uv_timer_stop(timer);
    uv_close(reinterpret_cast<uv_handle_t *>(async), on_close_cb);
    uv_close(reinterpret_cast<uv_handle_t *>(timer), on_close_cb);
    uv_close(reinterpret_cast<uv_handle_t *>(retry_timer), on_close_cb);
    return;
  }
  if (in.providers) attach_providers();
  for (auto &[id, attempt] : in.lost) {
    auto it = inflight.find(id);
    // (A copy: lose_attempt erases the map entry.)
    if (it != inflight.end() && it->second->attempt == attempt)
      lose_attempt(std::shared_ptr<JobCtx>(it->second));
    auto d = deferred.find(id);
    if (d != deferred.end() && d->second->attempt == attempt) deferred.erase(d);
  }
  for (auto &r : in.claimed) on_claimed(*r);
  if (!in.insert_claimed.empty()) on_insert_claimed(in.insert_claimed);
  if (in.claim_failed) {
    claim_outstanding = false;
    maybe_ready = false;  // try again soon rather than spin on a failing database
    uv_timer_start(retry_timer, on_retry_cb, 100, 0);
  }
  if (in.ready_now) maybe_ready = backlog_seen = true;
  if (in.next_due < known_next_due) known_next_due = in.next_due;
  for (auto &k : in.steps_done) saga_busy.erase(k);
  if (in.saga_ready) saga_wake = true;
  if (in.saga_retry) uv_timer_start(retry_timer, on_retry_cb, 100, 0);
  if (in.next_sched < known_next_sched) known_next_sched = in.next_sched;
  if (in.fire_failed) {
    // Do not spin on a failing write: hold firing until the retry timer.
    fire_outstanding = false;
    sched_hold = true;
    uv_timer_start(retry_timer, on_retry_cb, 100, 0);
  } else if (in.fire_done) {
    fire_outstanding = false;
    if (in.fire_again)
      known_next_sched = std::min(known_next_sched, now());
    else
      refresh_next_sched();
  }
  if (in.wake) {
    maybe_ready = true;  // (refresh_next_due says whether jobs are due)
    saga_wake = true;
    refresh_next_due();
    refresh_next_sched();
  }
  check_timeouts();
  check_abandoned();
  int64_t t = now();
  int64_t m = mono();
  // A step of the wall clock (or of an injected clock) moves the stored
  // instants we compare with: renew the leases' wall instants at once (so
  // other engines do not see them expire) and look at due jobs again.
  int64_t offset = t - m;
  int64_t jump = offset > wall_offset ? offset - wall_offset : wall_offset - offset;
  if (jump > std::max<int64_t>(1000, opt.lease_ms / 10)) {
    next_renew = m;
    maybe_ready = backlog_seen = true;
  }
  wall_offset = offset;
  if (known_next_due <= t) {
    known_next_due = INT64_MAX;
    maybe_ready = backlog_seen = true;
  }
  if (m >= next_renew) {
    renew_and_reclaim();
    next_renew = m + opt.lease_ms / 3;
  }
  if (opt.poll_ms > 0 && m >= next_poll) {
    next_poll = m + opt.poll_ms;
    bool changed = false;
    try {
      std::lock_guard<std::mutex> g(read_mu);
      auto st = read_db->prepare("PRAGMA data_version");
      st->step();
      int64_t v = st->col_int(0);
      changed = v != last_data_version;
      last_data_version = v;
    } catch (const std::exception &ex) {
      read_failed(ex);
    }
    if (changed) {
      maybe_ready = true;  // (refresh_next_due says whether jobs are due)
      saga_wake = true;
      refresh_next_due();
      if (!fire_outstanding) refresh_next_sched();
    }
  }
  {
    std::lock_guard<std::shared_mutex> g(reg_mu);
    for (auto &[name, eff] : effects)
      if (eff->circuit_state.load() == 1 && eff->open_until <= t) {
        eff->circuit_state = 2;  // half-open: one probe
        eff->probe_inflight = false;
        maybe_ready = true;
      }
  }
  if (draining) {
    revoke_credits();
    if (!deferred.empty()) {
      std::vector<std::shared_ptr<JobCtx>> d;
      for (auto &kv : deferred) d.push_back(kv.second);
      deferred.clear();
      release_jobs(d);
    }
    notify_drain();
  }
  pump();
  pump_schedules();
  pump_sagas();
  // Barriers last: every outcome and timeout handled above is queued first.
  for (auto &b : in.barriers) b();
  in.barriers.clear();
  arm_timer();
}

void Engine::pump() {
  if (!maybe_ready || claim_outstanding || draining || stopping) return;
  // Due jobs may be waiting (not only a slot freed): the slots granted for
  // claims on insert come back, so that this claim can take them.
  if (backlog_seen) {
    revoke_credits();
    backlog_seen = false;
  }
  std::vector<std::shared_ptr<EffectState>> effs;
  {
    std::shared_lock<std::shared_mutex> g(reg_mu);
    for (auto &kv : effects) effs.push_back(kv.second);
  }
  auto reserved = [&] {  // slots granted for claims on insert (loop only)
    int n = 0;
    for (auto &eff : effs) n += eff->granted;
    return n;
  };
  const int idle = opt.max_inflight - static_cast<int>(inflight.size());
  int global_free = idle - reserved();
  if (global_free <= 0 && idle > 0) {
    // Slots granted for claims on insert never hold back a claim: an effect
    // that gets no grants (tenant_concurrency, a circuit not closed) may
    // have due jobs waiting for a slot its neighbours' grants took.
    revoke_credits();
    global_free = idle - reserved();
  }
  if (global_free <= 0) return;  // an outcome frees a slot and pumps again
  std::vector<ClaimSpec> specs;
  size_t n = effs.size();
  for (size_t k = 0; k < n; ++k) {
    auto &eff = effs[(k + rr) % n];
    int cs = eff->circuit_state.load();
    if (cs == 1) continue;
    if (cs == 2 && eff->probe_inflight) continue;
    int free = eff->policy.concurrency > 0
                   ? eff->policy.concurrency - eff->inflight.load() - eff->granted
                   : INT_MAX;
    if (free <= 0) continue;
    if (cs == 2) free = 1;
    ClaimSpec s{eff->name, free};
    s.eff = eff;
    if (eff->policy.tenant_concurrency > 0) {
      s.tenant_cap = eff->policy.tenant_concurrency;
      s.tenant_inflight.insert(eff->tenant_inflight.begin(), eff->tenant_inflight.end());
    }
    specs.push_back(std::move(s));
  }
  rr++;
  maybe_ready = false;
  if (specs.empty()) return;
  int share = std::max(1, global_free / static_cast<int>(specs.size()));
  for (auto &s : specs) s.limit = std::min(s.limit, share);
  claim_outstanding = true;
  auto result = std::make_shared<ClaimResult>();
  WriteReq r;
  int64_t lease = opt.lease_ms;
  r.fn = [this, specs = std::move(specs), result, lease](WriteCtx &w) {
    result->jobs.clear();  // re-runnable: the batch may run again (run_batch)
    result->any_full = false;
    result->drained.clear();
    result->at = w.now;
    for (const auto &s : specs) {
      // (Read before the claim: a job inserted unclaimed after it, in this
      // same transaction, keeps the backlog.)
      int64_t gen = s.eff->unclaimed_gen.load();
      auto rows =
          s.tenant_cap > 0
              ? lease::claim_capped(w.db, w.counts, boot_id, w.now, w.now + lease, s.effect,
                                    s.limit, s.tenant_cap, s.tenant_inflight)
              : lease::claim(w.db, w.counts, boot_id, w.now, w.now + lease, s.effect, s.limit);
      for (auto &c : rows) {
        auto j = std::make_shared<JobCtx>();
        j->link = link;
        j->id = c.id;
        j->id_str = std::to_string(j->id);
        j->tenant = std::move(c.tenant);
        j->effect = std::move(c.effect);
        j->key = std::move(c.key);
        j->payload = unseal(c.payload, "wf_jobs.payload");
        j->metadata = std::move(c.metadata);
        j->attempt = c.attempt;
        j->failures = c.failures;
        j->interruptions = c.interruptions;
        if (c.has_max_attempts) j->max_attempts = c.max_attempts;
        j->priority = c.priority;
        j->run_at = c.run_at;
        j->origin = std::move(c.origin);
        j->started_at = w.now;
        j->deadline = INT64_MAX;
        result->jobs.push_back(std::move(j));
      }
      if (static_cast<int>(rows.size()) >= s.limit)
        result->any_full = true;
      else
        result->drained.emplace_back(s.eff, gen);
    }
  };
  r.after = [this, result](int rc, const std::string &) {
    // Committed: the effects whose claim found nothing more were drained as
    // of their generation (writer thread, before any other transaction).
    if (rc == WF_OK)
      for (auto &[eff, gen] : result->drained) eff->cleared_gen.store(gen);
    notify_loop([&](Inbox &in) {
      if (rc == WF_OK)
        in.claimed.push_back(result);
      else
        in.claim_failed = true;
    });
  };
  submit(std::move(r));
}

void Engine::on_claimed(const ClaimResult &r) {
  claim_outstanding = false;
  std::vector<JobCtx *> order;
  std::vector<std::shared_ptr<JobCtx>> jobs = r.jobs;
  // RETURNING does not keep the subquery's order: restore it.
  std::sort(jobs.begin(), jobs.end(), [](const auto &a, const auto &b) {
    if (a->priority != b->priority) return a->priority > b->priority;
    if (a->run_at != b->run_at) return a->run_at < b->run_at;
    return a->id < b->id;
  });
  if (draining || stopping) {
    release_jobs(jobs);
    return;
  }
  std::vector<std::shared_ptr<JobCtx>> over;
  for (auto &j : jobs) {
    // This engine still has an attempt of this job in flight: its lease was
    // lost (another engine reclaimed it, and it became ready again). The old
    // handle is stale from now on; the new attempt waits for the host to let
    // go of it (dispatch defers it).
    auto cur = inflight.find(j->id);
    if (cur != inflight.end()) lose_attempt(std::shared_ptr<JobCtx>(cur->second));  // a copy
    // A job whose attempts keep being interrupted (it crashes its process,
    // or its engines keep stopping) is not run again without end.
    int maxi = max_interruptions(j->effect);
    if (j->interruptions >= maxi) {
      deferred.erase(j->id);
      dead_letter_claimed(j, "interrupted (" + std::to_string(j->interruptions) +
                                 " attempts were interrupted; max_interruptions " +
                                 std::to_string(maxi) + ")");
      continue;
    }
    auto eff = find_effect(j->effect);
    if (eff && eff->policy.tenant_concurrency > 0 &&
        eff->tenant_inflight[j->tenant] >= eff->policy.tenant_concurrency) {
      over.push_back(j);
      continue;
    }
    dispatch(j);
  }
  if (!over.empty()) release_jobs(over);
  if (r.any_full) {
    maybe_ready = true;
    backlog_seen = true;  // the slots go to that backlog first
  } else {
    grant_credits();
    // Every effect got less than it asked for: what is due and not claimed
    // waits for a slot (tenant_concurrency, an unregistered effect), and a
    // commit that makes a job due tells the loop (post_hints). Asking
    // any_due here would claim again at once, in a loop, while tenants are at
    // their limit.
    // (From the claim's instant: a job that fell due since is seen.)
    refresh_next_due(false, r.at);
  }
}

// ------------------------------------------------------------ claim on insert
//
// A claim costs a write per job (ready -> running, moving the row between
// the claim and lease indexes). When an effect has free slots and no due job
// waiting, the loop grants those slots to the writer (insert_credit); the
// writer inserts ready jobs of the effect already claimed by this engine,
// up to that many, and hands them to the loop after the commit
// (deliver_claims -> on_insert_claimed), which dispatches them as a claim's.
// Granted slots are kept out of claims' free slots until they are delivered
// or revoked. The loop grants after a claim that found no more due jobs for
// any effect, and revokes all grants when due jobs may be waiting (a commit
// made jobs ready, a job fell due, another process wrote, a clock step, a
// claim that got all it asked for) before claiming them. The writer never
// claims a new job ahead of a ready one of the same effect it inserted
// unclaimed (EffectState::unclaimed_gen). Not granted to an effect with
// tenant_concurrency, a circuit that is not closed, or while draining.

void InsertClaim::give_back() {
  if (eff) {
    eff->insert_credit.fetch_add(1);
    eff.reset();
  }
}

void Engine::deliver_claims(WriteCtx &w) {
  for (auto &u : w.unclaimed) u->unclaimed_gen.fetch_add(1);
  if (w.claimed.empty()) return;
  n_insert_claims.fetch_add(static_cast<int64_t>(w.claimed.size()), std::memory_order_relaxed);
  notify_loop([&](Inbox &in) {
    for (auto &c : w.claimed) in.insert_claimed.push_back(std::move(c));
  });
  w.claimed.clear();
}

void Engine::on_insert_claimed(std::vector<InsertClaim> &claims) {
  std::vector<std::shared_ptr<JobCtx>> release;
  for (auto &c : claims) {
    c.eff->granted--;
    c.eff.reset();  // delivered: nothing to give back
    std::shared_ptr<JobCtx> j = std::move(c.job);
    auto eff = find_effect(j->effect);
    // (A grant made before the effect's policy or circuit changed.)
    bool room = eff && eff->circuit_state.load() == 0 && eff->policy.tenant_concurrency <= 0;
    if (draining || stopping || !room)
      release.push_back(std::move(j));
    else
      dispatch(j);
  }
  claims.clear();
  if (!release.empty()) release_jobs(std::move(release));
}

void Engine::revoke_credits() {
  std::lock_guard<std::shared_mutex> g(reg_mu);
  for (auto &kv : effects) kv.second->granted -= kv.second->insert_credit.exchange(0);
}

void Engine::grant_credits() {
  if (!opt.claim_on_insert || draining || stopping) return;
  std::vector<std::shared_ptr<EffectState>> effs;
  int reserved = 0;
  {
    std::shared_lock<std::shared_mutex> g(reg_mu);
    for (auto &kv : effects) {
      reserved += kv.second->granted;
      auto &e = *kv.second;
      if (e.policy.tenant_concurrency <= 0 && e.circuit_state.load() == 0 &&
          e.unclaimed_gen.load() == e.cleared_gen.load())
        effs.push_back(kv.second);
    }
  }
  int global_free = opt.max_inflight - static_cast<int>(inflight.size()) - reserved;
  if (effs.empty() || global_free <= 0) return;
  int share = std::max(1, global_free / static_cast<int>(effs.size()));
  for (auto &e : effs) {
    int free = e->policy.concurrency > 0 ? e->policy.concurrency - e->inflight.load() - e->granted
                                         : INT_MAX;
    int g = std::min({free, share, global_free});
    if (g <= 0) continue;
    e->granted += g;
    global_free -= g;
    e->insert_credit.fetch_add(g);
  }
}

void Engine::dispatch(const std::shared_ptr<JobCtx> &j) {
  if (zombies.count(j->id)) {
    // The previous attempt timed out but its callback still holds the job:
    // never run the same job twice at once; wait for the host to let go.
    deferred[j->id] = j;
    return;
  }
  auto eff = find_effect(j->effect);
  if (!eff) {
    release_jobs({j});
    return;
  }
  j->started_at = now();
  // Telemetry: the job's counters, its trace context, a new span id for
  // this attempt (metadata the provider sees).
  if (!j->mc) {
    j->mc = &metrics.job(j->effect, j->tenant);
    trace::Context tc = trace::from_metadata(j->metadata);
    j->traceparent = std::move(tc.traceparent);
    j->tracestate = std::move(tc.tracestate);
    j->correlation_id = std::move(tc.correlation_id);
    if (!j->traceparent.empty()) {
      tc.traceparent = j->traceparent;
      j->metadata = trace::attempt_metadata(j->metadata, tc, rng);
    }
  }
  j->dispatch_us = mono_us();
  j->mc->dispatched.fetch_add(1, std::memory_order_relaxed);
  j->mc->latency.observe(std::max<int64_t>(0, sat_sub(j->started_at, j->run_at)) * 1000);
  if (log_enabled(WF_LOG_DEBUG))
    log(WF_LOG_DEBUG, "job dispatched", job_fields(*j, "job.dispatched"));
  int64_t m = mono();
  j->deadline = eff->policy.timeout_ms > 0 ? m + eff->policy.timeout_ms : INT64_MAX;
  {
    std::lock_guard<std::mutex> g(j->host_mu);
    j->host_ref = j;  // the host's reference, until it completes the handle
  }
  inflight[j->id] = j;
  if (j->deadline != INT64_MAX) deadlines.insert({j->deadline, j->id});
  inflight_count.store(static_cast<int>(inflight.size()));
  eff->inflight++;
  eff->tenant_inflight[j->tenant]++;
  eff->dispatched++;
  if (eff->circuit_state.load() == 2) eff->probe_inflight = true;
  n_dispatched.fetch_add(1, std::memory_order_relaxed);
  try {
    WF_FAILPOINT("before_dispatch");
    eff->fn(eff->user, reinterpret_cast<wf_job *>(j.get()));
  } catch (const std::exception &ex) {
    complete(j.get(), Outcome{Outcome::kRetry,
                              sanitize_utf8(std::string("provider threw: ") + ex.what(), 65536)});
  } catch (...) {
    complete(j.get(), Outcome{Outcome::kRetry, "provider threw an exception"});
  }
}

void Engine::release_jobs(std::vector<std::shared_ptr<JobCtx>> jobs) {
  if (jobs.empty()) return;
  WriteReq r;
  r.fn = [this, jobs = std::move(jobs)](WriteCtx &w) {
    for (auto &j : jobs) lease::unclaim(w.db, w.counts, boot_id, j->id, j->attempt);
  };
  submit(std::move(r));
}

// A claimed attempt that is not dispatched becomes a dead letter (too many
// interruptions, or its previous handle was held past abandon_after_ms).
void Engine::dead_letter_claimed(const std::shared_ptr<JobCtx> &j, const std::string &reason) {
  auto eff = find_effect(j->effect);
  if (eff) eff->dead++;
  n_dead.fetch_add(1, std::memory_order_relaxed);
  metrics.job(j->effect, j->tenant).dead.fetch_add(1, std::memory_order_relaxed);
  trace::Context tc = trace::from_metadata(j->metadata);
  j->traceparent = tc.traceparent;
  j->tracestate = tc.tracestate;
  j->correlation_id = tc.correlation_id;
  json lf = job_fields(*j, "job.dead");
  lf["attempt"] = j->attempt - 1;
  lf["reason"] = reason;
  log(WF_LOG_WARN, "job dead-lettered", lf);
  WriteReq r;
  std::string boot = boot_id;
  r.fn = [this, j, boot, reason, tc](WriteCtx &w) {
    if (!lease::dead_letter_claimed(w.db, w.counts, boot, j->id, j->attempt, w.now, reason)) return;
    if (!j->origin.empty())
      emit_outcome_event(w, j->origin, j->effect, j->id, j->key, false, reason, j->attempt - 1,
                         tc.traceparent, tc.tracestate);
  };
  submit(std::move(r));
}

json Engine::job_fields(const JobCtx &j, const char *event) const {
  json f{{"event", event},
         {"job_id", j.id_str},
         {"tenant", j.tenant},
         {"effect", j.effect},
         {"attempt", j.attempt}};
  if (!j.key.empty()) f["key"] = j.key;
  if (!j.correlation_id.empty()) f["correlation_id"] = j.correlation_id;
  if (!j.traceparent.empty()) f["trace_id"] = trace::trace_id(j.traceparent);
  return f;
}

void Engine::notify_drain() {
  std::lock_guard<std::mutex> g(drain_mu);
  drain_cv.notify_all();
}

void Engine::make_zombie(const std::shared_ptr<JobCtx> &j) {
  j->held_since = mono();
  zombies[j->id] = j;
  held_count.store(static_cast<int>(zombies.size()));
}

// Removes an attempt from the in-flight set and its limits (no database write).
// `j` must not be the map entry itself (it is erased here): pass a copy.
void Engine::drop_inflight(const std::shared_ptr<JobCtx> &j) {
  inflight.erase(j->id);
  deadlines.erase({j->deadline, j->id});
  inflight_count.store(static_cast<int>(inflight.size()));
  maybe_ready = true;  // a slot is free
  auto eff = find_effect(j->effect);
  if (eff) {
    eff->inflight--;
    if (--eff->tenant_inflight[j->tenant] <= 0) eff->tenant_inflight.erase(j->tenant);
  }
  notify_drain();
}

// The lease of an attempt in flight is no longer ours (another engine
// reclaimed the job after its lease expired: a stalled loop, a clock step).
// The row belongs to someone else now: nothing is written. The handle goes
// stale: its completion returns WF_ESTATE.
void Engine::lose_attempt(const std::shared_ptr<JobCtx> &j) {
  n_leases_lost.fetch_add(1, std::memory_order_relaxed);
  log(WF_LOG_WARN, "lease lost during the attempt; its handle is stale",
      job_fields(*j, "job.lease_lost"));
  drop_inflight(j);
  auto eff = find_effect(j->effect);
  if (eff && eff->circuit_state.load() == 2) eff->probe_inflight = false;  // probe again
  AttemptState expected = AttemptState::kRunning;
  if (j->state.compare_exchange_strong(expected, AttemptState::kLost)) make_zombie(j);
  // Otherwise the host has just completed it: its outcome finds no attempt.
}

int64_t Engine::abandon_after(const std::string &effect) {
  auto eff = find_effect(effect);
  if (eff && eff->policy.abandon_after_ms >= 0) return eff->policy.abandon_after_ms;
  return opt.abandon_after_ms;
}

int Engine::max_interruptions(const std::string &effect) {
  auto eff = find_effect(effect);
  if (eff && eff->policy.max_interruptions > 0) return eff->policy.max_interruptions;
  return opt.max_interruptions;
}

// A next attempt that has waited abandon_after_ms for the host to let go of
// the previous handle: the job becomes a dead letter (`abandoned`); it is
// never run twice at once within one engine.
void Engine::check_abandoned() {
  if (deferred.empty()) return;
  int64_t m = mono();
  std::vector<std::pair<std::shared_ptr<JobCtx>, int>> give_up;  // (next, held attempt)
  for (auto &[id, d] : deferred) {
    auto z = zombies.find(id);
    if (z == zombies.end()) continue;
    if (m - z->second->held_since >= abandon_after(d->effect))
      give_up.emplace_back(d, z->second->attempt);
  }
  for (auto &[d, held] : give_up) {
    deferred.erase(d->id);
    n_abandoned.fetch_add(1, std::memory_order_relaxed);
    int64_t grace = abandon_after(d->effect);
    dead_letter_claimed(d, "abandoned (the host still held the handle of attempt " +
                               std::to_string(held) + " " + std::to_string(grace) +
                               " ms after the engine gave up on it: abandon_after_ms)");
  }
}

void Engine::circuit_record(EffectState &eff, bool failure) {
  const Circuit &c = eff.policy.circuit;
  if (!c.enabled) return;
  int cs = eff.circuit_state.load();
  if (cs == 2) {
    eff.probe_inflight = false;
    if (failure) {
      eff.circuit_state = 1;
      eff.open_until = now() + c.cooldown_ms;
      record_circuit(*this, eff.name, eff.open_until);
      log(WF_LOG_WARN, "circuit re-opened after failed probe",
          json{{"event", "circuit.opened"}, {"effect", eff.name}});
    } else {
      eff.circuit_state = 0;
      eff.window.clear();
      record_circuit(*this, eff.name, 0);
      log(WF_LOG_INFO, "circuit closed", json{{"event", "circuit.closed"}, {"effect", eff.name}});
    }
    return;
  }
  eff.window.push_back(failure);
  while (static_cast<int>(eff.window.size()) > c.window) eff.window.pop_front();
  if (cs != 0 || static_cast<int>(eff.window.size()) < c.min_attempts) return;
  int fails = 0;
  for (bool f : eff.window) fails += f;
  if (static_cast<double>(fails) / static_cast<double>(eff.window.size()) >= c.failure_ratio) {
    eff.circuit_state = 1;
    eff.granted -= eff.insert_credit.exchange(0);  // no more claims on insert
    eff.open_until = now() + c.cooldown_ms;
    record_circuit(*this, eff.name, eff.open_until);
    log(WF_LOG_WARN, "circuit opened",
        json{{"event", "circuit.opened"},
             {"effect", eff.name},
             {"failures", fails},
             {"window", eff.window.size()}});
  }
}

void Engine::finish_done_group(WriteCtx &w, std::vector<WriteReq> &batch, size_t from, size_t to) {
  WF_FAILPOINT("after_dispatch_before_completion_commit");
  size_t i = from;
  for (; i + 8 <= to; i += 8) {
    int64_t ids[8];
    for (size_t k = 0; k < 8; ++k) ids[k] = batch[i + k].done_id;
    lease::finish_done8(w.db, w.counts, boot_id, ids);
  }
  for (; i < to; ++i) lease::finish_done(w.db, w.counts, boot_id, batch[i].done_id, 1);
}

void Engine::finish_attempt(const std::shared_ptr<JobCtx> &j, const Outcome &o) {
  drop_inflight(j);
  auto eff = find_effect(j->effect);
  if (eff) circuit_record(*eff, o.kind != Outcome::kComplete);
  int64_t t = now();
  WriteReq r;
  std::string boot = boot_id;
  JobCounters &mc = j->mc ? *j->mc : metrics.job(j->effect, j->tenant);
  mc.duration.observe(std::max<int64_t>(0, mono_us() - j->dispatch_us));
  if (o.kind == Outcome::kComplete) {
    if (eff) eff->completed++;
    n_completed.fetch_add(1, std::memory_order_relaxed);
    mc.completed.fetch_add(1, std::memory_order_relaxed);
    if (log_enabled(WF_LOG_DEBUG))
      log(WF_LOG_DEBUG, "job completed", job_fields(*j, "job.completed"));
    int64_t expires = t + opt.dedupe_window_ms;
    std::string result = o.result;
    r.fn = [this, j, boot, expires, result](WriteCtx &w) {
      WF_FAILPOINT("after_dispatch_before_completion_commit");
      // Lease lost: someone else owns the job now.
      if (!lease::finish_done(w.db, w.counts, boot, j->id, j->attempt)) return;
      if (!j->key.empty()) {
        auto k = w.db.prepare(
            "INSERT OR REPLACE INTO wf_done_keys(tenant, key, job_id, expires_at) "
            "VALUES(?1, ?2, ?3, ?4)");
        k->bind(1, j->tenant).bind(2, j->key).bind(3, j->id).bind(4, expires).exec();
      }
      if (j->attempt > 1) {
        auto a = w.db.prepare("DELETE FROM wf_attempts WHERE job_id = ?1");
        a->bind(1, j->id).exec();
      }
      if (!j->origin.empty())
        emit_outcome_event(w, j->origin, j->effect, j->id, j->key, true, result, j->attempt,
                           j->traceparent, j->tracestate);
    };
    if (j->key.empty() && j->attempt == 1 && j->origin.empty()) r.done_id = j->id;
    submit(std::move(r));
    return;
  }
  const char *outcome = o.kind == Outcome::kTimeout ? "timeout"
                        : o.kind == Outcome::kFail  ? "failed"
                                                    : "retry";
  int max = resolve_max_attempts(*this, eff ? &eff->policy : nullptr, j->max_attempts);
  bool dead = o.kind == Outcome::kFail || j->failures + 1 >= max;
  std::string error = o.error.empty() ? std::string(outcome) : o.error;
  if (o.kind == Outcome::kTimeout && eff) eff->timeouts++;
  if (o.kind == Outcome::kTimeout) n_timeouts.fetch_add(1, std::memory_order_relaxed);
  if (o.kind == Outcome::kTimeout) mc.timeouts.fetch_add(1, std::memory_order_relaxed);
  mc.failed.fetch_add(1, std::memory_order_relaxed);
  json lf = job_fields(*j, dead ? "job.dead" : "job.retry_scheduled");
  lf["outcome"] = outcome;
  lf["error"] = error;
  if (dead) {
    if (eff) eff->dead++;
    n_dead.fetch_add(1, std::memory_order_relaxed);
    mc.dead.fetch_add(1, std::memory_order_relaxed);
    std::string reason = o.kind == Outcome::kFail
                             ? error
                             : error + " (attempts exhausted: " + std::to_string(j->failures + 1) +
                                   " of " + std::to_string(max) + ")";
    log(WF_LOG_WARN, "job dead-lettered", lf);
    r.fn = [this, j, boot, t, outcome, error, reason](WriteCtx &w) {
      if (!lease::finish_dead(w.db, w.counts, boot, j->id, j->attempt, t, reason)) return;
      auto a = w.db.prepare(
          "INSERT INTO wf_attempts(job_id, n, started_at, ended_at, outcome, error) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
      a->bind(1, j->id).bind(2, j->attempt).bind(3, j->started_at).bind(4, t).bind(5, outcome);
      a->bind(6, error).exec();
      if (!j->origin.empty())
        emit_outcome_event(w, j->origin, j->effect, j->id, j->key, false, reason, j->attempt,
                           j->traceparent, j->tracestate);
    };
  } else {
    if (eff) eff->retried++;
    n_retried.fetch_add(1, std::memory_order_relaxed);
    mc.retried.fetch_add(1, std::memory_order_relaxed);
    int64_t delay = o.delay_ms;
    if (delay < 0) {
      const Backoff &b = (eff && eff->policy.backoff) ? *eff->policy.backoff : opt.backoff;
      delay = b.delay(j->failures + 1, rng);
    }
    int64_t run_at = t + delay;
    lf["retry_in_ms"] = delay;
    log(WF_LOG_INFO, "job attempt failed; will retry", lf);
    r.fn = [j, boot, t, outcome, error, run_at](WriteCtx &w) {
      if (!lease::finish_retry(w.db, w.counts, boot, j->id, j->attempt, run_at, error)) return;
      auto a = w.db.prepare(
          "INSERT INTO wf_attempts(job_id, n, started_at, ended_at, outcome, error) "
          "VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
      a->bind(1, j->id).bind(2, j->attempt).bind(3, j->started_at).bind(4, t).bind(5, outcome);
      a->bind(6, error).exec();
      if (run_at <= w.now)
        w.ready_now = true;
      else
        w.next_due = std::min(w.next_due, run_at);
    };
  }
  submit(std::move(r));
}

// Attempt timeouts are intervals: measured on the monotonic clock, so a step
// of the wall clock neither fires them early nor holds them back.
void Engine::check_timeouts() {
  int64_t m = mono();
  while (!deadlines.empty() && deadlines.begin()->first <= m) {
    int64_t id = deadlines.begin()->second;
    deadlines.erase(deadlines.begin());
    auto it = inflight.find(id);
    if (it == inflight.end()) continue;
    auto sp = it->second;
    AttemptState expected = AttemptState::kRunning;
    if (!sp->state.compare_exchange_strong(expected, AttemptState::kTimedOut))
      continue;  // the host just completed it: its outcome is on its way
    make_zombie(sp);
    auto eff = find_effect(sp->effect);
    int64_t limit = eff ? eff->policy.timeout_ms : 0;
    finish_attempt(sp,
                   Outcome{Outcome::kTimeout, "timed out after " + std::to_string(limit) + " ms"});
  }
}

void Engine::renew_and_reclaim() {
  WriteReq r;
  int64_t lease = opt.lease_ms;
  // Renew only the attempts this engine really holds (in flight, or claimed
  // and waiting for a held handle): a job whose outcome could not be
  // committed is no longer in flight here, so its lease runs out and it is
  // delivered again (at least once) instead of staying stuck. A held attempt
  // whose lease is no longer ours (renewal matches nothing) was reclaimed by
  // another engine: the loop marks its handle stale.
  json held = json::array();
  json held_ids = json::array();
  for (auto *m : {&inflight, &deferred})
    for (auto &kv : *m) {
      held.push_back(json::array({kv.first, kv.second->attempt}));
      held_ids.push_back(kv.first);
    }
  auto pairs = std::make_shared<std::vector<std::pair<int64_t, int>>>();
  for (auto &h : held) pairs->emplace_back(h[0].get<int64_t>(), h[1].get<int>());
  auto lost = std::make_shared<std::vector<std::pair<int64_t, int>>>();
  r.fn = [this, lease, held = held.dump(), held_ids = held_ids.dump(), pairs, lost](WriteCtx &w) {
    lost->clear();
    auto mine = lease::renew(w.db, boot_id, w.now + lease, held);
    std::set<std::pair<int64_t, int>> ok(mine.begin(), mine.end());
    for (auto &p : *pairs)
      if (!ok.count(p)) lost->push_back(p);
    {
      auto st = w.db.prepare("UPDATE wf_boots SET heartbeat_at = ?1 WHERE boot_id = ?2");
      st->bind(1, w.now).bind(2, boot_id).exec();
    }
    // Leases whose owner stopped renewing them: the owner is gone or stuck.
    if (lease::reclaim_expired(w.db, w.counts, boot_id, w.now, held_ids) > 0) w.ready_now = true;
    // Expired dedupe keys are swept by the maintenance thread (retention.cpp).
  };
  r.after = [this, lost](int rc, const std::string &) {
    if (rc != WF_OK || lost->empty()) return;
    notify_loop([&](Inbox &in) { in.lost.insert(in.lost.end(), lost->begin(), lost->end()); });
  };
  submit(std::move(r));
}

void Engine::read_failed(const std::exception &ex) {
  // A read on the loop's connection failed (locked by a checkpoint, I/O
  // error): the state is safe in the database; look again shortly.
  log(WF_LOG_ERROR, "relay read failed; retrying", json{{"error", ex.what()}});
  // Claims and saga passes resume from the retry timer, not at once: a
  // persistent fault must not turn into a busy loop.
  maybe_ready = false;
  saga_wake = false;
  // Firing too: known_next_sched may be stale (a failed refresh after a
  // firing leaves it in the past), and firing again at once would loop
  // through the writer without end.
  sched_hold = true;
  if (!stopping && retry_timer) uv_timer_start(retry_timer, on_retry_cb, 100, 0);
}

void Engine::refresh_next_due(bool look_for_due, int64_t after) {
  try {
    refresh_next_due_unguarded(look_for_due, after);
  } catch (const std::exception &ex) {
    read_failed(ex);
  }
}

void Engine::refresh_next_due_unguarded(bool look_for_due, int64_t after) {
  std::vector<std::string> names;
  {
    std::shared_lock<std::shared_mutex> g(reg_mu);
    for (auto &kv : effects) names.push_back(kv.first);
  }
  if (names.empty()) {
    known_next_due = INT64_MAX;
    return;
  }
  int64_t t = after >= 0 ? after : now();
  std::lock_guard<std::mutex> g(read_mu);
  if (look_for_due && lease::any_due(*read_db, t, names)) maybe_ready = backlog_seen = true;
  known_next_due = lease::next_due(*read_db, t, names);
}

void Engine::arm_timer() {
  if (stopping) return;
  // Stored instants (run_at, schedule due times, circuit cool-downs) are on
  // the wall clock; intervals (timeouts, renewal, poll, grace of held
  // handles) on the monotonic one. Wait for whichever comes first.
  int64_t wall = known_next_due;
  // A held firing waits for the retry timer, not for its (past) due time.
  if (!fire_outstanding && !sched_hold) wall = std::min(wall, known_next_sched);
  {
    std::shared_lock<std::shared_mutex> g(reg_mu);
    for (auto &kv : effects)
      if (kv.second->circuit_state.load() == 1) wall = std::min(wall, kv.second->open_until);
  }
  int64_t mono_next = next_renew;
  if (!deadlines.empty()) mono_next = std::min(mono_next, deadlines.begin()->first);
  if (opt.poll_ms > 0) mono_next = std::min(mono_next, next_poll);
  for (auto &[id, d] : deferred) {
    auto z = zombies.find(id);
    if (z != zombies.end())
      mono_next = std::min(mono_next, z->second->held_since + abandon_after(d->effect));
  }
  int64_t wait = std::min(until(wall, now()), until(mono_next, mono()));
  // Never 0: libuv runs a timer re-armed with 0 from its own callback again
  // in the same pass without updating its clock, so an instant that stays
  // "due" without being consumed would spin the loop and starve the retry
  // timer and async wakeups. Everything due now was handled by this pass.
  int64_t delay = std::max<int64_t>(1, wait);
  uv_timer_start(timer, on_timer_cb, static_cast<uint64_t>(delay), 0);
}

// Any thread; the caller holds link->mu (shared) or is the loop thread.
// Completes the handle exactly once: after it returns, `j` may be freed.
int Engine::complete(JobCtx *j, Outcome o) {
  AttemptState expected = AttemptState::kRunning;
  if (j->state.compare_exchange_strong(expected, AttemptState::kReported)) {
    std::shared_ptr<JobCtx> self;
    {
      std::lock_guard<std::mutex> g(j->host_mu);
      self.swap(j->host_ref);
    }
    notify_loop([&](Inbox &in) { in.outcomes.emplace_back(self, std::move(o)); });
    return WF_OK;
  }
  while (expected == AttemptState::kTimedOut || expected == AttemptState::kLost) {
    AttemptState was = expected;
    if (!j->state.compare_exchange_strong(expected, AttemptState::kReleased)) continue;
    set_last_error("job " + j->id_str + " attempt " + std::to_string(j->attempt) +
                   (was == AttemptState::kTimedOut
                        ? " had already timed out; the outcome is ignored"
                        : ": the lease was lost (another engine reclaimed the job); the outcome "
                          "is ignored"));
    std::shared_ptr<JobCtx> self;
    {
      std::lock_guard<std::mutex> g(j->host_mu);
      self.swap(j->host_ref);
    }
    notify_loop(
        [&](Inbox &in) { in.outcomes.emplace_back(self, Outcome{Outcome::kZombieRelease}); });
    return WF_ESTATE;
  }
  set_last_error("job " + j->id_str + " was already completed");
  return WF_ESTATE;
}

}  // namespace wf
