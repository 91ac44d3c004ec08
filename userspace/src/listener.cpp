#include "listener.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace moat {

Result<void> serve_forever(const std::string& reply, const std::vector<ListenPort>& ports,
                           void (*ready)()) {
  std::vector<pollfd> pfds;
  std::vector<Protocol> protos;
  for (const auto& p : ports) {
    bool tcp = p.protocol == Protocol::tcp;
    int fd = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail_errno("socket", errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(p.port);
    std::string what = to_string(p.protocol) + "/" + std::to_string(p.port);
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
      return fail_errno("bind " + what, errno);
    if (tcp && listen(fd, 128) != 0) return fail_errno("listen " + what, errno);
    pfds.push_back({fd, POLLIN, 0});
    protos.push_back(p.protocol);
  }
  if (ready) ready();
  std::string line = reply + "\n";
  char buf[2048];
  for (;;) {
    if (poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return fail_errno("poll", errno);
    }
    for (size_t i = 0; i < pfds.size(); ++i) {
      if (!(pfds[i].revents & POLLIN)) continue;
      if (protos[i] == Protocol::tcp) {
        int c = accept4(pfds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        // The reply fits any socket buffer; a client that never reads costs nothing.
        (void)!send(c, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        close(c);
      } else {
        sockaddr_storage peer{};
        socklen_t len = sizeof(peer);
        ssize_t n = recvfrom(pfds[i].fd, buf, sizeof(buf), MSG_DONTWAIT,
                             reinterpret_cast<sockaddr*>(&peer), &len);
        if (n >= 0)
          (void)!sendto(pfds[i].fd, line.data(), line.size(), MSG_DONTWAIT,
                        reinterpret_cast<sockaddr*>(&peer), len);
      }
    }
  }
}

}  // namespace moat
