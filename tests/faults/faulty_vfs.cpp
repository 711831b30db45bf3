// The test VFS shim: see faulty_vfs.h. Written against the sqlite3_vfs and
// sqlite3_io_methods structures of sqlite3.h: each shim file is a header
// followed by the real (default VFS) file, and every method forwards to it.
#include "faulty_vfs.h"

#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

namespace faulty {

namespace {

// Roles of the files whose operations are counted and journaled.
constexpr int kRoleOther = -1;
constexpr int kRoleDb = 0;
constexpr int kRoleWal = 1;
constexpr int kRoleJournal = 2;

enum CountIdx { kIdxWrite = 0, kIdxSync, kIdxTruncate, kIdxLock, kIdxShmLock, kIdxN };

sqlite3_vfs *g_real = nullptr;
sqlite3_vfs g_vfs;
std::mutex g_register_mu;
bool g_registered = false;

std::atomic<int> g_kind{static_cast<int>(Kind::kNone)};
std::atomic<int> g_mode{static_cast<int>(Mode::kOnce)};
std::atomic<int64_t> g_k{0};
std::atomic<int64_t> g_count[kIdxN];
std::atomic<int64_t> g_injected{0};
std::atomic<bool> g_real_sync{true};

// Journal for simulated power loss. g_jmu is held across "log the record,
// perform the operation" so the journal order is the order of the operations.
std::mutex g_jmu;
std::atomic<bool> g_journal_on{false};
int g_jfd = -1;                       // GUARDED_BY(g_jmu)
int64_t g_kill_at = 0;                // GUARDED_BY(g_jmu)
int64_t g_jops = 0;                   // GUARDED_BY(g_jmu)
constexpr size_t kRecordHeader = 16;  // op, role, 2 spare, u32 len, i64 offset

struct ShimFile {
  sqlite3_file base;  // pMethods = &g_methods
  sqlite3_file *real;
  int role;
};

ShimFile *shim(sqlite3_file *f) { return reinterpret_cast<ShimFile *>(f); }
sqlite3_file *real(sqlite3_file *f) { return shim(f)->real; }

std::atomic<int> g_target{-1};  // role counted, -1 for all
std::atomic<bool> g_fast_sleep{false};

// Counts one call of `idx` on a file of `role`; true when the armed fault
// says it must fail.
bool should_fail(int role, CountIdx idx, Kind kind, Kind alt = Kind::kNone) {
  int target = g_target.load();
  if (target >= 0 && role != target) return false;
  int64_t n = ++g_count[idx];
  Kind armed = static_cast<Kind>(g_kind.load());
  if (armed == Kind::kNone || (armed != kind && armed != alt)) return false;
  int64_t k = g_k.load();
  bool persistent = static_cast<Mode>(g_mode.load()) == Mode::kPersistent;
  bool fail = n == k || (persistent && n >= k);
  if (fail) {
    ++g_injected;
    // A lock that stays unavailable: let busy handlers and WAL read retries
    // give up at once instead of sleeping through their schedule.
    if (persistent && (idx == kIdxLock || idx == kIdxShmLock)) g_fast_sleep = true;
  }
  return fail;
}

void put_u32(char *p, uint32_t v) { std::memcpy(p, &v, sizeof v); }
void put_i64(char *p, int64_t v) { std::memcpy(p, &v, sizeof v); }

// Appends one record; caller holds g_jmu. Dies first if this is the
// operation the test wants to die before.
void journal_locked(char op, int role, int64_t offset, const void *data, int len) {
  if (g_jfd < 0) return;
  ++g_jops;
  if (g_kill_at > 0 && g_jops >= g_kill_at) kill(getpid(), SIGKILL);
  std::string rec(kRecordHeader + static_cast<size_t>(len), '\0');
  rec[0] = op;
  rec[1] = static_cast<char>(role);
  put_u32(&rec[4], static_cast<uint32_t>(len));
  put_i64(&rec[8], offset);
  if (len > 0) std::memcpy(&rec[kRecordHeader], data, static_cast<size_t>(len));
  size_t done = 0;
  while (done < rec.size()) {
    ssize_t n = ::write(g_jfd, rec.data() + done, rec.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // The test cannot judge a power cut it did not record: die loudly.
      static const char msg[] = "faulty_vfs: cannot write the power-loss journal\n";
      ssize_t r = ::write(2, msg, sizeof msg - 1);
      (void)r;
      ::_exit(3);
    }
    done += static_cast<size_t>(n);
  }
}

bool journaling(const ShimFile *f) { return f->role != kRoleOther && g_journal_on.load(); }

// ------------------------------------------------------------ io methods

int x_close(sqlite3_file *f) {
  int rc = real(f)->pMethods->xClose(real(f));
  return rc;
}
int x_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off) {
  return real(f)->pMethods->xRead(real(f), buf, amt, off);
}
int x_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off) {
  ShimFile *s = shim(f);
  if (s->role == kRoleOther) return s->real->pMethods->xWrite(s->real, buf, amt, off);
  if (should_fail(s->role, kIdxWrite, Kind::kWrite)) return SQLITE_IOERR_WRITE;
  if (journaling(s)) {
    std::lock_guard<std::mutex> g(g_jmu);
    journal_locked('W', s->role, off, buf, amt);
    return s->real->pMethods->xWrite(s->real, buf, amt, off);
  }
  return s->real->pMethods->xWrite(s->real, buf, amt, off);
}
int x_truncate(sqlite3_file *f, sqlite3_int64 size) {
  ShimFile *s = shim(f);
  if (s->role == kRoleOther) return s->real->pMethods->xTruncate(s->real, size);
  if (should_fail(s->role, kIdxTruncate, Kind::kTruncate)) return SQLITE_IOERR_TRUNCATE;
  if (journaling(s)) {
    std::lock_guard<std::mutex> g(g_jmu);
    journal_locked('T', s->role, size, nullptr, 0);
    return s->real->pMethods->xTruncate(s->real, size);
  }
  return s->real->pMethods->xTruncate(s->real, size);
}
int x_sync(sqlite3_file *f, int flags) {
  ShimFile *s = shim(f);
  if (s->role == kRoleOther) return s->real->pMethods->xSync(s->real, flags);
  if (should_fail(s->role, kIdxSync, Kind::kSync)) return SQLITE_IOERR_FSYNC;
  if (journaling(s)) {
    std::lock_guard<std::mutex> g(g_jmu);
    // The sync is recorded only once it is done: dying in between means the
    // data was never known to be durable.
    int rc = g_real_sync.load() ? s->real->pMethods->xSync(s->real, flags) : SQLITE_OK;
    if (rc == SQLITE_OK) journal_locked('S', s->role, 0, nullptr, 0);
    return rc;
  }
  return g_real_sync.load() ? s->real->pMethods->xSync(s->real, flags) : SQLITE_OK;
}
int x_file_size(sqlite3_file *f, sqlite3_int64 *size) {
  return real(f)->pMethods->xFileSize(real(f), size);
}
int x_lock(sqlite3_file *f, int level) {
  ShimFile *s = shim(f);
  if (s->role != kRoleOther) {
    if (should_fail(s->role, kIdxLock, Kind::kLockBusy, Kind::kLockIoerr)) {
      return static_cast<Kind>(g_kind.load()) == Kind::kLockIoerr ? SQLITE_IOERR_LOCK : SQLITE_BUSY;
    }
  }
  return s->real->pMethods->xLock(s->real, level);
}
int x_unlock(sqlite3_file *f, int level) { return real(f)->pMethods->xUnlock(real(f), level); }
int x_check_reserved(sqlite3_file *f, int *out) {
  return real(f)->pMethods->xCheckReservedLock(real(f), out);
}
int x_file_control(sqlite3_file *f, int op, void *arg) {
  return real(f)->pMethods->xFileControl(real(f), op, arg);
}
int x_sector_size(sqlite3_file *f) { return real(f)->pMethods->xSectorSize(real(f)); }
int x_device_chars(sqlite3_file *f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); }
int x_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp) {
  sqlite3_file *r = real(f);
  if (r->pMethods->iVersion < 2) return SQLITE_IOERR_SHMMAP;
  return r->pMethods->xShmMap(r, pg, pgsz, extend, pp);
}
int x_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
  ShimFile *s = shim(f);
  if (s->real->pMethods->iVersion < 2) return SQLITE_IOERR_SHMLOCK;
  if (s->role != kRoleOther && (flags & SQLITE_SHM_LOCK) != 0 &&
      should_fail(s->role, kIdxShmLock, Kind::kShmLock)) {
    return SQLITE_BUSY;
  }
  return s->real->pMethods->xShmLock(s->real, offset, n, flags);
}
void x_shm_barrier(sqlite3_file *f) {
  sqlite3_file *r = real(f);
  if (r->pMethods->iVersion >= 2) r->pMethods->xShmBarrier(r);
}
int x_shm_unmap(sqlite3_file *f, int del) {
  sqlite3_file *r = real(f);
  if (r->pMethods->iVersion < 2) return SQLITE_OK;
  return r->pMethods->xShmUnmap(r, del);
}
int x_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp) {
  sqlite3_file *r = real(f);
  if (r->pMethods->iVersion < 3) {
    *pp = nullptr;
    return SQLITE_OK;
  }
  return r->pMethods->xFetch(r, off, amt, pp);
}
int x_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
  sqlite3_file *r = real(f);
  if (r->pMethods->iVersion < 3) return SQLITE_OK;
  return r->pMethods->xUnfetch(r, off, p);
}

const sqlite3_io_methods g_methods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved,
    x_file_control,
    x_sector_size,
    x_device_chars,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

// ------------------------------------------------------------ vfs methods

int role_of_flags(int flags) {
  if (flags & SQLITE_OPEN_MAIN_DB) return kRoleDb;
  if (flags & SQLITE_OPEN_WAL) return kRoleWal;
  if (flags & SQLITE_OPEN_MAIN_JOURNAL) return kRoleJournal;
  return kRoleOther;
}

bool ends_with(const char *s, const char *suffix) {
  size_t a = std::strlen(s), b = std::strlen(suffix);
  return a >= b && std::memcmp(s + a - b, suffix, b) == 0;
}

int v_open(sqlite3_vfs *, sqlite3_filename name, sqlite3_file *f, int flags, int *out_flags) {
  ShimFile *s = shim(f);
  s->real = reinterpret_cast<sqlite3_file *>(s + 1);
  s->role = name ? role_of_flags(flags) : kRoleOther;
  int rc = g_real->xOpen(g_real, name, s->real, flags, out_flags);
  // pMethods must be valid or NULL whatever xOpen returned: NULL when the
  // real file has no methods (then SQLite will not call xClose).
  f->pMethods = s->real->pMethods ? &g_methods : nullptr;
  return rc;
}
int v_delete(sqlite3_vfs *, const char *name, int sync_dir) {
  int role = kRoleOther;
  if (name && ends_with(name, "-wal")) role = kRoleWal;
  if (name && ends_with(name, "-journal")) role = kRoleJournal;
  if (role != kRoleOther && g_journal_on.load()) {
    std::lock_guard<std::mutex> g(g_jmu);
    journal_locked('D', role, 0, nullptr, 0);
    return g_real->xDelete(g_real, name, sync_dir);
  }
  return g_real->xDelete(g_real, name, sync_dir);
}
int v_access(sqlite3_vfs *, const char *name, int flags, int *out) {
  return g_real->xAccess(g_real, name, flags, out);
}
int v_full_pathname(sqlite3_vfs *, const char *name, int n, char *out) {
  return g_real->xFullPathname(g_real, name, n, out);
}
void *v_dlopen(sqlite3_vfs *, const char *name) { return g_real->xDlOpen(g_real, name); }
void v_dlerror(sqlite3_vfs *, int n, char *msg) { g_real->xDlError(g_real, n, msg); }
void (*v_dlsym(sqlite3_vfs *, void *h, const char *sym))(void) {
  return g_real->xDlSym(g_real, h, sym);
}
void v_dlclose(sqlite3_vfs *, void *h) { g_real->xDlClose(g_real, h); }
int v_randomness(sqlite3_vfs *, int n, char *out) { return g_real->xRandomness(g_real, n, out); }
int v_sleep(sqlite3_vfs *, int us) {
  if (g_fast_sleep.load()) return us;
  return g_real->xSleep(g_real, us);
}
int v_current_time(sqlite3_vfs *, double *t) { return g_real->xCurrentTime(g_real, t); }
int v_last_error(sqlite3_vfs *, int n, char *msg) {
  return g_real->xGetLastError ? g_real->xGetLastError(g_real, n, msg) : 0;
}
int v_current_time64(sqlite3_vfs *, sqlite3_int64 *t) {
  if (g_real->iVersion >= 2 && g_real->xCurrentTimeInt64)
    return g_real->xCurrentTimeInt64(g_real, t);
  double d = 0;
  int rc = g_real->xCurrentTime(g_real, &d);
  *t = static_cast<sqlite3_int64>(d * 86400000.0);
  return rc;
}
int v_set_syscall(sqlite3_vfs *, const char *name, sqlite3_syscall_ptr p) {
  return g_real->xSetSystemCall(g_real, name, p);
}
sqlite3_syscall_ptr v_get_syscall(sqlite3_vfs *, const char *name) {
  return g_real->xGetSystemCall(g_real, name);
}
const char *v_next_syscall(sqlite3_vfs *, const char *name) {
  return g_real->xNextSystemCall(g_real, name);
}

// ------------------------------------------------------------ power cut

struct Op {
  char op;
  int role;
  int64_t offset;
  std::string data;
};

struct Image {
  bool present = false;
  std::string bytes;
};

void apply(Image *img, const Op &o, size_t keep_bytes) {
  switch (o.op) {
    case 'W': {
      img->present = true;
      size_t off = static_cast<size_t>(o.offset);
      size_t n = std::min(keep_bytes, o.data.size());
      if (img->bytes.size() < off + n) img->bytes.resize(std::max(img->bytes.size(), off + n));
      std::memcpy(&img->bytes[off], o.data.data(), n);
      break;
    }
    case 'T':
      img->bytes.resize(static_cast<size_t>(o.offset));
      break;
    case 'D':
      img->present = false;
      img->bytes.clear();
      break;
    default:
      break;  // 'S' changes no bytes
  }
}

}  // namespace

// ------------------------------------------------------------------ api

const char *kind_name(Kind k) {
  switch (k) {
    case Kind::kNone:
      return "none";
    case Kind::kWrite:
      return "write";
    case Kind::kSync:
      return "sync";
    case Kind::kTruncate:
      return "truncate";
    case Kind::kLockBusy:
      return "lock_busy";
    case Kind::kLockIoerr:
      return "lock_ioerr";
    case Kind::kShmLock:
      return "shmlock";
  }
  return "?";
}

const char *mode_name(Mode m) { return m == Mode::kOnce ? "once" : "persistent"; }

int64_t Counts::of(Kind k) const {
  switch (k) {
    case Kind::kWrite:
      return write;
    case Kind::kSync:
      return sync;
    case Kind::kTruncate:
      return truncate;
    case Kind::kLockBusy:
    case Kind::kLockIoerr:
      return lock;
    case Kind::kShmLock:
      return shmlock;
    case Kind::kNone:
      break;
  }
  return 0;
}

bool register_vfs() {
  std::lock_guard<std::mutex> g(g_register_mu);
  if (g_registered) return true;
  g_real = sqlite3_vfs_find(nullptr);
  if (!g_real) return false;
  std::memset(&g_vfs, 0, sizeof g_vfs);
  g_vfs.iVersion = 3;
  g_vfs.szOsFile = static_cast<int>(sizeof(ShimFile)) + g_real->szOsFile;
  g_vfs.mxPathname = g_real->mxPathname;
  g_vfs.zName = kVfsName;
  g_vfs.xOpen = v_open;
  g_vfs.xDelete = v_delete;
  g_vfs.xAccess = v_access;
  g_vfs.xFullPathname = v_full_pathname;
  g_vfs.xDlOpen = v_dlopen;
  g_vfs.xDlError = v_dlerror;
  g_vfs.xDlSym = v_dlsym;
  g_vfs.xDlClose = v_dlclose;
  g_vfs.xRandomness = v_randomness;
  g_vfs.xSleep = v_sleep;
  g_vfs.xCurrentTime = v_current_time;
  g_vfs.xGetLastError = v_last_error;
  g_vfs.xCurrentTimeInt64 = v_current_time64;
  if (g_real->iVersion >= 3) {
    g_vfs.xSetSystemCall = v_set_syscall;
    g_vfs.xGetSystemCall = v_get_syscall;
    g_vfs.xNextSystemCall = v_next_syscall;
  } else {
    g_vfs.iVersion = 2;
  }
  if (sqlite3_vfs_register(&g_vfs, 0) != SQLITE_OK) return false;
  g_registered = true;
  return true;
}

void set_target(File f) { g_target = f == File::kDb ? kRoleDb : f == File::kWal ? kRoleWal : -1; }

void reset() {
  g_kind = static_cast<int>(Kind::kNone);
  g_fast_sleep = false;
  g_target = -1;
  for (auto &c : g_count) c = 0;
  g_injected = 0;
}

void arm(Kind kind, int64_t k, Mode mode) {
  g_k = k;
  g_mode = static_cast<int>(mode);
  g_kind = static_cast<int>(kind);
}

void disarm() {
  g_kind = static_cast<int>(Kind::kNone);
  g_fast_sleep = false;
}

Counts counts() {
  Counts c;
  c.write = g_count[kIdxWrite];
  c.sync = g_count[kIdxSync];
  c.truncate = g_count[kIdxTruncate];
  c.lock = g_count[kIdxLock];
  c.shmlock = g_count[kIdxShmLock];
  return c;
}

int64_t injected() { return g_injected; }

void set_real_sync(bool on) { g_real_sync = on; }

void start_journal(int log_fd, int64_t kill_at_op) {
  std::lock_guard<std::mutex> g(g_jmu);
  g_jfd = log_fd;
  g_kill_at = kill_at_op;
  g_jops = 0;
  g_journal_on = log_fd >= 0;
}

PowerCut powerloss_image(const std::map<int, std::string> &base, const std::string &journal,
                         std::mt19937_64 &rng) {
  PowerCut out;
  std::vector<Op> ops;
  size_t pos = 0;
  while (pos < journal.size()) {
    if (journal.size() - pos < kRecordHeader) {
      out.torn_record = true;
      break;
    }
    uint32_t len;
    int64_t off;
    std::memcpy(&len, journal.data() + pos + 4, sizeof len);
    std::memcpy(&off, journal.data() + pos + 8, sizeof off);
    if (journal.size() - pos - kRecordHeader < len) {
      out.torn_record = true;  // the process died while logging it: never performed
      break;
    }
    Op o;
    o.op = journal[pos];
    o.role = static_cast<signed char>(journal[pos + 1]);
    o.offset = off;
    o.data = journal.substr(pos + kRecordHeader, len);
    ops.push_back(std::move(o));
    pos += kRecordHeader + len;
  }
  out.ops = static_cast<int64_t>(ops.size());
  for (const Op &o : ops) out.db_writes += o.op == 'W' && o.role == kRoleDb;

  for (int role : {kRoleDb, kRoleWal, kRoleJournal}) {
    Image img;
    auto b = base.find(role);
    if (b != base.end()) {
      img.present = true;
      img.bytes = b->second;
    }
    // Operations [0, last_sync) of this file are durable: up to its last
    // sync, or up to a deletion followed by a sync of the WAL (the unix VFS
    // fsyncs the directory on the first sync of a new WAL, which makes the
    // deletion of a rollback journal durable; deletions happen only while a
    // new database switches to WAL mode).
    std::vector<const Op *> mine;
    size_t last_sync = 0;
    size_t last_wal_sync = 0;  // global index + 1 of the last WAL sync
    for (size_t i = 0; i < ops.size(); ++i)
      if (ops[i].op == 'S' && ops[i].role == kRoleWal) last_wal_sync = i + 1;
    for (size_t i = 0; i < ops.size(); ++i) {
      const Op &o = ops[i];
      if (o.role != role) continue;
      mine.push_back(&o);
      if (o.op == 'S' || (o.op == 'D' && i + 1 < last_wal_sync)) last_sync = mine.size();
    }
    for (size_t i = 0; i < last_sync; ++i) apply(&img, *mine[i], mine[i]->data.size());
    size_t tail = mine.size() - last_sync;
    std::uniform_int_distribution<size_t> cut(0, tail);
    size_t keep = cut(rng);
    for (size_t i = 0; i < keep; ++i) {
      const Op &o = *mine[last_sync + i];
      size_t n = o.data.size();
      if (i + 1 == keep && o.op == 'W' && n > 1 && (rng() & 1)) {
        // Torn: half the time at a 512-byte sector boundary, else anywhere.
        size_t t = std::uniform_int_distribution<size_t>(1, n - 1)(rng);
        if ((rng() & 1) && n > 512) t = std::max<size_t>(512, t / 512 * 512);
        out.torn_bytes += static_cast<int64_t>(n - t);
        n = t;
      }
      apply(&img, o, n);
    }
    out.dropped += static_cast<int64_t>(tail - keep);
    if (!out.note.empty()) out.note += ", ";
    out.note += std::string(role == kRoleDb    ? "db"
                            : role == kRoleWal ? "wal"
                                               : "journal") +
                " " + std::to_string(last_sync) + " durable ops + " + std::to_string(keep) + "/" +
                std::to_string(tail) + " unsynced";
    if (img.present) out.files[role] = std::move(img.bytes);
  }
  return out;
}

}  // namespace faulty
