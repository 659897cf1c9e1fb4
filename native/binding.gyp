{
  # pagerd's native addon: Linux syscalls that Node 20 does not offer (peer credentials, block
  # device ioctls, hole punching, sd_notify, cached reads), the CRC-32C page checksum, a
  # page-out's summed writes in the thread pool, and shared frames (memfds passed over sockets). Argument checks and policy live in TypeScript
  # (src/native/).
  "targets": [
    {
      "target_name": "pagerd_native",
      "sources": ["pagerd_native.cc", "shared_memory.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # NAPI_VERSION 9 is what Node 20 offers; exceptions off keeps the addon small (errors are
      # thrown through Napi::Error::ThrowAsJavaScriptException).
      "defines": ["NAPI_VERSION=9", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
    }
  ]
}
