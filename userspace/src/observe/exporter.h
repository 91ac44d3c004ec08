// exporter.h - the Prometheus exporter of `moat serve`: GET /metrics renders
// a fresh snapshot at every scrape. Part of observe.h.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "observe/snapshot.h"
#include "util/result.h"

namespace moat::obs {

// "127.0.0.1:9464" -> {host, port}; "[::1]:9464" too. nullopt when malformed.
std::optional<std::pair<std::string, int>> parse_listen_addr(const std::string& text);
bool is_loopback_host(const std::string& host);

class Exporter {
 public:
  // A scrape's snapshot, or why there is none (answered 503).
  using Scrape = std::function<Result<Snapshot>()>;
  Exporter(std::string instance, Scrape scrape);
  ~Exporter();

  // Binds without serving: the server's threads start in serve() and
  // inherit the signal mask the caller has then. Error: errno of the bind,
  // or why the HTTP module (http/transport.h) could not be loaded.
  Result<void> bind(const std::string& host, int port);
  // Serves in a thread of its own; `on_failure` runs in it when serving
  // fails (the caller's loop is waiting for something else).
  void serve(std::function<void()> on_failure);
  // Stops serving and waits for the thread.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moat::obs
