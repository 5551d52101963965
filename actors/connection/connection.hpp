// The connection actor: the MQTT protocol for one client socket (CONNECT, publish path,
// acks, keepalive, will), in front of the client's session actor.
#pragma once

#include <memory>

#include "actors/broker/context.hpp"

namespace caf {
class actor_system;
}

namespace tern::actors::connection {

class conn_io;

/// Spawns the connection actor for an accepted socket and starts reading from it.
void start_connection(caf::actor_system& sys, const broker::context_ptr& ctx,
                      const std::shared_ptr<conn_io>& io);

}  // namespace tern::actors::connection
