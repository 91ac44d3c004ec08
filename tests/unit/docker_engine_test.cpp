// Unit tests for docker/engine.h and docker/veth.h.
//
// Without root: the line splitter, version choice, encoding, MAC parsing, and
// the HTTP client against a fake dockerd on a unix socket of the test's own
// (requests, 404s, a chunked event stream, stopping an idle stream).
//
// DockerEngineLive*: against a real dockerd, only when MOAT_DOCKER_SOCK names
// its socket (tests/e2e/test_docker_engine.sh sets it and the MOAT_DK_*
// variables, and runs these inside dockerd's network and mount namespaces).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "docker/engine.h"
#include "dataplane/veth.h"
#include "util/fd.h"

namespace moat::docker {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::vector<std::string> split_all(LineSplitter& s, const std::vector<std::string>& chunks) {
  std::vector<std::string> lines;
  for (const auto& c : chunks)
    EXPECT_TRUE(s.feed(c, [&](std::string_view l) {
      lines.emplace_back(l);
      return true;
    }));
  return lines;
}

TEST(DockerLineSplitter, JoinsLinesSplitAcrossChunks) {
  LineSplitter s;
  auto lines = split_all(s, {"{\"a\":", "1}\n{\"b\"", ":2}\n"});
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
  EXPECT_EQ(s.pending(), 0u);
}

TEST(DockerLineSplitter, SeveralLinesInOneChunkAndAPartialTail) {
  LineSplitter s;
  auto lines = split_all(s, {"one\ntwo\r\n\nthree\nfou"});
  EXPECT_EQ(lines, (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(s.pending(), 3u);
  lines = split_all(s, {"r\n"});
  EXPECT_EQ(lines, (std::vector<std::string>{"four"}));
}

TEST(DockerLineSplitter, ByteByByte) {
  LineSplitter s;
  std::string text = "{\"x\":1}\n{\"y\":2}\n";
  std::vector<std::string> chunks;
  for (char c : text) chunks.emplace_back(1, c);
  EXPECT_EQ(split_all(s, chunks), (std::vector<std::string>{"{\"x\":1}", "{\"y\":2}"}));
}

TEST(DockerLineSplitter, StopsWhenTheCallbackSaysSoOrALineIsTooLong) {
  LineSplitter s;
  int seen = 0;
  EXPECT_FALSE(s.feed("a\nb\nc\n", [&](std::string_view) { return ++seen < 2; }));
  EXPECT_EQ(seen, 2);
  LineSplitter big;
  std::string chunk(LineSplitter::kMaxLine + 1, 'x');
  EXPECT_FALSE(big.feed(chunk, [](std::string_view) { return true; }));
}

TEST(DockerApiVersion, CapsAndRefuses) {
  EXPECT_EQ(choose_api_version(json{{"ApiVersion", "1.41"}, {"MinAPIVersion", "1.12"}}).value(),
            "1.41");
  EXPECT_EQ(choose_api_version(json{{"ApiVersion", "1.44"}}).value(), "1.44");
  EXPECT_EQ(choose_api_version(json{{"ApiVersion", "1.50"}, {"MinAPIVersion", "1.24"}}).value(),
            "1.47");
  auto old = choose_api_version(json{{"ApiVersion", "1.40"}});
  ASSERT_FALSE(old);
  EXPECT_NE(old.error().message().find("1.41 or newer"), std::string::npos);
  EXPECT_FALSE(choose_api_version(json{{"ApiVersion", "2.0"}}));
  EXPECT_FALSE(choose_api_version(json{{"Version", "20.10"}}));
  EXPECT_FALSE(choose_api_version(json{{"ApiVersion", "1.60"}, {"MinAPIVersion", "1.50"}}));
}

TEST(DockerUrl, EncodesAllButUnreserved) {
  EXPECT_EQ(url_encode("abc-1_2.3~"), "abc-1_2.3~");
  EXPECT_EQ(url_encode("{\"type\":[\"container\"]}"), "%7B%22type%22%3A%5B%22container%22%5D%7D");
  EXPECT_EQ(url_encode("/x y"), "%2Fx%20y");
}

TEST(DockerMac, Parses) {
  auto m = parse_mac("02:42:AC:12:00:0f");
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, (Mac{0x02, 0x42, 0xac, 0x12, 0x00, 0x0f}));
  EXPECT_FALSE(parse_mac(""));
  EXPECT_FALSE(parse_mac("02:42:ac:12:00"));
  EXPECT_FALSE(parse_mac("02-42-ac-12-00-0f"));
  EXPECT_FALSE(parse_mac("02:42:ac:12:00:0g"));
}

TEST(DockerVeth, ClearErrorsWithoutRoot) {
  auto e = host_veth(-1, "02:42:ac:12:00:02");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("not a process id"), std::string::npos);
  e = host_veth(0x3ffffff, "02:42:ac:12:00:02");  // above pid_max
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("is gone"), std::string::npos) << e.error().message();
  e = host_veth_in("/proc/self/exe", "02:42:ac:12:00:02");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("not a network namespace"), std::string::npos);
  e = host_veth_in("/proc/self/ns/net", "nonsense");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("not a MAC address"), std::string::npos);
}

TEST(DockerEngine, MissingSocketIsAClearError) {
  auto e = Engine::connect("/nonexistent/moat-test/docker.sock");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().err, ENOENT);
  EXPECT_NE(e.error().message().find("/nonexistent/moat-test/docker.sock"), std::string::npos);
  EXPECT_FALSE(Engine::connect(""));
  EXPECT_FALSE(Engine::connect("/" + std::string(200, 'x')));
}

// --- a fake dockerd --------------------------------------------------------

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string http_reply(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string chunk(const std::string& data) {
  char len[16];
  std::snprintf(len, sizeof(len), "%zx\r\n", data.size());
  return len + data + "\r\n";
}

constexpr const char* kChunkedHead =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
constexpr const char* kVersion =
    R"({"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"})";

// Answers each connection with `handler(fd, request)`, one at a time, on a
// thread of its own; `stopping()` tells a handler that holds a stream open
// to let go.
class FakeDockerd {
 public:
  using Handler = std::function<void(int, const std::string&)>;

  explicit FakeDockerd(Handler handler) : handler_(std::move(handler)) {
    char dir[] = "/tmp/moat-fakedk.XXXXXX";
    EXPECT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/docker.sock";
    listen_ = Fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof(a.sun_path) - 1);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(listen_.get(), 8), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDockerd() {
    stop_ = true;
    thread_.join();
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }
  bool stopping() const { return stop_; }
  std::vector<std::string> requests() {
    std::lock_guard lk(mu_);
    return requests_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listen_.get(), POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      Fd conn(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.ok()) continue;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(conn.get(), buf, sizeof(buf), 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      {
        std::lock_guard lk(mu_);
        requests_.push_back(req);
      }
      handler_(conn.get(), req);
    }
  }

  Handler handler_;
  std::string dir_, path_;
  Fd listen_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> requests_;
};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

void answer_plain(int fd, const std::string& req) {
  if (starts_with(req, "GET /version "))
    write_all(fd, http_reply(200, kVersion));
  else if (starts_with(req, "GET /v1.41/containers/json "))
    write_all(fd, http_reply(200, R"([{"Id":"c1"}])"));
  else
    write_all(fd, http_reply(404, R"({"message":"No such container: nope"})"));
}

TEST(DockerEngine, NegotiatesSendsHostDockerAndReportsDockersMessage) {
  FakeDockerd d(answer_plain);
  auto e = Engine::connect(d.path());
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->api_version(), "1.41");
  auto list = e->containers();
  ASSERT_TRUE(list) << list.error().message();
  EXPECT_EQ((*list)[0]["Id"], "c1");
  auto missing = e->inspect_container("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message(),
            "dockerd: GET /v1.41/containers/nope/json: 404 No such container: nope");
  auto raw = e->get_raw("/containers/nope/json");
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->status, 404);
  auto reqs = d.requests();
  ASSERT_EQ(reqs.size(), 4u);
  for (const auto& r : reqs) EXPECT_NE(r.find("\r\nHost: docker\r\n"), std::string::npos) << r;
}

// Holds a stream open until the client goes away or the server stops.
void hold_open(int fd, const FakeDockerd& d) {
  while (!d.stopping()) {
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 20) > 0) return;
  }
}

TEST(DockerEngine, FollowsEventsSplitAcrossChunksAndStopsWhenIdle) {
  FakeDockerd* self = nullptr;
  FakeDockerd d([&](int fd, const std::string& req) {
    if (!starts_with(req, "GET /v1.41/events")) return answer_plain(fd, req);
    write_all(fd, kChunkedHead);
    write_all(fd, chunk("{\"status\":\"start\",\"id\":\"a\"}\n{\"status\":\"di"));
    write_all(fd, chunk("e\",\"id\":\"a\"}\n"));
    hold_open(fd, *self);
  });
  self = &d;
  auto e = Engine::connect(d.path());
  ASSERT_TRUE(e);
  std::vector<std::string> seen;
  auto t0 = Clock::now();
  auto r = e->follow_events(R"({"type":["container"]})",
                            [&](const json& ev) {
                              seen.push_back(ev["status"].get<std::string>());
                              return true;
                            },
                            [&] { return Clock::now() - t0 < std::chrono::milliseconds(600); });
  auto took = Clock::now() - t0;
  EXPECT_TRUE(r) << r.error().message();
  EXPECT_EQ(seen, (std::vector<std::string>{"start", "die"}));
  EXPECT_LT(took, std::chrono::milliseconds(1500));  // stopped while idle, in ~200 ms steps
  auto reqs = d.requests();
  EXPECT_NE(reqs.back().find("filters=%7B%22type%22%3A%5B%22container%22%5D%7D"),
            std::string::npos);
}

TEST(DockerEngine, EventStreamEndIsAnErrorAndOnEventFalseStops) {
  FakeDockerd d([&](int fd, const std::string& req) {
    if (!starts_with(req, "GET /v1.41/events")) return answer_plain(fd, req);
    write_all(fd, kChunkedHead);
    write_all(fd, chunk("{\"status\":\"start\"}\n{\"status\":\"stop\"}\n"));
    write_all(fd, "0\r\n\r\n");
  });
  auto e = Engine::connect(d.path());
  ASSERT_TRUE(e);
  int n = 0;
  auto ended = e->follow_events(
      "", [&](const json&) { return ++n, true; }, [] { return true; });
  ASSERT_FALSE(ended);
  EXPECT_EQ(n, 2);
  EXPECT_NE(ended.error().message().find("ended"), std::string::npos) << ended.error().message();
  n = 0;
  auto stopped = e->follow_events(
      "", [&](const json&) { return ++n < 1; }, [] { return true; });
  EXPECT_TRUE(stopped);
  EXPECT_EQ(n, 1);
}

TEST(DockerEngine, EventStreamErrorStatusCarriesTheMessage) {
  FakeDockerd d([&](int fd, const std::string& req) {
    if (!starts_with(req, "GET /v1.41/events")) return answer_plain(fd, req);
    write_all(fd, http_reply(400, R"({"message":"invalid filter 'bogus'"})"));
  });
  auto e = Engine::connect(d.path());
  ASSERT_TRUE(e);
  auto r =
      e->follow_events(R"({"bogus":["x"]})", [](const json&) { return true; }, [] { return true; });
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("400 invalid filter 'bogus'"), std::string::npos)
      << r.error().message();
}

// --- against a real dockerd (tests/e2e/test_docker_engine.sh) ---------------

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

#define REQUIRE_DOCKER()                                                         \
  if (env("MOAT_DOCKER_SOCK").empty()) GTEST_SKIP() << "MOAT_DOCKER_SOCK unset"; \
  auto engine = Engine::connect(env("MOAT_DOCKER_SOCK"));                        \
  ASSERT_TRUE(engine) << engine.error().message()

ino_t netns_inode() {
  struct stat st {};
  EXPECT_EQ(::stat("/proc/self/ns/net", &st), 0);
  return st.st_ino;
}

TEST(DockerEngineLive, NegotiatesListsAndInspects) {
  REQUIRE_DOCKER();
  EXPECT_EQ(engine->api_version(), env("MOAT_DK_API"));
  auto nets = engine->networks();
  ASSERT_TRUE(nets) << nets.error().message();
  bool found = false;
  for (const auto& n : *nets) found |= n.value("Name", "") == env("MOAT_DK_NET");
  EXPECT_TRUE(found) << env("MOAT_DK_NET") << " not in " << nets->dump();
  auto net = engine->inspect_network(env("MOAT_DK_NET"));
  ASSERT_TRUE(net) << net.error().message();
  EXPECT_EQ((*net)["Name"], env("MOAT_DK_NET"));
  auto list = engine->containers();
  ASSERT_TRUE(list) << list.error().message();
  EXPECT_EQ(list->size(), 2u);
  auto c = engine->inspect_container(env("MOAT_DK_C1"));
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(std::to_string((*c)["State"]["Pid"].get<int>()), env("MOAT_DK_C1_PID"));
  EXPECT_EQ((*c)["NetworkSettings"]["Networks"][env("MOAT_DK_NET")]["MacAddress"],
            env("MOAT_DK_C1_MAC"));
}

TEST(DockerEngineLive, UnknownContainerIsAClear404) {
  REQUIRE_DOCKER();
  auto c = engine->inspect_container("moat-no-such-container");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("404 No such container: moat-no-such-container"),
            std::string::npos)
      << c.error().message();
}

TEST(DockerEngineLive, HostVethMatchesTheHarnessAndKeepsOurNetns) {
  REQUIRE_DOCKER();
  ino_t before = netns_inode();
  for (const char* c : {"MOAT_DK_C1", "MOAT_DK_C2"}) {
    std::string k(c);
    pid_t pid = std::atoi(env((k + "_PID").c_str()).c_str());
    auto v = host_veth(pid, env((k + "_MAC").c_str()));
    ASSERT_TRUE(v) << k << ": " << v.error().message();
    EXPECT_EQ(*v, env((k + "_VETH").c_str()));
    auto in = host_veth_in(env((k + "_SANDBOX").c_str()), env((k + "_MAC").c_str()));
    ASSERT_TRUE(in) << k << ": " << in.error().message();
    EXPECT_EQ(*in, *v);
  }
  pid_t pid = std::atoi(env("MOAT_DK_C1_PID").c_str());
  auto wrong = host_veth(pid, "02:00:00:00:00:01");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message().find("no interface has MAC 02:00:00:00:00:01"),
            std::string::npos);
  auto lo = host_veth(pid, "00:00:00:00:00:00");  // lo: matches, but no veth
  ASSERT_FALSE(lo);
  EXPECT_NE(lo.error().message().find("is not a veth"), std::string::npos) << lo.error().message();
  EXPECT_EQ(netns_inode(), before);
}

TEST(DockerEngineLiveEvents, StartDieDestroyThenStopWhenIdle) {
  REQUIRE_DOCKER();
  std::string name = env("MOAT_DK_EVENT_NAME");
  std::mutex mu;
  std::vector<std::string> actions;
  std::atomic<bool> running{true};
  Result<void> outcome;
  std::thread follower([&] {
    outcome = engine->follow_events(
        json{{"type", {"container"}}, {"container", {name}}}.dump(),
        [&](const json& ev) {
          std::lock_guard lk(mu);
          actions.push_back(ev.value("Action", ""));
          return true;
        },
        [&] { return running.load(); });
  });
  // The stream is up long before `docker run` (1.5 s here) emits anything.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(std::system(env("MOAT_DK_EVENT_CMD").c_str()), 0);
  auto deadline = Clock::now() + std::chrono::seconds(10);
  auto has = [&](const std::string& a) {
    std::lock_guard lk(mu);
    return std::find(actions.begin(), actions.end(), a) != actions.end();
  };
  while (Clock::now() < deadline && !has("destroy"))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto t0 = Clock::now();
  running = false;
  follower.join();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1000));
  EXPECT_TRUE(outcome) << outcome.error().message();
  std::lock_guard lk(mu);
  std::string all;
  for (const auto& a : actions) all += a + " ";
  auto pos = [&](const std::string& a) { return std::find(actions.begin(), actions.end(), a); };
  ASSERT_NE(pos("start"), actions.end()) << all;
  ASSERT_NE(pos("die"), actions.end()) << all;
  ASSERT_NE(pos("destroy"), actions.end()) << all;
  EXPECT_LT(pos("start"), pos("die")) << all;
  EXPECT_LT(pos("die"), pos("destroy")) << all;
}

}  // namespace
}  // namespace moat::docker
