// The access engine: the node's authentication chain, ACL, ban list and decision cache
// generation, behind the three calls the connection makes.
//
// One engine per node, held by the broker context and shared by all connection actors
// (thread-safe). Authentication and ACL are themselves hook callbacks (client.authenticate
// and client.check_acl, priority 0), so other callbacks can decide before them (higher
// priority and result::stop) or observe them.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "actors/access/acl.hpp"
#include "actors/access/ban.hpp"
#include "actors/access/providers.hpp"
#include "actors/access/scram.hpp"
#include "actors/access/types.hpp"
#include "actors/config/config.hpp"
#include "actors/hooks/hooks.hpp"

namespace tern::actors::access {

/// Per-client cache of ACL decisions, invalidated when the engine's generation changes
/// (ACL reload). Owned by one connection; not thread-safe.
class acl_cache {
 public:
  explicit acl_cache(std::size_t capacity) : capacity_(capacity) {}
  std::optional<bool> get(std::uint64_t generation, access_kind k, std::string_view topic);
  void put(std::uint64_t generation, access_kind k, std::string_view topic, bool allowed);
  std::size_t size() const { return entries_.size(); }

 private:
  struct entry {
    access_kind k;
    bool allowed;
    std::string topic;
  };
  std::size_t capacity_;
  std::uint64_t generation_ = 0;
  std::size_t next_ = 0;  // ring position once full
  std::vector<entry> entries_;
};

enum class auth_status : std::uint8_t { ok, bad_credentials, not_authorized, banned };

struct auth_outcome {
  auth_status status = auth_status::ok;
  std::string detail;  ///< which provider decided and why (no password)
  bool is_ok() const { return status == auth_status::ok; }
};

class engine {
 public:
  using clock = ban_list::clock;

  /// Builds the chain and loads the files the config names. Returns an error message
  /// naming the file (and line) on failure.
  static std::variant<std::shared_ptr<engine>, std::string> create(
      const config::config& cfg, std::shared_ptr<hooks::registry> hooks);
  ~engine();

  /// CONNECT: ban check, then the client.authenticate fold (the provider chain).
  auth_outcome authenticate(const client_info& c, const std::optional<std::string>& password,
                            clock::time_point now = clock::now());
  /// Records a failure that happened outside `authenticate` (e.g. SCRAM) for banning.
  void record_failure(const client_info& c, clock::time_point now = clock::now());

  /// True when publish/subscribe checks can deny anything (an ACL or a check_acl hook):
  /// the connection keeps per-client access state only then.
  bool checks_acl() const { return hooks_->has(hooks::point::client_check_acl); }
  bool check_publish(const client_info& c, std::string_view topic, acl_cache* cache);
  bool check_subscribe(const client_info& c, std::string_view filter, acl_cache* cache);
  std::size_t cache_size() const { return cache_size_; }
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  /// Re-reads the ACL, password and client id files; on success cached decisions are
  /// dropped (the generation advances). On error the old rules stay and the message is
  /// returned. Called on SIGHUP and by the management API.
  std::string reload();

  /// SCRAM-SHA-256 credentials of a user (from the password file), if any.
  std::optional<scram_credentials> scram_credentials_for(const std::string& user) const;
  bool supports_scram() const { return password_file_ != nullptr; }

  hooks::registry& hooks() { return *hooks_; }
  ban_list* bans() { return bans_.get(); }

 private:
  explicit engine(std::shared_ptr<hooks::registry> hooks) : hooks_(std::move(hooks)) {}
  bool check(const client_info& c, access_kind k, std::string_view topic, acl_cache* cache);
  hooks::result run_chain(const hooks::args& a, hooks::acc& acc);
  std::shared_ptr<const acl> current_acl() const;

  std::shared_ptr<hooks::registry> hooks_;
  std::vector<std::unique_ptr<auth_provider>> chain_;
  password_file_provider* password_file_ = nullptr;  // in chain_, for SCRAM
  bool allow_anonymous_ = true;
  std::unique_ptr<ban_list> bans_;
  std::string acl_file_;
  std::string acl_format_;
  bool no_match_allow_ = true;
  std::size_t cache_size_ = 0;
  mutable std::mutex acl_mtx_;
  std::shared_ptr<const acl> acl_;
  std::atomic<std::uint64_t> generation_{1};
};

/// Everything a node needs for access control and hooks, built from its configuration:
/// the hook registry (with the audit-log hook if configured) and the engine.
struct node_access {
  std::shared_ptr<hooks::registry> hooks;
  std::shared_ptr<access::engine> engine;
};
std::variant<node_access, std::string> setup(const config::config& cfg);

}  // namespace tern::actors::access
