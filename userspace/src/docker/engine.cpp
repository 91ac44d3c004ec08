#include "docker/engine.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

#include "http/transport.h"
#include "util/fd.h"

namespace moat::docker {

using nlohmann::json;

namespace {

constexpr auto kConnectTimeout = std::chrono::seconds(2);
constexpr auto kReadTimeout = std::chrono::seconds(30);
// The event stream is idle for as long as nothing happens; the caller stops
// it with the client's stop(), not with a timeout. A day of silence ends it
// like a dropped connection would (the caller reconnects).
constexpr auto kEventReadTimeout = std::chrono::hours(24);
constexpr auto kPollPeriod = std::chrono::milliseconds(200);
constexpr size_t kMaxErrorBody = 4096;

// Host "docker": the socket path would otherwise go out as Host, which
// dockerd answers with 400.
Result<std::unique_ptr<http::UnixClient>> client(const std::string& socket,
                                                 std::chrono::seconds read_timeout) {
  auto t = http::transport();
  if (!t) return std::unexpected(t.error());
  return (*t)->unix_client(
      http::UnixClientOptions{socket, "docker", kConnectTimeout, read_timeout});
}

// A failed connect comes back without errno; the errno (ENOENT,
// ECONNREFUSED, EACCES) is what tells a user what is wrong.
int connect_errno(const std::string& path) {
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.ok()) return errno;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return 0;
  return errno;
}

Error transport_error(const std::string& socket, const std::string& what, const http::Failure& f) {
  if (f.connect) {
    int err = connect_errno(socket);
    return Error{err, "cannot connect to dockerd at " + socket};
  }
  return Error{0, what + " on " + socket + ": " + f.text};
}

// Docker's error bodies are {"message": "..."}; anything else is shown as is.
std::string docker_message(const std::string& body) {
  auto j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("message") && j["message"].is_string())
    return j["message"].get<std::string>();
  auto text = body.substr(0, 200);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

Error status_error(const std::string& path, int status, const std::string& body) {
  auto msg = docker_message(body);
  return Error{
      0, "dockerd: GET " + path + ": " + std::to_string(status) + (msg.empty() ? "" : " " + msg)};
}

Result<void> check_socket_path(const std::string& path) {
  if (path.empty()) return fail("no Docker socket path given");
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return fail("Docker socket path is longer than " +
                std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes: " + path);
  return {};
}

Result<Reply> request(const std::string& socket, const std::string& path) {
  if (auto ok = check_socket_path(socket); !ok) return std::unexpected(ok.error());
  auto cli = client(socket, kReadTimeout);
  if (!cli) return std::unexpected(cli.error());
  Reply reply;
  auto failed = (*cli)->get(
      path, [&](int status) { reply.status = status; },
      [&](const char* data, size_t n) {
        reply.body.append(data, n);
        return true;
      });
  if (failed) return std::unexpected(transport_error(socket, "GET " + path, *failed));
  return reply;
}

Result<json> parse_body(const std::string& path, const Reply& reply) {
  if (!reply.ok()) return std::unexpected(status_error(path, reply.status, reply.body));
  auto j = json::parse(reply.body, nullptr, false);
  if (j.is_discarded()) return fail("dockerd: GET " + path + ": the answer is not JSON");
  return j;
}

// "1.41" -> 41; nullopt for anything that is not "1.<number>".
std::optional<int> api_minor(const json& v) {
  if (!v.is_string()) return std::nullopt;
  auto s = v.get<std::string>();
  if (s.size() < 3 || s.compare(0, 2, "1.") != 0 || s.size() > 6) return std::nullopt;
  int minor = 0;
  for (size_t i = 2; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    minor = minor * 10 + (s[i] - '0');
  }
  return minor;
}

}  // namespace

Result<std::string> choose_api_version(const json& version) {
  if (!version.is_object() || !version.contains("ApiVersion"))
    return fail("dockerd's /version has no ApiVersion");
  auto have = api_minor(version["ApiVersion"]);
  if (!have) return fail("dockerd's ApiVersion is not 1.N: " + version["ApiVersion"].dump());
  if (*have < kApiMinorMin)
    return fail("dockerd speaks API 1." + std::to_string(*have) + ", moat needs 1." +
                std::to_string(kApiMinorMin) + " or newer (Docker 20.10+)");
  int use = std::min(*have, kApiMinorMax);
  if (version.contains("MinAPIVersion")) {
    auto min = api_minor(version["MinAPIVersion"]);
    if (min && *min > use)
      return fail("dockerd needs API 1." + std::to_string(*min) +
                  " or newer, moat speaks up to 1." + std::to_string(kApiMinorMax));
  }
  return "1." + std::to_string(use);
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

bool LineSplitter::feed(std::string_view chunk,
                        const std::function<bool(std::string_view)>& on_line) {
  while (!chunk.empty()) {
    auto nl = chunk.find('\n');
    if (nl == std::string_view::npos) {
      partial_.append(chunk);
      return partial_.size() <= kMaxLine;
    }
    partial_.append(chunk.substr(0, nl));
    chunk.remove_prefix(nl + 1);
    std::string line = std::move(partial_);
    partial_.clear();
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > kMaxLine) return false;
    if (!line.empty() && !on_line(line)) return false;
  }
  return true;
}

Result<Engine> Engine::connect(const std::string& socket_path) {
  auto reply = request(socket_path, "/version");
  if (!reply) return std::unexpected(reply.error());
  auto version = parse_body("/version", *reply);
  if (!version) return std::unexpected(version.error());
  auto use = choose_api_version(*version);
  if (!use) return std::unexpected(use.error());
  return Engine(socket_path, *use, std::move(*version));
}

Result<Reply> Engine::get_raw(const std::string& path) const {
  return request(socket_, "/v" + version_ + path);
}

Result<json> Engine::get(const std::string& path) const {
  auto reply = get_raw(path);
  if (!reply) return std::unexpected(reply.error());
  return parse_body("/v" + version_ + path, *reply);
}

Result<json> Engine::networks() const { return get("/networks"); }
Result<json> Engine::containers() const { return get("/containers/json"); }

Result<json> Engine::inspect_container(const std::string& id_or_name) const {
  if (id_or_name.empty()) return fail("inspect container: no id given");
  return get("/containers/" + url_encode(id_or_name) + "/json");
}

Result<json> Engine::inspect_network(const std::string& id_or_name) const {
  if (id_or_name.empty()) return fail("inspect network: no id given");
  return get("/networks/" + url_encode(id_or_name));
}

// --- the event stream ------------------------------------------------------
//
// A GET blocks in a read for as long as dockerd has nothing to say, and
// its only way out is a read timeout, which ends the request. Re-issuing the
// request every 500 ms with since= would cost a request per half second and
// can lose or repeat events (since= is inclusive, events carry one timestamp
// per nanosecond but several can share it). Instead a worker thread owns the
// connection with a long read timeout and queues lines; the calling thread
// waits on the queue in 200 ms steps, runs the callbacks and, to stop, calls
// the client's stop(), which shuts the socket down under the HTTP library's
// own lock and so wakes the worker's read at once.

namespace {

struct EventStream {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> lines;
  bool done = false;
  std::optional<Error> error;  // why the worker ended, when the caller did not ask
  std::atomic<bool> stopping{false};
};

// The worker: one GET, its lines into the queue, then done (and why).
void run_stream(EventStream& s, http::UnixClient& cli, const std::string& socket,
                const std::string& path) {
  int status = 0;
  std::string err_body;
  bool too_long = false;
  LineSplitter split;
  auto on_line = [&](std::string_view line) {
    std::lock_guard lk(s.mu);
    s.lines.emplace_back(line);
    s.cv.notify_one();
    return true;
  };
  auto on_status = [&](int st) { status = st; };
  auto on_data = [&](const char* data, size_t n) {
    if (s.stopping) return false;
    if (status < 200 || status >= 300) {
      err_body.append(data, std::min(n, kMaxErrorBody - std::min(kMaxErrorBody, err_body.size())));
      return true;
    }
    if (split.feed({data, n}, on_line)) return true;
    too_long = true;
    return false;
  };
  std::optional<Error> why;
  if (!s.stopping) {
    auto failed = cli.get(path, on_status, on_data);
    if (too_long)
      why = Error{0, "dockerd: event stream: a line longer than 1 MiB"};
    else if (failed)
      why = transport_error(socket, "event stream GET " + path, *failed);
    else if (status < 200 || status >= 300)
      why = status_error(path, status, err_body);
    else
      why = Error{0, "dockerd ended the event stream"};
  }
  std::lock_guard lk(s.mu);
  s.error = std::move(why);
  s.done = true;
  s.cv.notify_one();
}

// Stops the worker and waits for it, on every way out of follow_events
// (also when a callback throws): a joinable std::thread must not be destroyed.
struct StreamGuard {
  EventStream& s;
  http::UnixClient& cli;
  std::thread worker;

  ~StreamGuard() {
    if (!worker.joinable()) return;
    s.stopping = true;
    std::unique_lock lk(s.mu);
    // Repeated: a stop() that lands before the worker has connected finds no
    // request in flight and does nothing.
    while (!s.done) {
      lk.unlock();
      cli.stop();
      lk.lock();
      s.cv.wait_for(lk, std::chrono::milliseconds(50), [&] { return s.done; });
    }
    lk.unlock();
    worker.join();
  }
};

}  // namespace

Result<void> Engine::follow_events(const std::string& filters_json,
                                   std::function<bool(const json&)> on_event,
                                   std::function<bool()> keep_going) const {
  std::string path = "/v" + version_ + "/events";
  if (!filters_json.empty()) path += "?filters=" + url_encode(filters_json);
  if (auto ok = check_socket_path(socket_); !ok) return ok;
  EventStream s;
  auto made = client(socket_, std::chrono::duration_cast<std::chrono::seconds>(kEventReadTimeout));
  if (!made) return std::unexpected(made.error());
  http::UnixClient& cli = **made;
  StreamGuard guard{s, cli, {}};
  try {
    guard.worker = std::thread([&s, &cli, this, path] { run_stream(s, cli, socket_, path); });
  } catch (const std::system_error& e) {
    return fail("start the event stream thread", e.code().value());
  }
  for (;;) {
    std::deque<std::string> batch;
    bool done;
    {
      std::unique_lock lk(s.mu);
      s.cv.wait_for(lk, kPollPeriod, [&] { return !s.lines.empty() || s.done; });
      batch.swap(s.lines);
      done = s.done;
    }
    for (const auto& line : batch) {
      auto event = json::parse(line, nullptr, false);
      if (event.is_discarded())
        return fail("dockerd: event stream: a line is not JSON: " + line.substr(0, 120));
      if (!on_event(event)) return {};
    }
    // Only after the queue is drained: the worker queues every line before done.
    if (done) return std::unexpected(s.error.value_or(Error{0, "dockerd ended the event stream"}));
    if (keep_going && !keep_going()) return {};
  }
}

}  // namespace moat::docker
