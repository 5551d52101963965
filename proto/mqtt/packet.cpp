// packet.cpp: equality, names and v3 CONNACK mapping for the MQTT packet model.
#include "proto/mqtt/packet.hpp"

#include <tuple>

namespace tern::proto::mqtt {

connack_v3 to_connack_v3(reason_code rc) {
  // Closest 3.1.1 return code (spec 3.1.1 table 3.1); anything without a better match is
  // reported as "server unavailable", which tells the client to retry later.
  switch (rc) {
    case reason_code::success:
      return connack_v3::accepted;
    case reason_code::unsupported_protocol_version:
      return connack_v3::unacceptable_protocol_version;
    case reason_code::client_identifier_not_valid:
      return connack_v3::identifier_rejected;
    case reason_code::bad_user_name_or_password:
      return connack_v3::bad_user_name_or_password;
    case reason_code::not_authorized:
    case reason_code::banned:
    case reason_code::bad_authentication_method:
      return connack_v3::not_authorized;
    default:
      return connack_v3::server_unavailable;
  }
}

const char* to_string(packet_type t) {
  switch (t) {
    case packet_type::connect:
      return "CONNECT";
    case packet_type::connack:
      return "CONNACK";
    case packet_type::publish:
      return "PUBLISH";
    case packet_type::puback:
      return "PUBACK";
    case packet_type::pubrec:
      return "PUBREC";
    case packet_type::pubrel:
      return "PUBREL";
    case packet_type::pubcomp:
      return "PUBCOMP";
    case packet_type::subscribe:
      return "SUBSCRIBE";
    case packet_type::suback:
      return "SUBACK";
    case packet_type::unsubscribe:
      return "UNSUBSCRIBE";
    case packet_type::unsuback:
      return "UNSUBACK";
    case packet_type::pingreq:
      return "PINGREQ";
    case packet_type::pingresp:
      return "PINGRESP";
    case packet_type::disconnect:
      return "DISCONNECT";
    case packet_type::auth:
      return "AUTH";
  }
  return "RESERVED";
}

bool properties::empty() const {
  // Spelled out rather than `*this == properties{}` because the encoder asks on every ack.
  return !payload_format_indicator && !message_expiry_interval && !content_type &&
         !response_topic && !correlation_data && subscription_identifiers.empty() &&
         !session_expiry_interval && !assigned_client_identifier && !server_keep_alive &&
         !authentication_method && !authentication_data && !request_problem_information &&
         !will_delay_interval && !request_response_information && !response_information &&
         !server_reference && !reason_string && !receive_maximum && !topic_alias_maximum &&
         !topic_alias && !maximum_qos && !retain_available && user_properties.empty() &&
         !maximum_packet_size && !wildcard_subscription_available &&
         !subscription_identifier_available && !shared_subscription_available;
}

namespace {

auto tie_properties(const properties& p) {
  return std::tie(p.payload_format_indicator, p.message_expiry_interval, p.content_type,
                  p.response_topic, p.correlation_data, p.subscription_identifiers,
                  p.session_expiry_interval, p.assigned_client_identifier, p.server_keep_alive,
                  p.authentication_method, p.authentication_data, p.request_problem_information,
                  p.will_delay_interval, p.request_response_information, p.response_information,
                  p.server_reference, p.reason_string, p.receive_maximum, p.topic_alias_maximum,
                  p.topic_alias, p.maximum_qos, p.retain_available, p.user_properties,
                  p.maximum_packet_size, p.wildcard_subscription_available,
                  p.subscription_identifier_available, p.shared_subscription_available);
}

}  // namespace

bool operator==(const properties& a, const properties& b) {
  return tie_properties(a) == tie_properties(b);
}

bool operator==(const will& a, const will& b) {
  return a.topic == b.topic && a.payload == b.payload && a.q == b.q && a.retain == b.retain &&
         a.props == b.props;
}

bool operator==(const connect& a, const connect& b) {
  return a.version == b.version && a.clean_start == b.clean_start && a.keep_alive == b.keep_alive &&
         a.client_id == b.client_id && a.will_msg == b.will_msg && a.username == b.username &&
         a.password == b.password && a.props == b.props;
}

bool operator==(const connack& a, const connack& b) {
  return a.session_present == b.session_present && a.reason == b.reason && a.props == b.props;
}

bool operator==(const publish& a, const publish& b) {
  return a.dup == b.dup && a.q == b.q && a.retain == b.retain && a.topic == b.topic &&
         a.packet_id == b.packet_id && a.payload == b.payload && a.props == b.props;
}

bool operator==(const pub_response& a, const pub_response& b) {
  return a.packet_id == b.packet_id && a.reason == b.reason && a.props == b.props;
}

bool operator==(const subscription& a, const subscription& b) {
  return a.filter == b.filter && a.max_qos == b.max_qos && a.no_local == b.no_local &&
         a.retain_as_published == b.retain_as_published && a.retain_handling == b.retain_handling;
}

bool operator==(const subscribe& a, const subscribe& b) {
  return a.packet_id == b.packet_id && a.subscriptions == b.subscriptions && a.props == b.props;
}

bool operator==(const suback& a, const suback& b) {
  return a.packet_id == b.packet_id && a.reasons == b.reasons && a.props == b.props;
}

bool operator==(const unsubscribe& a, const unsubscribe& b) {
  return a.packet_id == b.packet_id && a.filters == b.filters && a.props == b.props;
}

bool operator==(const unsuback& a, const unsuback& b) {
  return a.packet_id == b.packet_id && a.reasons == b.reasons && a.props == b.props;
}

bool operator==(const pingreq&, const pingreq&) { return true; }

bool operator==(const pingresp&, const pingresp&) { return true; }

bool operator==(const disconnect& a, const disconnect& b) {
  return a.reason == b.reason && a.props == b.props;
}

bool operator==(const auth& a, const auth& b) { return a.reason == b.reason && a.props == b.props; }

}  // namespace tern::proto::mqtt
