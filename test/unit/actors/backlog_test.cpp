// Back-pressure bookkeeping: counting, watermarks, waking paused publishers, session end.
#include "actors/session/backlog.hpp"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

using namespace tern::actors::flow;

namespace {

struct counting_waiter : waiter {
  std::atomic<int> wakes{0};
  void wake() override { wakes.fetch_add(1); }
};

}  // namespace

TEST_CASE("marks: low is half of high, high at most the queue", "[backlog]") {
  auto m = marks_for(1000, 1'000'000);
  CHECK(m.high == 1000);
  CHECK(m.low == 500);
  m = marks_for(1000, 1000);  // the shipped queue limit
  CHECK(m.high == 1000);
  CHECK(m.low == 500);
  m = marks_for(1000, 600);
  CHECK(m.high == 600);
  CHECK(m.low == 300);
  m = marks_for(1000, 0);  // unlimited queue
  CHECK(m.high == 1000);
  m = marks_for(1000, 1);
  CHECK(m.high == 1);
  CHECK(m.low == 0);
  m = marks_for(0, 1000);  // disabled
  CHECK(m.high == 0);
  backlog b(m.low);
  for (int i = 0; i < 10'000; ++i) {
    b.add();
  }
  CHECK_FALSE(b.is_over(b.size(), m));
}

TEST_CASE("backlog counts deliveries until the session processes them", "[backlog]") {
  auto m = marks_for(4, 0);  // high 4, low 2
  backlog b(m.low);
  for (int i = 1; i <= 4; ++i) {
    CHECK_FALSE(b.is_over(b.add(), m));
  }
  CHECK(b.is_over(b.add(), m));
  CHECK(b.size() == 5);
  b.update(2, 0);  // two processed, nothing queued
  CHECK(b.size() == 3);
  // Two more processed but both queued (window full): still owed to the client.
  b.update(2, 2);
  CHECK(b.size() == 3);
  // The client acknowledged: one left the queue.
  b.update(0, 1);
  CHECK(b.size() == 2);
  // The client went away: its offline queue does not count.
  b.update(0, 0);
  CHECK(b.size() == 1);
  b.update(1, 0);
  CHECK(b.size() == 0);
}

TEST_CASE("a waiter is woken once the backlog is down to the low mark", "[backlog]") {
  auto m = marks_for(4, 0);
  backlog b(m.low);
  auto w = std::make_shared<counting_waiter>();
  for (int i = 0; i < 6; ++i) {
    b.add();
  }
  b.wait(w);
  CHECK(w->wakes == 0);
  CHECK(b.waiter_count() == 1);
  b.update(3, 0);  // 3 left: above low
  CHECK(w->wakes == 0);
  b.update(1, 0);  // 2 left: at low
  CHECK(w->wakes == 1);
  CHECK(b.waiter_count() == 0);
  b.update(2, 0);  // once only
  CHECK(w->wakes == 1);
}

TEST_CASE("waiting on a drained backlog wakes at once (no lost wake-up)", "[backlog]") {
  backlog b(2);
  auto w = std::make_shared<counting_waiter>();
  b.add();
  b.wait(w);
  CHECK(w->wakes == 1);
  CHECK(b.waiter_count() == 0);
}

TEST_CASE("a waiter registers once; expired waiters are dropped", "[backlog]") {
  backlog b(1);
  for (int i = 0; i < 10; ++i) {
    b.add();
  }
  auto w = std::make_shared<counting_waiter>();
  b.wait(w);
  b.wait(w);
  CHECK(b.waiter_count() == 1);
  {
    auto gone = std::make_shared<counting_waiter>();
    b.wait(gone);
    CHECK(b.waiter_count() == 2);
  }
  auto other = std::make_shared<counting_waiter>();
  b.wait(other);
  CHECK(b.waiter_count() == 2);  // `gone` pruned
  b.update(10, 0);
  CHECK(w->wakes == 1);
  CHECK(other->wakes == 1);
}

TEST_CASE("the session's end wakes every waiter and stops further pauses", "[backlog]") {
  auto m = marks_for(2, 0);
  auto w1 = std::make_shared<counting_waiter>();
  auto w2 = std::make_shared<counting_waiter>();
  backlog_ptr kept;
  {
    backlog_owner owner;
    kept = owner.get(m.low);
    CHECK(owner.get(m.low) == kept);  // created once
    for (int i = 0; i < 5; ++i) {
      kept->add();  // never processed: the session dies with them in its mailbox
    }
    kept->wait(w1);
    kept->wait(w2);
    CHECK(w1->wakes == 0);
  }  // the session's state is destroyed
  CHECK(w1->wakes == 1);
  CHECK(w2->wakes == 1);
  CHECK(kept->is_closed());
  // A publisher still holding the old route entry is never paused by it.
  CHECK_FALSE(kept->is_over(kept->add(), m));
  auto w3 = std::make_shared<counting_waiter>();
  kept->wait(w3);
  CHECK(w3->wakes == 1);
}

TEST_CASE("an owner without a backlog ignores updates", "[backlog]") {
  backlog_owner owner;
  owner.update(1, 5);  // a session that never subscribed: nothing to count
  auto& b = owner.get(1);
  CHECK(b->size() == 0);
  owner.update(0, 3);
  CHECK(b->size() == 3);
}

namespace {

struct test_gate : gate {
  std::atomic<int> stops{0};
  std::atomic<int> goes{0};
  std::atomic<bool> stopped{false};
  bool stop() override {
    stops.fetch_add(1);
    return !stopped.exchange(true);
  }
  void go() override {
    goes.fetch_add(1);
    stopped.store(false);
  }
};

}  // namespace

TEST_CASE("a gate resumes only when every backlog it was paused for has drained", "[backlog]") {
  auto m = marks_for(4, 0);  // high 4, low 2
  auto a = std::make_shared<backlog>(m.low);
  auto b = std::make_shared<backlog>(m.low);
  for (int i = 0; i < 6; ++i) {
    a->add();
    b->add();
  }
  auto g = std::make_shared<test_gate>();
  g->pause_for({a, b});
  CHECK(g->stopped);
  CHECK(g->is_paused());
  CHECK(g->waiting_count() == 2);
  b->update(5, 0);  // b drained first: a is still behind
  CHECK(g->stopped);
  CHECK(g->is_paused());
  a->update(3, 0);  // a at 3: above low
  CHECK(g->stopped);
  a->update(1, 0);  // a at low: every backlog drained
  CHECK_FALSE(g->stopped);
  CHECK_FALSE(g->is_paused());
  CHECK(g->goes == 1);
  CHECK(g->waiting_count() == 0);
}

TEST_CASE("a paused gate adds later backlogs to its pause", "[backlog]") {
  backlog_ptr a = std::make_shared<backlog>(0);
  backlog_ptr b = std::make_shared<backlog>(0);
  a->add();
  b->add();
  auto g = std::make_shared<test_gate>();
  g->pause_for({a});
  g->pause_for({b, a});  // a packet read before the pause took effect
  CHECK(g->waiting_count() == 2);
  a->update(1, 0);
  CHECK(g->stopped);
  b->update(1, 0);
  CHECK_FALSE(g->stopped);
  CHECK(g->goes == 1);
}

TEST_CASE("a gate paused for drained or ended sessions goes on at once", "[backlog]") {
  auto a = std::make_shared<backlog>(2);
  a->add();
  auto g = std::make_shared<test_gate>();
  g->pause_for({a});
  CHECK_FALSE(g->stopped);
  CHECK_FALSE(g->is_paused());
  CHECK(g->goes == 1);
  auto b = std::make_shared<backlog>(0);
  b->add();
  g->pause_for({b});
  CHECK(g->stopped);
  b->close();
  CHECK_FALSE(g->stopped);
  CHECK(g->goes == 2);
}

// Publishers on several threads pause whenever they take the backlog over the high mark and
// wait until woken; one session thread drains. A lost wake-up leaves a publisher waiting
// forever, which this test reports as a failure after a generous bound.
TEST_CASE("concurrent publishers are always woken", "[backlog]") {
  auto m = marks_for(8, 0);
  backlog b(m.low);
  std::atomic<std::int64_t> mailbox{0};
  std::atomic<bool> done{false};
  constexpr int publishers = 4;
  constexpr int per_publisher = 20'000;
  std::atomic<int> stuck{0};
  std::atomic<int> pauses{0};

  struct flag_waiter : waiter {
    std::atomic<bool> paused{false};
    void pause() { paused.store(true); }
    void wake() override { paused.store(false); }
  };

  std::thread session([&] {
    while (!done.load() || mailbox.load() > 0) {
      auto n = mailbox.load();
      if (n > 0) {
        auto take = std::min<std::int64_t>(n, 3);
        mailbox.fetch_sub(take);
        b.update(static_cast<std::uint32_t>(take), 0);
      } else {
        std::this_thread::yield();
      }
    }
  });
  std::vector<std::thread> pubs;
  for (int p = 0; p < publishers; ++p) {
    pubs.emplace_back([&] {
      auto w = std::make_shared<flag_waiter>();
      for (int i = 0; i < per_publisher; ++i) {
        auto n = b.add();
        mailbox.fetch_add(1);
        if (b.is_over(n, m)) {
          w->pause();
          b.wait(w);
          pauses.fetch_add(1);
          auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
          while (w->paused.load()) {
            if (std::chrono::steady_clock::now() > give_up) {
              stuck.fetch_add(1);
              return;
            }
            std::this_thread::yield();
          }
        }
      }
    });
  }
  for (auto& t : pubs) {
    t.join();
  }
  done.store(true);
  session.join();
  CHECK(stuck == 0);
  CHECK(pauses > 0);
  CHECK(b.size() == 0);
}

TEST_CASE("a backlog counts how often it went down (stall detection)", "[backlog]") {
  backlog b(0);
  b.add();
  b.add();
  b.update(2, 2);  // processed, both queued: no progress
  CHECK(b.drains() == 0);
  b.add();
  b.update(1, 3);  // one more queued
  CHECK(b.drains() == 0);
  b.update(0, 2);  // the client took one
  CHECK(b.drains() == 1);
  b.update(0, 0);
  CHECK(b.drains() == 2);
}
