#pragma once
// Counts that every worker updates in a cache line of its own and a scrape sums
// (README "Performance", "Many cores"). A counter shared by all workers makes its cache
// line travel between cores on every update; one line per worker never travels except
// to the scraper.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace egressd::proxy {

/// Slot 0 serves every thread that is not a worker (control, admin, hook coordinator);
/// worker i uses slot 1 + i (wrapping after counter_slots - 1 workers, which stays
/// correct: the slots are atomics, only less private).
inline constexpr std::size_t counter_slots = 64;

namespace detail {
inline thread_local std::size_t this_thread_counter_slot = 0;
}

/// Called once by a worker's thread before it runs its loop.
inline void set_counter_slot(std::size_t worker_index) noexcept {
  detail::this_thread_counter_slot = 1 + worker_index % (counter_slots - 1);
}
inline std::size_t counter_slot() noexcept { return detail::this_thread_counter_slot; }

/// One cache line.
template <class T>
struct alignas(64) cache_line {
  T value{};
};

/// A gauge (or counter) kept per worker and summed when read.
class sharded_count {
 public:
  void add(std::int64_t delta) noexcept { slots_[counter_slot()].value.fetch_add(delta, std::memory_order_relaxed); }
  std::int64_t sum() const noexcept {
    std::int64_t total = 0;
    for (const auto& s : slots_) total += s.value.load(std::memory_order_relaxed);
    return total;
  }

 private:
  std::array<cache_line<std::atomic<std::int64_t>>, counter_slots> slots_{};
};

}  // namespace egressd::proxy
