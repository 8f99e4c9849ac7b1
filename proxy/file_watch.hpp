#pragma once
// Watching the configuration's files for live reload (README "Reload and shutdown").
// inotify(7) watches the DIRECTORY of each file, not the file: an editor or a
// `mv new egressd.yaml` replaces the inode, and Kubernetes updates a mounted ConfigMap
// by swapping the directory's `..data` symlink (the file itself is a symlink through
// it), neither of which a watch on the file's inode would see. Events naming a watched
// file or `..data` restart a quiet timer; when it fires, the files are read again and
// `on_change` runs only when a file's content differs from what was last seen, so a
// touch, a rewrite with the same bytes or the several events of one swap give at most
// one reload. Runs on the control io_context (the main thread).

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace egressd::proxy {

class file_watch {
 public:
  /// `on_change` gets the files whose content changed (on `io`'s thread).
  file_watch(boost::asio::io_context& io, std::function<void(const std::vector<std::string>&)> on_change,
             std::chrono::milliseconds quiet = std::chrono::milliseconds(200));
  ~file_watch();
  file_watch(const file_watch&) = delete;
  file_watch& operator=(const file_watch&) = delete;

  /// Watches exactly `files` from now on (empty: nothing), their current content
  /// being the reference. Returns a problem as text (no inotify, a directory that
  /// cannot be watched); the other files are watched all the same.
  std::string watch(const std::vector<std::string>& files);
  /// Takes `file`'s current content as the reference: egressd wrote it itself (an
  /// `always` answer in decisions_file), so the events of that write reload nothing.
  /// No-op for a file not watched.
  void accept(const std::string& file);
  /// Stops watching (idempotent).
  void stop();

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace egressd::proxy
