// supervisor.hpp: OTP-style supervisors for CAF actors (general library, nothing MQTT-specific).
//
// A supervisor is an actor that starts child actors from child specs, monitors them and restarts
// them according to a strategy, within a restart budget (intensity). It is the CAF 0.17 analogue
// of Erlang/OTP's `supervisor` behaviour.
//
// Ownership and lifetime
// - The supervisor owns its children: it starts them (calling the spec's start function in its own
//   context, in spec order), monitors them (it is never linked to them, so a crashing child cannot
//   kill it) and stops them (reverse start order) before it exits itself.
// - Stopping one child: send it exit_msg(exit_reason::user_shutdown), wait for its down_msg for up
//   to `child_spec::shutdown`, then exit_reason::kill. `brutal_kill` kills at once; `infinity`
//   waits forever. The next child is asked only once the previous one is down. (Children of a
//   simple_one_for_one supervisor have no order; they are all asked at once, then each is killed
//   after its timeout.)
// - A supervisor ends in one of these ways:
//   * exit_msg with a reason other than normal (e.g. anon_send_exit(sup, user_shutdown), or its
//     parent supervisor stopping it): stops all children, then quits with that same reason.
//     An exit_msg with exit_reason::normal is ignored, as CAF's default exit handler does.
//   * `stop_atom` request: stops all children, replies ok_atom, quits with exit_reason::normal.
//   * restart intensity exceeded: stops all children, then quits with
//     errc::max_restarts_exceeded (context: child id, the child's exit reason). Its parent sees
//     this abnormal exit and applies its own strategy: failures move up through nested supervisors.
//   * a child fails to start during the initial start: the children already started are stopped
//     (reverse order) and the supervisor quits with errc::start_failed (context: child id, cause).
//   * an invalid supervisor_spec: quits at once with errc::invalid_spec.
//   * exit_reason::kill (cannot be trapped) or a bug in the supervisor: there is no orderly
//     shutdown; every child still running gets exit_reason::kill, so no child outlives it.
// - ~caf::actor_system() blocks until every actor is gone: whoever spawns a root supervisor must
//   stop it (exit_msg or stop_atom) before the actor system is destroyed.
//
// Restart rules (as in OTP)
// - permanent: always restarted. temporary: never restarted; its spec is removed when it ends.
//   transient: restarted only after an abnormal exit, i.e. a reason other than
//   exit_reason::normal and exit_reason::user_shutdown.
// - one_for_one: only the failed child is restarted. one_for_all: all other running children are
//   stopped (reverse order), then all are started again in spec order. rest_for_one: the children
//   started after the failed one are stopped (reverse order), then the failed one and those after
//   it are started in order. In both, temporary children stopped this way are removed.
//   simple_one_for_one: like one_for_one, for children all made from one template spec and
//   started dynamically with `start_child_atom` plus a caf::message of arguments.
// - Each restart counts against the budget: more than `intensity` restarts within `period`
//   makes the supervisor give up (see above). A restart whose start function fails counts as a
//   new failure of that child, so a child that cannot start exhausts the budget instead of looping.
//
// Messages the supervisor accepts (see supervisor_actor for the typed view). While it is busy
// stopping or starting children (a restart, a terminate_child, the initial start), requests are
// kept in its mailbox and answered afterwards in arrival order.
//   (ready_atom)                        -> ok_atom once the initial children are all started
//                                          (requests made before then wait). If the supervisor
//                                          fails to start, the request fails and a monitor sees
//                                          the reason.
//   (start_child_atom, child_spec)      -> caf::actor   add and start a child (not for
//                                          simple_one_for_one). Errors: invalid_spec,
//                                          already_started, already_present, start_failed (the
//                                          spec is not kept), not_supported.
//   (start_child_atom, caf::message)    -> caf::actor   simple_one_for_one only: start a child from
//                                          the template, passing the message to its start
//                                          function. Errors: start_failed, not_supported.
//   (restart_child_atom, std::string)   -> caf::actor   start a stopped static child again.
//                                          Errors: not_found, running, not_supported.
//   (terminate_child_atom, std::string) -> ok_atom      stop a static child by id; its spec stays
//                                          (unless temporary). Not running: ok. Errors: not_found,
//                                          not_supported (simple_one_for_one: use the actor).
//   (terminate_child_atom, caf::actor)  -> ok_atom      stop a child by handle; a temporary or
//                                          simple_one_for_one child is removed. Errors: not_found.
//   (delete_child_atom, std::string)    -> ok_atom      remove the spec of a stopped static child.
//                                          Errors: not_found, running, not_supported.
//   (which_children_atom)               -> std::vector<child_info> in start order
//   (count_children_atom)               -> child_counts
//   (stop_atom)                         -> ok_atom after all children are down; then it quits.
//
// Start functions run inside the supervisor actor: they must not block and must not throw
// (a throw is caught and reported as a start failure). A child of type `supervisor` (and any child
// whose spec sets needs_ready_ack) is considered started only when it answers (ready_atom) with
// ok_atom, so nested supervision trees start depth-first, in order, like OTP's.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "caf/actor.hpp"
#include "caf/allowed_unsafe_message_type.hpp"
#include "caf/atom.hpp"
#include "caf/error.hpp"
#include "caf/expected.hpp"
#include "caf/fwd.hpp"
#include "caf/message.hpp"
#include "caf/replies_to.hpp"
#include "caf/typed_actor.hpp"

namespace tern::supervision {

// -- atoms (the supervisor's request vocabulary; see the table above) --------------------------

using ready_atom = caf::atom_constant<caf::atom("supready")>;
using start_child_atom = caf::atom_constant<caf::atom("startchild")>;
using restart_child_atom = caf::atom_constant<caf::atom("rstrtchild")>;
using terminate_child_atom = caf::atom_constant<caf::atom("termchild")>;
using delete_child_atom = caf::atom_constant<caf::atom("delchild")>;
using which_children_atom = caf::atom_constant<caf::atom("whichchild")>;
using count_children_atom = caf::atom_constant<caf::atom("countchild")>;
using stop_atom = caf::atom_constant<caf::atom("supstop")>;

// -- errors ------------------------------------------------------------------------------------

/// Error codes of this library, category `error_category` ("tern_sup").
enum class errc : std::uint8_t {
  start_failed = 1,       ///< a start function failed; context: (child id, cause)
  max_restarts_exceeded,  ///< restart intensity exceeded; context: (child id, child's reason)
  not_found,              ///< no child with that id or handle
  already_started,        ///< start_child: a running child has that id
  already_present,        ///< start_child: a stopped child spec has that id
  running,                ///< delete_child / restart_child on a running child
  not_supported,          ///< request not valid for this strategy
  invalid_spec,           ///< malformed child or supervisor spec; context: explanation
  unhandled_exception,    ///< see quit_on_exception; context: what()
};

inline constexpr caf::atom_value error_category = caf::atom("tern_sup");

/// Enables `caf::error e = errc::x;` (found by ADL).
caf::error make_error(errc code);
caf::error make_error(errc code, caf::message context);

/// Name of the code, e.g. "max_restarts_exceeded".
const char* to_string(errc code);

/// True if `err` is `code` of this library's category.
bool is_error(const caf::error& err, errc code);

/// Registers a renderer for this library's errors, so `sys.render(err)` prints names.
void add_error_category(caf::actor_system_config& cfg);

// -- child specs -------------------------------------------------------------------------------

enum class restart_type { permanent, transient, temporary };

enum class child_type { worker, supervisor };

enum class restart_strategy { one_for_one, one_for_all, rest_for_one, simple_one_for_one };

/// Shutdown timeout meaning "kill at once, do not ask first".
inline constexpr std::chrono::milliseconds brutal_kill{0};
/// Shutdown timeout meaning "wait for the child however long it takes".
inline constexpr std::chrono::milliseconds infinity = std::chrono::milliseconds::max();

/// Starts one child. `sup` is the supervisor (use `sup->spawn(...)` or `sup->system()`), `args`
/// the arguments given to start_child under simple_one_for_one (empty otherwise). Returns the
/// child's handle, or an error; an invalid handle is an error too. Runs inside the supervisor.
using start_function =
    std::function<caf::expected<caf::actor>(caf::local_actor* sup, const caf::message& args)>;

struct child_spec {
  std::string id;  ///< unique among the supervisor's static children; must not be empty
  start_function start;
  restart_type restart = restart_type::permanent;
  /// How long a child may take to exit after user_shutdown; see brutal_kill, infinity.
  std::chrono::milliseconds shutdown = std::chrono::milliseconds{5000};
  child_type type = child_type::worker;
  /// If true, the child counts as started only once it replied ok_atom to (ready_atom); true for
  /// supervisors (supervisor_child sets it). A worker may opt in to finish its own startup first.
  bool needs_ready_ack = false;
};

/// Description of a supervisor: strategy, restart budget and children (in start order).
struct supervisor_spec {
  restart_strategy strategy = restart_strategy::one_for_one;
  /// At most `intensity` restarts within `period`; one more and the supervisor gives up.
  std::size_t intensity = 1;
  std::chrono::milliseconds period = std::chrono::seconds{5};
  /// Static children in start order. For simple_one_for_one: exactly one template spec.
  std::vector<child_spec> children;
  /// Time source for the restart budget; empty means std::chrono::steady_clock::now.
  std::function<std::chrono::steady_clock::time_point()> clock;
};

/// One row of which_children.
struct child_info {
  std::string id;
  caf::actor actor;  ///< invalid if the child is not running
  restart_type restart = restart_type::permanent;
  child_type type = child_type::worker;
};

/// Reply to count_children.
struct child_counts {
  std::size_t specs = 0;        ///< child specs (static) or children (simple_one_for_one)
  std::size_t active = 0;       ///< running children
  std::size_t supervisors = 0;  ///< specs of type supervisor
  std::size_t workers = 0;      ///< specs of type worker
};

// -- spawning ----------------------------------------------------------------------------------

/// Spawns a supervisor. It starts its children asynchronously, in order; use ready_atom (or
/// start_supervisor) to learn when they are up or why they failed. The caller owns the handle
/// and must stop the supervisor before the actor system is destroyed.
caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_spec spec);

/// Blocking convenience for main() and tests, never for use inside an actor: spawns a supervisor
/// and waits (up to `timeout`) until its initial children are started. Returns its exit reason
/// if it failed to start (e.g. errc::start_failed), or caf::sec::request_timeout (after telling
/// it to shut down) if it did not finish in time.
caf::expected<caf::actor> start_supervisor(caf::actor_system& sys, supervisor_spec spec,
                                           std::chrono::milliseconds timeout = std::chrono::seconds{
                                               30});

/// A child spec whose start function spawns a nested supervisor (type supervisor, shutdown
/// infinity, needs_ready_ack). If the nested one fails to start, so does this child.
child_spec supervisor_child(std::string id, supervisor_spec spec,
                            restart_type restart = restart_type::permanent);

/// Installs an exception handler on `self` that ends the actor with
/// errc::unhandled_exception (context: what()) instead of CAF's default, which prints to the
/// console and uses sec::runtime_error. Either way the supervisor sees an abnormal exit.
void quit_on_exception(caf::scheduled_actor* self);

// -- typed view --------------------------------------------------------------------------------

/// Typed view of a supervisor for compile-time checked requests:
/// `caf::actor_cast<supervisor_actor>(spawn_supervisor(sys, spec))`.
using supervisor_actor =
    caf::typed_actor<caf::replies_to<ready_atom>::with<caf::ok_atom>,
                     caf::replies_to<start_child_atom, child_spec>::with<caf::actor>,
                     caf::replies_to<start_child_atom, caf::message>::with<caf::actor>,
                     caf::replies_to<restart_child_atom, std::string>::with<caf::actor>,
                     caf::replies_to<terminate_child_atom, std::string>::with<caf::ok_atom>,
                     caf::replies_to<terminate_child_atom, caf::actor>::with<caf::ok_atom>,
                     caf::replies_to<delete_child_atom, std::string>::with<caf::ok_atom>,
                     caf::replies_to<which_children_atom>::with<std::vector<child_info>>,
                     caf::replies_to<count_children_atom>::with<child_counts>,
                     caf::replies_to<stop_atom>::with<caf::ok_atom>>;

}  // namespace tern::supervision

// Local-only message types (they hold std::function / handles; never sent across nodes).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::supervision::child_spec)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::supervision::child_counts)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<tern::supervision::child_info>)
