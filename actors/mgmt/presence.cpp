// Client presence: registry updates and $SYS client events (emqttd_mod_presence).
#include "actors/mgmt/presence.hpp"

#include <chrono>

#include <nlohmann/json.hpp>

#include "actors/broker/dispatch.hpp"

namespace tern::actors::mgmt {

namespace {

std::int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string peer_address(const std::string& peer) {
  // "1.2.3.4:5678" or "[::1]:5678" -> the address part
  auto colon = peer.rfind(':');
  auto addr = colon == std::string::npos ? peer : peer.substr(0, colon);
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') {
    addr = addr.substr(1, addr.size() - 2);
  }
  return addr;
}

}  // namespace

client_info make_client_info(const proto::mqtt::connect& c, const std::string& peer,
                             std::uint64_t conn_id, const caf::actor& conn) {
  client_info info;
  info.client_id = c.client_id;
  info.username = c.username.value_or("");
  info.peer = peer;
  info.proto_level = static_cast<std::uint8_t>(c.version);
  info.keepalive = c.keep_alive;
  info.clean_start = c.clean_start;
  info.connected_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  info.conn_id = conn_id;
  info.conn = conn;
  return info;
}

std::string sys_prefix(const broker::context& ctx) {
  return "$SYS/brokers/" + ctx.cfg.node_name + "/";
}

void publish_sys(broker::context& ctx, std::string topic, std::string payload, bool retain) {
  auto m = std::make_shared<message>();
  m->topic = std::move(topic);
  m->payload = std::move(payload);
  m->retain = retain;
  m->received_at = std::chrono::steady_clock::now();
  broker::dispatch(ctx, m);
}

void client_connected(broker::context& ctx, client_info c) {
  if (!ctx.cfg.sys.presence) {
    ctx.clients.add(std::move(c));
    return;
  }
  auto topic = sys_prefix(ctx) + "clients/" + c.client_id + "/connected";
  nlohmann::json j = {
      {"clientid", c.client_id},
      {"username", c.username.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.username)},
      {"ipaddress", peer_address(c.peer)},
      {"session", !c.clean_start},
      {"protocol", c.proto_level},
      {"connack", 0},
      {"ts", unix_seconds()},
  };
  // Registered before the event goes out: whoever reacts to it finds the client listed.
  ctx.clients.add(std::move(c));
  publish_sys(ctx, std::move(topic), j.dump(), false);
}

void client_disconnected(broker::context& ctx, const std::string& client_id, std::uint64_t conn_id,
                         const std::string& reason) {
  auto info = ctx.clients.find(client_id);
  if (!ctx.clients.remove(client_id, conn_id)) {
    return;  // taken over: the new connection owns the entry now
  }
  if (ctx.cfg.sys.presence) {
    nlohmann::json j = {
        {"clientid", client_id},
        {"username", info && !info->username.empty() ? nlohmann::json(info->username)
                                                     : nlohmann::json(nullptr)},
        {"reason", reason},
        {"ts", unix_seconds()},
    };
    publish_sys(ctx, sys_prefix(ctx) + "clients/" + client_id + "/disconnected", j.dump(), false);
  }
}

}  // namespace tern::actors::mgmt
