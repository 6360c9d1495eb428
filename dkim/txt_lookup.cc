#include "dkim/txt_lookup.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <poll.h>

#include <chrono>

#include "common/strings.h"

namespace mxr::dkim {
namespace {

struct Query {
  bool done = false;
  int status = ARES_SUCCESS;
  std::vector<std::string> records;
};

void OnTxt(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  auto* q = static_cast<Query*>(arg);
  q->done = true;
  q->status = status;
  if (status != ARES_SUCCESS) return;
  ares_txt_ext* txt = nullptr;
  int r = ares_parse_txt_reply_ext(abuf, alen, &txt);
  if (r != ARES_SUCCESS) {
    q->status = r;
    return;
  }
  for (ares_txt_ext* t = txt; t != nullptr; t = t->next) {
    if (t->record_start || q->records.empty()) q->records.emplace_back();
    q->records.back().append(reinterpret_cast<const char*>(t->txt), t->length);
  }
  ares_free_data(txt);
}

}  // namespace

absl::StatusOr<std::vector<std::string>> LookupTxt(const std::string& name, const std::string& resolver,
                                                   int timeout_ms) {
  int r = ares_library_init(ARES_LIB_INIT_ALL);
  if (r != ARES_SUCCESS) return absl::InternalError(Cat("ares_library_init: ", ares_strerror(r)));
  ares_options o{};
  o.timeout = timeout_ms / 2 > 0 ? timeout_ms / 2 : 1;
  o.tries = 2;
  o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
  ares_channel ch = nullptr;
  r = ares_init_options(&ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
  if (r != ARES_SUCCESS) return absl::InternalError(Cat("ares_init_options: ", ares_strerror(r)));
  if (!resolver.empty()) {
    r = ares_set_servers_ports_csv(ch, resolver.c_str());
    if (r != ARES_SUCCESS) {
      ares_destroy(ch);
      return absl::InvalidArgumentError(Cat("resolver '", resolver, "': ", ares_strerror(r)));
    }
  }
  Query q;
  ares_query(ch, name.c_str(), ns_c_in, ns_t_txt, &OnTxt, &q);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (int rounds = 0; !q.done && rounds < 10000; ++rounds) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    int bits = ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
    pollfd fds[ARES_GETSOCK_MAXNUM];
    nfds_t n = 0;
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
      short ev = 0;
      if (ARES_GETSOCK_READABLE(bits, i)) ev |= POLLIN;
      if (ARES_GETSOCK_WRITABLE(bits, i)) ev |= POLLOUT;
      if (ev != 0) fds[n++] = pollfd{socks[i], ev, 0};
    }
    timeval maxtv{left.count() / 1000, static_cast<suseconds_t>((left.count() % 1000) * 1000)};
    timeval tv{};
    timeval* t = ares_timeout(ch, &maxtv, &tv);
    int wait_ms = static_cast<int>(t->tv_sec * 1000 + t->tv_usec / 1000) + 1;
    int pr = poll(fds, n, wait_ms);
    if (pr <= 0) {
      ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
      continue;
    }
    for (nfds_t i = 0; i < n; ++i) {
      ares_socket_t rfd = fds[i].revents & (POLLIN | POLLERR | POLLHUP) ? fds[i].fd : ARES_SOCKET_BAD;
      ares_socket_t wfd = fds[i].revents & POLLOUT ? fds[i].fd : ARES_SOCKET_BAD;
      if (rfd != ARES_SOCKET_BAD || wfd != ARES_SOCKET_BAD) ares_process_fd(ch, rfd, wfd);
    }
  }
  bool done = q.done;
  ares_destroy(ch);  // a query still pending is answered ARES_EDESTRUCTION (q is still alive)
  if (!done) return absl::UnavailableError(Cat("no answer for ", name, " within ", timeout_ms, " ms"));
  switch (q.status) {
    case ARES_SUCCESS:
      if (q.records.empty()) return absl::NotFoundError(Cat(name, " has no TXT record"));
      return q.records;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
      return absl::NotFoundError(Cat(name, " has no TXT record (", ares_strerror(q.status), ")"));
    default:
      return absl::UnavailableError(Cat("TXT lookup of ", name, " failed: ", ares_strerror(q.status)));
  }
}

}  // namespace mxr::dkim
