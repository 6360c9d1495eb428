#include "common/listener_wake.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "common/net.h"

namespace mxr {

void CloseWhileKnocking(const std::string& address, const std::function<void()>& close) {
  std::atomic<bool> closed{false};
  std::thread knock([&closed, address] {
    auto addr = ParseHostPort(address);
    if (!addr.ok()) return;
    std::string host = addr->address;
    if (host == "0.0.0.0") host = "127.0.0.1";  // a wildcard listener: knock on loopback
    if (host == "::") host = "::1";
    sockaddr_storage ss;
    auto len = MakeSockaddr(host, addr->port, &ss);
    if (!len.ok()) return;
    for (int i = 0; i < 400 && !closed.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) return;
      (void)connect(fd, reinterpret_cast<const sockaddr*>(&ss), *len);
      ::close(fd);
    }
  });
  close();
  closed.store(true);
  knock.join();
}

}  // namespace mxr
