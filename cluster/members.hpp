// The cluster membership view of one node: who is a member, with which incarnation, and
// which addresses to (re)connect to. Pure: no actors, no sockets.
//
// A node is identified by its name. Each start of a node process has a larger incarnation
// (its start time), so a node that restarts under the same name replaces its old self, and
// messages of an older incarnation are recognised as stale.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace tern::cluster {

struct member {
  std::string name;
  std::uint64_t incarnation = 0;
  std::string advertise;  ///< host:port of its cluster listener
};

/// What a completed handshake with (name, incarnation) means for the view.
enum class admit_result {
  added,     ///< a new member
  same,      ///< already a member with this incarnation (a duplicate join: nothing to do)
  replaced,  ///< the same name with a newer incarnation: drop everything of the old one
  stale,     ///< an older incarnation than the member we have: refuse
};

class member_view {
 public:
  explicit member_view(std::string self) : self_(std::move(self)) {}

  const std::string& self() const { return self_; }

  admit_result admit(const member& m);

  /// Removes `name` if its incarnation is `incarnation` (0: any). Returns whether it was
  /// removed. `forget` also drops its address from the reconnect list (a clean leave);
  /// otherwise the node keeps trying to reach it (node down, partition).
  bool remove(const std::string& name, std::uint64_t incarnation, bool forget);

  bool contains(const std::string& name) const { return members_.count(name) != 0; }
  std::optional<member> find(const std::string& name) const;
  /// Whether a message of (name, incarnation) comes from the current member of that name.
  bool is_current(const std::string& name, std::uint64_t incarnation) const;

  std::vector<member> members() const;
  std::vector<std::string> names() const;
  std::size_t size() const { return members_.size(); }

  /// Seeds from the configuration: always retried while not connected.
  void add_seed(const std::string& address) { seeds_.insert(address); }
  const std::set<std::string>& seeds() const { return seeds_; }
  void clear_seeds() { seeds_.clear(); }
  void remove_seed(const std::string& address) { seeds_.erase(address); }
  /// Members that went down (not left): name -> address still dialled.
  const std::map<std::string, std::string>& lost() const { return lost_; }
  /// Addresses to try now: seeds and lost members' addresses that no current member
  /// advertises and that are not `own` (this node's own address).
  std::vector<std::string> reconnect_targets(const std::string& own) const;

 private:
  std::string self_;
  std::map<std::string, member> members_;
  std::set<std::string> seeds_;
  std::map<std::string, std::string> lost_;  ///< name -> address of members that went down
};

}  // namespace tern::cluster
