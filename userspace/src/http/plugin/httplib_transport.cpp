// httplib_transport.cpp - moat-http.so: http/transport.h over cpp-httplib.
// The only file that includes <httplib.h>; built as a module of its own
// (userspace/CMakeLists.txt), never linked into the moat binary.
#include <httplib.h>
#include <sys/socket.h>

#include "http/transport.h"

namespace {

using moat::http::Failure;
using moat::http::Page;
using moat::http::UnixClientOptions;

class HttplibUnixClient final : public moat::http::UnixClient {
 public:
  // (host, port), not the one-string constructor: that one runs the path
  // through a URL regex, and a path with ':' would lose its tail as a port.
  explicit HttplibUnixClient(const UnixClientOptions& o) : cli_(o.socket, 80) {
    cli_.set_address_family(AF_UNIX);
    // httplib would send the socket path as Host, which dockerd answers with 400.
    cli_.set_default_headers({{"Host", o.host_header}});
    cli_.set_connection_timeout(o.connect_timeout);
    cli_.set_read_timeout(o.read_timeout);
    cli_.set_keep_alive(false);
  }

  std::optional<Failure> get(const std::string& path, const std::function<void(int)>& on_status,
                             const std::function<bool(const char*, size_t)>& on_data) override {
    auto res = cli_.Get(
        path,
        [&](const httplib::Response& r) {
          on_status(r.status);
          return true;
        },
        [&](const char* data, size_t n) { return on_data(data, n); });
    if (res) return std::nullopt;
    return Failure{res.error() == httplib::Error::Connection, httplib::to_string(res.error())};
  }

  // httplib's stop() shuts the socket down under its own lock, which wakes
  // a read blocked in another thread at once.
  void stop() override { cli_.stop(); }

 private:
  httplib::Client cli_;
};

class HttplibServer final : public moat::http::Server {
 public:
  HttplibServer() {
    svr_.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
  }

  void route(const std::string& path, std::function<Page()> handler) override {
    svr_.Get(path, [handler = std::move(handler)](const httplib::Request&, httplib::Response& res) {
      Page page = handler();
      res.status = page.status;
      res.set_content(page.body, page.content_type);
    });
  }

  bool bind(const std::string& host, int port) override { return svr_.bind_to_port(host, port); }
  bool listen() override { return svr_.listen_after_bind(); }
  void stop() override { svr_.stop(); }

 private:
  httplib::Server svr_;
};

std::unique_ptr<moat::http::UnixClient> make_client(const UnixClientOptions& o) {
  return std::make_unique<HttplibUnixClient>(o);
}

std::unique_ptr<moat::http::Server> make_server() { return std::make_unique<HttplibServer>(); }

const moat::http::Transport kTransport{moat::http::kTransportAbi, make_client, make_server};

}  // namespace

extern "C" __attribute__((visibility("default"))) const moat::http::Transport*
moat_http_transport() {
  return &kTransport;
}
