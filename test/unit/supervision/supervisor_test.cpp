// supervisor_test.cpp: the supervisor actor with children that crash, exit, hang and fail to start.
//
// Children record "start:<id>" in their start function (which runs inside the supervisor, so the
// order is the supervisor's) and "stop:<id>" in on_exit (which runs before their down_msg is
// sent, so the order is the one the supervisor imposed). Tests wait on the log or on down_msgs
// with a generous upper bound; nothing sleeps. The test's own down_msg for a child may arrive
// before the supervisor's, so "the supervisor did not restart it" is checked only after the
// supervisor stopped listing the old handle (await_handled), which it does in the same step in
// which it would restart the child.
#include "supervision/supervisor.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "caf/all.hpp"

namespace sup = tern::supervision;
using namespace std::chrono_literals;

namespace {

using crash_atom = caf::atom_constant<caf::atom("crash")>;    // throw from a handler
using fail_atom = caf::atom_constant<caf::atom("fail")>;      // quit with an error
using finish_atom = caf::atom_constant<caf::atom("finish")>;  // quit normally

// Upper bound for anything the tests wait for; a passing run never gets close.
constexpr auto max_wait = 5s;

using entries = std::vector<std::string>;

class event_log {
 public:
  void add(std::string entry) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      entries_.push_back(std::move(entry));
    }
    cv_.notify_all();
  }

  entries snapshot() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return entries_;
  }

  std::size_t count(const std::string& entry) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return static_cast<std::size_t>(std::count(entries_.begin(), entries_.end(), entry));
  }

  /// Waits until `entry` was logged at least `n` times.
  bool wait_for(const std::string& entry, std::size_t n = 1) {
    std::unique_lock<std::mutex> guard{mtx_};
    return cv_.wait_for(guard, max_wait, [&] {
      return static_cast<std::size_t>(std::count(entries_.begin(), entries_.end(), entry)) >= n;
    });
  }

  /// The entries after the first `n`.
  entries since(std::size_t n) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return entries(entries_.begin() + static_cast<std::ptrdiff_t>(std::min(n, entries_.size())),
                   entries_.end());
  }

 private:
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  entries entries_;
};

using log_ptr = std::shared_ptr<event_log>;

struct worker_opts {
  bool refuses_exit = false;  // ignores exit_msg(user_shutdown): must be killed
  bool uses_quit_on_exception = false;
};

class test_worker : public caf::event_based_actor {
 public:
  test_worker(caf::actor_config& cfg, std::string id, log_ptr log, worker_opts opts)
      : caf::event_based_actor(cfg), id_(std::move(id)), log_(std::move(log)), opts_(opts) {}

  caf::behavior make_behavior() override {
    if (opts_.refuses_exit) {
      set_exit_handler([](caf::scheduled_actor*, caf::exit_msg&) {});
    }
    if (opts_.uses_quit_on_exception) {
      sup::quit_on_exception(this);
    }
    return {
        [](crash_atom) { throw std::runtime_error("crash requested"); },
        [this](fail_atom) { quit(caf::make_error(caf::sec::runtime_error, "fail requested")); },
        [this](finish_atom) { quit(); },
        [](sup::ready_atom) { return caf::ok_atom::value; },
    };
  }

  void on_exit() override { log_->add("stop:" + id_); }

 private:
  std::string id_;
  log_ptr log_;
  worker_opts opts_;
};

sup::child_spec worker(const std::string& id, const log_ptr& log,
                       sup::restart_type restart = sup::restart_type::permanent,
                       worker_opts opts = {}) {
  sup::child_spec cs;
  cs.id = id;
  cs.restart = restart;
  cs.shutdown = 1s;
  cs.start = [id, log, opts](caf::local_actor* self,
                             const caf::message&) -> caf::expected<caf::actor> {
    log->add("start:" + id);
    return self->spawn<test_worker>(id, log, opts);
  };
  return cs;
}

// Template for simple_one_for_one: the child's id is the string argument of start_child.
sup::child_spec dynamic_worker(const log_ptr& log, sup::restart_type restart) {
  sup::child_spec cs;
  cs.id = "dyn";
  cs.restart = restart;
  cs.shutdown = 1s;
  cs.start = [log](caf::local_actor* self, const caf::message& args) -> caf::expected<caf::actor> {
    if (!args.match_elements<std::string>()) {
      return caf::make_error(caf::sec::invalid_argument, "expected (string)");
    }
    auto id = args.get_as<std::string>(0);
    log->add("start:" + id);
    return self->spawn<test_worker>(id, log, worker_opts{});
  };
  return cs;
}

sup::child_spec failing(const std::string& id, const log_ptr& log) {
  sup::child_spec cs;
  cs.id = id;
  cs.start = [id, log](caf::local_actor*, const caf::message&) -> caf::expected<caf::actor> {
    log->add("start:" + id);
    return caf::make_error(caf::sec::runtime_error, "cannot start " + id);
  };
  return cs;
}

sup::supervisor_spec make_spec(sup::restart_strategy strategy, std::vector<sup::child_spec> kids,
                               std::size_t intensity = 10) {
  sup::supervisor_spec spec;
  spec.strategy = strategy;
  spec.intensity = intensity;
  spec.period = 1min;
  spec.children = std::move(kids);
  return spec;
}

entries list(std::initializer_list<const char*> xs) { return entries(xs.begin(), xs.end()); }

struct config : caf::actor_system_config {
  config() {
    set("scheduler.max-threads", 2);
    sup::add_error_category(*this);
  }
};

// One actor system per test; members are destroyed in reverse order, the system last.
struct fixture {
  config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  log_ptr log = std::make_shared<event_log>();
  std::map<caf::actor_addr, caf::error> downs;  // down_msgs received while waiting for others

  caf::actor start(sup::supervisor_spec spec) {
    auto res = sup::start_supervisor(sys, std::move(spec), max_wait);
    REQUIRE(res);
    self->monitor(*res);
    return *res;
  }

  std::vector<sup::child_info> children(const caf::actor& s) {
    std::vector<sup::child_info> result;
    self->request(s, max_wait, sup::which_children_atom::value)
        .receive([&](std::vector<sup::child_info>& xs) { result = std::move(xs); },
                 [&](caf::error& err) { FAIL("which_children: " << sys.render(err)); });
    return result;
  }

  std::vector<std::string> ids(const caf::actor& s) {
    std::vector<std::string> result;
    for (auto& ci : children(s)) {
      result.push_back(ci.id);
    }
    return result;
  }

  // The running child with that id; monitored by the test. Invalid if not running.
  caf::actor child(const caf::actor& s, const std::string& id) {
    for (auto& ci : children(s)) {
      if (ci.id == id) {
        if (ci.actor) {
          self->monitor(ci.actor);
        }
        return ci.actor;
      }
    }
    return caf::actor{};
  }

  sup::child_counts counts(const caf::actor& s) {
    sup::child_counts result;
    self->request(s, max_wait, sup::count_children_atom::value)
        .receive([&](sup::child_counts& n) { result = n; },
                 [&](caf::error& err) { FAIL("count_children: " << sys.render(err)); });
    return result;
  }

  // Waits until the supervisor no longer lists `old` as running, i.e. it has handled old's
  // down_msg. Polls with requests; a passing run needs one or two.
  void await_handled(const caf::actor& s, const caf::actor& old) {
    const auto deadline = std::chrono::steady_clock::now() + max_wait;
    while (std::chrono::steady_clock::now() < deadline) {
      auto kids = children(s);
      if (std::none_of(kids.begin(), kids.end(),
                       [&](const sup::child_info& ci) { return ci.actor == old; })) {
        return;
      }
    }
    FAIL("the supervisor still lists the child as running");
  }

  // Waits for the down_msg of a monitored actor and returns its exit reason.
  caf::error await_down(const caf::actor& who) {
    const auto addr = who.address();
    bool is_timeout = false;
    while (downs.count(addr) == 0 && !is_timeout) {
      self->receive([&](caf::down_msg& dm) { downs.emplace(dm.source, std::move(dm.reason)); },
                    caf::after(max_wait) >> [&] { is_timeout = true; });
    }
    REQUIRE_FALSE(is_timeout);
    return downs[addr];
  }

  // Sends a request and returns its error (none if it was answered with a Reply).
  template <class Reply, class... Ts>
  caf::error request_error(const caf::actor& s, Ts&&... xs) {
    caf::error result;
    self->request(s, max_wait, std::forward<Ts>(xs)...)
        .receive([](Reply&) {}, [&](caf::error& err) { result = std::move(err); });
    return result;
  }

  caf::actor request_actor(const caf::actor& s, caf::message msg) {
    caf::actor result;
    self->request(s, max_wait, std::move(msg))
        .receive([&](caf::actor& a) { result = std::move(a); },
                 [&](caf::error& err) { FAIL("request: " << sys.render(err)); });
    REQUIRE(result);
    return result;
  }

  // Stops the supervisor with exit_reason::user_shutdown and returns its exit reason.
  caf::error shut_down(const caf::actor& s) {
    caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    return await_down(s);
  }
};

bool context_starts_with(const caf::error& err, const std::string& id) {
  const auto& ctx = err.context();
  return ctx.size() >= 1 && ctx.match_element<std::string>(0) && ctx.get_as<std::string>(0) == id;
}

caf::error context_cause(const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.size() >= 2 && ctx.match_element<caf::error>(1)) {
    return ctx.get_as<caf::error>(1);
  }
  return caf::error{};
}

}  // namespace

// -- start and shutdown order ------------------------------------------------------------------

TEST_CASE("children start in spec order and stop in reverse order") {
  fixture f;
  auto s = f.start(make_spec(sup::restart_strategy::one_for_one,
                             {worker("a", f.log), worker("b", f.log), worker("c", f.log)}));
  CHECK(f.log->snapshot() == list({"start:a", "start:b", "start:c"}));
  auto kids = f.children(s);
  REQUIRE(kids.size() == 3);
  CHECK(kids[0].id == "a");
  CHECK(kids[1].id == "b");
  CHECK(kids[2].id == "c");
  CHECK((kids[0].actor && kids[1].actor && kids[2].actor));
  CHECK(kids[0].actor != kids[1].actor);
  auto reason = f.shut_down(s);
  CHECK(reason == caf::exit_reason::user_shutdown);
  CHECK(f.log->snapshot() == list({"start:a", "start:b", "start:c", "stop:c", "stop:b", "stop:a"}));
}

TEST_CASE("stop_atom replies once all children are down, then the supervisor exits normally") {
  fixture f;
  auto s = f.start(
      make_spec(sup::restart_strategy::one_for_one, {worker("a", f.log), worker("b", f.log)}));
  bool is_ok = false;
  f.self->request(s, max_wait, sup::stop_atom::value)
      .receive([&](caf::ok_atom) { is_ok = true; }, [](caf::error&) {});
  CHECK(is_ok);
  // The reply comes after both children ran on_exit.
  CHECK(f.log->since(2) == list({"stop:b", "stop:a"}));
  auto reason = f.await_down(s);
  CHECK((!reason || reason == caf::exit_reason::normal));
}

// -- restart types -----------------------------------------------------------------------------

TEST_CASE("permanent children are always restarted") {
  fixture f;
  auto s = f.start(make_spec(sup::restart_strategy::one_for_one, {worker("p", f.log)}));
  auto p1 = f.child(s, "p");
  caf::anon_send(p1, crash_atom::value);  // uncaught exception
  CHECK(f.await_down(p1) == caf::sec::runtime_error);
  REQUIRE(f.log->wait_for("start:p", 2));
  auto p2 = f.child(s, "p");
  REQUIRE(p2);
  CHECK(p2 != p1);
  caf::anon_send(p2, finish_atom::value);  // normal exit
  CHECK(!f.await_down(p2));
  REQUIRE(f.log->wait_for("start:p", 3));
  auto p3 = f.child(s, "p");
  REQUIRE(p3);
  CHECK(p3 != p2);
  f.shut_down(s);
}

TEST_CASE("transient children are restarted only after an abnormal exit") {
  fixture f;
  auto s = f.start(make_spec(sup::restart_strategy::one_for_one,
                             {worker("t", f.log, sup::restart_type::transient)}));
  auto t1 = f.child(s, "t");
  caf::anon_send(t1, fail_atom::value);
  CHECK(f.await_down(t1) == caf::sec::runtime_error);
  REQUIRE(f.log->wait_for("start:t", 2));
  auto t2 = f.child(s, "t");
  REQUIRE(t2);
  caf::anon_send(t2, finish_atom::value);
  f.await_down(t2);
  f.await_handled(s, t2);
  auto kids = f.children(s);
  REQUIRE(kids.size() == 1);
  CHECK(kids[0].id == "t");
  CHECK_FALSE(kids[0].actor);
  CHECK(f.log->count("start:t") == 2);
  auto n = f.counts(s);
  CHECK(n.specs == 1);
  CHECK(n.active == 0);
  f.shut_down(s);
}

TEST_CASE("temporary children are never restarted and are removed") {
  fixture f;
  auto s = f.start(
      make_spec(sup::restart_strategy::one_for_one,
                {worker("tmp", f.log, sup::restart_type::temporary), worker("keep", f.log)}));
  auto tmp = f.child(s, "tmp");
  caf::anon_send(tmp, crash_atom::value);
  f.await_down(tmp);
  f.await_handled(s, tmp);
  CHECK(f.ids(s) == list({"keep"}));
  CHECK(f.log->count("start:tmp") == 1);
  f.shut_down(s);
}

// -- strategies --------------------------------------------------------------------------------

TEST_CASE("one_for_one restarts only the failed child") {
  fixture f;
  auto s = f.start(make_spec(sup::restart_strategy::one_for_one,
                             {worker("a", f.log), worker("b", f.log), worker("c", f.log)}));
  auto a = f.child(s, "a");
  auto b = f.child(s, "b");
  auto c = f.child(s, "c");
  caf::anon_send(b, crash_atom::value);
  REQUIRE(f.log->wait_for("start:b", 2));
  CHECK(f.log->since(3) == list({"stop:b", "start:b"}));
  auto kids = f.children(s);
  REQUIRE(kids.size() == 3);
  CHECK(kids[0].actor == a);
  CHECK(kids[1].actor != b);
  CHECK(kids[2].actor == c);
  f.shut_down(s);
}

TEST_CASE("one_for_all stops the others in reverse order and restarts all in order") {
  fixture f;
  auto s = f.start(make_spec(sup::restart_strategy::one_for_all,
                             {worker("a", f.log), worker("b", f.log), worker("c", f.log)}));
  auto a = f.child(s, "a");
  auto b = f.child(s, "b");
  auto c = f.child(s, "c");
  caf::anon_send(b, crash_atom::value);
  REQUIRE(f.log->wait_for("start:c", 2));
  CHECK(f.log->since(3) == list({"stop:b", "stop:c", "stop:a", "start:a", "start:b", "start:c"}));
  CHECK(f.await_down(a) == caf::exit_reason::user_shutdown);
  CHECK(f.await_down(c) == caf::exit_reason::user_shutdown);
  auto kids = f.children(s);
  REQUIRE(kids.size() == 3);
  CHECK((kids[0].actor && kids[0].actor != a));
  CHECK((kids[1].actor && kids[1].actor != b));
  CHECK((kids[2].actor && kids[2].actor != c));
  f.shut_down(s);
}

TEST_CASE("rest_for_one restarts the failed child and those started after it") {
  fixture f;
  auto s = f.start(
      make_spec(sup::restart_strategy::rest_for_one,
                {worker("a", f.log), worker("b", f.log), worker("c", f.log), worker("d", f.log)}));
  auto a = f.child(s, "a");
  auto b = f.child(s, "b");
  caf::anon_send(b, fail_atom::value);
  REQUIRE(f.log->wait_for("start:d", 2));
  CHECK(f.log->since(4) == list({"stop:b", "stop:d", "stop:c", "start:b", "start:c", "start:d"}));
  auto kids = f.children(s);
  REQUIRE(kids.size() == 4);
  CHECK(kids[0].actor == a);
  CHECK(f.log->count("start:a") == 1);
  f.shut_down(s);
}

TEST_CASE("one_for_all removes temporary siblings instead of restarting them") {
  fixture f;
  auto s =
      f.start(make_spec(sup::restart_strategy::one_for_all,
                        {worker("a", f.log), worker("tmp", f.log, sup::restart_type::temporary),
                         worker("c", f.log)}));
  caf::anon_send(f.child(s, "a"), crash_atom::value);
  REQUIRE(f.log->wait_for("start:c", 2));
  CHECK(f.ids(s) == list({"a", "c"}));
  CHECK(f.log->count("start:tmp") == 1);
  f.shut_down(s);
}

// -- shutdown timeouts -------------------------------------------------------------------------

TEST_CASE("a child that ignores the shutdown request is killed after its timeout") {
  fixture f;
  auto stubborn = worker("stubborn", f.log, sup::restart_type::permanent, {true, false});
  stubborn.shutdown = 100ms;
  auto brutal = worker("brutal", f.log);
  brutal.shutdown = sup::brutal_kill;
  auto s = f.start(
      make_spec(sup::restart_strategy::one_for_one, {worker("polite", f.log), stubborn, brutal}));
  auto polite_actor = f.child(s, "polite");
  auto stubborn_actor = f.child(s, "stubborn");
  auto brutal_actor = f.child(s, "brutal");
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(f.shut_down(s) == caf::exit_reason::user_shutdown);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  CHECK(f.await_down(brutal_actor) == caf::exit_reason::kill);
  CHECK(f.await_down(stubborn_actor) == caf::exit_reason::kill);
  CHECK(f.await_down(polite_actor) == caf::exit_reason::user_shutdown);
  CHECK(elapsed >= 100ms);  // stubborn got its full shutdown time before the kill
  // Each child is asked only after the one started after it is down.
  CHECK(f.log->since(3) == list({"stop:brutal", "stop:stubborn", "stop:polite"}));
}

TEST_CASE("terminate_child kills a stubborn child after its timeout; requests wait meanwhile") {
  fixture f;
  auto stubborn = worker("stubborn", f.log, sup::restart_type::permanent, {true, false});
  stubborn.shutdown = 50ms;
  auto s = f.start(make_spec(sup::restart_strategy::one_for_one, {stubborn}));
  auto h1 = f.self->request(s, max_wait, sup::terminate_child_atom::value, "stubborn");
  auto h2 = f.self->request(s, max_wait, sup::which_children_atom::value);
  // which_children is answered after the termination finished.
  std::vector<sup::child_info> kids;
  h2.receive([&](std::vector<sup::child_info>& xs) { kids = std::move(xs); },
             [&](caf::error& err) { FAIL(f.sys.render(err)); });
  REQUIRE(kids.size() == 1);
  CHECK_FALSE(kids[0].actor);
  bool is_ok = false;
  h1.receive([&](caf::ok_atom) { is_ok = true; }, [](caf::error&) {});
  CHECK(is_ok);
  CHECK(f.log->snapshot() == list({"start:stubborn", "stop:stubborn"}));
  f.shut_down(s);
}

// -- restart intensity -------------------------------------------------------------------------

TEST_CASE("exceeding the restart intensity stops all children and fails the supervisor") {
  fixture f;
  auto s = f.start(make_spec(sup::restart_strategy::one_for_one,
                             {worker("a", f.log), worker("b", f.log), worker("c", f.log)}, 2));
  for (std::size_t i = 1; i <= 2; ++i) {
    caf::anon_send(f.child(s, "b"), crash_atom::value);
    REQUIRE(f.log->wait_for("start:b", i + 1));
  }
  const auto before = f.log->snapshot().size();
  caf::anon_send(f.child(s, "b"), fail_atom::value);  // third failure within the period
  auto reason = f.await_down(s);
  CHECK(sup::is_error(reason, sup::errc::max_restarts_exceeded));
  CHECK(context_starts_with(reason, "b"));
  CHECK(context_cause(reason) == caf::sec::runtime_error);
  CHECK(f.log->since(before) == list({"stop:b", "stop:c", "stop:a"}));
  CHECK(f.log->count("start:b") == 3);
}

TEST_CASE("restarts older than the period do not count") {
  fixture f;
  auto fake_ns = std::make_shared<std::atomic<std::int64_t>>(0);
  auto spec = make_spec(sup::restart_strategy::one_for_one, {worker("a", f.log)}, 1);
  spec.period = 10s;
  spec.clock = [fake_ns] {
    return std::chrono::steady_clock::time_point{} + std::chrono::nanoseconds{fake_ns->load()};
  };
  auto s = f.start(std::move(spec));
  caf::anon_send(f.child(s, "a"), crash_atom::value);
  REQUIRE(f.log->wait_for("start:a", 2));
  *fake_ns += std::chrono::nanoseconds{11s}.count();
  caf::anon_send(f.child(s, "a"), crash_atom::value);  // the first restart left the window
  REQUIRE(f.log->wait_for("start:a", 3));
  caf::anon_send(f.child(s, "a"), crash_atom::value);  // second in the window: too many
  auto reason = f.await_down(s);
  CHECK(sup::is_error(reason, sup::errc::max_restarts_exceeded));
  CHECK(f.log->count("start:a") == 3);
}

// -- start failures ----------------------------------------------------------------------------

TEST_CASE("a child that fails to start makes the supervisor fail to start") {
  fixture f;
  auto res = sup::start_supervisor(
      f.sys,
      make_spec(sup::restart_strategy::one_for_one,
                {worker("a", f.log), failing("b", f.log), worker("c", f.log)}),
      max_wait);
  REQUIRE_FALSE(res);
  CHECK(sup::is_error(res.error(), sup::errc::start_failed));
  CHECK(context_starts_with(res.error(), "b"));
  CHECK(context_cause(res.error()) == caf::sec::runtime_error);
  CHECK(f.log->snapshot() == list({"start:a", "start:b", "stop:a"}));
}

TEST_CASE("a start function that throws or returns no actor is a start failure") {
  fixture f;
  sup::child_spec thrower;
  thrower.id = "thrower";
  thrower.start = [](caf::local_actor*, const caf::message&) -> caf::expected<caf::actor> {
    throw std::runtime_error("boom");
  };
  auto res = sup::start_supervisor(f.sys, make_spec(sup::restart_strategy::one_for_one, {thrower}),
                                   max_wait);
  REQUIRE_FALSE(res);
  CHECK(sup::is_error(res.error(), sup::errc::start_failed));
  CHECK(sup::is_error(context_cause(res.error()), sup::errc::unhandled_exception));
  sup::child_spec nothing;
  nothing.id = "nothing";
  nothing.start = [](caf::local_actor*, const caf::message&) -> caf::expected<caf::actor> {
    return caf::actor{};
  };
  res = sup::start_supervisor(f.sys, make_spec(sup::restart_strategy::one_for_one, {nothing}),
                              max_wait);
  REQUIRE_FALSE(res);
  CHECK(sup::is_error(res.error(), sup::errc::start_failed));
}

TEST_CASE("an invalid supervisor spec is rejected") {
  fixture f;
  auto dup =
      make_spec(sup::restart_strategy::one_for_one, {worker("a", f.log), worker("a", f.log)});
  auto res = sup::start_supervisor(f.sys, dup, max_wait);
  REQUIRE_FALSE(res);
  CHECK(sup::is_error(res.error(), sup::errc::invalid_spec));
  auto two_templates = make_spec(sup::restart_strategy::simple_one_for_one,
                                 {worker("a", f.log), worker("b", f.log)});
  res = sup::start_supervisor(f.sys, two_templates, max_wait);
  REQUIRE_FALSE(res);
  CHECK(sup::is_error(res.error(), sup::errc::invalid_spec));
  CHECK(f.log->snapshot().empty());
}

// -- dynamic children --------------------------------------------------------------------------

TEST_CASE("simple_one_for_one starts children from the template with arguments") {
  fixture f;
  auto s = f.start(make_spec(sup::restart_strategy::simple_one_for_one,
                             {dynamic_worker(f.log, sup::restart_type::permanent)}));
  CHECK(f.children(s).empty());
  auto start_dyn = [&](const char* id) {
    return f.request_actor(
        s, caf::make_message(sup::start_child_atom::value, caf::make_message(std::string{id})));
  };
  auto s1 = start_dyn("s1");
  auto s2 = start_dyn("s2");
  auto s3 = start_dyn("s3");
  CHECK(f.log->snapshot() == list({"start:s1", "start:s2", "start:s3"}));
  auto kids = f.children(s);
  REQUIRE(kids.size() == 3);
  CHECK(kids[0].actor == s1);
  CHECK(kids[1].actor == s2);
  CHECK(kids[2].actor == s3);
  CHECK(kids[1].id == "dyn");
  // A crash restarts that child with the same arguments.
  f.self->monitor(s2);
  caf::anon_send(s2, crash_atom::value);
  REQUIRE(f.log->wait_for("start:s2", 2));
  kids = f.children(s);
  REQUIRE(kids.size() == 3);
  CHECK(kids[0].actor == s1);
  CHECK((kids[1].actor && kids[1].actor != s2));
  // terminate_child by handle stops and removes it.
  CHECK(!f.request_error<caf::ok_atom>(s, sup::terminate_child_atom::value, s1));
  CHECK(f.log->count("stop:s1") == 1);
  auto n = f.counts(s);
  CHECK(n.specs == 2);
  CHECK(n.active == 2);
  CHECK(n.workers == 2);
  CHECK(sup::is_error(f.request_error<caf::ok_atom>(s, sup::terminate_child_atom::value, s1),
                      sup::errc::not_found));
  // Start errors are replied and leave nothing behind.
  CHECK(sup::is_error(
      f.request_error<caf::actor>(s, sup::start_child_atom::value, caf::make_message(42)),
      sup::errc::start_failed));
  CHECK(sup::is_error(
      f.request_error<caf::actor>(s, sup::start_child_atom::value, worker("x", f.log)),
      sup::errc::not_supported));
  CHECK(sup::is_error(f.request_error<caf::ok_atom>(s, sup::delete_child_atom::value, "dyn"),
                      sup::errc::not_supported));
  CHECK(f.counts(s).specs == 2);
  f.shut_down(s);
  CHECK(f.log->count("stop:s2") == 2);
  CHECK(f.log->count("stop:s3") == 1);
}

TEST_CASE("simple_one_for_one does not restart temporary children") {
  fixture f;
  auto s = f.start(make_spec(sup::restart_strategy::simple_one_for_one,
                             {dynamic_worker(f.log, sup::restart_type::temporary)}));
  auto t1 = f.request_actor(
      s, caf::make_message(sup::start_child_atom::value, caf::make_message(std::string{"t1"})));
  f.self->monitor(t1);
  caf::anon_send(t1, crash_atom::value);
  f.await_down(t1);
  f.await_handled(s, t1);
  CHECK(f.children(s).empty());
  CHECK(f.log->count("start:t1") == 1);
  f.shut_down(s);
}

TEST_CASE("dynamic children of a static supervisor") {
  fixture f;
  auto s = f.start(make_spec(sup::restart_strategy::one_for_one, {worker("a", f.log)}));
  auto b = f.request_actor(s, caf::make_message(sup::start_child_atom::value, worker("b", f.log)));
  CHECK(f.ids(s) == list({"a", "b"}));
  CHECK(sup::is_error(
      f.request_error<caf::actor>(s, sup::start_child_atom::value, worker("b", f.log)),
      sup::errc::already_started));
  CHECK(sup::is_error(f.request_error<caf::ok_atom>(s, sup::delete_child_atom::value, "b"),
                      sup::errc::running));
  CHECK(!f.request_error<caf::ok_atom>(s, sup::terminate_child_atom::value, "b"));
  CHECK(f.log->snapshot() == list({"start:a", "start:b", "stop:b"}));
  auto kids = f.children(s);
  REQUIRE(kids.size() == 2);
  CHECK_FALSE(kids[1].actor);  // the spec stays
  CHECK(sup::is_error(
      f.request_error<caf::actor>(s, sup::start_child_atom::value, worker("b", f.log)),
      sup::errc::already_present));
  auto b2 = f.request_actor(s, caf::make_message(sup::restart_child_atom::value, "b"));
  CHECK(b2 != b);
  CHECK(sup::is_error(f.request_error<caf::actor>(s, sup::restart_child_atom::value, "b"),
                      sup::errc::running));
  CHECK(!f.request_error<caf::ok_atom>(s, sup::terminate_child_atom::value, b2));
  CHECK(!f.request_error<caf::ok_atom>(s, sup::delete_child_atom::value, "b"));
  CHECK(f.ids(s) == list({"a"}));
  CHECK(sup::is_error(f.request_error<caf::ok_atom>(s, sup::terminate_child_atom::value, "b"),
                      sup::errc::not_found));
  CHECK(sup::is_error(
      f.request_error<caf::actor>(s, sup::start_child_atom::value, failing("c", f.log)),
      sup::errc::start_failed));
  CHECK(f.ids(s) == list({"a"}));
  // Dynamically added children are started last and stopped first.
  f.request_actor(s, caf::make_message(sup::start_child_atom::value, worker("d", f.log)));
  const auto before = f.log->snapshot().size();
  f.shut_down(s);
  CHECK(f.log->since(before) == list({"stop:d", "stop:a"}));
}

// -- nested supervisors ------------------------------------------------------------------------

TEST_CASE("nested supervisors start depth-first and stop in reverse order") {
  fixture f;
  auto inner =
      make_spec(sup::restart_strategy::one_for_one, {worker("x", f.log), worker("y", f.log)});
  auto s = f.start(
      make_spec(sup::restart_strategy::one_for_one,
                {worker("a", f.log), sup::supervisor_child("inner", inner), worker("b", f.log)}));
  CHECK(f.log->snapshot() == list({"start:a", "start:x", "start:y", "start:b"}));
  auto kids = f.children(s);
  REQUIRE(kids.size() == 3);
  CHECK(kids[1].type == sup::child_type::supervisor);
  auto n = f.counts(s);
  CHECK(n.supervisors == 1);
  CHECK(n.workers == 2);
  f.shut_down(s);
  CHECK(f.log->since(4) == list({"stop:b", "stop:y", "stop:x", "stop:a"}));
}

TEST_CASE("a nested supervisor that gives up fails upward") {
  fixture f;
  // inner tolerates no restart; root tolerates one.
  auto inner = make_spec(sup::restart_strategy::one_for_one, {worker("x", f.log)}, 0);
  auto s = f.start(make_spec(sup::restart_strategy::one_for_one,
                             {sup::supervisor_child("inner", inner), worker("w", f.log)}, 1));
  auto inner1 = f.child(s, "inner");
  auto w = f.child(s, "w");
  REQUIRE(inner1);
  caf::anon_send(f.child(inner1, "x"), crash_atom::value);
  CHECK(sup::is_error(f.await_down(inner1), sup::errc::max_restarts_exceeded));
  REQUIRE(f.log->wait_for("start:x", 2));  // root restarted inner, which started x again
  auto inner2 = f.child(s, "inner");
  REQUIRE(inner2);
  CHECK(inner2 != inner1);
  CHECK(f.child(s, "w") == w);
  // Second failure of inner exceeds root's budget: root fails too.
  caf::anon_send(f.child(inner2, "x"), crash_atom::value);
  auto reason = f.await_down(s);
  CHECK(sup::is_error(reason, sup::errc::max_restarts_exceeded));
  CHECK(context_starts_with(reason, "inner"));
  CHECK(sup::is_error(context_cause(reason), sup::errc::max_restarts_exceeded));
  CHECK(f.log->count("stop:w") == 1);
}

TEST_CASE("a nested supervisor that fails to start fails its parent's start") {
  fixture f;
  auto inner =
      make_spec(sup::restart_strategy::one_for_one, {worker("x", f.log), failing("bad", f.log)});
  auto res = sup::start_supervisor(
      f.sys,
      make_spec(sup::restart_strategy::one_for_one,
                {worker("a", f.log), sup::supervisor_child("inner", inner), worker("b", f.log)}),
      max_wait);
  REQUIRE_FALSE(res);
  CHECK(sup::is_error(res.error(), sup::errc::start_failed));
  CHECK(context_starts_with(res.error(), "inner"));
  auto cause = context_cause(res.error());
  CHECK(sup::is_error(cause, sup::errc::start_failed));
  CHECK(context_starts_with(cause, "bad"));
  CHECK(f.log->snapshot() == list({"start:a", "start:x", "start:bad", "stop:x", "stop:a"}));
}

// -- abnormal ends and helpers -----------------------------------------------------------------

TEST_CASE("a killed supervisor takes its children with it") {
  fixture f;
  auto s =
      f.start(make_spec(sup::restart_strategy::one_for_one,
                        {worker("a", f.log),
                         worker("stubborn", f.log, sup::restart_type::permanent, {true, false})}));
  auto a = f.child(s, "a");
  auto stubborn = f.child(s, "stubborn");
  caf::anon_send_exit(s, caf::exit_reason::kill);
  CHECK(f.await_down(s) == caf::exit_reason::kill);
  CHECK(f.await_down(a) == caf::exit_reason::kill);
  CHECK(f.await_down(stubborn) == caf::exit_reason::kill);
}

TEST_CASE("quit_on_exception ends an actor with unhandled_exception") {
  fixture f;
  auto a = f.sys.spawn<test_worker>("q", f.log, worker_opts{false, true});
  f.self->monitor(a);
  caf::anon_send(a, crash_atom::value);
  auto reason = f.await_down(a);
  CHECK(sup::is_error(reason, sup::errc::unhandled_exception));
  CHECK(f.sys.render(reason).find("crash requested") != std::string::npos);
}

TEST_CASE("the typed view checks requests at compile time") {
  fixture f;
  auto s = f.start(make_spec(sup::restart_strategy::one_for_one, {worker("a", f.log)}));
  auto typed = caf::actor_cast<sup::supervisor_actor>(s);
  std::size_t n = 0;
  f.self->request(typed, max_wait, sup::which_children_atom::value)
      .receive([&](std::vector<sup::child_info>& xs) { n = xs.size(); },
               [&](caf::error& err) { FAIL(f.sys.render(err)); });
  CHECK(n == 1);
  bool is_ok = false;
  f.self->request(typed, max_wait, sup::stop_atom::value)
      .receive([&](caf::ok_atom) { is_ok = true; }, [](caf::error&) {});
  CHECK(is_ok);
  f.await_down(s);
}
