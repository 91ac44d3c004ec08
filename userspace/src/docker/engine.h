// engine.h - a client of the Docker Engine API over its unix socket: the one
// place that speaks HTTP to dockerd. Every call opens a connection of its own
// (dockerd's socket is local and cheap), so an Engine may be used from several
// threads at once, and a long event stream never blocks a plain GET.
//
// Errors are Results, never exceptions: a refused or missing socket (errno of
// the connect), an HTTP status other than 2xx (the status and Docker's own
// "message"), a body that is not JSON.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "util/result.h"

namespace moat::docker {

// The API versions this client is written against: dockerd 20.10 speaks 1.41,
// and nothing we read changed shape up to 1.47.
inline constexpr int kApiMinorMin = 41;
inline constexpr int kApiMinorMax = 47;

// The version to speak, "1.NN", from a GET /version answer: the daemon's
// ApiVersion capped at kApiMinorMax, refused below kApiMinorMin or when the
// daemon's MinAPIVersion is above what we would pick.
Result<std::string> choose_api_version(const nlohmann::json& version);

// Percent-encodes everything but RFC 3986's unreserved characters: container
// names and filter documents go into paths and query strings.
std::string url_encode(std::string_view text);

// Cuts a byte stream into lines however the chunks fall: the event stream is
// one JSON document per line, and HTTP chunks need not end at a newline.
class LineSplitter {
 public:
  // A line longer than this is not an event: the stream is broken.
  static constexpr size_t kMaxLine = 1 << 20;

  // Calls on_line for each complete non-empty line (without "\n" or "\r\n");
  // false when on_line returned false or the pending line grew past kMaxLine.
  bool feed(std::string_view chunk, const std::function<bool(std::string_view)>& on_line);
  size_t pending() const { return partial_.size(); }

 private:
  std::string partial_;
};

// One HTTP answer: for callers that must tell a 404 from other failures.
struct Reply {
  int status = 0;
  std::string body;
  bool ok() const { return status >= 200 && status < 300; }
};

class Engine {
 public:
  // GET /version on `socket_path` and picks the API version (see
  // choose_api_version). Connection timeout 2 s, plain reads 30 s.
  static Result<Engine> connect(const std::string& socket_path);

  const std::string& socket_path() const { return socket_; }
  const std::string& api_version() const { return version_; }  // "1.41"
  const nlohmann::json& daemon_version() const { return daemon_; }

  // GET /v<api><path>; `path` starts with "/" and may carry a query string.
  Result<Reply> get_raw(const std::string& path) const;
  // The same, as JSON; a status other than 2xx is an Error naming the path,
  // the status and Docker's message ("404 No such container: x").
  Result<nlohmann::json> get(const std::string& path) const;

  Result<nlohmann::json> networks() const;    // GET /networks
  Result<nlohmann::json> containers() const;  // GET /containers/json: the running ones
  Result<nlohmann::json> inspect_container(const std::string& id_or_name) const;
  Result<nlohmann::json> inspect_network(const std::string& id_or_name) const;

  // GET /events?filters=<filters_json> (e.g. {"type":["container","network"]},
  // "" for all): calls on_event with each event, in order, on the calling
  // thread. Returns
  //   {}     when on_event or keep_going returned false;
  //   Error  when the stream ended or broke (dockerd restarted, socket gone,
  //          a non-2xx answer, a line that is not JSON): reconnect, and
  //          re-list, since events in between are lost.
  // keep_going is called on the calling thread at least every 200 ms, also
  // while no event arrives; stopping takes effect within that period.
  // A worker thread owns the connection (see engine.cpp for why).
  Result<void> follow_events(const std::string& filters_json,
                             std::function<bool(const nlohmann::json&)> on_event,
                             std::function<bool()> keep_going) const;

 private:
  Engine(std::string socket, std::string version, nlohmann::json daemon)
      : socket_(std::move(socket)), version_(std::move(version)), daemon_(std::move(daemon)) {}

  std::string socket_;
  std::string version_;
  nlohmann::json daemon_;
};

}  // namespace moat::docker
