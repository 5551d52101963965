// Membership view: admission by incarnation, removal, reconnect targets.
#include "cluster/members.hpp"

namespace tern::cluster {

admit_result member_view::admit(const member& m) {
  lost_.erase(m.name);
  auto it = members_.find(m.name);
  if (it == members_.end()) {
    members_.emplace(m.name, m);
    return admit_result::added;
  }
  if (m.incarnation < it->second.incarnation) {
    return admit_result::stale;
  }
  if (m.incarnation == it->second.incarnation) {
    it->second.advertise = m.advertise;
    return admit_result::same;
  }
  it->second = m;
  return admit_result::replaced;
}

bool member_view::remove(const std::string& name, std::uint64_t incarnation, bool forget) {
  auto it = members_.find(name);
  if (it == members_.end() || (incarnation != 0 && it->second.incarnation != incarnation)) {
    if (forget) {
      lost_.erase(name);
    }
    return false;
  }
  if (!forget && !it->second.advertise.empty()) {
    lost_[name] = it->second.advertise;
  } else {
    lost_.erase(name);
  }
  members_.erase(it);
  return true;
}

std::optional<member> member_view::find(const std::string& name) const {
  auto it = members_.find(name);
  if (it == members_.end()) {
    return std::nullopt;
  }
  return it->second;
}

bool member_view::is_current(const std::string& name, std::uint64_t incarnation) const {
  auto it = members_.find(name);
  return it != members_.end() && it->second.incarnation == incarnation;
}

std::vector<member> member_view::members() const {
  std::vector<member> out;
  out.reserve(members_.size());
  for (auto& [n, m] : members_) {
    out.push_back(m);
  }
  return out;
}

std::vector<std::string> member_view::names() const {
  std::vector<std::string> out;
  for (auto& [n, m] : members_) {
    out.push_back(n);
  }
  return out;
}

std::vector<std::string> member_view::reconnect_targets(const std::string& own) const {
  std::set<std::string> connected;
  for (auto& [n, m] : members_) {
    connected.insert(m.advertise);
  }
  std::set<std::string> out;
  auto consider = [&](const std::string& a) {
    if (!a.empty() && a != own && connected.count(a) == 0) {
      out.insert(a);
    }
  };
  for (auto& s : seeds_) {
    consider(s);
  }
  for (auto& [n, a] : lost_) {
    consider(a);
  }
  return {out.begin(), out.end()};
}

}  // namespace tern::cluster
