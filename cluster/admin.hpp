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

}  // namespace tern::cluster

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::cluster::cluster_status)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::cluster::admin_reply)
