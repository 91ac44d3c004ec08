// transport.h - HTTP, loaded only by the commands that speak it.
//
// `moat docker` (a client of dockerd's unix socket) and `moat serve` (the
// Prometheus exporter) speak HTTP through cpp-httplib, which pulls in
// libssl, libcrypto and brotli. Linked into the one binary, those libraries
// cost every other command (apply, status, the CNI plugin's every ADD and
// DEL) about 220 page faults at start, some 7 ms on a VM where a fault costs
// 30 us. So the HTTP code is a module of its own, moat-http.so, dlopen()ed
// on first use: everything else starts without it.
//
// This header is the whole interface between the two, compiled into both.
// What crosses it is standard types only, so the module needs nothing of
// moat's (transport(), the loader, is moat's side alone). kTransportAbi is
// this header's own hash (MOAT_HTTP_ABI, set by userspace/CMakeLists.txt):
// a module built from another version of it is refused, not called, and no
// one has to remember to bump a number.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "util/result.h"

namespace moat::http {

#ifndef MOAT_HTTP_ABI
#error "MOAT_HTTP_ABI is set by userspace/CMakeLists.txt from this header's hash"
#endif
inline constexpr int kTransportAbi = MOAT_HTTP_ABI;

// Why a request got no complete answer.
struct Failure {
  bool connect = false;  // no connection was made: the caller's connect() tells errno
  std::string text;      // the library's words, e.g. "Read"
};

// One GET at a time over a unix socket, on a connection of its own.
class UnixClient {
 public:
  virtual ~UnixClient() = default;
  // on_status gets the status before any body; on_data each piece of the
  // body as it arrives (return false to stop reading). nullopt when the
  // answer was read to its end.
  virtual std::optional<Failure> get(const std::string& path,
                                     const std::function<void(int status)>& on_status,
                                     const std::function<bool(const char*, size_t)>& on_data) = 0;
  // From any thread: a get() in flight returns at once (a Failure).
  virtual void stop() = 0;
};

struct UnixClientOptions {
  std::string socket;
  std::string host_header;  // sent as Host (not the socket path)
  std::chrono::seconds connect_timeout;
  std::chrono::seconds read_timeout;
};

// What a route answers.
struct Page {
  int status = 200;
  std::string body;
  std::string content_type;
};

class Server {
 public:
  virtual ~Server() = default;
  // GET `path` answers what `handler` returns, from the server's threads.
  virtual void route(const std::string& path, std::function<Page()> handler) = 0;
  // SO_REUSEADDR, not SO_REUSEPORT: a second server on a port must fail.
  // false with errno set when the port cannot be bound.
  virtual bool bind(const std::string& host, int port) = 0;
  // Serves until stop(); false when serving failed.
  virtual bool listen() = 0;
  virtual void stop() = 0;
};

// What moat-http.so exports, as `moat_http_transport`.
struct Transport {
  int abi;
  std::unique_ptr<UnixClient> (*unix_client)(const UnixClientOptions&);
  std::unique_ptr<Server> (*server)();
};

// The module, loaded once per process: from beside the running binary, or
// from ../lib/moat/ relative to it (an installed bin/moat). Refused when it
// is writable by anyone but its owner, or when it is of another build.
Result<const Transport*> transport();

}  // namespace moat::http

extern "C" const moat::http::Transport* moat_http_transport();
