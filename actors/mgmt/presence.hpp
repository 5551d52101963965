// Client presence: the registry of connected clients and emqttd's $SYS connected/disconnected
// events. Called by connection actors, once per connect and once per disconnect.
#pragma once

#include <cstdint>
#include <string>

#include "actors/broker/context.hpp"
#include "proto/mqtt/packet.hpp"

namespace tern::actors::mgmt {

/// The registry entry for an accepted CONNECT (connected now).
client_info make_client_info(const proto::mqtt::connect& c, const std::string& peer,
                             std::uint64_t conn_id, const caf::actor& conn);

/// Registers `c` and, when [sys] presence is on, publishes
/// $SYS/brokers/<node>/clients/<id>/connected with emqttd's JSON payload.
void client_connected(broker::context& ctx, client_info c);

/// Unregisters the client if `conn_id` is still its connection and publishes
/// .../clients/<id>/disconnected with the reason. A connection that never completed
/// CONNECT must not call this.
void client_disconnected(broker::context& ctx, const std::string& client_id, std::uint64_t conn_id,
                         const std::string& reason);

/// The $SYS prefix of this node: "$SYS/brokers/<node>/".
std::string sys_prefix(const broker::context& ctx);

/// Publishes a broker-originated message through the normal dispatch path.
void publish_sys(broker::context& ctx, std::string topic, std::string payload, bool retain);

}  // namespace tern::actors::mgmt
