// faulty_vfs — a test-only SQLite VFS shim over the default (unix) VFS.
//
// Registered as "wf_faulty"; the engine uses it with the option
// {"vfs":"wf_faulty"}. It forwards everything to the default VFS and can:
//
//  1. Inject faults: count xWrite / xSync / xTruncate / xLock / xShmLock calls
//     on the main database, its WAL and its rollback journal (temporary files
//     are not counted) and make the k-th call of one kind fail, once or
//     persistently (every call of that kind from the k-th on) until disarmed.
//     Faults return what a real system would: SQLITE_IOERR_WRITE,
//     SQLITE_IOERR_FSYNC, SQLITE_IOERR_TRUNCATE, SQLITE_BUSY or
//     SQLITE_IOERR_LOCK for xLock, SQLITE_BUSY for xShmLock. Only lock
//     *acquisitions* fail, never unlocks. Once a persistent lock fault has
//     fired, xSleep returns at once (until disarm) so busy handlers and WAL
//     read retries give up quickly instead of sleeping for seconds.
//
//  2. Journal for simulated power loss: every write, sync, truncate and
//     delete of the database, WAL and journal is appended to a log file
//     (before it is performed) so that another process can rebuild the
//     files as a power cut would leave them: the contents as of each file's
//     last sync, plus a prefix of the writes after it, the last one possibly
//     torn (see powerloss_image). Optionally the process SIGKILLs itself
//     just before the N-th journaled operation.
//
// Real fsyncs can be skipped (set_real_sync(false)): the tests that use the
// shim never rely on the kernel's durability, and skipping them keeps each
// run fast.
#ifndef WF_TESTS_FAULTY_VFS_H
#define WF_TESTS_FAULTY_VFS_H

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace faulty {

constexpr const char* kVfsName = "wf_faulty";

enum class Kind { kNone, kWrite, kSync, kTruncate, kLockBusy, kLockIoerr, kShmLock };
enum class Mode {
  kOnce,        // only the k-th call fails
  kPersistent,  // every call from the k-th on fails, until disarm()
};

const char* kind_name(Kind k);
const char* mode_name(Mode m);

struct Counts {
  int64_t write = 0, sync = 0, truncate = 0, lock = 0, shmlock = 0;
  int64_t of(Kind k) const;
};

// Registers the VFS (idempotent; not as the default). Returns false if the
// default VFS is missing or registration failed.
bool register_vfs();

// Counts restart at 0, no fault is armed and every file is counted.
void reset();
// Counts (and faults) only the calls on one file: kFileAny (default),
// kFileDb (the database file itself: its writes happen at checkpoints) or
// kFileWal.
enum class File { kAny, kDb, kWal };
void set_target(File f);
// Arms one fault kind. Counting continues from the current counts: call
// reset() first to count from the start of a workload.
void arm(Kind kind, int64_t k, Mode mode);
void disarm();
Counts counts();
// Faults returned since the last reset().
int64_t injected();

void set_real_sync(bool on);

// ------------------------------------------------------------ power loss

// Starts journaling the operations on every database, WAL and rollback
// journal opened through the shim (the process is meant to use one database)
// to the file descriptor `log_fd` (opened O_APPEND). When `kill_at_op` > 0
// the process SIGKILLs itself just before the kill_at_op-th journaled
// operation.
void start_journal(int log_fd, int64_t kill_at_op);

// Rebuilds the files after a simulated power cut from their images when the
// journaling process started (`base`, by role: 0 database, 1 WAL, 2 journal;
// a missing entry is an empty file) and the journal it wrote. For each file,
// every operation up to its last sync is kept; of the operations after it a
// random prefix is kept, and the last kept write may be torn (only its first
// bytes reach the disk). Returns the images by role (an absent entry: the
// file does not exist). `note` receives a one-line description of what was
// dropped.
struct PowerCut {
  std::map<int, std::string> files;
  std::string note;
  int64_t ops = 0;           // journaled operations read
  int64_t db_writes = 0;     // of which writes to the database file (checkpoints)
  int64_t dropped = 0;       // unsynced operations dropped
  int64_t torn_bytes = 0;    // bytes cut from the last kept write
  bool torn_record = false;  // the journal ended with a partial record
};
PowerCut powerloss_image(const std::map<int, std::string>& base, const std::string& journal,
                         std::mt19937_64& rng);

}  // namespace faulty

#endif  // WF_TESTS_FAULTY_VFS_H
