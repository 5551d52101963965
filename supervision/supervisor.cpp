// supervisor.cpp: the supervisor actor (a class-based CAF actor) and the public helpers.
#include "supervision/supervisor.hpp"

#include <algorithm>
#include <deque>
#include <exception>
#include <map>
#include <unordered_map>
#include <utility>

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/event_based_actor.hpp"
#include "caf/exit_reason.hpp"
#include "caf/scoped_actor.hpp"
#include "caf/sec.hpp"
#include "caf/send.hpp"
#include "caf/skip.hpp"
#include "caf/system_messages.hpp"
#include "supervision/restart_intensity.hpp"

namespace tern::supervision {

namespace {

// Internal: "the shutdown timeout of (child key, incarnation) has expired".
using stop_timeout_atom = caf::atom_constant<caf::atom("supstoptmo")>;

using child_key = std::uint64_t;
using key_list = std::vector<child_key>;

constexpr child_key no_child = 0;

// Exits that do not make a transient child restart (OTP: normal, shutdown).
bool is_normal_exit(const caf::error& reason) {
  return !reason || reason == caf::exit_reason::normal || reason == caf::exit_reason::user_shutdown;
}

caf::error start_failed(const std::string& id, caf::error cause) {
  return make_error(errc::start_failed, caf::make_message(id, std::move(cause)));
}

caf::error invalid_spec(std::string why) {
  return make_error(errc::invalid_spec, caf::make_message(std::move(why)));
}

caf::error validate_child(const child_spec& cs) {
  if (cs.id.empty()) {
    return invalid_spec("child id is empty");
  }
  if (!cs.start) {
    return invalid_spec("child '" + cs.id + "' has no start function");
  }
  return caf::error{};
}

caf::error validate(const supervisor_spec& spec) {
  if (spec.strategy == restart_strategy::simple_one_for_one && spec.children.size() != 1) {
    return invalid_spec("simple_one_for_one needs exactly one template child spec");
  }
  if (spec.period.count() <= 0) {
    return invalid_spec("period must be positive");
  }
  std::vector<std::string> ids;
  for (const auto& cs : spec.children) {
    if (auto err = validate_child(cs)) {
      return err;
    }
    if (std::find(ids.begin(), ids.end(), cs.id) != ids.end()) {
      return invalid_spec("duplicate child id '" + cs.id + "'");
    }
    ids.push_back(cs.id);
  }
  return caf::error{};
}

struct child_record {
  child_spec spec;
  caf::message args;              // start arguments (simple_one_for_one)
  caf::actor actor;               // invalid while not running
  std::uint64_t incarnation = 0;  // bumped on every start attempt; tells stale events apart
  bool is_starting = false;       // started, waiting for its ready ack
  bool is_stopping = false;       // asked to exit, waiting for its down_msg
};

// A child went down on its own (or failed to start during a restart); handled when not busy.
struct child_failure {
  child_key key;
  std::uint64_t incarnation;
  caf::error reason;
};

// The supervisor. All work that waits for children (starting one that acks, stopping one) is an
// "operation"; one runs at a time. While one runs, the actor is busy: its behavior handles only
// internal timeouts and every request is skipped (kept in the mailbox) until the operation ends.
// Children that fail meanwhile are queued in failures_ and handled after it.
class supervisor_impl : public caf::event_based_actor {
 public:
  supervisor_impl(caf::actor_config& cfg, supervisor_spec spec)
      : caf::event_based_actor(cfg),
        spec_(std::move(spec)),
        intensity_(spec_.intensity, spec_.period) {}

  const char* name() const override { return "tern.supervisor"; }

  caf::behavior make_behavior() override;

  void on_exit() override;

 private:
  using started_handler = std::function<void(child_key failed, caf::error cause)>;

  // -- children table ----------------------------------------------------------------------
  bool is_simple() const { return spec_.strategy == restart_strategy::simple_one_for_one; }
  child_record* find(child_key key);
  child_key key_of(const caf::actor_addr& addr) const;
  child_key key_of_id(const std::string& id) const;
  key_list all_keys() const;
  child_key add_child(child_spec spec, caf::message args);
  void erase_child(child_key key);
  void set_actor(child_record& c, child_key key, caf::actor actor);
  void clear_actor(child_record& c);
  std::chrono::steady_clock::time_point now() const;

  // -- operations --------------------------------------------------------------------------
  void begin_op();
  void end_op();
  void process_pending();

  void start_children(key_list keys, started_handler done);
  void start_next();
  void finish_start(child_key failed, caf::error cause);
  caf::expected<caf::actor> invoke_start(child_record& c);
  void on_ready(child_key key, std::uint64_t incarnation, caf::error err);

  std::deque<key_list> stop_plan(const key_list& keys_in_start_order) const;
  void stop_children(std::deque<key_list> plan, std::function<void()> done);
  void stop_next_batch();
  void begin_stop(child_record& c, child_key key);
  void on_stop_timeout(child_key key, std::uint64_t incarnation);

  void on_down(caf::down_msg& dm);
  void on_exit_msg(caf::exit_msg& em);
  void request_shutdown(caf::error reason);
  void shutdown(caf::error reason);
  void handle_failure(const child_failure& f);
  void restart(child_key key);
  void terminate(child_key key, caf::response_promise rp);

  // -- request handlers --------------------------------------------------------------------
  void handle_start_child(child_spec cs);
  void handle_start_dynamic(caf::message args);
  void handle_restart_child(const std::string& id);
  void handle_terminate_child(const std::string& id);
  void handle_terminate_child(const caf::actor& who);
  void handle_delete_child(const std::string& id);
  std::vector<child_info> which_children() const;
  child_counts count_children() const;
  void reply_started(caf::response_promise rp, child_key key, child_key failed, caf::error cause);

  supervisor_spec spec_;
  restart_intensity intensity_;
  std::map<child_key, child_record> children_;  // key order == start order
  std::unordered_map<caf::actor_addr, child_key> by_addr_;
  child_key next_key_ = 1;
  caf::behavior main_;
  caf::behavior busy_;
  bool is_busy_ = false;
  bool is_shutting_down_ = false;
  bool has_pending_shutdown_ = false;
  caf::error pending_shutdown_reason_;
  std::vector<caf::response_promise> stop_promises_;
  std::deque<child_failure> failures_;
  // The running start operation.
  std::deque<child_key> start_queue_;
  started_handler start_done_;
  // The running stop operation.
  std::deque<key_list> stop_queue_;
  std::size_t stopping_count_ = 0;
  std::function<void()> stop_done_;
};

// -- children table ----------------------------------------------------------------------------

child_record* supervisor_impl::find(child_key key) {
  auto i = children_.find(key);
  return i == children_.end() ? nullptr : &i->second;
}

child_key supervisor_impl::key_of(const caf::actor_addr& addr) const {
  auto i = by_addr_.find(addr);
  return i == by_addr_.end() ? no_child : i->second;
}

child_key supervisor_impl::key_of_id(const std::string& id) const {
  for (const auto& [key, c] : children_) {
    if (c.spec.id == id) {
      return key;
    }
  }
  return no_child;
}

key_list supervisor_impl::all_keys() const {
  key_list keys;
  keys.reserve(children_.size());
  for (const auto& kv : children_) {
    keys.push_back(kv.first);
  }
  return keys;
}

child_key supervisor_impl::add_child(child_spec spec, caf::message args) {
  const auto key = next_key_++;
  child_record c;
  c.spec = std::move(spec);
  c.args = std::move(args);
  children_.emplace(key, std::move(c));
  return key;
}

void supervisor_impl::erase_child(child_key key) {
  if (auto* c = find(key)) {
    clear_actor(*c);
    children_.erase(key);
  }
}

void supervisor_impl::set_actor(child_record& c, child_key key, caf::actor actor) {
  c.actor = std::move(actor);
  by_addr_[c.actor.address()] = key;
}

void supervisor_impl::clear_actor(child_record& c) {
  if (c.actor) {
    by_addr_.erase(c.actor.address());
    c.actor = nullptr;
  }
}

std::chrono::steady_clock::time_point supervisor_impl::now() const {
  return spec_.clock ? spec_.clock() : std::chrono::steady_clock::now();
}

// -- behavior ----------------------------------------------------------------------------------

caf::behavior supervisor_impl::make_behavior() {
  set_down_handler([this](caf::down_msg& dm) { on_down(dm); });
  set_exit_handler([this](caf::exit_msg& em) { on_exit_msg(em); });
  if (auto err = validate(spec_)) {
    quit(std::move(err));
    return {};
  }
  main_ = caf::behavior{
      [](ready_atom) { return caf::ok_atom::value; },
      [this](start_child_atom, child_spec& cs) { handle_start_child(std::move(cs)); },
      [this](start_child_atom, caf::message& args) { handle_start_dynamic(std::move(args)); },
      [this](restart_child_atom, const std::string& id) { handle_restart_child(id); },
      [this](terminate_child_atom, const std::string& id) { handle_terminate_child(id); },
      [this](terminate_child_atom, const caf::actor& who) { handle_terminate_child(who); },
      [this](delete_child_atom, const std::string& id) { handle_delete_child(id); },
      [this](which_children_atom) { return which_children(); },
      [this](count_children_atom) { return count_children(); },
      [this](stop_atom) {
        stop_promises_.push_back(make_response_promise());
        request_shutdown(caf::exit_reason::normal);
      },
      [this](stop_timeout_atom, child_key key, std::uint64_t inc) { on_stop_timeout(key, inc); },
  };
  busy_ = caf::behavior{
      [this](stop_timeout_atom, child_key key, std::uint64_t inc) { on_stop_timeout(key, inc); },
  };
  if (!is_simple()) {
    for (const auto& cs : spec_.children) {
      add_child(cs, caf::message{});
    }
  }
  // The initial start is an operation like any other; requests wait until it is done.
  begin_op();
  start_children(all_keys(), [this](child_key failed, caf::error cause) {
    if (failed == no_child) {
      end_op();
      return;
    }
    is_shutting_down_ = true;
    stop_children(stop_plan(all_keys()), [this, cause]() mutable { quit(std::move(cause)); });
  });
  // initialize() replaces the top of the behavior stack with what we return.
  return is_busy_ ? busy_ : main_;
}

void supervisor_impl::on_exit() {
  // Orderly exits get here with no child running. Otherwise (kill, a bug) make sure no child
  // outlives us: kill cannot be trapped, so no child can keep the actor system alive.
  for (auto& kv : children_) {
    if (kv.second.actor) {
      caf::anon_send_exit(kv.second.actor, caf::exit_reason::kill);
    }
  }
  // Drop everything that may hold handles (promises, start functions' captures).
  children_.clear();
  by_addr_.clear();
  start_done_ = nullptr;
  stop_done_ = nullptr;
  stop_promises_.clear();
  failures_.clear();
  main_ = caf::behavior{};
  busy_ = caf::behavior{};
  spec_.children.clear();
  spec_.clock = nullptr;
}

// -- operations --------------------------------------------------------------------------------

void supervisor_impl::begin_op() {
  is_busy_ = true;
  set_default_handler(caf::skip);
  become(busy_);
}

void supervisor_impl::end_op() {
  is_busy_ = false;
  set_default_handler(caf::print_and_drop);
  become(main_);
  process_pending();
}

void supervisor_impl::process_pending() {
  while (!is_busy_ && !is_shutting_down_) {
    if (has_pending_shutdown_) {
      has_pending_shutdown_ = false;
      shutdown(std::move(pending_shutdown_reason_));
      return;
    }
    if (failures_.empty()) {
      return;
    }
    auto f = std::move(failures_.front());
    failures_.pop_front();
    handle_failure(f);
  }
}

// -- starting ----------------------------------------------------------------------------------

void supervisor_impl::start_children(key_list keys, started_handler done) {
  start_queue_.assign(keys.begin(), keys.end());
  start_done_ = std::move(done);
  start_next();
}

void supervisor_impl::start_next() {
  while (!start_queue_.empty()) {
    const auto key = start_queue_.front();
    start_queue_.pop_front();
    auto* c = find(key);
    if (c == nullptr || c->actor) {
      continue;
    }
    ++c->incarnation;
    auto started = invoke_start(*c);
    if (!started) {
      finish_start(key, start_failed(c->spec.id, std::move(started.error())));
      return;
    }
    set_actor(*c, key, std::move(*started));
    monitor(c->actor);
    if (c->spec.needs_ready_ack) {
      c->is_starting = true;
      const auto inc = c->incarnation;
      request(c->actor, caf::infinite, ready_atom::value)
          .then([this, key, inc](caf::ok_atom) { on_ready(key, inc, caf::error{}); },
                [this, key, inc](caf::error& err) { on_ready(key, inc, std::move(err)); });
      return;  // continues in on_ready or on_down
    }
  }
  finish_start(no_child, caf::error{});
}

void supervisor_impl::finish_start(child_key failed, caf::error cause) {
  start_queue_.clear();
  auto done = std::move(start_done_);
  start_done_ = nullptr;
  if (done) {
    done(failed, std::move(cause));
  }
}

caf::expected<caf::actor> supervisor_impl::invoke_start(child_record& c) {
  try {
    auto result = c.spec.start(this, c.args);
    if (result && !*result) {
      return caf::make_error(caf::sec::invalid_argument, "start function returned no actor");
    }
    return result;
  } catch (const std::exception& e) {
    return make_error(errc::unhandled_exception, caf::make_message(std::string{e.what()}));
  } catch (...) {
    return make_error(errc::unhandled_exception, caf::make_message(std::string{"unknown"}));
  }
}

void supervisor_impl::on_ready(child_key key, std::uint64_t incarnation, caf::error err) {
  auto* c = find(key);
  if (c == nullptr || c->incarnation != incarnation || !c->is_starting) {
    return;  // its down_msg came first and was handled
  }
  if (!err) {
    c->is_starting = false;
    start_next();
    return;
  }
  if (err == caf::sec::request_receiver_down) {
    return;  // it died; its down_msg follows and carries the real reason
  }
  // Alive but cannot acknowledge (e.g. not a supervisor): a start failure.
  c->is_starting = false;
  send_exit(c->actor, caf::exit_reason::kill);
  clear_actor(*c);
  finish_start(key, start_failed(c->spec.id, std::move(err)));
}

// -- stopping ----------------------------------------------------------------------------------

std::deque<key_list> supervisor_impl::stop_plan(const key_list& keys_in_start_order) const {
  std::deque<key_list> plan;
  if (keys_in_start_order.empty()) {
    return plan;
  }
  if (is_simple()) {
    // Dynamic children have no order: ask them all at once (as OTP does).
    plan.push_back(keys_in_start_order);
    return plan;
  }
  for (auto i = keys_in_start_order.rbegin(); i != keys_in_start_order.rend(); ++i) {
    plan.push_back(key_list{*i});
  }
  return plan;
}

void supervisor_impl::stop_children(std::deque<key_list> plan, std::function<void()> done) {
  stop_queue_ = std::move(plan);
  stop_done_ = std::move(done);
  stopping_count_ = 0;
  stop_next_batch();
}

void supervisor_impl::stop_next_batch() {
  while (stopping_count_ == 0) {
    if (stop_queue_.empty()) {
      auto done = std::move(stop_done_);
      stop_done_ = nullptr;
      if (done) {
        done();
      }
      return;
    }
    auto batch = std::move(stop_queue_.front());
    stop_queue_.pop_front();
    for (auto key : batch) {
      auto* c = find(key);
      if (c != nullptr && c->actor && !c->is_stopping) {
        begin_stop(*c, key);
        ++stopping_count_;
      }
    }
  }
}

void supervisor_impl::begin_stop(child_record& c, child_key key) {
  c.is_stopping = true;
  if (c.spec.shutdown <= brutal_kill) {
    send_exit(c.actor, caf::exit_reason::kill);
    return;
  }
  send_exit(c.actor, caf::exit_reason::user_shutdown);
  if (c.spec.shutdown != infinity) {
    delayed_send(this, c.spec.shutdown, stop_timeout_atom::value, key, c.incarnation);
  }
}

void supervisor_impl::on_stop_timeout(child_key key, std::uint64_t incarnation) {
  auto* c = find(key);
  if (c != nullptr && c->incarnation == incarnation && c->is_stopping && c->actor) {
    send_exit(c->actor, caf::exit_reason::kill);
  }
}

// -- events ------------------------------------------------------------------------------------

void supervisor_impl::on_down(caf::down_msg& dm) {
  const auto key = key_of(dm.source);
  if (key == no_child) {
    return;  // not (or no longer) one of ours
  }
  auto& c = *find(key);
  clear_actor(c);
  if (c.is_stopping) {
    c.is_stopping = false;
    if (--stopping_count_ == 0) {
      stop_next_batch();
    }
    return;
  }
  if (c.is_starting) {
    c.is_starting = false;
    finish_start(key, start_failed(c.spec.id, std::move(dm.reason)));
    return;
  }
  failures_.push_back(child_failure{key, c.incarnation, std::move(dm.reason)});
  process_pending();
}

void supervisor_impl::on_exit_msg(caf::exit_msg& em) {
  // We never link to children, so this comes from a parent or an operator. Like CAF's default
  // exit handler, a normal exit is not a reason to stop.
  if (!em.reason || em.reason == caf::exit_reason::normal) {
    return;
  }
  request_shutdown(std::move(em.reason));
}

void supervisor_impl::request_shutdown(caf::error reason) {
  if (is_shutting_down_) {
    return;  // the first reason wins
  }
  if (is_busy_) {
    if (!has_pending_shutdown_) {
      has_pending_shutdown_ = true;
      pending_shutdown_reason_ = std::move(reason);
    }
    return;
  }
  shutdown(std::move(reason));
}

void supervisor_impl::shutdown(caf::error reason) {
  is_shutting_down_ = true;
  failures_.clear();
  begin_op();
  stop_children(stop_plan(all_keys()), [this, reason]() mutable {
    for (auto& rp : stop_promises_) {
      rp.deliver(caf::ok_atom::value);
    }
    stop_promises_.clear();
    quit(std::move(reason));
  });
}

void supervisor_impl::handle_failure(const child_failure& f) {
  auto* c = find(f.key);
  if (c == nullptr || c->incarnation != f.incarnation || c->actor) {
    return;  // stale: removed or restarted meanwhile (e.g. by a one_for_all restart)
  }
  const auto type = c->spec.restart;
  const bool wants_restart = type == restart_type::permanent ||
                             (type == restart_type::transient && !is_normal_exit(f.reason));
  if (!wants_restart) {
    if (type == restart_type::temporary || is_simple()) {
      erase_child(f.key);
    }
    return;
  }
  if (!intensity_.add_restart(now())) {
    shutdown(make_error(errc::max_restarts_exceeded, caf::make_message(c->spec.id, f.reason)));
    return;
  }
  restart(f.key);
}

void supervisor_impl::restart(child_key key) {
  key_list to_stop;
  key_list to_start;
  const auto keys = all_keys();
  const auto pos = std::find(keys.begin(), keys.end(), key);
  switch (spec_.strategy) {
    case restart_strategy::one_for_one:
    case restart_strategy::simple_one_for_one:
      to_start = {key};
      break;
    case restart_strategy::one_for_all:
      to_start = keys;
      std::copy_if(keys.begin(), keys.end(), std::back_inserter(to_stop),
                   [key](child_key k) { return k != key; });
      break;
    case restart_strategy::rest_for_one:
      to_start.assign(pos, keys.end());
      to_stop.assign(pos + 1, keys.end());
      break;
  }
  begin_op();
  stop_children(stop_plan(to_stop), [this, key, to_stop, to_start] {
    key_list starting;
    for (auto k : to_start) {
      auto* c = find(k);
      if (c == nullptr) {
        continue;
      }
      // OTP: a temporary child stopped because of a sibling is not restarted, but removed.
      const bool was_stopped = std::find(to_stop.begin(), to_stop.end(), k) != to_stop.end();
      if (k != key && was_stopped && c->spec.restart == restart_type::temporary) {
        erase_child(k);
        continue;
      }
      starting.push_back(k);
    }
    start_children(std::move(starting), [this](child_key failed, caf::error cause) {
      if (failed != no_child) {
        // Counts as another failure of that child: retried within the restart budget.
        failures_.push_back(child_failure{failed, find(failed)->incarnation, std::move(cause)});
      }
      end_op();
    });
  });
}

void supervisor_impl::terminate(child_key key, caf::response_promise rp) {
  auto finish = [this, key, rp]() mutable {
    auto* c = find(key);
    if (c != nullptr && (c->spec.restart == restart_type::temporary || is_simple())) {
      erase_child(key);
    }
    rp.deliver(caf::ok_atom::value);
  };
  if (!find(key)->actor) {
    finish();
    return;
  }
  begin_op();
  std::deque<key_list> plan;
  plan.push_back(key_list{key});
  stop_children(std::move(plan), [this, finish]() mutable {
    finish();
    end_op();
  });
}

// -- request handlers --------------------------------------------------------------------------

void supervisor_impl::reply_started(caf::response_promise rp, child_key key, child_key failed,
                                    caf::error cause) {
  if (failed != no_child) {
    rp.deliver(std::move(cause));
  } else {
    rp.deliver(find(key)->actor);
  }
}

void supervisor_impl::handle_start_child(child_spec cs) {
  auto rp = make_response_promise();
  if (is_simple()) {
    rp.deliver(make_error(errc::not_supported));
    return;
  }
  if (auto err = validate_child(cs)) {
    rp.deliver(std::move(err));
    return;
  }
  if (auto existing = key_of_id(cs.id); existing != no_child) {
    const bool is_running = static_cast<bool>(find(existing)->actor);
    rp.deliver(make_error(is_running ? errc::already_started : errc::already_present));
    return;
  }
  const auto key = add_child(std::move(cs), caf::message{});
  begin_op();
  start_children({key}, [this, rp, key](child_key failed, caf::error cause) mutable {
    if (failed != no_child) {
      erase_child(key);  // OTP: a spec whose child fails to start is not kept
    }
    reply_started(rp, key, failed, std::move(cause));
    end_op();
  });
}

void supervisor_impl::handle_start_dynamic(caf::message args) {
  auto rp = make_response_promise();
  if (!is_simple()) {
    rp.deliver(make_error(errc::not_supported));
    return;
  }
  const auto key = add_child(spec_.children.front(), std::move(args));
  begin_op();
  start_children({key}, [this, rp, key](child_key failed, caf::error cause) mutable {
    if (failed != no_child) {
      erase_child(key);
    }
    reply_started(rp, key, failed, std::move(cause));
    end_op();
  });
}

void supervisor_impl::handle_restart_child(const std::string& id) {
  auto rp = make_response_promise();
  if (is_simple()) {
    rp.deliver(make_error(errc::not_supported));
    return;
  }
  const auto key = key_of_id(id);
  if (key == no_child) {
    rp.deliver(make_error(errc::not_found));
    return;
  }
  if (find(key)->actor) {
    rp.deliver(make_error(errc::running));
    return;
  }
  begin_op();
  start_children({key}, [this, rp, key](child_key failed, caf::error cause) mutable {
    reply_started(rp, key, failed, std::move(cause));
    end_op();
  });
}

void supervisor_impl::handle_terminate_child(const std::string& id) {
  auto rp = make_response_promise();
  if (is_simple()) {
    rp.deliver(make_error(errc::not_supported));
    return;
  }
  const auto key = key_of_id(id);
  if (key == no_child) {
    rp.deliver(make_error(errc::not_found));
    return;
  }
  terminate(key, rp);
}

void supervisor_impl::handle_terminate_child(const caf::actor& who) {
  auto rp = make_response_promise();
  const auto key = who ? key_of(who.address()) : no_child;
  if (key == no_child) {
    rp.deliver(make_error(errc::not_found));
    return;
  }
  terminate(key, rp);
}

void supervisor_impl::handle_delete_child(const std::string& id) {
  auto rp = make_response_promise();
  if (is_simple()) {
    rp.deliver(make_error(errc::not_supported));
    return;
  }
  const auto key = key_of_id(id);
  if (key == no_child) {
    rp.deliver(make_error(errc::not_found));
    return;
  }
  if (find(key)->actor) {
    rp.deliver(make_error(errc::running));
    return;
  }
  erase_child(key);
  rp.deliver(caf::ok_atom::value);
}

std::vector<child_info> supervisor_impl::which_children() const {
  std::vector<child_info> result;
  result.reserve(children_.size());
  for (const auto& kv : children_) {
    const auto& c = kv.second;
    result.push_back(child_info{c.spec.id, c.actor, c.spec.restart, c.spec.type});
  }
  return result;
}

child_counts supervisor_impl::count_children() const {
  child_counts n;
  n.specs = children_.size();
  for (const auto& kv : children_) {
    const auto& c = kv.second;
    n.active += c.actor ? 1 : 0;
    (c.spec.type == child_type::supervisor ? n.supervisors : n.workers) += 1;
  }
  return n;
}

}  // namespace

// -- errors ------------------------------------------------------------------------------------

caf::error make_error(errc code) {
  return caf::error{static_cast<std::uint8_t>(code), error_category};
}

caf::error make_error(errc code, caf::message context) {
  return caf::error{static_cast<std::uint8_t>(code), error_category, std::move(context)};
}

const char* to_string(errc code) {
  switch (code) {
    case errc::start_failed:
      return "start_failed";
    case errc::max_restarts_exceeded:
      return "max_restarts_exceeded";
    case errc::not_found:
      return "not_found";
    case errc::already_started:
      return "already_started";
    case errc::already_present:
      return "already_present";
    case errc::running:
      return "running";
    case errc::not_supported:
      return "not_supported";
    case errc::invalid_spec:
      return "invalid_spec";
    case errc::unhandled_exception:
      return "unhandled_exception";
  }
  return "unknown";
}

bool is_error(const caf::error& err, errc code) {
  return err.category() == error_category && err.code() == static_cast<std::uint8_t>(code);
}

void add_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(error_category,
                         [](std::uint8_t code, caf::atom_value, const caf::message& context) {
                           std::string result = "tern_sup:";
                           result += to_string(static_cast<errc>(code));
                           if (!context.empty()) {
                             result += caf::to_string(context);
                           }
                           return result;
                         });
}

// -- spawning ----------------------------------------------------------------------------------

caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_spec spec) {
  return sys.spawn<supervisor_impl>(std::move(spec));
}

caf::expected<caf::actor> start_supervisor(caf::actor_system& sys, supervisor_spec spec,
                                           std::chrono::milliseconds timeout) {
  auto sup = spawn_supervisor(sys, std::move(spec));
  caf::scoped_actor self{sys};
  self->monitor(sup);
  bool is_ready = false;
  caf::error err;
  self->request(sup, timeout, ready_atom::value)
      .receive([&](caf::ok_atom) { is_ready = true; }, [&](caf::error& e) { err = std::move(e); });
  if (is_ready) {
    self->demonitor(sup);
    return sup;
  }
  if (err == caf::sec::request_timeout) {
    self->send_exit(sup, caf::exit_reason::user_shutdown);
    return err;
  }
  // It is gone; its down_msg carries the reason (e.g. errc::start_failed).
  self->receive([&](caf::down_msg& dm) { err = std::move(dm.reason); },
                caf::after(timeout) >> [] {});
  if (!err) {
    err = caf::make_error(caf::sec::request_receiver_down);
  }
  return err;
}

child_spec supervisor_child(std::string id, supervisor_spec spec, restart_type restart) {
  child_spec cs;
  cs.id = std::move(id);
  cs.start = [spec = std::move(spec)](caf::local_actor* sup,
                                      const caf::message&) -> caf::expected<caf::actor> {
    return spawn_supervisor(sup->system(), spec);
  };
  cs.restart = restart;
  cs.shutdown = infinity;
  cs.type = child_type::supervisor;
  cs.needs_ready_ack = true;
  return cs;
}

void quit_on_exception(caf::scheduled_actor* self) {
  self->set_exception_handler([](caf::scheduled_actor*, std::exception_ptr& eptr) -> caf::error {
    try {
      std::rethrow_exception(eptr);
    } catch (const std::exception& e) {
      return make_error(errc::unhandled_exception, caf::make_message(std::string{e.what()}));
    } catch (...) {
      return make_error(errc::unhandled_exception, caf::make_message(std::string{"unknown"}));
    }
  });
}

}  // namespace tern::supervision
