// The node's disk store (RocksDB under node.data_dir): retained messages, written through as
// they change, and persistent sessions, saved at shutdown and taken back at start-up.
//
// Thread-safe: any actor may call it. No CAF in here.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "actors/message.hpp"
#include "actors/router/route_table.hpp"
#include "actors/session/session.hpp"

namespace rocksdb {
class DB;
}

namespace tern::actors::store {

/// A persistent session as saved to disk.
struct saved_session {
  std::string client_id;
  proto::mqtt::protocol_version version = proto::mqtt::protocol_version::v3_1_1;
  std::chrono::milliseconds expiry_left{0};  ///< time left from the moment it was saved
  std::vector<std::pair<std::string, router::sub_options>> subscriptions;
  session::session::snapshot state;
};

class store {
 public:
  /// Opens (creating if needed) the database in `dir`. Returns an error message on failure.
  static std::variant<std::unique_ptr<store>, std::string> open(const std::string& dir);
  ~store();

  /// Stores the retained message of m.topic, or deletes it when the payload is empty.
  void put_retained(const message& m);
  std::vector<message_ptr> load_retained() const;

  void save_session(const saved_session& s);
  /// Reads every saved session and removes them from disk: a running node keeps sessions in
  /// memory, so a crash never resurrects a stale copy.
  std::vector<saved_session> take_sessions();

  /// A bridge's outgoing messages (each with its remote topic, QoS and retain flag), saved at
  /// shutdown; an empty list removes what was saved.
  void save_bridge_queue(const std::string& bridge, const std::vector<message_ptr>& msgs);
  /// Reads a bridge's saved messages and removes them from disk.
  std::vector<message_ptr> take_bridge_queue(const std::string& bridge);

  /// Pure conversions, exposed for tests.
  static std::string encode(const saved_session& s);
  static bool decode(const std::string& bytes, saved_session& out);

 private:
  explicit store(std::unique_ptr<rocksdb::DB> db);
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace tern::actors::store
