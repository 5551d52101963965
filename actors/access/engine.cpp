// The access engine: provider chain, ACL with cache generation, bans, hook registration.
#include "actors/access/engine.hpp"

#include <algorithm>

#include "actors/hooks/audit_log.hpp"

namespace tern::actors::access {

namespace {

constexpr std::uint8_t detail_bad_credentials = 1;
constexpr std::uint8_t detail_not_authorized = 2;

hooks::verdict to_verdict(decision d) {
  switch (d) {
    case decision::allow:
      return hooks::verdict::allow;
    case decision::deny:
      return hooks::verdict::deny;
    case decision::ignore:
      break;
  }
  return hooks::verdict::ignore;
}

client_info from_args(const hooks::args& a) {
  client_info c;
  c.client_id = std::string(a.client_id);
  if (a.has_username) {
    c.username = std::string(a.username);
  }
  c.peer = std::string(a.peer);
  c.address = ip_address::from_peer(a.peer);
  c.cert_cn = std::string(a.cert_cn);
  c.cert_san = std::string(a.cert_san);
  return c;
}

}  // namespace

// ---- acl_cache --------------------------------------------------------------------------

std::optional<bool> acl_cache::get(std::uint64_t generation, access_kind k,
                                   std::string_view topic) {
  if (generation != generation_) {
    entries_.clear();
    next_ = 0;
    generation_ = generation;
    return std::nullopt;
  }
  for (const auto& e : entries_) {
    if (e.k == k && e.topic == topic) {
      return e.allowed;
    }
  }
  return std::nullopt;
}

void acl_cache::put(std::uint64_t generation, access_kind k, std::string_view topic, bool allowed) {
  if (capacity_ == 0) {
    return;
  }
  if (generation != generation_) {
    entries_.clear();
    next_ = 0;
    generation_ = generation;
  }
  if (entries_.size() < capacity_) {
    entries_.push_back(entry{k, allowed, std::string(topic)});
    return;
  }
  entries_[next_] = entry{k, allowed, std::string(topic)};
  next_ = (next_ + 1) % capacity_;
}

// ---- engine -----------------------------------------------------------------------------

std::variant<std::shared_ptr<engine>, std::string> engine::create(
    const config::config& cfg, std::shared_ptr<hooks::registry> hooks) {
  std::shared_ptr<engine> e(new engine(std::move(hooks)));
  const auto& a = cfg.auth;
  e->allow_anonymous_ = a.allow_anonymous;
  for (const auto& name : a.chain) {
    if (name == "password_file") {
      if (a.password_file.empty()) {
        return std::string("auth.chain: password_file is listed but auth.password_file is empty");
      }
      auto r = password_file_provider::open(a.password_file);
      if (auto* err = std::get_if<std::string>(&r)) {
        return *err;
      }
      auto p = std::get<0>(std::move(r));
      e->password_file_ = p.get();
      e->chain_.push_back(std::move(p));
    } else if (name == "clientid") {
      if (a.clientid_file.empty()) {
        return std::string("auth.chain: clientid is listed but auth.clientid_file is empty");
      }
      auto r = clientid_provider::open(a.clientid_file);
      if (auto* err = std::get_if<std::string>(&r)) {
        return *err;
      }
      e->chain_.push_back(std::get<0>(std::move(r)));
    } else if (name == "cert") {
      e->chain_.push_back(std::make_unique<cert_provider>());
    } else if (name == "http") {
      if (a.http_url.empty()) {
        return std::string("auth.chain: http is listed but auth.http_url is empty");
      }
      e->chain_.push_back(
          std::make_unique<http_provider>(a.http_url, a.http_body == "json", a.http_timeout));
    } else if (name == "pgsql") {
      if (a.pgsql_conninfo.empty()) {
        return std::string("auth.chain: pgsql is listed but auth.pgsql_conninfo is empty");
      }
      e->chain_.push_back(
          std::make_unique<pgsql_provider>(a.pgsql_conninfo, a.pgsql_query, a.pgsql_timeout));
    }
  }
  if (cfg.ban.enabled) {
    e->bans_ = std::make_unique<ban_list>(
        ban_list::settings{cfg.ban.max_failures, cfg.ban.window, cfg.ban.duration});
  }
  e->acl_file_ = cfg.acl.file;
  e->acl_format_ = cfg.acl.format;
  e->no_match_allow_ = cfg.acl.no_match_allow;
  e->cache_size_ = cfg.acl.cache_size;
  if (!e->acl_file_.empty()) {
    auto r = acl::load_file(e->acl_file_, e->acl_format_);
    if (auto* err = std::get_if<acl_error>(&r)) {
      return err->message;
    }
    e->acl_ = std::make_shared<const acl>(std::get<acl>(std::move(r)));
  }
  auto* self = e.get();
  // Authentication and ACL are callbacks like any other hook (priority 0). They set the
  // verdict and return ok, so lower-priority callbacks (the audit log) still see it.
  e->hooks_->add(
      hooks::point::client_authenticate, "auth_chain", 0,
      [self](const hooks::args& args, hooks::acc& acc) { return self->run_chain(args, acc); });
  if (e->acl_) {
    e->hooks_->add(hooks::point::client_check_acl, "acl_file", 0,
                   [self](const hooks::args& args, hooks::acc& acc) {
                     auto rules = self->current_acl();
                     if (!rules) {
                       return hooks::result::ok;
                     }
                     auto c = from_args(args);
                     auto d = rules->check(
                         c, args.is_subscribe ? access_kind::subscribe : access_kind::publish,
                         args.topic);
                     if (d) {
                       acc.v = to_verdict(*d);
                     }
                     return hooks::result::ok;
                   });
  }
  return e;
}

engine::~engine() {
  hooks_->remove(hooks::point::client_authenticate, "auth_chain");
  hooks_->remove(hooks::point::client_check_acl, "acl_file");
}

hooks::result engine::run_chain(const hooks::args& args, hooks::acc& acc) {
  auto c = from_args(args);
  std::optional<std::string> password;
  if (args.has_password) {
    password = std::string(args.password);
  }
  std::string passed;  // why providers passed on, for the log
  for (auto& p : chain_) {
    auto ans = p->authenticate(c, password);
    if (ans.d == decision::ignore) {
      passed += std::string(passed.empty() ? "" : "; ") + p->name() + ": " + ans.why;
      continue;
    }
    acc.v = to_verdict(ans.d);
    acc.detail = std::string(p->name()) + ": " + ans.why;
    acc.reason_code = ans.d == decision::deny
                          ? (ans.bad_credentials ? detail_bad_credentials : detail_not_authorized)
                          : 0;
    return hooks::result::ok;
  }
  if (allow_anonymous_) {
    acc.v = hooks::verdict::allow;
    return hooks::result::ok;
  }
  // Nobody vouched for the client: a given username is a bad login, none is unauthorized.
  acc.v = hooks::verdict::deny;
  acc.reason_code = c.username ? detail_bad_credentials : detail_not_authorized;
  acc.detail = "no provider accepted the client and anonymous access is off" +
               (passed.empty() ? std::string() : " (" + passed + ")");
  return hooks::result::ok;
}

auth_outcome engine::authenticate(const client_info& c, const std::optional<std::string>& password,
                                  clock::time_point now) {
  std::string addr_key = c.address ? "a:" + c.address->to_string() : std::string();
  if (bans_) {
    if (bans_->is_banned("c:" + c.client_id, now) ||
        (!addr_key.empty() && bans_->is_banned(addr_key, now))) {
      return {auth_status::banned, "banned after repeated authentication failures"};
    }
  }
  hooks::args a;
  a.client_id = c.client_id;
  a.has_username = c.username.has_value();
  if (c.username) {
    a.username = *c.username;
  }
  a.has_password = password.has_value();
  if (password) {
    a.password = *password;
  }
  a.cert_cn = c.cert_cn;
  a.cert_san = c.cert_san;
  a.peer = c.peer;
  auto acc = hooks_->run_fold(hooks::point::client_authenticate, a);
  auth_outcome out;
  if (acc.v == hooks::verdict::allow || (acc.v == hooks::verdict::ignore && allow_anonymous_)) {
    if (bans_) {
      bans_->record_success("c:" + c.client_id, now);
      if (!addr_key.empty()) {
        bans_->record_success(addr_key, now);
      }
    }
    return out;
  }
  out.status = acc.reason_code == detail_bad_credentials || (acc.reason_code == 0 && c.username)
                   ? auth_status::bad_credentials
                   : auth_status::not_authorized;
  out.detail = !acc.detail.empty()                          ? acc.detail
               : out.status == auth_status::bad_credentials ? "bad username or password"
                                                            : "not authorized";
  record_failure(c, now);
  return out;
}

void engine::record_failure(const client_info& c, clock::time_point now) {
  if (!bans_) {
    return;
  }
  bans_->record_failure("c:" + c.client_id, now);
  if (c.address) {
    bans_->record_failure("a:" + c.address->to_string(), now);
  }
}

std::shared_ptr<const acl> engine::current_acl() const {
  std::lock_guard lock{acl_mtx_};
  return acl_;
}

bool engine::check(const client_info& c, access_kind k, std::string_view topic, acl_cache* cache) {
  if (!hooks_->has(hooks::point::client_check_acl)) {
    return true;
  }
  auto gen = generation();
  if (cache) {
    if (auto hit = cache->get(gen, k, topic)) {
      return *hit;
    }
  }
  hooks::args a;
  a.client_id = c.client_id;
  a.has_username = c.username.has_value();
  if (c.username) {
    a.username = *c.username;
  }
  a.peer = c.peer;
  a.topic = topic;
  a.is_subscribe = k == access_kind::subscribe;
  auto acc = hooks_->run_fold(hooks::point::client_check_acl, a);
  bool allowed =
      acc.v == hooks::verdict::allow || (acc.v == hooks::verdict::ignore && no_match_allow_);
  if (cache) {
    cache->put(gen, k, topic, allowed);
  }
  return allowed;
}

bool engine::check_publish(const client_info& c, std::string_view topic, acl_cache* cache) {
  return check(c, access_kind::publish, topic, cache);
}

bool engine::check_subscribe(const client_info& c, std::string_view filter, acl_cache* cache) {
  return check(c, access_kind::subscribe, filter, cache);
}

std::string engine::reload() {
  std::string errors;
  if (!acl_file_.empty()) {
    auto r = acl::load_file(acl_file_, acl_format_);
    if (auto* err = std::get_if<acl_error>(&r)) {
      errors = err->message;
    } else {
      auto next = std::make_shared<const acl>(std::get<acl>(std::move(r)));
      std::lock_guard lock{acl_mtx_};
      acl_ = std::move(next);
    }
  }
  for (auto& p : chain_) {
    if (auto err = p->reload(); !err.empty()) {
      errors += (errors.empty() ? "" : "; ") + err;
    }
  }
  // Even a partial reload invalidates cached decisions: they may come from replaced rules.
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return errors;
}

std::optional<scram_credentials> engine::scram_credentials_for(const std::string& user) const {
  if (!password_file_) {
    return std::nullopt;
  }
  return password_file_->scram(user);
}

std::variant<node_access, std::string> setup(const config::config& cfg) {
  node_access out;
  out.hooks = std::make_shared<hooks::registry>();
  if (!cfg.hooks.audit_log.empty()) {
    std::vector<hooks::point> points;
    for (const auto& n : cfg.hooks.audit_events) {
      auto p = hooks::point_from_name(n);
      if (!p) {
        return "hooks.audit_events: unknown hook point \"" + n + "\"";
      }
      points.push_back(*p);
    }
    if (auto err = hooks::install_audit_log(*out.hooks, cfg.hooks.audit_log, points);
        !err.empty()) {
      return err;
    }
  }
  auto e = engine::create(cfg, out.hooks);
  if (auto* err = std::get_if<std::string>(&e)) {
    return *err;
  }
  out.engine = std::get<0>(std::move(e));
  return out;
}

}  // namespace tern::actors::access
