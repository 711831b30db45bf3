// lease: every transition of a job row's lease, and the boot liveness lock.
// Only this file spells the job states of wf_jobs in SQL (0 ready,
// 1 running; see JobState in lease.h).
#include "lease.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace wf {

static_assert(static_cast<int>(JobState::kReady) == 0 && static_cast<int>(JobState::kRunning) == 1,
              "the SQL below spells ready as 0 and running as 1");

namespace {

const char *kClaimSql =
    "UPDATE wf_jobs SET state = 1, lease_owner = ?1, lease_until = ?2, attempts = attempts + 1, "
    "started_at = ?3 WHERE id IN (SELECT id FROM wf_jobs WHERE state = 0 AND effect = ?4 AND "
    "run_at <= ?3 ORDER BY priority DESC, run_at, id LIMIT ?5) RETURNING id, tenant, effect, key, "
    "payload, metadata, attempts, failures, max_attempts, priority, run_at, origin, interruptions";
const char *kClaimExclSql =
    "UPDATE wf_jobs SET state = 1, lease_owner = ?1, lease_until = ?2, attempts = attempts + 1, "
    "started_at = ?3 WHERE id IN (SELECT id FROM wf_jobs WHERE state = 0 AND effect = ?4 AND "
    "run_at <= ?3 AND tenant NOT IN (SELECT value FROM json_each(?6)) ORDER BY priority DESC, "
    "run_at, id LIMIT ?5) RETURNING id, tenant, effect, key, payload, metadata, attempts, "
    "failures, max_attempts, priority, run_at, origin, interruptions";

const char *kRenewSql =
    "UPDATE wf_jobs SET lease_until = ?1 WHERE state = 1 AND lease_owner = ?2 AND "
    "(id, attempts) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
    "FROM json_each(?3)) RETURNING id, attempts";

const char *kUnclaimSql =
    "UPDATE wf_jobs SET state = 0, lease_owner = NULL, lease_until = NULL, "
    "attempts = attempts - 1 WHERE id = ?1 AND state = 1 AND lease_owner = ?2 AND attempts = ?3";

const char *kInterruptOwnerHistorySql =
    "INSERT INTO wf_attempts(job_id, n, started_at, ended_at, outcome, error) "
    "SELECT id, attempts, started_at, ?1, 'interrupted', ?3 FROM wf_jobs "
    "WHERE state = 1 AND lease_owner = ?2";
const char *kInterruptOwnerSql =
    "UPDATE wf_jobs SET state = 0, lease_owner = NULL, lease_until = NULL, "
    "run_at = min(run_at, ?1), interruptions = interruptions + 1 "
    "WHERE state = 1 AND lease_owner = ?2";

// The same at a graceful wf_close: the attempt is recorded, but not counted
// as an interruption (being cut off by a planned shutdown says nothing about
// the job; a rolling deploy must not dead-letter a long job).
const char *kReleaseOwnerSql =
    "UPDATE wf_jobs SET state = 0, lease_owner = NULL, lease_until = NULL, "
    "run_at = min(run_at, ?1) WHERE state = 1 AND lease_owner = ?2";

const char *kReclaimHistorySql =
    "INSERT INTO wf_attempts(job_id, n, started_at, ended_at, outcome, error) "
    "SELECT id, attempts, started_at, ?1, 'interrupted', 'lease of engine ' || lease_owner "
    "|| ' expired' FROM wf_jobs WHERE state = 1 AND lease_until < ?1 AND "
    "(lease_owner != ?2 OR id NOT IN (SELECT value FROM json_each(?3)))";
const char *kReclaimSql =
    "UPDATE wf_jobs SET state = 0, lease_owner = NULL, lease_until = NULL, "
    "interruptions = interruptions + 1 WHERE state = 1 AND lease_until < ?1 AND "
    "(lease_owner != ?2 OR id NOT IN (SELECT value FROM json_each(?3)))";

const char *kDeadClaimedSql =
    "INSERT OR REPLACE INTO wf_dead(id, tenant, effect, key, payload, metadata, priority, "
    "attempts, failures, max_attempts, origin, created_at, reason, dead_at) "
    "SELECT id, tenant, effect, key, payload, metadata, priority, attempts - 1, failures, "
    "max_attempts, origin, created_at, ?4, ?5 FROM wf_jobs "
    "WHERE id = ?1 AND state = 1 AND lease_owner = ?2 AND attempts = ?3";

const char *kFinishDoneSql =
    "DELETE FROM wf_jobs WHERE id = ?1 AND state = 1 AND lease_owner = ?2 AND attempts = ?3";
const char *kFinishDeadSql =
    "INSERT OR REPLACE INTO wf_dead(id, tenant, effect, key, payload, metadata, priority, "
    "attempts, failures, max_attempts, origin, created_at, reason, dead_at) "
    "SELECT id, tenant, effect, key, payload, metadata, priority, attempts, failures + 1, "
    "max_attempts, origin, created_at, ?4, ?5 FROM wf_jobs "
    "WHERE id = ?1 AND state = 1 AND lease_owner = ?2 AND attempts = ?3";
const char *kFinishRetrySql =
    "UPDATE wf_jobs SET state = 0, lease_owner = NULL, lease_until = NULL, "
    "failures = failures + 1, run_at = ?4, last_error = ?5 "
    "WHERE id = ?1 AND state = 1 AND lease_owner = ?2 AND attempts = ?3";
const char *kAnyDueSql =
    "SELECT run_at FROM wf_jobs INDEXED BY wf_jobs_due WHERE state = 0 AND run_at <= ?1 AND "
    "effect IN (SELECT value FROM json_each(?2)) LIMIT 1";
const char *kNextDueSql =
    "SELECT run_at FROM wf_jobs INDEXED BY wf_jobs_due WHERE state = 0 AND run_at > ?1 AND "
    "effect IN (SELECT value FROM json_each(?2)) ORDER BY run_at LIMIT 1";

}  // namespace

namespace lease {

bool finish_done(Db &db, const std::string &boot, int64_t id, int attempt) {
  auto st = db.prepare(kFinishDoneSql);
  st->bind(1, id).bind(2, boot).bind(3, attempt).exec();
  return db.changes() == 1;
}

bool finish_dead(Db &db, const std::string &boot, int64_t id, int attempt, int64_t now,
                 const std::string &reason) {
  {
    auto st = db.prepare(kFinishDeadSql);
    st->bind(1, id).bind(2, boot).bind(3, attempt).bind(4, reason).bind(5, now).exec();
    if (db.changes() != 1) return false;
  }
  auto d = db.prepare("DELETE FROM wf_jobs WHERE id = ?1");
  d->bind(1, id).exec();
  return true;
}

bool finish_retry(Db &db, const std::string &boot, int64_t id, int attempt, int64_t run_at,
                  const std::string &error) {
  auto st = db.prepare(kFinishRetrySql);
  st->bind(1, id).bind(2, boot).bind(3, attempt).bind(4, run_at).bind(5, error).exec();
  return db.changes() == 1;
}

bool any_due(Db &db, int64_t now, const std::string &effects_json) {
  auto st = db.prepare(kAnyDueSql);
  st->bind(1, now).bind(2, effects_json);
  return st->step();
}

int64_t next_due(Db &db, int64_t now, const std::string &effects_json) {
  auto st = db.prepare(kNextDueSql);
  st->bind(1, now).bind(2, effects_json);
  return st->step() ? st->col_int(0) : INT64_MAX;
}

std::vector<Claimed> claim(Db &db, const std::string &boot, int64_t now, int64_t lease_until,
                           const std::string &effect, int limit,
                           const std::string &excluded_tenants) {
  auto st = db.prepare(excluded_tenants.empty() ? kClaimSql : kClaimExclSql);
  st->bind(1, boot).bind(2, lease_until).bind(3, now).bind(4, effect).bind(5, limit);
  if (!excluded_tenants.empty()) st->bind(6, excluded_tenants);
  std::vector<Claimed> out;
  while (st->step()) {
    Claimed c;
    c.id = st->col_int(0);
    c.tenant = st->col_text(1);
    c.effect = st->col_text(2);
    c.key = st->col_text(3);
    c.payload = st->col_text(4);
    c.metadata = st->col_text(5);
    c.attempt = static_cast<int>(st->col_int(6));
    c.failures = static_cast<int>(st->col_int(7));
    c.has_max_attempts = !st->col_null(8);
    if (c.has_max_attempts) c.max_attempts = st->col_int(8);
    c.priority = static_cast<int>(st->col_int(9));
    c.run_at = st->col_int(10);
    c.origin = st->col_text(11);
    c.interruptions = static_cast<int>(st->col_int(12));
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<std::pair<int64_t, int>> renew(Db &db, const std::string &boot, int64_t lease_until,
                                           const std::string &held_pairs_json) {
  auto st = db.prepare(kRenewSql);
  st->bind(1, lease_until).bind(2, boot).bind(3, held_pairs_json);
  std::vector<std::pair<int64_t, int>> out;
  while (st->step()) out.emplace_back(st->col_int(0), static_cast<int>(st->col_int(1)));
  return out;
}

void unclaim(Db &db, const std::string &boot, int64_t id, int attempt) {
  auto st = db.prepare(kUnclaimSql);
  st->bind(1, id).bind(2, boot).bind(3, attempt).exec();
}

int64_t interrupt_owner(Db &db, const std::string &owner, int64_t now, const char *why,
                        bool count) {
  {
    auto st = db.prepare(kInterruptOwnerHistorySql);
    st->bind(1, now).bind(2, owner).bind(3, why).exec();
  }
  auto st = db.prepare(count ? kInterruptOwnerSql : kReleaseOwnerSql);
  st->bind(1, now).bind(2, owner).exec();
  return db.changes();
}

int64_t reclaim_expired(Db &db, const std::string &boot, int64_t now,
                        const std::string &held_ids_json) {
  {
    auto st = db.prepare(kReclaimHistorySql);
    st->bind(1, now).bind(2, boot).bind(3, held_ids_json).exec();
  }
  auto st = db.prepare(kReclaimSql);
  st->bind(1, now).bind(2, boot).bind(3, held_ids_json).exec();
  return db.changes();
}

bool dead_letter_claimed(Db &db, const std::string &boot, int64_t id, int attempt, int64_t now,
                         const std::string &reason) {
  {
    auto st = db.prepare(kDeadClaimedSql);
    st->bind(1, id).bind(2, boot).bind(3, attempt).bind(4, reason).bind(5, now).exec();
    if (db.changes() != 1) return false;
  }
  auto d = db.prepare("DELETE FROM wf_jobs WHERE id = ?1");
  d->bind(1, id).exec();
  return true;
}

}  // namespace lease

// ------------------------------------------------------------- BootLock

BootLock::~BootLock() { close(); }

void BootLock::open(const std::string &db_path) {
  path_ = db_path + "-wfboots";
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0)
    fail(WF_EIO, "cannot open or create the liveness lock file \"" + path_ +
                     "\": " + std::error_code(errno, std::generic_category()).message());
}

// Errors that say the file system (e.g. some network file systems) does not
// do OFD locks: remembered, and the engine works without the liveness lock.
bool BootLock::unsupported(int err) {
  if (err == EINVAL || err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS) usable_ = false;
  return !usable_;
}

int BootLock::held_by_other(int64_t slot) {
  if (!usable_) return -1;
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(slot);
  fl.l_len = 1;
  fl.l_pid = 0;
  if (fcntl(fd_, F_OFD_GETLK, &fl) != 0) {
    int err = errno;
    if (unsupported(err)) return -1;
    fail(WF_EIO, "liveness lock file \"" + path_ + "\": F_OFD_GETLK failed: " +
                     std::error_code(err, std::generic_category()).message());
  }
  return fl.l_type != F_UNLCK ? 1 : 0;
}

int64_t BootLock::acquire(const std::vector<int64_t> &taken) {
  if (!usable_) return -1;
  for (int64_t s = 0; s < static_cast<int64_t>(taken.size()) + 4096; ++s) {
    if (std::find(taken.begin(), taken.end(), s) != taken.end()) continue;
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(s);
    fl.l_len = 1;
    fl.l_pid = 0;
    if (fcntl(fd_, F_OFD_SETLK, &fl) == 0) {
      slot_ = s;
      return s;
    }
    int err = errno;
    if (err == EAGAIN || err == EACCES) continue;
    if (unsupported(err)) return -1;
    fail(WF_EIO, "liveness lock file \"" + path_ + "\": F_OFD_SETLK failed: " +
                     std::error_code(err, std::generic_category()).message());
  }
  fail(WF_EIO, "liveness lock file \"" + path_ + "\": no free slot");
}

void BootLock::close() {
  if (fd_ >= 0) ::close(fd_);  // releases our lock (unless a forked child shares it)
  fd_ = -1;
  slot_ = -1;
}

}  // namespace wf
