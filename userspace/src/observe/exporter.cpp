#include "observe/exporter.h"

#include <cerrno>
#include <thread>

#include "http/transport.h"

namespace moat::obs {

std::optional<std::pair<std::string, int>> parse_listen_addr(const std::string& text) {
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5) return std::nullopt;
  for (char c : port)
    if (c < '0' || c > '9') return std::nullopt;
  int p = std::stoi(port);
  if (p < 1 || p > 65535) return std::nullopt;
  return std::pair{host, p};
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  auto ip = Ipv4::parse(host);
  return ip && (ip->value >> 24) == 127;
}

struct Exporter::Impl {
  std::string instance;
  Scrape scrape;
  std::unique_ptr<http::Server> svr;  // made by bind(): loading the HTTP module can fail
  std::thread server;

  http::Page metrics() {
    try {
      auto snap = scrape();
      if (!snap)
        return {503, "moat: " + snap.error().message() + "\n", "text/plain; charset=utf-8"};
      return {200, render_prometheus(*snap), "text/plain; version=0.0.4; charset=utf-8"};
    } catch (const std::exception& e) {
      return {500, std::string("moat: ") + e.what() + "\n", "text/plain; charset=utf-8"};
    }
  }
};

Exporter::Exporter(std::string instance, Scrape scrape) : impl_(std::make_unique<Impl>()) {
  impl_->instance = std::move(instance);
  impl_->scrape = std::move(scrape);
}

Exporter::~Exporter() { stop(); }

Result<void> Exporter::bind(const std::string& host, int port) {
  auto t = http::transport();
  if (!t) return std::unexpected(t.error());
  auto svr = (*t)->server();
  Impl* impl = impl_.get();
  svr->route("/metrics", [impl] { return impl->metrics(); });
  svr->route("/", [impl] {
    return http::Page{200,
                      "moat metrics exporter for instance " + impl->instance + ": see /metrics\n",
                      "text/plain; charset=utf-8"};
  });
  if (!svr->bind(host, port)) {
    int err = errno;
    return fail("bind to " + host + ":" + std::to_string(port), err);
  }
  impl_->svr = std::move(svr);
  return {};
}

void Exporter::serve(std::function<void()> on_failure) {
  if (!impl_->svr) {
    on_failure();
    return;
  }
  impl_->server = std::thread([this, on_failure = std::move(on_failure)] {
    if (!impl_->svr->listen()) on_failure();
  });
}

void Exporter::stop() {
  if (!impl_->server.joinable()) return;
  impl_->svr->stop();
  impl_->server.join();
}

}  // namespace moat::obs
