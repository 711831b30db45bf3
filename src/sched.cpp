// Durable scheduler: one-shot and cron timers stored in wf_schedules, fired
// by the writer in the same transaction that reschedules them, with keys
// derived from (schedule key, due time) so a firing is never doubled.
#include <climits>
#include <optional>

#include "cron.h"
#include "failpoint.h"
#include "outbox.h"

namespace wf {

namespace {
// A cron fire noticed later than this under catch_up "none" is skipped.
constexpr int64_t kMisfireGraceMs = 60000;
}  // namespace

FirePlan plan_firing(const Cron *cron, const std::string &catch_up, int64_t catch_up_max,
                     int64_t next_due, int64_t now, int64_t limit, bool positioned) {
  FirePlan p;
  // Lateness saturates: a due time at the far past is "very late", never a
  // wrapped-around negative number.
  auto late = [now](int64_t due) { return sat_sub(now, due); };
  if (!cron) {
    if (catch_up != "none" || late(next_due) <= kMisfireGraceMs) p.fires.push_back(next_due);
    return p;
  }
  auto nxt = [&](int64_t t) {
    ++p.steps;
    return cron->next_after(t);
  };
  // Distance b - a (b >= a) without overflow.
  auto span = [](int64_t a, int64_t b) {
    return static_cast<uint64_t>(b) - static_cast<uint64_t>(a);
  };
  if (next_due > now) {  // not due (a caller's race): nothing to do
    p.next = next_due;
    return p;
  }
  // The latest due time <= now. The due times are next_due, then
  // next_after(next_due), ...; next_after never decreases as its argument
  // grows (cron.cpp), so the latest one is next_after(t) for the largest t in
  // [next_due, now) with next_after(t) <= now: a binary search of about 40
  // steps whatever the downtime, instead of a walk over every missed one.
  auto latest_due = [&]() {
    int64_t first = nxt(next_due);
    if (first > now) return next_due;
    int64_t lo = next_due, hi = now;  // next_after(lo) <= now < next_after(hi)
    while (span(lo, hi) > 1) {
      int64_t mid = lo + static_cast<int64_t>(span(lo, hi) / 2);
      if (nxt(mid) <= now)
        lo = mid;
      else
        hi = mid;
    }
    return lo == next_due ? first : nxt(lo);
  };
  if (catch_up != "all") {
    int64_t last = latest_due();
    if (catch_up == "latest" || late(last) <= kMisfireGraceMs) p.fires.push_back(last);
    p.next = nxt(last);
    return p;
  }
  size_t max = static_cast<size_t>(std::max<int64_t>(1, catch_up_max));
  int64_t x = next_due;
  // Due times are whole seconds, at least 1 s apart, so [next_due, now]
  // holds at most span/1000 + 2 of them: no skip can be needed below that.
  if (!positioned && span(next_due, now) / 1000 + 2 > max) {
    // Find the max-th latest due time S (or next_due if there are fewer):
    // walk forward from a point w before the latest due time L, keeping the
    // last `max` due times seen in a ring, and widen w until the walk sees
    // `max` of them or starts at next_due. w starts at the smallest span
    // `max` due times can have and grows by the observed density, so the
    // walks cost a small multiple of `max` steps.
    int64_t L = latest_due();
    std::vector<int64_t> ring(max);
    uint64_t w = static_cast<uint64_t>(max) * 1000;
    for (;;) {
      bool whole = w >= span(next_due, L);  // the walk starts at next_due
      int64_t y = whole ? next_due : nxt(L - static_cast<int64_t>(w));
      size_t count = 0;
      while (y <= L) {
        ring[count % max] = y;
        ++count;
        y = nxt(y);
      }
      if (count >= max) {
        x = ring[count % max];
        break;
      }
      if (whole) break;  // fewer than max missed: fire them all from next_due
      double f = count == 0 ? 64.0 : std::max(2.0, 1.25 * double(max) / double(count));
      double nw = double(w) * f;
      w = nw >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(nw);
    }
    p.start = x;
    p.latest = L;
  }
  int64_t n = std::max<int64_t>(1, limit);
  while (x <= now && static_cast<int64_t>(p.fires.size()) < n) {
    p.fires.push_back(x);
    x = nxt(x);
  }
  p.next = x;
  return p;
}

NewSchedule decode_schedule(const json &doc, const Options &opt, int64_t now, const char *what) {
  check_keys(
      doc,
      {"key", "tenant", "at", "delay_ms", "cron", "tz", "catch_up", "catch_up_max", "job", "event"},
      what);
  NewSchedule s;
  s.key = get_string(doc, "key", what, true);
  if (s.key.empty() || s.key.size() > 1024)
    fail(WF_EINVAL, std::string(what) + ": \"key\" must be 1 to 1024 bytes");
  check_no_nul(s.key, "key", what);
  s.tenant = get_string(doc, "tenant", what, false, "");
  check_no_nul(s.tenant, "tenant", what);
  if (s.tenant.size() > 200) fail(WF_EINVAL, std::string(what) + ": \"tenant\" is over 200 bytes");
  int kinds = 0;
  for (const char *k : {"at", "delay_ms", "cron"})
    if (doc.contains(k) && !doc[k].is_null()) ++kinds;
  if (kinds != 1)
    fail(WF_EINVAL, std::string(what) + ": give exactly one of \"at\", \"delay_ms\", \"cron\"");
  s.tz = get_string(doc, "tz", what, false, "UTC");
  s.catch_up = get_string(doc, "catch_up", what, false, "latest");
  if (s.catch_up != "latest" && s.catch_up != "all" && s.catch_up != "none")
    fail(WF_EINVAL, std::string(what) +
                        ": \"catch_up\" must be \"latest\", \"all\" or \"none\", not \"" +
                        s.catch_up + "\"");
  s.catch_up_max = get_int(doc, "catch_up_max", what, 100, 1, 100000);
  if (doc.contains("cron") && !doc["cron"].is_null()) {
    s.cron = get_string(doc, "cron", what, true);
    Cron c = Cron::parse(s.cron, s.tz);  // throws naming the field or zone
    s.next_due = c.next_after(now);
    if (s.next_due == INT64_MAX)
      fail(WF_EINVAL, std::string(what) + ": cron \"" + s.cron + "\" never fires");
  } else {
    if (doc.contains("tz") && !doc["tz"].is_null())
      fail(WF_EINVAL, std::string(what) + ": \"tz\" applies to \"cron\" only");
    s.tz = "UTC";
    if (doc.contains("delay_ms") && !doc["delay_ms"].is_null())
      s.next_due = sat_add(now, get_int(doc, "delay_ms", what, 0, 0, INT64_C(1) << 45));
    else
      s.next_due = get_time(doc, "at", what, now);
  }
  bool has_job = doc.contains("job") && !doc["job"].is_null();
  bool has_event = doc.contains("event") && !doc["event"].is_null();
  if (has_job == has_event)
    fail(WF_EINVAL, std::string(what) + ": give exactly one of \"job\" and \"event\"");
  std::string sub = std::string(what) + (has_job ? ".job" : ".event");
  json body = has_job ? doc["job"] : doc["event"];
  if (!body.is_object()) fail(WF_EINVAL, sub + " must be a JSON object");
  // The schedule's tenant is the tenant of what it fires.
  if (body.contains("tenant") && body["tenant"] != s.tenant)
    fail(WF_EINVAL, sub + ": \"tenant\" must match the schedule's tenant");
  body["tenant"] = s.tenant;
  if (has_job) {
    if (body.contains("run_at") || body.contains("delay_ms"))
      fail(WF_EINVAL, sub + ": the schedule sets the time; remove \"run_at\"/\"delay_ms\"");
    decode_job(body, opt, now, sub.c_str());  // validate now; bad input never fires
    s.target = "job";
  } else {
    if (!body.contains("event_id")) body["event_id"] = "schedule:" + s.key;
    decode_event(body, opt, now, sub.c_str());
    s.target = "event";
  }
  s.body = body.dump();
  return s;
}

void Engine::upsert_schedule(WriteCtx &w, const NewSchedule &s) {
  auto st = w.db.prepare(
      "INSERT OR REPLACE INTO wf_schedules(tenant, key, cron, tz, catch_up, catch_up_max, "
      "target, body, next_due, fired, last_due, origin, created_at, parked_reason, parked_at) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, NULL, ?10, ?11, NULL, NULL)");
  st->bind(1, s.tenant).bind(2, s.key);
  if (s.cron.empty())
    st->bind_null(3);
  else
    st->bind(3, s.cron);
  st->bind(4, s.tz).bind(5, s.catch_up).bind(6, s.catch_up_max).bind(7, s.target);
  st->bind(8, seal(s.body, "wf_schedules.body")).bind(9, s.next_due);
  if (s.origin.empty())
    st->bind_null(10);
  else
    st->bind(10, s.origin);
  st->bind(11, w.now).exec();
  w.next_sched = std::min(w.next_sched, s.next_due);
}

void schedule(Engine &e, const char *schedule_json) {
  check_writable(e);
  if (!schedule_json) fail(WF_EINVAL, "schedule: NULL document");
  json doc = parse_json(schedule_json, e.opt.limits, "schedule",
                        e.opt.limits.max_payload_bytes + 65536 + 1024);
  NewSchedule s = decode_schedule(doc, e.opt, e.now(), "schedule");
  submit_or_raise(e, [&](WriteCtx &w) { e.upsert_schedule(w, s); });
}

void tx_schedule(HostTx *tx, const char *schedule_json) {
  auto lk = tx_enter(tx, "wf_tx_schedule");
  Engine &e = *tx->engine;
  if (!schedule_json) fail(WF_EINVAL, "schedule: NULL document");
  json doc = parse_json(schedule_json, e.opt.limits, "schedule",
                        e.opt.limits.max_payload_bytes + 65536 + 1024);
  int64_t t = e.now();
  NewSchedule s = decode_schedule(doc, e.opt, t, "schedule");
  WriteCtx w{*e.write_db, t};
  e.upsert_schedule(w, s);
  tx_merge(tx, w);
}

void unschedule(Engine &e, const char *tenant, const char *key) {
  check_writable(e);
  if (!key || !*key) fail(WF_EINVAL, "unschedule: key is empty");
  if (tenant) check_utf8(tenant, "tenant", "unschedule");
  check_utf8(key, "key", "unschedule");
  std::string ten = tenant ? tenant : "", k = key;
  submit_or_raise(e, [&](WriteCtx &w) {
    auto st = w.db.prepare("DELETE FROM wf_schedules WHERE tenant = ?1 AND key = ?2");
    st->bind(1, ten).bind(2, k).exec();
    if (w.db.changes() == 0)
      fail(WF_ENOTFOUND, "unschedule: no schedule \"" + k + "\" in tenant \"" + ten + "\"");
  });
}

// ------------------------------------------------------------ firing

namespace {

// Bounds on one firing transaction, so that a long catch-up never holds the
// writer (and every durable write queued behind it) for long: at most
// kFiresPerSchedule due times of one schedule and kFiresPerTx in all, and no
// further schedule once kStepsPerTx next-time computations are spent. What is
// left stays due (its next_due committed with the firings) and fires in the
// following transactions.
constexpr int64_t kFiresPerSchedule = 128;
constexpr int64_t kFiresPerTx = 512;
constexpr int64_t kStepsPerTx = 20000;
// A schedule that fires a job is materialized up to this long before its due
// time, as a job whose run_at is the due time (it never runs early): one
// firing transaction then takes every job firing of the next few ms, so at
// thousands of firings per second a firing no longer costs its own commit,
// and the firing commit is off the due job's path (only its claim is on it).
// Events are never submitted early (a saga would see them before their time).
constexpr int64_t kFireAheadMs = 5;

// Materializes the firings of one schedule: the stored document is decoded
// once, then each due time gets its derived key / event id.
class Firer {
 public:
  Firer(Engine &e, const std::string &key, const std::string &target, const std::string &body,
        const std::string &origin, int64_t now)
      : e_(e), key_(key), job_(target == "job"), doc_(json::parse(body)) {
    if (job_) {
      base_ = decode_job(doc_, e.opt, now, "schedule.job");
      base_.origin = origin;
    }
  }
  void fire(WriteCtx &w, int64_t due) {
    std::string suffix = "@" + std::to_string(due);
    if (job_) {
      NewJob j = base_;
      j.key = (base_.key ? *base_.key : "schedule:" + key_) + suffix;
      j.run_at = due;  // <= now, or just ahead (kFireAheadMs): never runs early
      std::string id;
      bool existing;
      e_.insert_job(w, j, &id, &existing);
    } else {
      json doc = doc_;
      doc["event_id"] = doc.value("event_id", "schedule:" + key_) + suffix;
      if (!doc.contains("occurred_at")) doc["occurred_at"] = due;
      NewEvent ev = decode_event(doc, e_.opt, w.now, "schedule.event");
      e_.insert_event(w, ev);
    }
  }

 private:
  Engine &e_;
  const std::string &key_;
  bool job_;
  json doc_;
  NewJob base_;
};

}  // namespace

void Engine::park_schedule(WriteCtx &w, const std::string &tenant, const std::string &key,
                           const std::string &reason) {
  std::string r = sanitize_utf8(reason, 2048);
  auto up = w.db.prepare(
      "UPDATE wf_schedules SET parked_reason = ?3, parked_at = ?4 WHERE tenant = ?1 AND key = ?2");
  up->bind(1, tenant).bind(2, key).bind(3, r).bind(4, w.now).exec();
  log(WF_LOG_ERROR, "schedule could not fire; parked (wf_schedule with the same key replaces it)",
      json{{"event", "schedule.parked"}, {"tenant", tenant}, {"schedule", key}, {"error", r}});
}

void Engine::pump_schedules() {
  if (fire_outstanding || sched_hold || stopping || draining) return;
  int64_t t = now();
  if (known_next_sched > t) return;
  fire_outstanding = true;
  auto more = std::make_shared<bool>(false);
  WriteReq r;
  r.fn = [this, more](WriteCtx &w) {
    struct Due {
      std::string tenant, key, cron, tz, catch_up, target, body, origin;
      int64_t max, next_due;
    };
    std::vector<Due> due;
    {
      // Parked schedules are not in the (partial) index and never due.
      auto st = w.db.prepare(
          "SELECT tenant, key, cron, tz, catch_up, catch_up_max, target, body, next_due, origin "
          "FROM wf_schedules INDEXED BY wf_schedules_due WHERE next_due <= ?2 AND "
          "(next_due <= ?1 OR target = 'job') AND parked_reason IS NULL ORDER BY next_due "
          "LIMIT 512");
      st->bind(1, w.now).bind(2, sat_add(w.now, kFireAheadMs));
      while (st->step())
        due.push_back(Due{st->col_text(0), st->col_text(1), st->col_text(2), st->col_text(3),
                          st->col_text(4), st->col_text(6), st->col_text(7), st->col_text(9),
                          st->col_int(5), st->col_int(8)});
    }
    *more = due.size() == 512;
    int64_t fires_tx = 0, steps_tx = 0;
    for (auto &d : due) {
      if (fires_tx >= kFiresPerTx || steps_tx >= kStepsPerTx) {
        *more = true;  // the rest in the next transaction
        break;
      }
      // Each schedule fires in its own savepoint: one bad row (a cron the
      // library no longer accepts, a job over a lowered max_payload_bytes)
      // must not stop the others.
      w.db.exec("SAVEPOINT fire");
      WriteCtx sub{w.db, w.now};
      sub.start_sub(w);
      try {
        std::string body = unseal(d.body, "wf_schedules.body");
        std::optional<Cron> c;
        if (!d.cron.empty()) c = Cron::parse(d.cron, d.tz);
        auto wkey = std::make_pair(d.tenant, d.key);
        auto win = catchup_window.find(wkey);
        bool positioned = win != catchup_window.end() && win->second.start <= d.next_due &&
                          d.next_due <= win->second.latest && win->second.max == d.max &&
                          win->second.cron == d.cron && win->second.tz == d.tz;
        // A job due up to kFireAheadMs ahead fires now (run_at = due); one
        // already due is planned against the present (lateness, catch-up).
        int64_t horizon =
            d.target == "job" && d.next_due > w.now ? sat_add(w.now, kFireAheadMs) : w.now;
        FirePlan plan =
            plan_firing(c ? &*c : nullptr, d.catch_up, d.max, d.next_due, horizon,
                        std::min(kFiresPerSchedule, kFiresPerTx - fires_tx), positioned);
        steps_tx += plan.steps;
        fires_tx += static_cast<int64_t>(plan.fires.size());
        if (plan.latest != INT64_MIN)
          catchup_window[wkey] = {plan.start, plan.latest, d.max, d.cron, d.tz};
        else if (win != catchup_window.end() && (!positioned || plan.next > win->second.latest))
          catchup_window.erase(win);
        // Catching up (more chunks follow), or a job due time just ahead.
        if (plan.next <= sat_add(w.now, kFireAheadMs)) *more = true;
        if (!plan.fires.empty()) {
          Firer f(*this, d.key, d.target, body, d.origin, w.now);
          for (int64_t at : plan.fires) {
            f.fire(sub, at);
            // Observed once the transaction committed (note_commit), so a
            // transaction rolled back and run again counts its firings once.
            sub.schedule_lateness_us.push_back(std::max<int64_t>(0, sat_sub(w.now, at)) * 1000);
          }
          sub.schedules_fired += static_cast<int64_t>(plan.fires.size());
          if (log_enabled(WF_LOG_DEBUG))
            log(WF_LOG_DEBUG, "schedule fired",
                json{{"event", "schedule.fired"},
                     {"tenant", d.tenant},
                     {"schedule", d.key},
                     {"target", d.target},
                     {"fires", plan.fires.size()},
                     {"due", plan.fires.back()}});
          WF_FAILPOINT("after_schedule_fired_before_reschedule");
        }
        if (plan.next == INT64_MAX) {
          auto del = w.db.prepare("DELETE FROM wf_schedules WHERE tenant = ?1 AND key = ?2");
          del->bind(1, d.tenant).bind(2, d.key).exec();
        } else {
          auto up = w.db.prepare(
              "UPDATE wf_schedules SET next_due = ?3, fired = fired + ?4, last_due = "
              "coalesce(?5, last_due) WHERE tenant = ?1 AND key = ?2");
          up->bind(1, d.tenant)
              .bind(2, d.key)
              .bind(3, plan.next)
              .bind(4, static_cast<int64_t>(plan.fires.size()));
          if (plan.fires.empty())
            up->bind_null(5);
          else
            up->bind(5, plan.fires.back());
          up->exec();
          sub.next_sched = std::min(sub.next_sched, plan.next);
        }
        w.db.exec("RELEASE fire");
        w.merge(sub);
      } catch (const Error &ex) {
        // A database failure dooms the whole transaction (the writer retries
        // the pass later); anything else is this schedule's own problem: it
        // is parked with the reason, never removed, and fires again only when
        // the host replaces it (wf_schedule with the same key).
        if (!w.db.in_txn() || ex.code() == WF_EIO || ex.code() == WF_EBUSY ||
            ex.code() == WF_ENOMEM)
          throw;
        w.db.exec("ROLLBACK TO fire");
        w.db.exec("RELEASE fire");
        park_schedule(w, d.tenant, d.key, ex.what());
      } catch (const std::bad_alloc &) {
        throw;
      } catch (const std::exception &ex) {
        if (!w.db.in_txn()) throw;
        w.db.exec("ROLLBACK TO fire");
        w.db.exec("RELEASE fire");
        park_schedule(w, d.tenant, d.key, std::string("internal error: ") + ex.what());
      }
    }
  };
  r.after = [this, more](int rc, const std::string &) {
    bool again = rc == WF_OK && *more;
    notify_loop([&](Inbox &in) {
      if (rc != WF_OK)
        in.fire_failed = true;
      else
        in.fire_done = true;
      in.fire_again |= again;
    });
  };
  submit(std::move(r));
}

void Engine::refresh_next_sched() {
  try {
    std::lock_guard<std::mutex> g(read_mu);
    auto st = read_db->prepare(
        "SELECT min(next_due) FROM wf_schedules INDEXED BY wf_schedules_due WHERE "
        "parked_reason IS NULL");
    known_next_sched = (st->step() && !st->col_null(0)) ? st->col_int(0) : INT64_MAX;
  } catch (const std::exception &ex) {
    read_failed(ex);
  }
}

}  // namespace wf
