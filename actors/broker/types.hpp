// CAF message vocabulary of the broker's actors: atoms and the (node-local) payload types.
//
// Heavy (pulls in caf/all.hpp): include it only from actor implementation files.
#pragma once

#include <caf/all.hpp>

#include "actors/message.hpp"
#include "actors/router/route_table.hpp"
#include "actors/session/backlog.hpp"
#include "actors/session/session.hpp"
#include "proto/mqtt/packet.hpp"

namespace tern::actors {

namespace connection {
class conn_io;
}
using conn_io_ptr = std::shared_ptr<connection::conn_io>;

// connection <- conn_io
using packet_atom = caf::atom_constant<caf::atom("packet")>;
using closed_atom = caf::atom_constant<caf::atom("closed")>;
// connection <- session / manager
using kick_atom = caf::atom_constant<caf::atom("kick")>;
// session manager
using open_atom = caf::atom_constant<caf::atom("open")>;
using expire_atom = caf::atom_constant<caf::atom("expire")>;
using count_atom = caf::atom_constant<caf::atom("count")>;
// session
using attach_atom = caf::atom_constant<caf::atom("attach")>;
using detach_atom = caf::atom_constant<caf::atom("detach")>;
using deliver_atom = caf::atom_constant<caf::atom("deliver")>;
using puback_atom = caf::atom_constant<caf::atom("puback")>;
using pubrec_atom = caf::atom_constant<caf::atom("pubrec")>;
using pubcomp_atom = caf::atom_constant<caf::atom("pubcomp")>;
using await_rel_atom = caf::atom_constant<caf::atom("awaitrel")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using unsub_atom = caf::atom_constant<caf::atom("unsub")>;
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using terminate_atom = caf::atom_constant<caf::atom("terminate")>;
// cluster: claim a client id cluster-wide (-> the session of another node, encoded, or "");
// hand a session over to another node (session manager / session -> encoded saved session)
using claim_atom = caf::atom_constant<caf::atom("claim")>;
using handover_atom = caf::atom_constant<caf::atom("handover")>;
using unclaim_atom = caf::atom_constant<caf::atom("unclaim")>;
// cluster: a session moving to another node. The old node's session forwards what still
// reaches it (moved_msg_atom: session -> cluster -> other node's session manager -> session)
// and then says it is done (move_done_atom); the new node's session holds its own
// deliveries until then (hold_atom), so that nothing is lost, doubled or reordered.
using moved_msg_atom = caf::atom_constant<caf::atom("movedmsg")>;
using move_done_atom = caf::atom_constant<caf::atom("movedone")>;
using hold_atom = caf::atom_constant<caf::atom("movehold")>;
using move_step_atom = caf::atom_constant<caf::atom("movestep")>;
using will_atom = caf::atom_constant<caf::atom("will")>;
// session manager and session: the client changed its Session Expiry Interval on DISCONNECT
using set_expiry_atom = caf::atom_constant<caf::atom("setexpiry")>;
// connection / session <- store writer: changes submitted under a token are written (or not)
using stored_atom = caf::atom_constant<caf::atom("stored")>;
// connection -> itself: handle the next packet held behind a publish that waited for the store
using replay_atom = caf::atom_constant<caf::atom("replay")>;
// session -> itself: is the client still taking nothing while publishers wait for it?
using stall_atom = caf::atom_constant<caf::atom("stall")>;
// node -> session manager -> restored sessions: answered once their routes exist
using ready_atom = caf::atom_constant<caf::atom("ready")>;
// router
using add_route_atom = caf::atom_constant<caf::atom("addroute")>;
using del_route_atom = caf::atom_constant<caf::atom("delroute")>;

/// Filters to add to the route table, with their options.
using route_adds = std::vector<std::pair<std::string, router::sub_options>>;

/// What a connection tells the session manager when a client connects.
struct open_request {
  std::string client_id;
  bool clean_start = true;
  std::chrono::milliseconds expiry{0};  ///< session lifetime after disconnect
  proto::mqtt::protocol_version version = proto::mqtt::protocol_version::v3_1_1;
  caf::actor conn;
  conn_io_ptr io;
  /// MQTT 5: CONNACK properties decided by the connection (the session writes the CONNACK).
  proto::mqtt::properties connack_props;
  /// MQTT 5: the client's Receive Maximum and Maximum Packet Size (0: not given).
  std::uint32_t receive_maximum = 0;
  std::uint32_t max_packet_size = 0;
  /// MQTT 5: the client's Topic Alias Maximum (outbound aliases; 0: none).
  std::uint16_t topic_alias_maximum = 0;
  /// Verified TLS client certificate of the connection (empty without one), for access
  /// control: subject CN and first DNS/e-mail/URI subject alternative name.
  std::string peer_cert_cn;
  std::string peer_cert_san;
};

/// The session's answer to a connection that attached.
struct open_reply {
  caf::actor session;
  bool session_present = false;
};

}  // namespace tern::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::proto::mqtt::packet)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::proto::mqtt::subscribe)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::proto::mqtt::unsubscribe)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::actors::conn_io_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::actors::session::delivery)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::actors::open_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::actors::open_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::actors::router::sub_options)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::actors::route_adds)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::actors::message_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tern::actors::flow::backlog_ptr)
