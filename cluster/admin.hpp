// Requests the management API sends to the cluster actor (ctx->cluster): the member view,
// readiness, join an address, leave, forget a stopped node. Cheap header (no actor code).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

namespace tern::cluster {

struct member_status {
  std::string name;
  std::string address;           ///< advertised host:port of its cluster listener
  std::uint64_t incarnation = 0;  ///< 0 when unknown (a stopped node)
  bool up = false;
  bool self = false;
};

struct cluster_status {
  std::string self;
  std::vector<member_status> members;  ///< this node first, then by name
  std::vector<std::string> seeds;      ///< configured seeds and addresses given to join
  bool ready = true;                   ///< see docs/cluster.md (readiness)
  std::string ready_reason;
};

/// One node's connected clients, as the management API shows them.
struct client_entry {
  std::string client_id;
  std::string username;
  std::string peer;
  std::uint8_t proto_level = 4;
  std::uint16_t keepalive = 0;
  bool clean_start = true;
  std::int64_t connected_at_ms = 0;
};

struct node_clients {
  std::string node;
  std::vector<client_entry> clients;
};

/// The other members' clients; `missing`: members that did not answer in time.
struct remote_clients {
  std::vector<node_clients> nodes;
  std::vector<std::string> missing;
};

/// A client looked up on the node that holds it (`node` empty: connected to no member).
struct remote_client {
  std::string node;
  client_entry info;
};

/// Answer to join / leave / remove: an HTTP-like status and a message.
struct admin_reply {
  unsigned status = 200;
  std::string message;
};

/// () -> cluster_status
using cstatus_atom = caf::atom_constant<caf::atom("cstatus")>;
/// (std::string address) -> admin_reply, once the handshake completed or failed
using cjoin_atom = caf::atom_constant<caf::atom("cjoin")>;
/// () -> admin_reply: tell the members this node leaves, keep running alone
using cdepart_atom = caf::atom_constant<caf::atom("cdepart")>;
/// (std::string node) -> admin_reply: forget a stopped node cluster-wide
using cremove_atom = caf::atom_constant<caf::atom("cremove")>;
/// () -> remote_clients: the clients connected to the other members (each asked once)
using cclients_atom = caf::atom_constant<caf::atom("cclients")>;
/// (std::string client_id, bool kick) -> remote_client: a client connected to another member
/// (kicked there when `kick`)
using cclient_atom = caf::atom_constant<caf::atom("cclient")>;

}  // namespace tern::cluster

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::cluster::cluster_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::cluster::admin_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::cluster::remote_clients)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::cluster::remote_client)
