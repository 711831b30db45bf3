// Outbox writes (enqueue, cancel, dead-letter re-queue/purge), host
// transactions, and the reads behind stats, metrics and dead-letter listings.
#include "outbox.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "lease.h"

namespace wf {

// Claim on insert, writer side: a ready job takes one of the slots the
// loop granted its effect, unless a ready job of the effect was inserted
// unclaimed since the last claim that found none left (it goes first). A
// ready job that gets no slot marks that backlog. Not in a host transaction
// (may_claim false): its jobs are delivered by claims as before.
std::shared_ptr<EffectState> Engine::take_insert_slot(WriteCtx &w, const std::string &effect) {
  auto eff = find_effect(effect);
  if (!eff) return nullptr;
  if (!w.may_claim) {
    // A host transaction: counted at once (if it rolls back, the next claim
    // that finds nothing clears it).
    eff->unclaimed_gen.fetch_add(1);
    return nullptr;
  }
  if (w.has_unclaimed(eff.get())) return nullptr;
  if (eff->unclaimed_gen.load() == eff->cleared_gen.load()) {
    int c = eff->insert_credit.load();
    while (c > 0 && !eff->insert_credit.compare_exchange_weak(c, c - 1)) {
    }
    if (c > 0) return eff;
  }
  w.unclaimed.push_back(std::move(eff));  // counted once the transaction committed
  return nullptr;
}

// The handle of a job just inserted claimed (as a claim would return it).
void Engine::add_insert_claim(WriteCtx &w, std::shared_ptr<EffectState> eff, int64_t id,
                              const NewJob &nj) {
  auto j = std::make_shared<JobCtx>();
  j->link = link;
  j->id = id;
  j->id_str = std::to_string(id);
  j->tenant = nj.tenant;
  j->effect = nj.effect;
  j->key = nj.key ? *nj.key : std::string();
  j->payload = nj.payload;
  j->metadata = nj.metadata;
  j->attempt = 1;
  j->failures = 0;
  j->interruptions = 0;
  j->max_attempts = nj.max_attempts;
  j->priority = static_cast<int>(nj.priority);
  j->run_at = nj.run_at;
  j->origin = nj.origin;
  j->started_at = w.now;
  j->deadline = INT64_MAX;
  w.claimed.emplace_back(std::move(j), std::move(eff));
}

void Engine::bind_claim(Stmt &st, int pos, bool claimed, int64_t now, bool unindexed) {
  if (claimed) {
    st.bind(pos, static_cast<int64_t>(JobState::kRunning))
        .bind_static(pos + 1, boot_id)
        .bind(pos + 2, sat_add(now, opt.lease_ms))
        .bind(pos + 3, 1)
        .bind(pos + 4, now);
  } else {
    st.bind(pos, static_cast<int64_t>(unindexed ? JobState::kUnindexed : JobState::kReady))
        .bind_null(pos + 1)
        .bind_null(pos + 2)
        .bind(pos + 3, 0)
        .bind_null(pos + 4);
  }
}

void Engine::insert_job(WriteCtx &w, const NewJob &j, std::string *id, bool *existing) {
  *existing = false;
  if (j.key) {
    int64_t found = existing_key(w, j.tenant, *j.key);
    if (found > 0) {
      *id = std::to_string(found);
      *existing = true;
      return;
    }
  }
  std::shared_ptr<EffectState> claim_eff;
  if (j.run_at <= w.now) claim_eff = take_insert_slot(w, j.effect);
  // (A slot taken and not used, if the INSERT throws, goes back with the
  // InsertClaim that is never made: give it back here.)
  struct SlotGuard {
    std::shared_ptr<EffectState> *eff;
    ~SlotGuard() {
      if (*eff) (*eff)->insert_credit.fetch_add(1);
    }
  } guard{&claim_eff};
  const int64_t rowid = lease::next_job_id(w.db, &w.counts);
  auto st = w.db.prepare(
      "INSERT INTO wf_jobs(tenant, effect, key, payload, metadata, priority, run_at, "
      "max_attempts, created_at, origin, state, lease_owner, lease_until, attempts, started_at, "
      "id, capped) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
      "(SELECT 1 FROM wf_capped_effects WHERE effect = ?2))");
  // The job's strings outlive the statement's use (reset when `st` goes out
  // of scope): bound without copies.
  st->bind_static(1, j.tenant).bind_static(2, j.effect);
  if (j.key)
    st->bind_static(3, *j.key);
  else
    st->bind_null(3);
  std::string sealed;
  if (cipher) sealed = seal(j.payload, "wf_jobs.payload");
  st->bind_static(4, cipher ? sealed : j.payload).bind_static(5, j.metadata).bind(6, j.priority);
  st->bind(7, j.run_at);
  if (j.max_attempts)
    st->bind(8, *j.max_attempts);
  else
    st->bind_null(8);
  st->bind(9, w.now);
  if (!j.origin.empty())
    st->bind(10, j.origin);
  else
    st->bind_null(10);
  // A job due at once that no claim takes now, in a transaction that only
  // inserts: left out of the claim indexes (state 2) until the transaction
  // that counts it (lease.h), one WAL page less in this commit.
  const size_t bytes = j.payload.size() + j.metadata.size() + (j.key ? j.key->size() : 0);
  const bool unindexed = !claim_eff && w.inserts_only && j.run_at <= w.now &&
                         lease::may_leave_unindexed(w.counts, rowid, bytes);
  bind_claim(*st, 11, claim_eff != nullptr, w.now, unindexed);
  st->bind(16, rowid).exec();
  *id = std::to_string(rowid);
  n_enqueued.fetch_add(1, std::memory_order_relaxed);
  if (claim_eff) {
    lease::count_add(w.counts, j.effect, j.tenant, 0, 1, 1);
    add_insert_claim(w, std::move(claim_eff), rowid, j);  // (claim_eff is empty now)
    return;
  }
  lease::count_add(w.counts, j.effect, j.tenant, 1, 0, 1);
  if (j.run_at <= w.now)
    w.ready_now = true;
  else
    w.next_due = std::min(w.next_due, j.run_at);
}

namespace {

// Eight jobs per INSERT (the batch path): the statement's fixed costs (its
// statement journal, reset) are paid once per eight rows. Ids are given
// explicitly from lease::next_job_id.
// (The last five columns: a job claimed on insert, see Engine::bind_claim.)
const char *kInsertJobs8Sql =
    "INSERT INTO wf_jobs(id, tenant, effect, key, payload, metadata, priority, run_at, "
    "max_attempts, created_at, origin, state, lease_owner, lease_until, attempts, started_at, "
    "capped) VALUES"
    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?),"
    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?),"
    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?),"
    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?),"
    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?),"
    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?),"
    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?),"
    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
const char *kInsertJob1Sql =
    "INSERT INTO wf_jobs(id, tenant, effect, key, payload, metadata, priority, run_at, "
    "max_attempts, created_at, origin, state, lease_owner, lease_until, attempts, started_at, "
    "capped) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
constexpr int kInsertCols = 17;

}  // namespace

// Inserts the jobs of one batch as they come (BatchInsert::add), in order:
// keys first (a key already in the outbox or still deduplicated names the
// existing job; a key twice in the batch, its first job), then new jobs eight
// rows per statement with ids from lease::next_job_id.
class BatchInsert {
 public:
  BatchInsert(Engine &e, WriteCtx &w, std::vector<std::pair<int64_t, bool>> *out, size_t n)
      : e_(e), w_(w), out_(*out) {
    out_.assign(n, {0, false});
  }
  ~BatchInsert() {
    for (auto &s : slots_)
      if (s) s->insert_credit.fetch_add(1);
  }
  BatchInsert(const BatchInsert &) = delete;
  BatchInsert &operator=(const BatchInsert &) = delete;
  // Jobs [from, to) of `jobs`.
  void add(const std::vector<NewJob> &jobs, size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) add_one(jobs[i], i);
  }
  // Job `j`, the i-th of the batch (it outlives this object).
  void add_one(const NewJob &j, size_t i) {
    if (j.key) {
      std::string k = j.tenant;
      k += '\0';
      k += *j.key;
      auto [it, added] = keys_.emplace(std::move(k), i);
      if (!added) {
        // The first job of this key was given its id already (or is
        // waiting in pending_, whose ids are allocated on entry).
        out_[i] = {out_[it->second].first, true};
        return;
      }
      int64_t id = e_.existing_key(w_, j.tenant, *j.key);
      if (id > 0) {
        out_[i] = {id, true};
        return;
      }
    }
    if (next_ == 0) next_ = lease::next_job_id(w_.db, &w_.counts);
    out_[i] = {next_++, false};
    // Claimed on insert when its effect has a slot (in order: the slots
    // go to the first ready jobs of the batch).
    slots_[npending_] = j.run_at <= w_.now ? e_.take_insert_slot(w_, j.effect) : nullptr;
    pending_[npending_++] = &j;
    if (npending_ == 8) flush8();
  }
  // The jobs left over (fewer than eight), one statement each.
  void finish() {
    for (size_t k = 0; k < npending_; ++k) {
      auto st = w_.db.prepare(kInsertJob1Sql);
      bind_row(*st, 0, k);
      st->exec();
      claimed(k);
    }
    e_.n_enqueued.fetch_add(fresh_ + static_cast<int64_t>(npending_), std::memory_order_relaxed);
    npending_ = 0;
  }

 private:
  void flush8() {
    auto st = w_.db.prepare(kInsertJobs8Sql);
    for (size_t k = 0; k < 8; ++k) bind_row(*st, static_cast<int>(k) * kInsertCols, k);
    st->exec();
    for (size_t k = 0; k < 8; ++k) claimed(k);
    fresh_ += 8;
    npending_ = 0;
  }
  // After the row's INSERT: a job claimed on insert goes to the loop with
  // the commit.
  void claimed(size_t k) {
    if (!slots_[k]) return;
    int64_t id = next_ - static_cast<int64_t>(npending_) + static_cast<int64_t>(k);
    e_.add_insert_claim(w_, std::move(slots_[k]), id, *pending_[k]);
    slots_[k].reset();
  }
  void bind_row(Stmt &st, int base, size_t k) {
    const NewJob &j = *pending_[k];
    // Ids were allocated in order: the k-th pending job has the k-th id of
    // the npending_ before next_.
    int64_t id = next_ - static_cast<int64_t>(npending_) + static_cast<int64_t>(k);
    st.bind(base + 1, id).bind_static(base + 2, j.tenant).bind_static(base + 3, j.effect);
    if (j.key)
      st.bind_static(base + 4, *j.key);
    else
      st.bind_null(base + 4);
    if (e_.cipher) {
      sealed_[k] = e_.seal(j.payload, "wf_jobs.payload");
      st.bind_static(base + 5, sealed_[k]);
    } else {
      st.bind_static(base + 5, j.payload);
    }
    st.bind_static(base + 6, j.metadata).bind(base + 7, j.priority).bind(base + 8, j.run_at);
    if (j.max_attempts)
      st.bind(base + 9, *j.max_attempts);
    else
      st.bind_null(base + 9);
    st.bind(base + 10, w_.now);
    if (!j.origin.empty())
      st.bind(base + 11, j.origin);
    else
      st.bind_null(base + 11);
    bool claim = slots_[k] != nullptr;
    e_.bind_claim(st, base + 12, claim, w_.now);
    if (capped(j.effect))
      st.bind(base + 17, 1);
    else
      st.bind_null(base + 17);
    if (claim) {
      lease::count_add(w_.counts, j.effect, j.tenant, 0, 1, 1);
    } else {
      lease::count_add(w_.counts, j.effect, j.tenant, 1, 0, 1);
      if (j.run_at <= w_.now)
        w_.ready_now = true;
      else
        w_.next_due = std::min(w_.next_due, j.run_at);
    }
  }

  // Whether the effect's jobs go in wf_jobs_tenant (lease::is_capped), read
  // once per effect and batch.
  bool capped(const std::string &effect) {
    auto it = capped_.find(effect);
    if (it == capped_.end()) it = capped_.emplace(effect, lease::is_capped(w_.db, effect)).first;
    return it->second;
  }

  Engine &e_;
  WriteCtx &w_;
  std::vector<std::pair<int64_t, bool>> &out_;
  std::unordered_map<std::string, bool> capped_;
  std::unordered_map<std::string, size_t> keys_;
  int64_t next_ = 0;  // next id to give; 0: not read yet
  const NewJob *pending_[8] = {};
  std::string sealed_[8];
  // The slot each pending job took (claim on insert), or null. One not used
  // (an INSERT failed) goes back when the BatchInsert is destroyed.
  std::shared_ptr<EffectState> slots_[8];
  size_t npending_ = 0;
  int64_t fresh_ = 0;
};

void Engine::insert_jobs(WriteCtx &w, const std::vector<NewJob> &jobs,
                         std::vector<std::pair<int64_t, bool>> *out) {
  BatchInsert b(*this, w, out, jobs.size());
  b.add(jobs, 0, jobs.size());
  b.finish();
}

void Engine::insert_job_group(WriteCtx &w, std::vector<WriteReq> &batch, size_t from, size_t to) {
  std::vector<std::pair<int64_t, bool>> ids;
  {
    BatchInsert b(*this, w, &ids, to - from);
    for (size_t i = from; i < to; ++i) {
      fail_if_injected(*batch[i].job);
      b.add_one(*batch[i].job, i - from);
    }
    b.finish();
  }
  for (size_t i = from; i < to; ++i) {
    const auto &[id, existing] = ids[i - from];
    *batch[i].job_rc = existing ? WF_EEXIST : WF_OK;
    *batch[i].job_id = std::to_string(id);
  }
}

int64_t Engine::existing_key(WriteCtx &w, const std::string &tenant, const std::string &key) {
  {
    auto st = w.db.prepare("SELECT id FROM wf_jobs WHERE tenant = ?1 AND key = ?2");
    st->bind(1, tenant).bind(2, key);
    if (st->step()) return st->col_int(0);
  }
  auto st = w.db.prepare(
      "SELECT job_id FROM wf_done_keys WHERE tenant = ?1 AND key = ?2 AND expires_at > ?3");
  st->bind(1, tenant).bind(2, key).bind(3, w.now);
  if (st->step()) return st->col_int(0);
  return 0;
}

namespace {

// The run_at of the oldest ready job of an effect (of one tenant if given), or
// INT64_MAX: the first ready job of each priority on wf_jobs_claim (effect,
// priority DESC, run_at, id), moving from one priority to the next by a seek.
int64_t oldest_ready(Db &db, const std::string &effect, const std::optional<std::string> &tenant,
                     int64_t now) {
  int64_t oldest = INT64_MAX;
  int64_t below = INT64_MAX;  // priorities < below are left
  const bool capped = tenant && lease::is_capped(db, effect);
  for (;;) {
    auto pr = db.prepare(
        "SELECT priority FROM wf_jobs INDEXED BY wf_jobs_claim WHERE state = 0 AND effect = ?1 "
        "AND priority < ?2 ORDER BY priority DESC LIMIT 1");
    pr->bind(1, effect).bind(2, below);
    if (!pr->step()) return oldest;
    int64_t p = pr->col_int(0);
    // (wf_jobs_tenant holds only capped effects' jobs; another effect's
    // are read on its claim range until one of the tenant's is found.)
    auto od = tenant && capped ? db.prepare(
                                     "SELECT run_at FROM wf_jobs INDEXED BY wf_jobs_tenant WHERE "
                                     "state = 0 AND capped = 1 AND effect = ?1 AND tenant = ?4 "
                                     "AND priority = ?2 AND run_at <= ?3 ORDER BY run_at LIMIT 1")
              : tenant ? db.prepare(
                             "SELECT run_at FROM wf_jobs INDEXED BY wf_jobs_claim WHERE "
                             "state = 0 AND effect = ?1 AND priority = ?2 AND run_at <= ?3 AND "
                             "tenant = ?4 ORDER BY run_at LIMIT 1")
                       : db.prepare(
                             "SELECT run_at FROM wf_jobs INDEXED BY wf_jobs_claim WHERE "
                             "state = 0 AND effect = ?1 AND priority = ?2 AND run_at <= ?3 "
                             "ORDER BY run_at LIMIT 1");
    od->bind(1, effect).bind(2, p).bind(3, now);
    if (tenant) od->bind(4, *tenant);
    if (od->step()) oldest = std::min(oldest, od->col_int(0));
    below = p;
  }
}

}  // namespace

void check_writable(Engine &e) {
  if (e.opt.read_only) fail(WF_ESTATE, kReadOnlyRefusal);
  if (e.closed || e.draining) fail(WF_ECLOSED, "engine is draining or closed");
  e.check_own_tx("write");
}

int submit_or_raise(Engine &e, std::function<void(WriteCtx &)> fn, bool inserts_only, bool one_id) {
  int rc = e.submit_wait(std::move(fn), true, inserts_only, one_id);
  if (rc != WF_OK) fail(rc, last_error());
  return rc;
}

bool enqueue(Engine &e, const char *job_json, std::string *id) {
  check_writable(e);
  if (!job_json) fail(WF_EINVAL, "job: NULL document");
  json doc =
      parse_json(job_json, e.opt.limits, "job", e.opt.limits.max_payload_bytes + 65536 + 1024);
  NewJob j = decode_job(doc, e.opt, e.now(), "job");
  bool existing = false;
  submit_or_raise(
      e,
      [&](WriteCtx &w) {
        // The document's run_at was computed from the caller's clock reading;
        // keep it. Dedupe uses the commit's clock.
        e.insert_job(w, j, id, &existing);
      },
      true, true);
  return existing;
}

namespace {

// The elements of a top-level JSON array, as spans of `t` that are each still
// to be parsed (with the limits of a job document). The scan follows only
// strings and nesting; whatever else is wrong inside an element its own parse
// reports.
std::vector<std::string_view> split_array(std::string_view t) {
  auto malformed = [](const std::string &why) {
    fail(WF_EINVAL, "jobs: malformed JSON (" + why + ")");
  };
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  size_t p = 0, n = t.size();
  while (p < n && ws(t[p])) ++p;
  if (p == n || t[p] != '[') fail(WF_EINVAL, "jobs: must be a JSON array of job objects");
  ++p;
  std::vector<std::string_view> items;
  size_t start = p;
  int depth = 0;
  bool closed = false;
  auto element = [&](size_t end) {
    size_t a = start, b = end;
    while (a < b && ws(t[a])) ++a;
    while (b > a && ws(t[b - 1])) --b;
    if (a == b) malformed("empty element at offset " + std::to_string(a));
    items.push_back(t.substr(a, b - a));
  };
  while (p < n && !closed) {
    char c = t[p];
    if (c == '"') {
      for (++p; p < n && t[p] != '"'; ++p)
        if (t[p] == '\\') ++p;
      if (p >= n) malformed("unterminated string");
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth > 0) {
        --depth;
      } else if (c == ']') {
        // "[]" and "[ ]" are empty batches; "[1,]" has an empty element.
        size_t a = start;
        while (a < p && ws(t[a])) ++a;
        if (a < p || !items.empty()) element(p);
        closed = true;
      } else {
        malformed("unexpected '}' at offset " + std::to_string(p));
      }
    } else if (c == ',' && depth == 0) {
      element(p);
      start = p + 1;
    }
    ++p;
  }
  if (!closed) malformed("unterminated array");
  while (p < n && ws(t[p])) ++p;
  if (p != n) malformed("text after the array at offset " + std::to_string(p));
  return items;
}

// Parses and decodes job i of a batch.
NewJob decode_item(const Engine &e, std::string_view item, size_t i, int64_t now) {
  std::string what = "jobs[" + std::to_string(i) + "]";
  json doc =
      parse_json(item, e.opt.limits, what.c_str(), e.opt.limits.max_payload_bytes + 65536 + 1024);
  return decode_job(doc, e.opt, now, what.c_str());
}

// The ids of a batch as the result document: built as text directly (ids
// are decimal digits), no JSON document per job.
std::string batch_result(const std::vector<std::pair<int64_t, bool>> &ids) {
  std::string out;
  out.reserve(ids.size() * 36 + 2);
  out += '[';
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += "{\"id\":\"";
    out += std::to_string(ids[i].first);
    out += ids[i].second ? "\",\"existing\":true}" : "\",\"existing\":false}";
  }
  out += ']';
  return out;
}

// Batches from this size on are decoded on the caller's thread while the
// writer inserts the jobs decoded so far (two cores at work on one batch).
constexpr size_t kPipelineMin = 128;
constexpr size_t kPipelineStep = 32;

}  // namespace

std::string enqueue_batch(Engine &e, const char *jobs_json) {
  check_writable(e);
  if (!jobs_json) fail(WF_EINVAL, "jobs: NULL document");
  std::vector<std::string_view> items = split_array(jobs_json);
  if (items.size() > 100000) fail(WF_ETOOBIG, "jobs: more than 100000 jobs in one batch");
  const size_t n = items.size();
  std::vector<NewJob> jobs(n);
  int64_t t = e.now();
  std::string out;
  if (n < kPipelineMin) {
    for (size_t i = 0; i < n; ++i) jobs[i] = decode_item(e, items[i], i, t);
    submit_or_raise(
        e,
        [&](WriteCtx &w) {
          std::vector<std::pair<int64_t, bool>> ids;
          e.insert_jobs(w, jobs, &ids);
          out = batch_result(ids);
        },
        true);
    return out;
  }
  // Pipelined: the writer's transaction inserts job i once the caller has
  // published it (`ready` > i, under `mu`); a job that fails to decode
  // abandons the transaction, so nothing of the batch is stored. The caller
  // waits for the request to end before it returns or throws: the request
  // refers to its locals.
  struct Feed {
    std::mutex mu;
    std::condition_variable cv;
    size_t ready = 0;
    bool failed = false;
    bool done = false;
    int rc = WF_OK;
    std::string err;
  } feed;
  WriteReq r;
  r.durable = true;
  r.savepoint = true;  // as submit_wait: a failure stays this request's
  r.inserts_only = true;
  r.fn = [&](WriteCtx &w) {
    std::vector<std::pair<int64_t, bool>> ids;
    BatchInsert b(e, w, &ids, n);
    for (size_t i = 0; i < n;) {
      size_t avail;
      {
        std::unique_lock<std::mutex> lk(feed.mu);
        feed.cv.wait(lk, [&] { return feed.ready > i || feed.failed; });
        if (feed.failed) fail(WF_EINVAL, "jobs: the batch was abandoned");
        avail = feed.ready;
      }
      b.add(jobs, i, avail);
      i = avail;
    }
    b.finish();
    out = batch_result(ids);
  };
  r.after = [&](int rc, const std::string &err) {
    std::lock_guard<std::mutex> g(feed.mu);
    feed.rc = rc;
    feed.err = err;
    feed.done = true;
    feed.cv.notify_all();
  };
  e.submit(std::move(r));
  auto wait_done = [&] {
    std::unique_lock<std::mutex> lk(feed.mu);
    feed.cv.wait(lk, [&] { return feed.done; });
  };
  try {
    for (size_t i = 0; i < n; ++i) {
      jobs[i] = decode_item(e, items[i], i, t);
      if ((i + 1) % kPipelineStep == 0 || i + 1 == n) {
        std::lock_guard<std::mutex> g(feed.mu);
        feed.ready = i + 1;
        feed.cv.notify_all();
      }
    }
  } catch (...) {
    {
      std::lock_guard<std::mutex> g(feed.mu);
      feed.failed = true;
      feed.cv.notify_all();
    }
    wait_done();
    throw;
  }
  wait_done();
  if (feed.rc != WF_OK) fail(feed.rc, feed.err);
  return out;
}

void cancel(Engine &e, const char *tenant, const char *id_or_key) {
  check_writable(e);
  if (!id_or_key || !*id_or_key) fail(WF_EINVAL, "cancel: id_or_key is empty");
  if (tenant) check_utf8(tenant, "tenant", "cancel");
  check_utf8(id_or_key, "id_or_key", "cancel");
  std::string ten = tenant ? tenant : "";
  std::string ik = id_or_key;
  bool numeric = ik.size() < 19 && ik.find_first_not_of("0123456789") == std::string::npos;
  submit_or_raise(e, [&](WriteCtx &w) {
    int64_t id = -1;
    int state = -1;
    if (numeric) {
      auto st = w.db.prepare("SELECT id, state FROM wf_jobs WHERE id = ?1 AND tenant = ?2");
      st->bind(1, static_cast<int64_t>(std::stoll(ik))).bind(2, ten);
      if (st->step()) {
        id = st->col_int(0);
        state = static_cast<int>(st->col_int(1));
      }
    }
    if (id < 0) {
      auto st = w.db.prepare("SELECT id, state FROM wf_jobs WHERE tenant = ?1 AND key = ?2");
      st->bind(1, ten).bind(2, ik);
      if (st->step()) {
        id = st->col_int(0);
        state = static_cast<int>(st->col_int(1));
      }
    }
    if (id < 0)
      fail(WF_ENOTFOUND, "cancel: no pending job \"" + ik + "\" in tenant \"" + ten + "\"");
    if (state == static_cast<int>(JobState::kRunning))
      fail(WF_EBUSY, "cancel: job " + std::to_string(id) + " is running");
    auto d =
        w.db.prepare("DELETE FROM wf_jobs WHERE id = ?1 AND state = 0 RETURNING effect, tenant");
    d->bind(1, id);
    lease::note_deleted(w.db, w.counts, id);
    while (d->step()) lease::count_add(w.counts, d->col_text(0), d->col_text(1), -1, 0);
    auto a = w.db.prepare("DELETE FROM wf_attempts WHERE job_id = ?1");
    a->bind(1, id).exec();
  });
}

// ------------------------------------------------------- host transaction

HostTx *tx_begin(Engine &e) {
  check_writable(e);
  auto tx = std::make_shared<HostTx>();
  tx->engine = &e;
  tx->fork_gen = e.fork_gen;
  tx->last_thread = std::this_thread::get_id();
  WriteReq r;
  r.host_tx = true;
  r.tx = tx;
  e.submit(std::move(r));
  std::unique_lock<std::mutex> lk(tx->mu);
  tx->cv.wait(lk, [&] { return tx->granted; });
  if (tx->grant_rc != WF_OK) fail(tx->grant_rc, "wf_tx_begin: " + tx->grant_err);
  // The handle keeps the shared state alive until commit/rollback.
  tx->owner_ref = tx;
  return tx.get();
}

static void check_tx_process(HostTx *tx, const char *what) {
  if (tx->fork_gen != fork_generation())
    fail(WF_EFORKED, std::string(what) +
                         ": the transaction belongs to an engine opened before fork() in the "
                         "parent process; it cannot be used (or freed) in this process");
}

std::unique_lock<std::mutex> tx_enter(HostTx *tx, const char *what) {
  check_tx_process(tx, what);
  std::unique_lock<std::mutex> lk(tx->mu);
  if (tx->state == HostTx::kTimedOut)
    fail(WF_ESTATE, std::string(what) +
                        ": the transaction was rolled back after tx_timeout_ms; free it with "
                        "wf_tx_rollback");
  if (tx->failed)
    fail(WF_ESTATE, std::string(what) + ": the transaction failed earlier; roll it back");
  tx->last_thread = std::this_thread::get_id();
  return lk;
}

void tx_merge(HostTx *tx, const WriteCtx &w) {
  tx->ready_now |= w.ready_now;
  tx->next_due = std::min(tx->next_due, w.next_due);
  tx->saga_ready |= w.saga_ready;
  tx->next_sched = std::min(tx->next_sched, w.next_sched);
  if (!w.counts.empty()) lease::count_merge(tx->counts, w.counts);
  tx->events_submitted += w.events_submitted;
  tx->events_unmatched += w.events_unmatched;
}

static void tx_clear(HostTx *tx) {
  tx->ready_now = false;
  tx->next_due = INT64_MAX;
  tx->saga_ready = false;
  tx->next_sched = INT64_MAX;
  tx->counts.clear();
  tx->events_submitted = tx->events_unmatched = 0;
}

// With tx->mu held and the transaction ended on the connection: tells the
// loop what changed and gives the connection back to the writer. Nothing
// touches the engine afterwards (wf_close may complete as soon as the writer
// goes on). Returns the handle's reference, to drop after unlocking.
static std::shared_ptr<HostTx> tx_release(HostTx *tx) {
  Engine &e = *tx->engine;
  {
    std::lock_guard<std::mutex> g(e.htx_mu);
    if (e.open_tx == tx) e.open_tx = nullptr;
  }
  WriteCtx hints{*e.write_db, 0};
  hints.ready_now = tx->ready_now;
  hints.next_due = tx->next_due;
  hints.saga_ready = tx->saga_ready;
  hints.next_sched = tx->next_sched;
  e.post_hints(hints);
  tx->state = HostTx::kEnded;
  tx->released = true;
  tx->cv.notify_all();
  return std::move(tx->owner_ref);
}

std::string tx_exec(HostTx *tx, const char *sql, const char *params_json, bool want_rows) {
  auto lk = tx_enter(tx, "wf_tx_exec");
  Engine &e = *tx->engine;
  if (!sql) fail(WF_EINVAL, "wf_tx_exec: sql is NULL");
  json params = json::array();
  if (params_json && *params_json) {
    params = parse_json(params_json, e.opt.limits, "params", e.opt.limits.max_payload_bytes);
    if (!params.is_array()) fail(WF_EINVAL, "params: must be a JSON array");
  }
  Db &db = *e.write_db;
  std::string_view tail;
  db.set_authorizer(true);
  std::unique_ptr<sqlite3_stmt, void (*)(sqlite3_stmt *)> holder(nullptr, nullptr);
  try {
    holder = db.prepare_once(sql, &tail);
  } catch (const Error &err) {
    db.set_authorizer(false);
    std::string m = err.what();
    if (m.find("not authorized") != std::string::npos)
      fail(WF_EINVAL,
           "wf_tx_exec: statement refused: it may not write engine tables (wf_*), control "
           "transactions, ATTACH/DETACH or run PRAGMA");
    throw;
  }
  db.set_authorizer(false);
  if (!holder) fail(WF_EINVAL, "wf_tx_exec: empty SQL");
  for (char c : tail)
    if (c != ';' && c != ' ' && c != '\n' && c != '\t' && c != '\r')
      fail(WF_EINVAL, "wf_tx_exec: only one statement per call");
  Stmt st(holder.get());
  for (size_t i = 0; i < params.size(); ++i) st.bind_json(static_cast<int>(i + 1), params[i]);
  json rows = json::array();
  try {
    while (st.step()) {
      if (!want_rows) continue;
      json row = json::object();
      for (int c = 0; c < st.columns(); ++c) row[st.col_name(c)] = st.col_json_value(c);
      rows.push_back(std::move(row));
    }
  } catch (const Error &) {
    if (!db.in_txn()) tx->failed = true;  // SQLite rolled the transaction back
    throw;
  }
  // Text columns that are not UTF-8 (the host's own data) come back with
  // U+FFFD instead of failing the call; binary data belongs in blobs (hex).
  return rows.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool tx_enqueue(HostTx *tx, const char *job_json, std::string *id) {
  auto lk = tx_enter(tx, "wf_tx_enqueue");
  Engine &e = *tx->engine;
  if (!job_json) fail(WF_EINVAL, "job: NULL document");
  json doc =
      parse_json(job_json, e.opt.limits, "job", e.opt.limits.max_payload_bytes + 65536 + 1024);
  int64_t t = e.now();
  NewJob j = decode_job(doc, e.opt, t, "job");
  Db &db = *e.write_db;
  WriteCtx w{db, t};
  bool existing = false;
  db.exec("SAVEPOINT tx_enqueue");
  try {
    e.insert_job(w, j, id, &existing);
    db.exec("RELEASE tx_enqueue");
  } catch (...) {
    db.exec("ROLLBACK TO tx_enqueue");
    db.exec("RELEASE tx_enqueue");
    throw;
  }
  tx_merge(tx, w);
  return existing;
}

int tx_commit(HostTx *tx) {
  check_tx_process(tx, "wf_tx_commit");
  std::unique_lock<std::mutex> lk(tx->mu);
  if (tx->state == HostTx::kTimedOut) {
    auto ref = std::move(tx->owner_ref);
    lk.unlock();
    set_last_error(
        "wf_tx_commit: the transaction was rolled back after tx_timeout_ms; nothing was "
        "committed (the handle is freed)");
    return WF_ESTATE;
  }
  Engine &e = *tx->engine;
  Db &db = *e.write_db;
  int rc = WF_OK;
  std::string err;
  if (tx->failed) {
    rc = WF_ESTATE;
    err = "wf_tx_commit: the transaction failed earlier and was rolled back";
  } else {
    try {
      auto tally = e.metrics.tally(tx->counts);
      lease::flush_counts(db, tx->counts);
      db.exec("COMMIT");
      WriteCtx m{db, 0};
      m.events_submitted = tx->events_submitted;
      m.events_unmatched = tx->events_unmatched;
      e.note_commit(m, tally);
      e.n_commits.fetch_add(1, std::memory_order_relaxed);
    } catch (const Error &ex) {
      rc = ex.code();
      err = ex.what();
    }
  }
  if (db.in_txn()) {
    try {
      db.exec("ROLLBACK");
    } catch (...) {
    }
  }
  if (rc != WF_OK) tx_clear(tx);
  auto ref = tx_release(tx);
  lk.unlock();
  ref.reset();
  if (rc != WF_OK) set_last_error(err);
  return rc;
}

void tx_rollback(HostTx *tx) {
  check_tx_process(tx, "wf_tx_rollback");
  std::unique_lock<std::mutex> lk(tx->mu);
  std::shared_ptr<HostTx> ref;
  if (tx->state == HostTx::kTimedOut) {
    ref = std::move(tx->owner_ref);  // already rolled back: only free it
  } else {
    Db &db = *tx->engine->write_db;
    if (db.in_txn()) {
      try {
        db.exec("ROLLBACK");
      } catch (...) {
      }
    }
    tx_clear(tx);
    ref = tx_release(tx);
  }
  lk.unlock();
  ref.reset();
}

// ------------------------------------------------------------ dead letters

namespace {
struct Filter {
  std::optional<std::string> tenant, effect, ids;
  std::optional<int64_t> since, until;
  int64_t limit = -1;
};

Filter parse_filter(Engine &e, const char *filter_json) {
  Filter f;
  if (!filter_json || !*filter_json) return f;
  json doc = parse_json(filter_json, e.opt.limits, "filter", 1 << 20);
  check_keys(doc, {"tenant", "effect", "ids", "since", "until", "limit"}, "filter");
  if (doc.contains("tenant") && !doc["tenant"].is_null())
    f.tenant = get_string(doc, "tenant", "filter", true);
  if (doc.contains("effect") && !doc["effect"].is_null())
    f.effect = get_string(doc, "effect", "filter", true);
  if (doc.contains("ids") && !doc["ids"].is_null()) {
    if (!doc["ids"].is_array()) fail(WF_EINVAL, "filter: \"ids\" must be an array of job ids");
    json ids = json::array();
    for (auto &v : doc["ids"]) {
      if (v.is_string()) {
        const std::string &s = v.get_ref<const std::string &>();
        if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
          fail(WF_EINVAL, "filter: \"ids\" entry \"" + s + "\" is not a job id");
        ids.push_back(std::stoll(s));
      } else if (v.is_number_integer()) {
        ids.push_back(v.get<int64_t>());
      } else {
        fail(WF_EINVAL, "filter: \"ids\" entries must be job id strings");
      }
    }
    f.ids = ids.dump();
  }
  if (doc.contains("since") && !doc["since"].is_null())
    f.since = get_time(doc, "since", "filter", 0);
  if (doc.contains("until") && !doc["until"].is_null())
    f.until = get_time(doc, "until", "filter", 0);
  f.limit = get_int(doc, "limit", "filter", -1, 0, INT64_C(1) << 40);
  return f;
}

const char *kDeadSelect =
    "SELECT id, tenant, effect, key, payload, metadata, priority, attempts, failures, "
    "max_attempts, origin, created_at, reason, dead_at FROM wf_dead "
    "WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR effect = ?2) AND "
    "(?3 IS NULL OR id IN (SELECT value FROM json_each(?3))) AND "
    "(?4 IS NULL OR dead_at >= ?4) AND (?5 IS NULL OR dead_at < ?5) "
    "ORDER BY dead_at DESC, id DESC LIMIT ?6";

void bind_filter(Stmt &st, const Filter &f) {
  if (f.tenant) st.bind(1, *f.tenant);
  if (f.effect) st.bind(2, *f.effect);
  if (f.ids) st.bind(3, *f.ids);
  if (f.since) st.bind(4, *f.since);
  if (f.until) st.bind(5, *f.until);
  st.bind(6, f.limit);
}

json parse_or_text(const std::string &s) {
  json v = json::parse(s, nullptr, false);
  return v.is_discarded() ? json(s) : v;
}

// The inbox row of a dead letter that is a parked saga event, or 0.
int64_t saga_event_seq(Db &db, int64_t dead_id) {
  auto st = db.prepare("SELECT origin FROM wf_dead WHERE id = ?1");
  st->bind(1, dead_id);
  if (!st->step() || st->col_null(0)) return 0;
  json o = json::parse(st->col_text(0), nullptr, false);
  if (!o.is_object() || o.value("kind", "") != "saga_event") return 0;
  return o.value("inbox_seq", int64_t(0));
}

std::vector<int64_t> select_dead_ids(Db &db, const Filter &f) {
  std::vector<int64_t> ids;
  auto st = db.prepare(kDeadSelect);
  bind_filter(*st, f);
  while (st->step()) ids.push_back(st->col_int(0));
  return ids;
}
}  // namespace

std::string dead_list(Engine &e, const char *filter_json) {
  Filter f = parse_filter(e, filter_json);
  std::lock_guard<std::mutex> g(e.api_mu);
  Db &db = *e.api_db;
  db.exec("BEGIN");
  json out = json::array();
  try {
    auto st = db.prepare(kDeadSelect);
    bind_filter(*st, f);
    while (st->step()) {
      json d;
      int64_t id = st->col_int(0);
      d["id"] = std::to_string(id);
      d["tenant"] = st->col_text(1);
      d["effect"] = st->col_text(2);
      d["key"] = st->col_null(3) ? json(nullptr) : json(st->col_text(3));
      d["payload"] = parse_or_text(e.unseal(st->col_text(4), "wf_jobs.payload"));
      d["metadata"] = parse_or_text(st->col_text(5));
      d["priority"] = st->col_int(6);
      d["attempts"] = st->col_int(7);
      d["failures"] = st->col_int(8);
      d["max_attempts"] = st->col_null(9) ? json(nullptr) : json(st->col_int(9));
      d["created_at"] = st->col_int(11);
      d["reason"] = st->col_text(12);
      d["dead_at"] = st->col_int(13);
      json hist = json::array();
      auto h = db.prepare(
          "SELECT n, started_at, ended_at, outcome, error FROM wf_attempts WHERE job_id = ?1 "
          "ORDER BY rowid");
      h->bind(1, id);
      while (h->step())
        hist.push_back(json{{"attempt", h->col_int(0)},
                            {"started_at", h->col_null(1) ? json(nullptr) : json(h->col_int(1))},
                            {"ended_at", h->col_int(2)},
                            {"outcome", h->col_text(3)},
                            {"error", h->col_null(4) ? json(nullptr) : json(h->col_text(4))}});
      d["history"] = std::move(hist);
      out.push_back(std::move(d));
    }
    db.exec("COMMIT");
  } catch (...) {
    db.exec("ROLLBACK");
    throw;
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

int64_t dead_requeue(Engine &e, const char *filter_json) {
  check_writable(e);
  Filter f = parse_filter(e, filter_json);
  int64_t count = 0;
  submit_or_raise(e, [&](WriteCtx &w) {
    count = 0;
    for (int64_t id : select_dead_ids(w.db, f)) {
      int64_t inbox_seq = saga_event_seq(w.db, id);
      if (inbox_seq > 0) {
        // A parked saga event: retry the reducer on it.
        auto up = w.db.prepare(
            "UPDATE wf_saga_inbox SET state = 0, error = NULL WHERE seq = ?1 AND state = 2");
        up->bind(1, inbox_seq).exec();
        auto del = w.db.prepare("DELETE FROM wf_dead WHERE id = ?1");
        del->bind(1, id).exec();
        ++count;
        w.saga_ready = true;
        continue;
      }
      // A key held again by a pending or recently completed job stays dead.
      auto c = w.db.prepare(
          "SELECT 1 FROM wf_dead d WHERE d.id = ?1 AND d.key IS NOT NULL AND ("
          "EXISTS (SELECT 1 FROM wf_jobs j WHERE j.tenant = d.tenant AND j.key = d.key) OR "
          "EXISTS (SELECT 1 FROM wf_done_keys k WHERE k.tenant = d.tenant AND k.key = d.key "
          "AND k.expires_at > ?2))");
      c->bind(1, id).bind(2, w.now);
      if (c->step()) continue;
      auto ins = w.db.prepare(
          "INSERT INTO wf_jobs(id, tenant, effect, key, payload, metadata, priority, run_at, "
          "state, attempts, failures, max_attempts, origin, created_at, capped) "
          "SELECT id, tenant, effect, key, payload, metadata, priority, ?2, 0, attempts, 0, "
          "max_attempts, origin, created_at, (SELECT 1 FROM wf_capped_effects c WHERE c.effect = "
          "wf_dead.effect) FROM wf_dead WHERE id = ?1 RETURNING effect, tenant");
      ins->bind(1, id).bind(2, w.now);
      while (ins->step()) lease::count_add(w.counts, ins->col_text(0), ins->col_text(1), 1, 0);
      auto del = w.db.prepare("DELETE FROM wf_dead WHERE id = ?1");
      del->bind(1, id).exec();
      ++count;
      w.ready_now = true;
    }
  });
  if (count)
    e.log(WF_LOG_INFO, "dead letters re-queued",
          json{{"event", "dead.requeued"}, {"count", count}});
  return count;
}

int64_t dead_purge(Engine &e, const char *filter_json) {
  check_writable(e);
  Filter f = parse_filter(e, filter_json);
  int64_t count = 0;
  submit_or_raise(e, [&](WriteCtx &w) {
    count = 0;
    for (int64_t id : select_dead_ids(w.db, f)) {
      int64_t inbox_seq = saga_event_seq(w.db, id);
      if (inbox_seq > 0) {
        // A parked saga event: skip it, so the instance's later events run.
        auto del = w.db.prepare("DELETE FROM wf_saga_inbox WHERE seq = ?1 AND state = 2");
        del->bind(1, inbox_seq).exec();
        w.saga_ready = true;
      }
      auto a = w.db.prepare("DELETE FROM wf_attempts WHERE job_id = ?1");
      a->bind(1, id).exec();
      auto d = w.db.prepare("DELETE FROM wf_dead WHERE id = ?1");
      d->bind(1, id).exec();
      count += w.db.changes();
    }
  });
  if (count)
    e.log(WF_LOG_INFO, "dead letters purged", json{{"event", "dead.purged"}, {"count", count}});
  return count;
}

// ------------------------------------------------------------------ stats

json stats(Engine &e, const char *filter_json, bool by_tenant) {
  // Only what stats can honour: "tenant" narrows the outbox, dead letters,
  // schedules, sagas and events; "effect" narrows the outbox, dead letters
  // and engine.effects. Engine counters are never filtered. Any other key
  // (the dead-letter filter's ids/since/until/limit included) is an error.
  Filter f;
  if (filter_json && *filter_json) {
    json doc = parse_json(filter_json, e.opt.limits, "stats filter", 1 << 16);
    check_keys(doc, {"tenant", "effect"}, "stats filter");
    if (doc.contains("tenant") && !doc["tenant"].is_null())
      f.tenant = get_string(doc, "tenant", "stats filter", true);
    if (doc.contains("effect") && !doc["effect"].is_null())
      f.effect = get_string(doc, "effect", "stats filter", true);
  }
  int64_t t = e.now();
  json out;
  json outbox{{"ready", 0},
              {"scheduled", 0},
              {"running", 0},
              {"oldest_ready_age_ms", 0},
              {"by_effect", json::object()},
              {"by_tenant", json::object()}};
  int64_t dead = 0;
  json extra;
  {
    std::lock_guard<std::mutex> g(e.api_mu);
    Db &db = *e.api_db;
    db.exec("BEGIN");
    try {
      // The maintained counts (wf_job_counts: pending and running per
      // effect and tenant) instead of counting wf_jobs; pending splits into
      // ready and scheduled by the jobs due in the future, read per effect on
      // wf_jobs_due (effect, run_at; only jobs due after their creation); the
      // oldest ready job is the first of each priority on wf_jobs_claim. The
      // cost grows with the (effect, tenant) pairs, the jobs not yet due and
      // the distinct priorities, never with the ready backlog.
      // Per effect and per tenant, summed here in one pass over the counts
      // (in their key order: an effect's rows are consecutive; tenants are
      // found by hash). A GROUP BY per effect and another per tenant read
      // them twice and sorted them once: 4.4 ms at 10,000 (effect, tenant)
      // pairs. The rows above the counts watermark (lease.h: at most 256
      // jobs inserted since the last count) are added to both. The
      // jobs due in the future (few: delayed jobs, retries in backoff) are
      // counted per effect and tenant to split pending.
      using Sums = std::array<int64_t, 3>;  // ready, scheduled, running
      using Pair = std::array<int64_t, 2>;  // pending, running
      struct ViewHash {
        using is_transparent = void;
        size_t operator()(std::string_view v) const { return std::hash<std::string_view>{}(v); }
      };
      Sums all{0, 0, 0};
      int64_t oldest = INT64_MAX;
      std::map<std::string, Pair> eff_counts;
      std::unordered_map<std::string, Pair, ViewHash, std::equal_to<>> ten_counts;
      auto add_tenant = [&](std::string_view ten, int64_t pending, int64_t running) {
        auto it = ten_counts.find(ten);
        if (it == ten_counts.end()) it = ten_counts.emplace(std::string(ten), Pair{0, 0}).first;
        it->second[0] += pending;
        it->second[1] += running;
      };
      if (!by_tenant) {
        // Per effect only (wf_metrics): SQLite's aggregate is faster here.
        auto st = db.prepare(f.effect ? "SELECT effect, sum(pending), sum(running) FROM "
                                        "wf_job_counts WHERE effect = ?2 AND "
                                        "(?1 IS NULL OR tenant = ?1) GROUP BY effect"
                                      : "SELECT effect, sum(pending), sum(running) FROM "
                                        "wf_job_counts WHERE (?1 IS NULL OR tenant = ?1) "
                                        "GROUP BY effect");
        if (f.tenant) st->bind(1, *f.tenant);
        if (f.effect) st->bind(2, *f.effect);
        while (st->step()) eff_counts[st->col_text(0)] = {st->col_int(1), st->col_int(2)};
      } else {
        // (With an effect filter, a seek on the counts' key.)
        auto st = db.prepare(f.effect ? "SELECT effect, tenant, pending, running FROM "
                                        "wf_job_counts WHERE effect = ?2 AND "
                                        "(?1 IS NULL OR tenant = ?1)"
                                      : "SELECT effect, tenant, pending, running FROM "
                                        "wf_job_counts WHERE ?1 IS NULL OR tenant = ?1");
        if (f.tenant) st->bind(1, *f.tenant);
        if (f.effect) st->bind(2, *f.effect);
        Pair *cur = nullptr;
        std::string cur_name;
        while (st->step()) {
          std::string_view eff = st->col_view(0);
          if (!cur || eff != cur_name) {
            cur_name.assign(eff);
            cur = &eff_counts[cur_name];
          }
          const int64_t pending = st->col_int(2), running = st->col_int(3);
          (*cur)[0] += pending;
          (*cur)[1] += running;
          add_tenant(st->col_view(1), pending, running);
        }
      }
      // (A job in state 2 is ready and not on wf_jobs_claim, where
      // oldest_ready looks: its run_at counts here.)
      lease::count_tail(
          db, [&](const std::string &eff, const std::string &ten, int state, int64_t run_at) {
            if ((f.effect && eff != *f.effect) || (f.tenant && ten != *f.tenant)) return;
            const int k = state == static_cast<int>(JobState::kRunning) ? 1 : 0;
            eff_counts[eff][k] += 1;
            if (by_tenant) add_tenant(ten, k == 0, k == 1);
            if (state == static_cast<int>(JobState::kUnindexed) && run_at <= t)
              oldest = std::min(oldest, run_at);
          });
      std::unordered_map<std::string, int64_t> sched_by_tenant;
      json &effs = outbox["by_effect"];
      for (const auto &[eff, c] : eff_counts) {
        const int64_t pending = c[0], running = c[1];
        int64_t sched = 0;
        if (pending == 0 && running == 0) continue;
        if (pending > 0) {
          auto sc = db.prepare(
              "SELECT tenant, count(*) FROM wf_jobs INDEXED BY wf_jobs_due WHERE state = 0 AND "
              "effect = ?1 AND run_at > ?2 AND run_at > created_at AND (?3 IS NULL OR tenant = "
              "?3) GROUP BY tenant");
          sc->bind(1, eff).bind(2, t);
          if (f.tenant) sc->bind(3, *f.tenant);
          while (sc->step()) {
            sched += sc->col_int(1);
            if (by_tenant) sched_by_tenant[sc->col_text(0)] += sc->col_int(1);
          }
          oldest = std::min(oldest, oldest_ready(db, eff, f.tenant, t));
        }
        Sums v{pending - sched, sched, running};
        for (int x = 0; x < 3; ++x) all[x] += v[x];
        effs[eff] = json{{"ready", v[0]}, {"scheduled", v[1]}, {"running", v[2]}};
      }
      if (by_tenant) {
        json &tens = outbox["by_tenant"];
        for (const auto &[ten, c] : ten_counts) {
          if (c[0] == 0 && c[1] == 0) continue;
          auto it = sched_by_tenant.find(ten);
          int64_t sched = it == sched_by_tenant.end() ? 0 : it->second;
          tens[ten] = json{{"ready", c[0] - sched}, {"scheduled", sched}, {"running", c[1]}};
        }
      }
      outbox["ready"] = all[0];
      outbox["scheduled"] = all[1];
      outbox["running"] = all[2];
      if (oldest != INT64_MAX)
        outbox["oldest_ready_age_ms"] = std::max<int64_t>(0, sat_sub(t, oldest));
      auto d = db.prepare(
          "SELECT count(*) FROM wf_dead WHERE (?1 IS NULL OR tenant = ?1) AND "
          "(?2 IS NULL OR effect = ?2)");
      if (f.tenant) d->bind(1, *f.tenant);
      if (f.effect) d->bind(2, *f.effect);
      d->step();
      dead = d->col_int(0);
      extra = saga_stats(e, db, t, f.tenant);
      db.exec("COMMIT");
    } catch (...) {
      if (db.in_txn()) db.exec("ROLLBACK");
      throw;
    }
  }
  out["outbox"] = std::move(outbox);
  out["dead"] = dead;
  out["schedules"] = extra["schedules"];
  out["sagas"] = extra["sagas"];
  out["events"] = extra["events"];
  json eng;
  eng["boot_id"] = e.boot_id;
  eng["admin_port"] = e.admin_port();
  eng["started"] = e.started.load();
  eng["draining"] = e.draining.load();
  eng["inflight"] = e.inflight_count.load();
  eng["held_stale"] = e.held_count.load();
  eng["enqueued"] = e.n_enqueued.load();
  eng["dispatched"] = e.n_dispatched.load();
  eng["completed"] = e.n_completed.load();
  eng["retried"] = e.n_retried.load();
  eng["dead_lettered"] = e.n_dead.load();
  eng["timeouts"] = e.n_timeouts.load();
  eng["leases_lost"] = e.n_leases_lost.load();
  eng["abandoned"] = e.n_abandoned.load();
  eng["commits"] = e.n_commits.load();
  eng["checkpoints"] = e.n_checkpoints.load();
  eng["checkpoint_failures"] = e.n_checkpoint_failures.load();
  eng["writer_checkpoints"] = e.n_writer_checkpoints.load();
  eng["tx_timeouts"] = e.n_tx_timeouts.load();
  eng["log_dropped"] = e.n_log_dropped.load();
  eng["purged_rows"] = e.n_purged_rows.load();
  eng["purge_batches"] = e.n_purge_batches.load();
  eng["purge_batch_max_us"] = e.purge_batch_max_us.load();
  eng["purge_failures"] = e.n_purge_failures.load();
  eng["vacuumed_pages"] = e.n_vacuumed_pages.load();
  eng["async_accepted"] = e.n_async_accepted.load();
  eng["async_waits"] = e.n_async_waits.load();
  eng["caller_commits"] = e.n_caller_commits.load();
  eng["claimed_on_insert"] = e.n_insert_claims.load();
  {
    std::lock_guard<std::mutex> g(e.aq_mu);
    eng["async_pending"] = e.aq_count;
  }
  json effs = json::object();
  {
    std::shared_lock<std::shared_mutex> g(e.reg_mu);
    for (auto &[name, eff] : e.effects) {
      if (f.effect && name != *f.effect) continue;
      static const char *cs[] = {"closed", "open", "half_open"};
      effs[name] =
          json{{"inflight", eff->inflight.load()},     {"circuit", cs[eff->circuit_state.load()]},
               {"dispatched", eff->dispatched.load()}, {"completed", eff->completed.load()},
               {"retried", eff->retried.load()},       {"dead_lettered", eff->dead.load()},
               {"timeouts", eff->timeouts.load()},     {"insert_slots", eff->insert_credit.load()}};
    }
  }
  eng["effects"] = std::move(effs);
  out["engine"] = std::move(eng);
  return out;
}

std::string metrics(Engine &e) {
  json s = stats(e, nullptr, false);
  std::string o;
  o.reserve(16384);
  auto head = [&](const char *name, const char *help, const char *type) {
    o += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto one = [&](const char *name, const char *help, const char *type, int64_t v) {
    head(name, help, type);
    o += std::string(name) + " " + std::to_string(v) + "\n";
  };
  head("wfengine_build_info", "The library version (value 1).", "gauge");
  o += std::string("wfengine_build_info{version=\"") + wf_version() + "\"} 1\n";
  head("wfengine_outbox_jobs", "Jobs in the outbox by effect and state.", "gauge");
  for (auto &[eff, v] : s["outbox"]["by_effect"].items())
    for (const char *st : {"ready", "scheduled", "running"})
      o += "wfengine_outbox_jobs{effect=\"" + prom_escape(eff) + "\",state=\"" + st + "\"} " +
           std::to_string(v[st].get<int64_t>()) + "\n";
  head("wfengine_outbox_oldest_ready_age_seconds", "Age of the oldest ready job (0: none).",
       "gauge");
  {
    char b[32];
    (void)std::snprintf(
        b, sizeof b, "%.3f",
        static_cast<double>(s["outbox"]["oldest_ready_age_ms"].get<int64_t>()) / 1000.0);
    o += std::string("wfengine_outbox_oldest_ready_age_seconds ") + b + "\n";
  }
  one("wfengine_dead_letters", "Jobs in the dead-letter table.", "gauge", s["dead"].get<int64_t>());
  one("wfengine_schedules_pending", "Durable schedules waiting to fire.", "gauge",
      s["schedules"]["pending"].get<int64_t>());
  one("wfengine_schedules_due", "Schedules due now and not yet fired.", "gauge",
      s["schedules"]["due"].get<int64_t>());
  one("wfengine_schedules_parked", "Schedules whose firing failed, waiting for the host.", "gauge",
      s["schedules"]["parked"].get<int64_t>());
  head("wfengine_sagas", "Saga instances by status.", "gauge");
  for (const char *st : {"active", "done", "parked"})
    o += std::string("wfengine_sagas{status=\"") + st + "\"} " +
         std::to_string(s["sagas"][st].get<int64_t>()) + "\n";
  one("wfengine_saga_events_pending", "Events routed to sagas and not yet applied.", "gauge",
      s["events"]["pending"].get<int64_t>());
  one("wfengine_unmatched_events", "Stored events that no saga took.", "gauge",
      s["events"]["unmatched"].get<int64_t>());
  one("wfengine_inflight_attempts", "Attempts in flight in this engine.", "gauge",
      s["engine"]["inflight"].get<int64_t>());
  one("wfengine_held_stale_handles",
      "Job handles the host still holds after the engine gave up on them (timed out, lease "
      "lost).",
      "gauge", s["engine"]["held_stale"].get<int64_t>());
  one("wfengine_draining", "1 while the engine drains or after it stopped taking work.", "gauge",
      s["engine"]["draining"].get<bool>() ? 1 : 0);
  {
    struct stat st;
    int64_t wal = ::stat((e.path + "-wal").c_str(), &st) == 0 ? st.st_size : 0;
    one("wfengine_wal_size_bytes", "Size of the database's WAL file.", "gauge", wal);
  }
  static const struct {
    const char *key, *name, *help;
  } engine_counters[] = {
      {"commits", "wfengine_commits_total", "Write transactions committed."},
      {"checkpoints", "wfengine_checkpoints_total", "Background WAL checkpoints run."},
      {"checkpoint_failures", "wfengine_checkpoint_failures_total",
       "Background WAL checkpoints that failed."},
      {"writer_checkpoints", "wfengine_writer_checkpoints_total",
       "Checkpoints the writer ran itself to restart a large WAL."},
      {"tx_timeouts", "wfengine_tx_timeouts_total",
       "Host transactions rolled back after tx_timeout_ms."},
      {"log_dropped", "wfengine_log_lines_dropped_total",
       "Log lines dropped because the logger queue was full."},
      {"leases_lost", "wfengine_leases_lost_total",
       "Attempts whose lease another engine reclaimed while they ran."},
      {"abandoned", "wfengine_abandoned_total",
       "Jobs dead-lettered because the host held a stale handle past abandon_after_ms."},
      {"purged_rows", "wfengine_purged_rows_total", "Rows removed by retention."},
      {"purge_batches", "wfengine_purge_batches_total", "Retention purge batches committed."},
      {"purge_failures", "wfengine_purge_failures_total", "Retention purge batches that failed."},
      {"vacuumed_pages", "wfengine_vacuumed_pages_total",
       "Free pages returned to the file system by incremental vacuum."},
  };
  for (const auto &c : engine_counters)
    one(c.name, c.help, "counter", s["engine"][c.key].get<int64_t>());
  head("wfengine_circuit_state",
       "Circuit breaker state of an effect registered here: 0 closed, 1 open, 2 half-open.",
       "gauge");
  for (auto &[eff, v] : s["engine"]["effects"].items()) {
    const auto &c = v["circuit"];
    o += "wfengine_circuit_state{effect=\"" + prom_escape(eff) + "\"} " +
         (c == "closed" ? "0"
          : c == "open" ? "1"
                        : "2") +
         "\n";
  }
  head("wfengine_effect_inflight_attempts", "Attempts in flight in this engine by effect.",
       "gauge");
  for (auto &[eff, v] : s["engine"]["effects"].items())
    o += "wfengine_effect_inflight_attempts{effect=\"" + prom_escape(eff) + "\"} " +
         std::to_string(v["inflight"].get<int64_t>()) + "\n";
  e.metrics.write(o);
  return o;
}

}  // namespace wf
