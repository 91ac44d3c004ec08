#include "observe/exporter.h"

#include <httplib.h>

#include <cerrno>
#include <thread>

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
  httplib::Server svr;
  std::thread server;

  void metrics(httplib::Response& res) {
    try {
      auto snap = scrape();
      if (!snap) {
        res.status = 503;
        res.set_content("moat: " + snap.error().message() + "\n", "text/plain; charset=utf-8");
        return;
      }
      res.set_content(render_prometheus(*snap), "text/plain; version=0.0.4; charset=utf-8");
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(std::string("moat: ") + e.what() + "\n", "text/plain; charset=utf-8");
    }
  }
};

Exporter::Exporter(std::string instance, Scrape scrape) : impl_(std::make_unique<Impl>()) {
  impl_->instance = std::move(instance);
  impl_->scrape = std::move(scrape);
  auto& svr = impl_->svr;
  // Not httplib's default SO_REUSEPORT: a second exporter on the same port
  // must fail, not silently share the scrapes.
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  Impl* impl = impl_.get();
  svr.Get("/metrics",
          [impl](const httplib::Request&, httplib::Response& res) { impl->metrics(res); });
  svr.Get("/", [impl](const httplib::Request&, httplib::Response& res) {
    res.set_content("moat metrics exporter for instance " + impl->instance + ": see /metrics\n",
                    "text/plain; charset=utf-8");
  });
}

Exporter::~Exporter() { stop(); }

Result<void> Exporter::bind(const std::string& host, int port) {
  if (!impl_->svr.bind_to_port(host, port)) {
    int err = errno;
    return fail("bind to " + host + ":" + std::to_string(port), err);
  }
  return {};
}

void Exporter::serve(std::function<void()> on_failure) {
  impl_->server = std::thread([this, on_failure = std::move(on_failure)] {
    if (!impl_->svr.listen_after_bind()) on_failure();
  });
}

void Exporter::stop() {
  if (!impl_->server.joinable()) return;
  impl_->svr.stop();
  impl_->server.join();
}

}  // namespace moat::obs
