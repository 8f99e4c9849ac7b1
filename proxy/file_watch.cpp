#include "proxy/file_watch.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/inotify.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <set>

namespace egressd::proxy {

namespace asio = boost::asio;

namespace {

// The directory inotify watches for `file` and the name the file has in it.
std::pair<std::string, std::string> split(const std::string& file) {
  const std::filesystem::path p(file);
  std::string dir = p.parent_path().string();
  return {dir.empty() ? std::string(".") : dir, p.filename().string()};
}

// A file's content as a hash; nullopt while it cannot be read (between the removal
// and the re-creation of an edited file, or deleted): a file that comes back with
// the old bytes is then no change.
std::optional<std::size_t> content_hash(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return std::nullopt;
  return std::hash<std::string>{}(text);
}

constexpr std::uint32_t watch_mask =
    IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_DELETE | IN_ONLYDIR;

}  // namespace

struct file_watch::impl : std::enable_shared_from_this<impl> {
  asio::io_context& io;
  std::function<void(const std::vector<std::string>&)> on_change;
  std::chrono::milliseconds quiet;
  asio::posix::stream_descriptor fd{io};
  asio::steady_timer timer{io};
  bool reading = false;
  // Watch descriptor -> the names in that directory that matter.
  std::map<int, std::set<std::string>> names;
  // File -> content hash when last looked at.
  std::map<std::string, std::optional<std::size_t>> seen;
  alignas(inotify_event) std::array<char, 8192> buf{};

  impl(asio::io_context& c, std::function<void(const std::vector<std::string>&)> f, std::chrono::milliseconds q)
      : io(c), on_change(std::move(f)), quiet(q) {}

  void read() {
    if (reading || !fd.is_open()) return;
    reading = true;
    fd.async_read_some(asio::buffer(buf), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
      self->reading = false;
      if (ec) return;  // closed by stop(), or the descriptor failed: no more events
      self->events(n);
      self->read();
    });
  }

  void events(std::size_t n) {
    bool relevant = false;
    for (std::size_t off = 0; off + sizeof(inotify_event) <= n;) {
      inotify_event ev;
      std::memcpy(&ev, buf.data() + off, sizeof ev);
      if (ev.mask & IN_Q_OVERFLOW) relevant = true;  // events were lost: look anyway
      if (ev.len > 0 && off + sizeof ev + ev.len <= n) {
        const std::string name(buf.data() + off + sizeof ev);
        if (const auto it = names.find(ev.wd); it != names.end() && it->second.contains(name)) relevant = true;
      }
      off += sizeof ev + ev.len;
    }
    if (!relevant) return;
    // Restarting the timer on every event: a swap (create, rename, delete) or an
    // editor's save (truncate, write, close) is read once, after it has settled.
    timer.expires_after(quiet);
    timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->settled();
    });
  }

  void settled() {
    std::vector<std::string> changed;
    for (auto& [file, hash] : seen) {
      auto now = content_hash(file);
      if (now != hash) {
        hash = now;
        // A file that cannot be read now is half-written or gone: the reload (which
        // reports it) runs when it is there again with different content, or now
        // when its removal is the change.
        changed.push_back(file);
      }
    }
    if (!changed.empty()) on_change(changed);
  }

  void remove_watches() {
    for (const auto& [wd, _] : names) ::inotify_rm_watch(fd.native_handle(), wd);
    names.clear();
  }
};

file_watch::file_watch(asio::io_context& io, std::function<void(const std::vector<std::string>&)> on_change,
                       std::chrono::milliseconds quiet)
    : impl_(std::make_shared<impl>(io, std::move(on_change), quiet)) {}

file_watch::~file_watch() { stop(); }

std::string file_watch::watch(const std::vector<std::string>& files) {
  auto& s = *impl_;
  if (!s.fd.is_open()) {
    const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return std::string("inotify_init1: ") + std::strerror(errno);
    s.fd.assign(fd);
  }
  s.timer.cancel();  // a reload just read the files: what the timer waited for is seen
  s.remove_watches();
  s.seen.clear();
  std::string problems;
  std::map<std::string, int> dirs;
  for (const auto& file : files) {
    if (file.empty()) continue;
    const auto [dir, name] = split(file);
    auto it = dirs.find(dir);
    if (it == dirs.end()) {
      const int wd = ::inotify_add_watch(s.fd.native_handle(), dir.c_str(), watch_mask);
      if (wd < 0) {
        problems += (problems.empty() ? "" : "; ") + dir + ": " + std::strerror(errno);
        continue;
      }
      it = dirs.emplace(dir, wd).first;
    }
    // inotify gives one descriptor per directory (two paths naming it share it).
    auto& in_dir = s.names[it->second];
    in_dir.insert(name);
    in_dir.insert("..data");  // Kubernetes: the symlink swapped on a ConfigMap update
    s.seen[file] = content_hash(file);
  }
  s.read();
  return problems;
}

void file_watch::accept(const std::string& file) {
  auto& s = *impl_;
  if (auto it = s.seen.find(file); it != s.seen.end()) it->second = content_hash(file);
}

void file_watch::stop() {
  auto& s = *impl_;
  s.timer.cancel();
  if (!s.fd.is_open()) return;
  s.remove_watches();
  boost::system::error_code ignored;
  s.fd.close(ignored);
  s.seen.clear();
}

}  // namespace egressd::proxy
