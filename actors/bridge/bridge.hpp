// Bridge actors: one per bridge that runs on this node, each an MQTT client of a remote
// broker over an Asio TCP socket on one of the node's I/O threads.
//
// The actor subscribes to the local filters of its `out` rules like a session does (the
// route table hands it matching messages), queues what it gets for the remote broker, and
// publishes what the remote broker sends for its `in` rules through the local dispatch.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <variant>

#include "actors/broker/context.hpp"
#include "supervision/supervisor.hpp"

namespace boost::asio {
class io_context;
}

namespace tern::actors::bridge {

/// The sockets of the node's bridges, so that the node can close them all at shutdown
/// (before its I/O threads are joined).
class link_set;

std::shared_ptr<link_set> make_link_set(boost::asio::io_context& io);

/// Closes every bridge socket and refuses new ones. Idempotent.
void close_all(link_set& links);

/// After close_all: waits up to `timeout` until the bridge actors have let go of their
/// sockets (call before the I/O context is destroyed).
void wait_released(link_set& links, std::chrono::milliseconds timeout);

/// The node's "bridges" supervisor (one_for_one): one bridge actor per bridge that may run on
/// this node. Fails (with a message naming the bridge and file) when a bridge's TLS
/// certificates cannot be loaded.
std::variant<supervision::child_spec, std::string> bridges_supervisor(
    const broker::context_ptr& ctx, std::shared_ptr<link_set> links);

}  // namespace tern::actors::bridge
