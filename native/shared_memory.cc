// Shared frames: memory a daemon shares with its local readers, and the descriptors that carry
// it over a Unix socket (Node's net module cannot pass descriptors).
//
//   sharedMemory(name, bytes)       -> { fd, buffer }  a sealed memfd (it can neither shrink nor
//                                      grow) mapped read-write, as a SharedArrayBuffer
//   mapShared(fd, bytes, writable)  -> SharedArrayBuffer over mmap(MAP_SHARED) of fd; read-only
//                                      unless `writable` (a write through a read-only mapping
//                                      kills the process: only the client library maps these)
//   reopenFd(fd, writable)          -> a new descriptor of the same memory (O_RDONLY unless
//                                      `writable`): a read-only one can be mapped PROT_READ only
//   sendWithFds(socketFd, bytes, fds) -> sendmsg of `bytes` with `fds` as SCM_RIGHTS
//   exchangeForFds(path, bytes, frames, timeoutMs) -> Promise<{ frames: Buffer[], fds: number[] }>:
//                                      in the thread pool, connects to the Unix socket, sends
//                                      `bytes`, and reads `frames` length-prefixed frames (u32
//                                      big-endian length), keeping any descriptors passed
//   closeFd(fd)
//
// V8's C++ API makes the SharedArrayBuffers: N-API has no call for one over external memory. The
// mapping is unmapped when the buffer is collected.
#include <napi.h>
#include <node.h>
#include <v8.h>

#include "errno_error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

namespace {

Napi::Value Fail(Napi::Env env, int err, const char* syscall) {
  ErrnoError(env, err, syscall).ThrowAsJavaScriptException();
  return env.Undefined();
}

// A SharedArrayBuffer over `length` bytes at `data`, unmapped when collected.
Napi::Value SharedBufferOver(Napi::Env env, void* data, size_t length) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> store = v8::SharedArrayBuffer::NewBackingStore(
      data, length, [](void* d, size_t len, void*) { munmap(d, len); }, nullptr);
  v8::Local<v8::SharedArrayBuffer> buffer = v8::SharedArrayBuffer::New(isolate, std::move(store));
  v8::Local<v8::Value> value = buffer;
  // napi_value is a V8 local handle's slot (js_native_api_v8.h: JsValueFromV8LocalValue).
  return Napi::Value(env, reinterpret_cast<napi_value>(*value));
}

Napi::Value SharedMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  size_t bytes = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Fail(env, errno, "memfd_create");
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int err = errno;
    close(fd);
    return Fail(env, err, "ftruncate/F_ADD_SEALS");
  }
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    int err = errno;
    close(fd);
    return Fail(env, err, "mmap");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("buffer", SharedBufferOver(env, data, bytes));
  return out;
}

Napi::Value MapShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  size_t bytes = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
  bool writable = info[2].As<Napi::Boolean>().Value();
  void* data = mmap(nullptr, bytes, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) return Fail(env, errno, "mmap");
  return SharedBufferOver(env, data, bytes);
}

Napi::Value ReopenFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  bool writable = info[1].As<Napi::Boolean>().Value();
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  int reopened = open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (reopened < 0) return Fail(env, errno, "open");
  return Napi::Number::New(env, reopened);
}

Napi::Value SendWithFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock = info[0].As<Napi::Number>().Int32Value();
  Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  Napi::Array list = info[2].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < list.Length(); i++) fds.push_back(list.Get(i).As<Napi::Number>().Int32Value());
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  struct iovec iov = {bytes.Data(), bytes.ByteLength()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  // The socket is non-blocking (Node's): a small message into an idle socket goes whole, or fails.
  ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  if (n < 0) return Fail(env, errno, "sendmsg");
  if (static_cast<size_t>(n) != bytes.ByteLength()) return Fail(env, EAGAIN, "sendmsg (partial)");
  return env.Undefined();
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// The thread-pool half of exchangeForFds.
class Exchange : public Napi::AsyncWorker {
 public:
  Exchange(Napi::Env env, std::string path, std::vector<uint8_t> request, int frames, int timeoutMs)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)), request_(std::move(request)), frames_(frames), timeoutMs_(timeoutMs) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return Failed("socket");
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    if (path_.size() >= sizeof(addr.sun_path)) {
      close(sock);
      err_ = ENAMETOOLONG;
      return SetError("connect");
    }
    memcpy(addr.sun_path, path_.data(), path_.size());
    if (connect(sock, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) return FailedClosing(sock, "connect");
    size_t sent = 0;
    while (sent < request_.size()) {
      ssize_t n = send(sock, request_.data() + sent, request_.size() - sent, MSG_NOSIGNAL);
      if (n < 0) return FailedClosing(sock, "send");
      sent += static_cast<size_t>(n);
    }
    std::vector<uint8_t> got;
    std::vector<size_t> ends;  // where each whole frame received so far ends
    for (;;) {
      for (size_t at = ends.empty() ? 0 : ends.back(); got.size() - at >= 4;) {
        uint32_t len = (uint32_t(got[at]) << 24) | (uint32_t(got[at + 1]) << 16) | (uint32_t(got[at + 2]) << 8) | got[at + 3];
        if (got.size() - at - 4 < len) break;
        at += 4 + len;
        ends.push_back(at);
      }
      if (ends.size() >= static_cast<size_t>(frames_)) break;
      struct pollfd p = {sock, POLLIN, 0};
      int ready = poll(&p, 1, timeoutMs_);
      if (ready == 0) {
        close(sock);
        err_ = ETIMEDOUT;
        return SetError("recvmsg");
      }
      if (ready < 0) return FailedClosing(sock, "poll");
      uint8_t buf[65536];
      char control[CMSG_SPACE(sizeof(int) * 8)];
      struct iovec iov = {buf, sizeof(buf)};
      struct msghdr msg = {};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
      if (n < 0) return FailedClosing(sock, "recvmsg");
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
          int fd;
          memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds_.push_back(fd);
        }
      }
      if (n == 0) {
        close(sock);
        err_ = ECONNRESET;
        return SetError("recvmsg");
      }
      got.insert(got.end(), buf, buf + n);
    }
    close(sock);
    for (int i = 0; i < frames_; i++) frames_got_.emplace_back(got.begin() + (i == 0 ? 0 : ends[i - 1]), got.begin() + ends[i]);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    Napi::Array frames = Napi::Array::New(env, frames_got_.size());
    for (size_t i = 0; i < frames_got_.size(); i++) frames.Set(i, Napi::Buffer<uint8_t>::Copy(env, frames_got_[i].data(), frames_got_[i].size()));
    Napi::Array fds = Napi::Array::New(env, fds_.size());
    for (size_t i = 0; i < fds_.size(); i++) fds.Set(i, Napi::Number::New(env, fds_[i]));
    out.Set("frames", frames);
    out.Set("fds", fds);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error&) override {
    for (int fd : fds_) close(fd);
    deferred_.Reject(ErrnoError(Env(), err_, syscall_).Value());
  }

 private:
  void SetError(const char* syscall) {
    syscall_ = syscall;
    Napi::AsyncWorker::SetError(std::string(syscall) + ": " + strerror(err_));
  }
  void Failed(const char* syscall) {
    err_ = errno;
    SetError(syscall);
  }
  void FailedClosing(int sock, const char* syscall) {
    err_ = errno;
    close(sock);
    SetError(syscall);
  }

  Napi::Promise::Deferred deferred_;
  std::string path_;
  std::vector<uint8_t> request_;
  int frames_;
  int timeoutMs_;
  int err_ = 0;
  const char* syscall_ = "";
  std::vector<int> fds_;
  std::vector<std::vector<uint8_t>> frames_got_;
};

Napi::Value ExchangeForFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  std::vector<uint8_t> request(bytes.Data(), bytes.Data() + bytes.ByteLength());
  int frames = info[2].As<Napi::Number>().Int32Value();
  int timeoutMs = info[3].As<Napi::Number>().Int32Value();
  Exchange* work = new Exchange(env, std::move(path), std::move(request), frames, timeoutMs);
  Napi::Promise promise = work->Promise();
  work->Queue();
  return promise;
}

}  // namespace

void RegisterSharedMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("sharedMemory", Napi::Function::New(env, SharedMemory));
  exports.Set("mapShared", Napi::Function::New(env, MapShared));
  exports.Set("reopenFd", Napi::Function::New(env, ReopenFd));
  exports.Set("sendWithFds", Napi::Function::New(env, SendWithFds));
  exports.Set("exchangeForFds", Napi::Function::New(env, ExchangeForFds));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
}
