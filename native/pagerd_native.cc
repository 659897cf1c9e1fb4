// pagerd's native addon: each function is one Linux syscall (or one datagram), nothing more —
// except crc32c, the page checksum, which Node has no fast form of (zlib.crc32 costs ~2.9 µs per
// 4 KiB page here; the SSE4.2 instruction, three streams at once, a fraction of a µs), and
// writevSummed, a page-out's write with its checksums taken in the thread pool, and deallocate, a
// batch of hole punches or discards in the thread pool.
// Errors are thrown shaped like Node's system errors: { code, errno (negative), syscall }.
#include <napi.h>
#include <uv.h>

#include "errno_error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <malloc.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
#include <string>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <vector>

// Linux 6.5; older headers lack it (the kernel answers ENOPROTOOPT then).
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

void RegisterSharedMemory(Napi::Env env, Napi::Object exports);  // shared_memory.cc

namespace {

// ---- CRC-32C (Castagnoli), reflected, as iSCSI/ext4/btrfs use it ----------------------------

uint32_t crc32c_table[256];

void InitCrc32cTable() {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc32c_table[i] = c;
  }
}

uint32_t Crc32cTable(uint32_t crc, const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++) crc = crc32c_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

// Zero-shift operators (Mark Adler's method, as in zlib's crc32_combine): crc32c_shift(table, crc)
// is the CRC of the bytes behind `crc` followed by `len` zeros. They let three independent CRC
// streams run at once (the instruction's latency is three cycles, its throughput one) and be
// joined after.
uint32_t Gf2MatrixTimes(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (; vec != 0; vec >>= 1, mat++) if (vec & 1) sum ^= *mat;
  return sum;
}

void Gf2MatrixSquare(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; n++) square[n] = Gf2MatrixTimes(mat, mat[n]);
}

// Tables applying `len` zero bytes (len a power of two) to a CRC, a byte of it at a time.
void Crc32cZeros(uint32_t zeros[4][256], size_t len) {
  uint32_t odd[32], even[32];
  odd[0] = 0x82F63B78u;
  for (int n = 1; n < 32; n++) odd[n] = 1u << (n - 1);
  Gf2MatrixSquare(even, odd);  // 2 zero bits
  Gf2MatrixSquare(odd, even);  // 4 zero bits
  uint32_t* op = odd;
  for (;;) {
    Gf2MatrixSquare(even, odd);
    op = even;
    len >>= 1;
    if (len == 0) break;
    Gf2MatrixSquare(odd, even);
    op = odd;
    len >>= 1;
    if (len == 0) break;
  }
  for (uint32_t n = 0; n < 256; n++) {
    zeros[0][n] = Gf2MatrixTimes(op, n);
    zeros[1][n] = Gf2MatrixTimes(op, n << 8);
    zeros[2][n] = Gf2MatrixTimes(op, n << 16);
    zeros[3][n] = Gf2MatrixTimes(op, n << 24);
  }
}

uint32_t Crc32cShift(const uint32_t zeros[4][256], uint32_t crc) {
  return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

constexpr size_t kLong = 8192;
constexpr size_t kShort = 256;
uint32_t crc32c_long[4][256];
uint32_t crc32c_short[4][256];

#if defined(__x86_64__)
uint64_t Load64(const uint8_t* p) {
  uint64_t word;
  std::memcpy(&word, p, 8);
  return word;
}

// Three streams of `block` bytes at a time, joined with the shift table for `block`.
__attribute__((target("sse4.2"))) uint64_t Crc32cTriple(uint64_t crc0, const uint8_t*& p, size_t& n, size_t block, const uint32_t zeros[4][256]) {
  while (n >= 3 * block) {
    uint64_t crc1 = 0, crc2 = 0;
    for (const uint8_t* end = p + block; p < end; p += 8) {
      crc0 = __builtin_ia32_crc32di(crc0, Load64(p));
      crc1 = __builtin_ia32_crc32di(crc1, Load64(p + block));
      crc2 = __builtin_ia32_crc32di(crc2, Load64(p + 2 * block));
    }
    crc0 = Crc32cShift(zeros, static_cast<uint32_t>(crc0)) ^ crc1;
    crc0 = Crc32cShift(zeros, static_cast<uint32_t>(crc0)) ^ crc2;
    p += 2 * block;
    n -= 3 * block;
  }
  return crc0;
}

__attribute__((target("sse4.2"))) uint32_t Crc32cHw(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = crc;
  c = Crc32cTriple(c, p, n, kLong, crc32c_long);
  c = Crc32cTriple(c, p, n, kShort, crc32c_short);
  for (; n >= 8; n -= 8, p += 8) c = __builtin_ia32_crc32di(c, Load64(p));
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; n--, p++) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}
const bool kHaveSse42 = __builtin_cpu_supports("sse4.2");
#endif

uint32_t Crc32c(const uint8_t* p, size_t n) {
  uint32_t crc = 0xFFFFFFFFu;
#if defined(__x86_64__)
  if (kHaveSse42) return ~Crc32cHw(crc, p, n);
#endif
  return ~Crc32cTable(crc, p, n);
}

// crc32c(bytes) -> the CRC-32C of a Uint8Array (any backing, shared memory included).
Napi::Value Crc32cOf(const Napi::CallbackInfo& info) {
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  return Napi::Number::New(info.Env(), Crc32c(bytes.Data(), bytes.ByteLength()));
}

// copyBytes(dst, dstStart, src, srcStart, n): a memmove of n bytes between two Uint8Arrays, either
// or both in shared memory, where V8 copies with relaxed atomics (a word at a time at best). The
// caller checks the ranges; a range past either array copies nothing and answers false.
Napi::Value CopyBytes(const Napi::CallbackInfo& info) {
  if (info.Length() < 5 || !info[0].IsTypedArray() || !info[2].IsTypedArray()) return Napi::Boolean::New(info.Env(), false);
  Napi::Uint8Array dst = info[0].As<Napi::Uint8Array>();
  size_t dstStart = info[1].As<Napi::Number>().Int64Value();
  Napi::Uint8Array src = info[2].As<Napi::Uint8Array>();
  size_t srcStart = info[3].As<Napi::Number>().Int64Value();
  size_t n = info[4].As<Napi::Number>().Int64Value();
  if (dstStart > dst.ByteLength() || n > dst.ByteLength() - dstStart || srcStart > src.ByteLength() || n > src.ByteLength() - srcStart) {
    return Napi::Boolean::New(info.Env(), false);
  }
  memmove(dst.Data() + dstStart, src.Data() + srcStart, n);
  return Napi::Boolean::New(info.Env(), true);
}

}  // namespace

// Shared with shared_memory.cc (errno_error.h).
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  int uverr = uv_translate_sys_error(err);
  std::string message = std::string(uv_err_name(uverr)) + ": " + uv_strerror(uverr) + ", " + syscall;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, uv_err_name(uverr)));
  error.Set("errno", Napi::Number::New(env, uverr));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

namespace {

Napi::Value ThrowErrno(Napi::Env env, int err, const char* syscall) {
  ErrnoError(env, err, syscall).ThrowAsJavaScriptException();
  return env.Undefined();
}

// writeRuns(fd, positions, counts, backings, which, offsets, lengths, sums, sumNow, sync,
// startWriteback) -> Promise<void>. Run r is the next counts[r] buffers, written back to back from
// positions[r] (pwritev, resumed after a short write). sums[i] gets the CRC-32C of buffer i: in
// libuv's thread pool just before it is written, or with `sumNow` here, on the calling thread, so
// the caller has them at once. With `startWriteback`, writeback of each chunk starts as soon as it
// is written; with `sync`, one fdatasync follows the last write in the same job (one hand-off to
// the pool and back instead of one per run and one for the flush: each costs tens of µs of
// wake-ups on a VM).
// Summing on the writing thread keeps a page-out's checksums off the event loop (16,000 pages:
// ~30 ms of it), and summing just before writing a few pages at a time leaves their bytes in
// cache for the copy into the kernel. An empty `sums` sums nothing (a client file system's writes).
class SummedWrite : public Napi::AsyncWorker {
 public:
  // Buffer i is bytes [offsets[i], offsets[i] + lengths[i]) of backings[which[i]]: a handful of
  // N-API calls for a whole page-out, not several per page (~0.6 µs a page otherwise).
  SummedWrite(Napi::Env env, int fd, Napi::Float64Array positions, Napi::Uint32Array counts, Napi::Array backings,
              Napi::Uint32Array which, Napi::Float64Array offsets, Napi::Uint32Array lengths, Napi::Uint32Array sums,
              bool sumNow, bool sync, bool startWriteback)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), sums_(sums.Data()),
        summedAll_(sumNow || sums.ElementLength() == 0), sync_(sync), startWriteback_(startWriteback), backings_(Napi::Persistent(backings.As<Napi::Object>())),
        sumsRef_(Napi::Persistent(sums.As<Napi::Object>())) {
    std::vector<uint8_t*> bases;
    for (uint32_t i = 0; i < backings.Length(); i++) bases.push_back(backings.Get(i).As<Napi::Uint8Array>().Data());
    iov_.reserve(which.ElementLength());
    for (size_t i = 0; i < which.ElementLength(); i++) {
      iov_.push_back({bases[which[i]] + static_cast<size_t>(offsets[i]), lengths[i]});
      if (sumNow && sums.ElementLength() != 0) sums_[i] = Crc32c(static_cast<const uint8_t*>(iov_[i].iov_base), iov_[i].iov_len);
    }
    size_t first = 0;
    for (size_t r = 0; r < counts.ElementLength(); r++) {
      runs_.push_back({static_cast<off_t>(positions[r]), first, first + counts[r]});
      first += counts[r];
    }
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    for (const Run& run : runs_) {
      if (!WriteRun(run)) return;
    }
    if (sync_) {
      int rc;
      do rc = fdatasync(fd_);
      while (rc != 0 && errno == EINTR);
      if (rc != 0) Fail(errno, "fdatasync");
    }
  }

  void OnOK() override {
    if (error_ != 0) deferred_.Reject(ErrnoError(Env(), error_, syscall_).Value());
    else deferred_.Resolve(Env().Undefined());
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  struct Run {
    off_t position;
    size_t first;
    size_t end;
  };

  void Fail(int err, const char* syscall) {
    error_ = err;
    syscall_ = syscall;
  }

  // Writes buffers [run.first, run.end) from run.position; false (error_ set) if that failed.
  bool WriteRun(const Run& run) {
    off_t position = run.position;
    size_t first = run.first;  // iov_[first..end) is still to write
    size_t summed = summedAll_ ? run.end : run.first;
    while (first < run.end) {
      // Sum the next ~128 KiB, then write everything summed and not yet written.
      size_t bytes = 0;
      while (summed < run.end && (summed == first || bytes < kChunkBytes)) {
        sums_[summed] = Crc32c(static_cast<const uint8_t*>(iov_[summed].iov_base), iov_[summed].iov_len);
        bytes += iov_[summed].iov_len;
        summed++;
      }
      while (first < summed) {
        int count = static_cast<int>(std::min<size_t>(summed - first, IOV_MAX));
        ssize_t n = pwritev(fd_, &iov_[first], count, position);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          Fail(n < 0 ? errno : EIO, "pwritev");
          return false;
        }
        // Start writeback now (as RocksDB's bytes_per_sync does), so the device writes while later
        // chunks are still being copied and the cycle's fdatasync waits for less. Advisory: without
        // SYNC_FILE_RANGE_WAIT_* it neither waits nor consumes a writeback error, which the flush
        // still reports. A write with its own fdatasync next has no use for it, and a client file
        // system's writes leave it out (they make the calls the raw rows of the bench make).
        if (startWriteback_) sync_file_range(fd_, position, n, SYNC_FILE_RANGE_WRITE);
        position += n;
        for (size_t left = static_cast<size_t>(n); left > 0;) {
          if (left >= iov_[first].iov_len) {
            left -= iov_[first].iov_len;
            first++;
          } else {
            iov_[first].iov_base = static_cast<uint8_t*>(iov_[first].iov_base) + left;
            iov_[first].iov_len -= left;
            left = 0;
          }
        }
      }
    }
    return true;
  }

  static constexpr size_t kChunkBytes = 128 * 1024;
  Napi::Promise::Deferred deferred_;
  int fd_;
  uint32_t* sums_;
  bool summedAll_;
  bool sync_;
  bool startWriteback_;
  Napi::ObjectReference backings_;  // keeps the buffers (and so iov_'s memory) alive
  Napi::ObjectReference sumsRef_;
  std::vector<struct iovec> iov_;
  std::vector<Run> runs_;
  int error_ = 0;
  const char* syscall_ = "";
};

Napi::Value WriteRuns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // The wrapper in addon.ts builds these; a mismatch would index past the buffers' descriptions.
  Napi::Float64Array positions = info[1].As<Napi::Float64Array>();
  Napi::Uint32Array counts = info[2].As<Napi::Uint32Array>();
  size_t buffers = info[4].As<Napi::Uint32Array>().ElementLength();
  size_t counted = 0;
  for (size_t r = 0; r < counts.ElementLength(); r++) counted += counts[r];
  if (positions.ElementLength() != counts.ElementLength() || counted != buffers ||
      info[5].As<Napi::Float64Array>().ElementLength() != buffers || info[6].As<Napi::Uint32Array>().ElementLength() != buffers ||
      (info[7].As<Napi::Uint32Array>().ElementLength() < buffers && info[7].As<Napi::Uint32Array>().ElementLength() != 0)) {
    Napi::TypeError::New(env, "writeRuns: runs, buffers and sums do not match").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* work = new SummedWrite(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Float64Array>(),
                               info[2].As<Napi::Uint32Array>(), info[3].As<Napi::Array>(), info[4].As<Napi::Uint32Array>(),
                               info[5].As<Napi::Float64Array>(), info[6].As<Napi::Uint32Array>(),
                               info[7].As<Napi::Uint32Array>(), info[8].As<Napi::Boolean>().Value(),
                               info[9].As<Napi::Boolean>().Value(), info[10].As<Napi::Boolean>().Value());
  Napi::Promise promise = work->Promise();
  work->Queue();
  return promise;
}

// peerCred(fd) -> { pid, uid, gid } of the process at the other end of a Unix socket.
Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return ThrowErrno(env, errno, "getsockopt");
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

// peerPidfd(fd) -> a pidfd of the process at the other end of a Unix socket: the one that
// connected, whatever its pid becomes (SO_PEERPIDFD, Linux 6.5; before it, pidfd_open of the
// SO_PEERCRED pid, which may already name another process if the peer exited).
Napi::Value PeerPidfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int pidfd = -1;
  socklen_t len = sizeof(pidfd);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0) return Napi::Number::New(env, pidfd);
  if (errno != ENOPROTOOPT) return ThrowErrno(env, errno, "getsockopt");
  struct ucred cred;
  len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return ThrowErrno(env, errno, "getsockopt");
  pidfd = static_cast<int>(syscall(SYS_pidfd_open, cred.pid, 0));
  if (pidfd < 0) return ThrowErrno(env, errno, "pidfd_open");
  return Napi::Number::New(env, pidfd);
}

// processExited(pidfd) -> true once the process has exited (its pidfd polls readable).
Napi::Value ProcessExited(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct pollfd p = {info[0].As<Napi::Number>().Int32Value(), POLLIN, 0};
  int n = poll(&p, 1, 0);
  if (n < 0) return ThrowErrno(env, errno, "poll");
  return Napi::Boolean::New(env, n > 0);
}

// fileAttribute(fd, name) -> the extended attribute's bytes, or null where the file has none or
// its file system keeps none (ENODATA, ENOTSUP).
Napi::Value FileAttribute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  char value[4096];
  ssize_t n = fgetxattr(fd, name.c_str(), value, sizeof(value));
  if (n < 0) {
    if (errno == ENODATA || errno == ENOTSUP) return env.Null();
    return ThrowErrno(env, errno, "fgetxattr");
  }
  return Napi::Buffer<char>::Copy(env, value, static_cast<size_t>(n));
}

// setFileAttribute(fd, name, value) sets an extended attribute; removes it when value is null.
// False where the file system keeps none (ENOTSUP), or there was none to remove.
Napi::Value SetFileAttribute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  int rc;
  if (info[2].IsNull()) {
    rc = fremovexattr(fd, name.c_str());
  } else {
    Napi::Uint8Array value = info[2].As<Napi::Uint8Array>();
    rc = fsetxattr(fd, name.c_str(), value.Data(), value.ByteLength(), 0);
  }
  if (rc != 0) {
    if (errno == ENODATA || errno == ENOTSUP) return Napi::Boolean::New(env, false);
    return ThrowErrno(env, errno, info[2].IsNull() ? "fremovexattr" : "fsetxattr");
  }
  return Napi::Boolean::New(env, true);
}

// setSendBuffer(fd, bytes) -> the socket's send buffer after asking for `bytes` (SO_SNDBUF; the
// kernel caps the request at net.core.wmem_max and doubles it for its bookkeeping).
Napi::Value SetSendBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int bytes = info[1].As<Napi::Number>().Int32Value();
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes)) != 0) return ThrowErrno(env, errno, "setsockopt");
  int now = 0;
  socklen_t len = sizeof(now);
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &now, &len) != 0) return ThrowErrno(env, errno, "getsockopt");
  return Napi::Number::New(env, now);
}

// peerGroups(fd) -> the supplementary groups of the peer of a connected Unix socket, as they were
// when it connected (SO_PEERGROUPS): fixed by the kernel, unlike /proc/<pid>, whose pid may be reused.
Napi::Value PeerGroups(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::vector<gid_t> groups(64);
  socklen_t len = groups.size() * sizeof(gid_t);
  while (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) {
    if (errno != ERANGE) return ThrowErrno(env, errno, "getsockopt");
    groups.resize(len / sizeof(gid_t) + 1);
    len = groups.size() * sizeof(gid_t);
  }
  size_t count = len / sizeof(gid_t);
  Napi::Array out = Napi::Array::New(env, count);
  for (size_t i = 0; i < count; i++) out.Set(i, Napi::Number::New(env, groups[i]));
  return out;
}

// readCached(fd, bytes, position) -> bytes read, or -1 where it would have to wait for the device
// (preadv2 with RWF_NOWAIT: only what the page cache holds; EAGAIN, or no support, answers -1).
Napi::Value ReadCached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  off_t position = static_cast<off_t>(info[2].As<Napi::Number>().Int64Value());
  struct iovec iov = {bytes.Data(), bytes.ByteLength()};
  ssize_t n = preadv2(fd, &iov, 1, position, RWF_NOWAIT);
  if (n >= 0) return Napi::Number::New(env, static_cast<double>(n));
  if (errno == EAGAIN || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL) return Napi::Number::New(env, -1);
  return ThrowErrno(env, errno, "preadv2");
}

// blockDeviceSize(fd) -> bytes (BLKGETSIZE64).
Napi::Value BlockDeviceSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint64_t bytes = 0;
  if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) return ThrowErrno(env, errno, "ioctl BLKGETSIZE64");
  return Napi::Number::New(env, static_cast<double>(bytes));
}

// blockSectorSize(fd) -> logical sector size in bytes (BLKSSZGET).
Napi::Value BlockSectorSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int size = 0;
  if (ioctl(fd, BLKSSZGET, &size) != 0) return ThrowErrno(env, errno, "ioctl BLKSSZGET");
  return Napi::Number::New(env, size);
}

// allocate(fd, offset, length): reserves blocks for a file range (fallocate mode 0).
Napi::Value Allocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  off_t offset = static_cast<off_t>(info[1].As<Napi::Number>().Int64Value());
  off_t length = static_cast<off_t>(info[2].As<Napi::Number>().Int64Value());
  if (fallocate(fd, 0, offset, length) != 0) return ThrowErrno(env, errno, "fallocate");
  return env.Undefined();
}

// deallocate(fd, block, ranges): gives ranges back, in the thread pool (a release of scattered
// pages is a syscall per run: on the event loop it stalled every client behind it). ranges holds
// (offset, length) pairs; a file's are hole-punched (its size kept), a block device's discarded
// (BLKDISCARD). Every range is tried; the promise rejects with the first failure.
class Deallocate : public Napi::AsyncWorker {
 public:
  Deallocate(Napi::Env env, int fd, bool block, Napi::Float64Array ranges)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), block_(block),
        ranges_(ranges.Data(), ranges.Data() + ranges.ElementLength()) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    for (size_t i = 0; i + 1 < ranges_.size(); i += 2) {
      off_t offset = static_cast<off_t>(ranges_[i]);
      off_t length = static_cast<off_t>(ranges_[i + 1]);
      int rc;
      if (block_) {
        uint64_t range[2] = {static_cast<uint64_t>(offset), static_cast<uint64_t>(length)};
        rc = ioctl(fd_, BLKDISCARD, range);
      } else {
        rc = fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
      }
      if (rc != 0 && error_ == 0) error_ = errno;
    }
  }

  void OnOK() override {
    if (error_ != 0) deferred_.Reject(ErrnoError(Env(), error_, block_ ? "ioctl BLKDISCARD" : "fallocate").Value());
    else deferred_.Resolve(Env().Undefined());
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  bool block_;
  std::vector<double> ranges_;
  int error_ = 0;
};

Napi::Value DeallocateRanges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* worker = new Deallocate(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Boolean>().Value(),
                                info[2].As<Napi::Float64Array>());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// sdNotify(socketPath, state): sends one datagram to systemd's notify socket ('@' = abstract).
Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string state = info[1].As<Napi::String>().Utf8Value();
  struct sockaddr_un addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return ThrowErrno(env, EINVAL, "sendto");
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket");
  ssize_t sent = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<struct sockaddr*>(&addr), len);
  int err = errno;
  close(fd);
  if (sent < 0) return ThrowErrno(env, err, "sendto");
  return env.Undefined();
}

// mallocTrim(): gives the C heap's free memory back to the system (malloc_trim). Buffers of
// dropped connections are freed to glibc, which keeps them; this returns them. Answers whether any
// memory was released.
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitCrc32cTable();
  Crc32cZeros(crc32c_long, kLong);
  Crc32cZeros(crc32c_short, kShort);
  exports.Set("crc32c", Napi::Function::New(env, Crc32cOf));
  exports.Set("copyBytes", Napi::Function::New(env, CopyBytes));
  exports.Set("readCached", Napi::Function::New(env, ReadCached));
  exports.Set("writeRuns", Napi::Function::New(env, WriteRuns));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred));
  exports.Set("peerGroups", Napi::Function::New(env, PeerGroups));
  exports.Set("peerPidfd", Napi::Function::New(env, PeerPidfd));
  exports.Set("processExited", Napi::Function::New(env, ProcessExited));
  exports.Set("fileAttribute", Napi::Function::New(env, FileAttribute));
  exports.Set("setFileAttribute", Napi::Function::New(env, SetFileAttribute));
  exports.Set("setSendBuffer", Napi::Function::New(env, SetSendBuffer));
  exports.Set("blockDeviceSize", Napi::Function::New(env, BlockDeviceSize));
  exports.Set("blockSectorSize", Napi::Function::New(env, BlockSectorSize));
  exports.Set("allocate", Napi::Function::New(env, Allocate));
  exports.Set("deallocate", Napi::Function::New(env, DeallocateRanges));
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify));
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim));
  RegisterSharedMemory(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(pagerd_native, Init)
