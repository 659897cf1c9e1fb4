#pragma once
#include <napi.h>

// An Error shaped like Node's system errors: { code (EACCES, ...), errno (negative), syscall }.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall);
