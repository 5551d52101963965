// Back-pressure bookkeeping of one session (see backlog.hpp).
#include "actors/session/backlog.hpp"

#include <algorithm>

namespace tern::actors::flow {

watermarks marks_for(std::uint32_t high_watermark, std::uint32_t max_queued) {
  watermarks m;
  if (high_watermark == 0) {
    return m;
  }
  std::int64_t high = high_watermark;
  if (max_queued != 0) {
    high = std::min<std::int64_t>(high, max_queued);
  }
  m.high = high;
  m.low = high / 2;
  return m;
}

namespace {

std::atomic<std::int64_t> budget_high{0};

}  // namespace

const backlog_ptr& budget() {
  // Never destroyed: deliveries may be released while the process exits.
  static const auto* b = new backlog_ptr(std::make_shared<backlog>(0));
  return *b;
}

watermarks budget_marks() {
  watermarks m;
  m.high = budget_high.load(std::memory_order_relaxed);
  m.low = m.high - m.high / 8;
  return m;
}

void set_budget(std::int64_t max_bytes) {
  budget_high.store(std::max<std::int64_t>(0, max_bytes));
  budget()->set_low(budget_marks().low);
}

charge::charge(std::uint32_t bytes) {
  if (budget_high.load(std::memory_order_relaxed) != 0) {
    n_ = bytes;
    budget()->add(bytes);
  }
}

void backlog::wait(const std::shared_ptr<waiter>& w) {
  {
    std::lock_guard lock{mtx_};
    bool known = false;
    // Drop waiters that are gone; register `w` once however often it pauses on us.
    waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(),
                                  [&](const std::weak_ptr<waiter>& x) {
                                    auto p = x.lock();
                                    if (p == w) {
                                      known = true;
                                    }
                                    return !p;
                                  }),
                   waiters_.end());
    if (!known) {
      waiters_.push_back(w);
    }
    has_waiters_.store(true);
  }
  // The session may have drained (or ended) between the caller's check and the registration:
  // it then saw no waiter, so look again here (both sides use sequentially consistent order).
  if (is_drained()) {
    wake_all();
  }
}

void backlog::update(std::uint32_t delivered, std::size_t queued) {
  auto q = static_cast<std::int64_t>(queued);
  auto delta = q - reported_queued_ - static_cast<std::int64_t>(delivered);
  reported_queued_ = q;
  if (delta != 0) {
    if (delta < 0) {
      ++drains_;
    }
    change(delta);
  }
}

void backlog::change(std::int64_t delta) {
  auto n = n_.fetch_add(delta) + delta;
  if (delta < 0 && n <= low_.load(std::memory_order_relaxed) && has_waiters_.load()) {
    wake_all();
  }
}

void backlog::close() {
  closed_.store(true);
  wake_all();
}

void backlog::wake_all() {
  std::vector<std::weak_ptr<waiter>> woken;
  {
    std::lock_guard lock{mtx_};
    woken.swap(waiters_);
    has_waiters_.store(false);
  }
  for (auto& x : woken) {
    if (auto w = x.lock()) {
      w->wake();
    }
  }
}

void gate::pause_for(const std::vector<backlog_ptr>& over) {
  bool fresh = stop();
  {
    std::lock_guard lock{mtx_};
    paused_.store(true, std::memory_order_release);
    if (fresh) {
      waiting_.clear();  // left over from a pause that ended by flow.max_pause
    }
    for (auto& b : over) {
      bool known = std::any_of(waiting_.begin(), waiting_.end(),
                               [&](const std::weak_ptr<backlog>& w) { return w.lock() == b; });
      if (!known) {
        waiting_.push_back(b);
      }
    }
  }
  check();
}

void gate::wake() { check(); }

void gate::check() {
  backlog_ptr next;
  {
    std::lock_guard lock{mtx_};
    // The first backlog still to wait for, held while deciding (another thread may end it).
    auto keep = waiting_.begin();
    for (auto& w : waiting_) {
      auto b = w.lock();
      if (b && !b->is_drained()) {
        if (!next) {
          next = b;
        }
        *keep++ = w;
      }
    }
    waiting_.erase(keep, waiting_.end());
    if (!next) {
      // Under the lock: a concurrent pause_for either saw this release or comes after it.
      paused_.store(false, std::memory_order_release);
      go();
      return;
    }
  }
  next->wait(shared_from_this());  // wakes us (here again) once it has drained
}

std::size_t gate::waiting_count() const {
  std::lock_guard lock{mtx_};
  return waiting_.size();
}

std::size_t backlog::waiter_count() const {
  std::lock_guard lock{mtx_};
  return waiters_.size();
}

}  // namespace tern::actors::flow
