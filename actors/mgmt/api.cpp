// Management HTTP API routes (/api/v1/..., /metrics, /healthz, /readyz, dashboard files).
#include "actors/mgmt/api.hpp"

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "actors/access/engine.hpp"
#include "actors/access/password_file.hpp"
#include "actors/broker/dispatch.hpp"
#include "actors/mgmt/http_auth.hpp"
#include "actors/mgmt/presence.hpp"
#include "actors/mgmt/queries.hpp"
#include "cluster/admin.hpp"
#include "proto/mqtt/topic.hpp"

namespace tern::actors::mgmt {

namespace {

using json = nlohmann::json;
using query_map = std::map<std::string, std::string>;

http_response json_response(unsigned status, const json& j) {
  http_response r;
  r.status = status;
  r.body = j.dump();
  return r;
}

http_response error(unsigned status, const std::string& message) {
  return json_response(status, json{{"error", message}});
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

/// Percent-decoding; '+' means space in query strings only.
std::optional<std::string> url_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) {
        return std::nullopt;
      }
      int hi = hex_value(s[i + 1]);
      int lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) {
        return std::nullopt;
      }
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string iso_time(std::int64_t unix_ms) {
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string local_datetime() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

/// Page selection: ?page= (from 1) and ?limit= (1..10000, default 100).
struct paging {
  std::size_t page = 1;
  std::size_t limit = 100;
};

std::optional<paging> parse_paging(const query_map& q, std::string& why) {
  paging p;
  auto num = [&](const char* key, std::size_t& out, std::size_t max) {
    auto it = q.find(key);
    if (it == q.end()) {
      return true;
    }
    try {
      std::size_t pos = 0;
      auto v = std::stoul(it->second, &pos);
      if (pos != it->second.size() || v < 1 || v > max) {
        throw std::out_of_range(key);
      }
      out = v;
      return true;
    } catch (const std::exception&) {
      why = std::string(key) + " must be an integer between 1 and " + std::to_string(max);
      return false;
    }
  };
  if (!num("page", p.page, 1000000000) || !num("limit", p.limit, 10000)) {
    return std::nullopt;
  }
  return p;
}

json paged(const json& items, const paging& p) {
  json page = json::array();
  std::size_t first = (p.page - 1) * p.limit;
  for (std::size_t i = first; i < items.size() && i < first + p.limit; ++i) {
    page.push_back(items[i]);
  }
  return json{{"page", p.page}, {"limit", p.limit}, {"total", items.size()}, {"items", page}};
}

const char* proto_name(std::uint8_t level) {
  switch (level) {
    case 3:
      return "MQTT 3.1";
    case 4:
      return "MQTT 3.1.1";
    case 5:
      return "MQTT 5.0";
    default:
      return "unknown";
  }
}

}  // namespace

struct api::impl {
  caf::actor_system& sys;
  broker::context_ptr ctx;
  std::function<bool()> is_ready;
  std::string http_endpoint;
  stats_tracker* stats = nullptr;

  const std::string& node() const { return ctx->cfg.node_name; }

  // --- queries to actors ----------------------------------------------------------------

  std::optional<std::vector<session_summary>> list_sessions() {
    auto sm = ctx->sessions();
    if (!sm) {
      return std::nullopt;
    }
    std::optional<std::vector<session_summary>> out;
    caf::scoped_actor self{sys};
    self->request(sm, query_timeout, sessions_atom::value)
        .receive([&](std::vector<session_summary>& v) { out = std::move(v); },
                 [&](caf::error& e) {
                   spdlog::warn("management: session list failed: {}", sys.render(e));
                 });
    return out;
  }

  std::optional<session_details> session_info(const caf::actor& session) {
    std::optional<session_details> out;
    caf::scoped_actor self{sys};
    self->request(session, query_timeout, sinfo_atom::value)
        .receive([&](session_details& d) { out = std::move(d); }, [&](caf::error&) {});
    return out;
  }

  std::optional<session_details> session_of(const std::string& client_id) {
    auto all = list_sessions();
    if (!all) {
      return std::nullopt;
    }
    for (auto& s : *all) {
      if (s.client_id == client_id) {
        return session_info(s.session);
      }
    }
    return std::nullopt;
  }

  /// The cluster actor's member view; nullopt when clustering is off or it did not answer.
  std::optional<cluster::cluster_status> cluster_view() {
    if (!ctx->cluster) {
      return std::nullopt;
    }
    std::optional<cluster::cluster_status> out;
    caf::scoped_actor self{sys};
    self->request(ctx->cluster, query_timeout, cluster::cstatus_atom::value)
        .receive([&](cluster::cluster_status& s) { out = std::move(s); },
                 [&](caf::error& e) {
                   spdlog::warn("management: cluster status failed: {}", sys.render(e));
                 });
    return out;
  }

  /// The clients of the other cluster members (nullopt: the cluster layer did not answer).
  std::optional<cluster::remote_clients> other_nodes_clients() {
    std::optional<cluster::remote_clients> out;
    caf::scoped_actor self{sys};
    self->request(ctx->cluster, std::chrono::seconds(4), cluster::cclients_atom::value)
        .receive([&](cluster::remote_clients& r) { out = std::move(r); },
                 [&](caf::error& e) {
                   spdlog::warn("management: cluster client list failed: {}", sys.render(e));
                 });
    return out;
  }

  /// Sends a join / leave / remove request to the cluster actor and turns its answer into
  /// a response. A join waits for the handshake (the cluster's connect timeout is 5 s).
  template <class... Ts>
  http_response cluster_admin(Ts&&... xs) {
    http_response r = error(504, "the cluster layer did not answer in time");
    caf::scoped_actor self{sys};
    self->request(ctx->cluster, std::chrono::seconds(8), std::forward<Ts>(xs)...)
        .receive(
            [&](cluster::admin_reply& a) {
              r = a.status < 300 ? json_response(a.status, json{{"result", a.message}})
                                 : error(a.status, a.message);
            },
            [&](caf::error& e) { spdlog::warn("management: cluster request failed: {}", sys.render(e)); });
    return r;
  }

  // --- JSON views -------------------------------------------------------------------------

  /// A client of another cluster member.
  json client_json(const cluster::client_entry& e, const std::string& on_node) const {
    auto j = client_json(client_info{e.client_id, e.username, e.peer, e.proto_level, e.keepalive,
                                     e.clean_start, e.connected_at_ms, 0, caf::actor{}});
    j["node"] = on_node;
    return j;
  }

  json client_json(const client_info& c) const {
    return json{{"clientid", c.client_id},
                {"username", c.username.empty() ? json(nullptr) : json(c.username)},
                {"node", node()},
                {"ipaddress", c.peer},
                {"proto_ver", c.proto_level},
                {"proto_name", proto_name(c.proto_level)},
                {"keepalive", c.keepalive},
                {"clean_start", c.clean_start},
                {"connected_at", iso_time(c.connected_at_ms)},
                {"connected_at_ms", c.connected_at_ms}};
  }

  static json session_json(const session_details& d) {
    json subs = json::array();
    for (auto& [filter, q] : d.subscriptions) {
      subs.push_back(json{{"topic", filter}, {"qos", q}});
    }
    return json{{"clientid", d.client_id},
                {"connected", d.is_connected},
                {"inflight", d.inflight},
                {"max_inflight", d.max_inflight},
                {"queue_len", d.queued},
                {"awaiting_rel", d.awaiting_rel},
                {"expiry_interval_ms", d.expiry_ms},
                {"subscriptions_count", d.subscriptions.size()},
                {"subscriptions", subs}};
  }

  json stats_json() {
    json j = json::object();
    for (auto& [k, v] : stats->read(*ctx)) {
      j[k] = v;
    }
    return j;
  }

  json node_json() {
    auto up = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() -
                                                               ctx->started_at);
    auto proc = read_process_stats();
    return json{{"name", node()},
                {"version", version()},
                {"sysdescr", "Tern MQTT broker"},
                {"status", "running"},
                {"uptime", format_uptime(up)},
                {"uptime_seconds", up.count()},
                {"datetime", local_datetime()},
                {"connections", ctx->clients.size()},
                {"memory_bytes", proc.resident_bytes},
                {"cpu_seconds", proc.cpu_seconds},
                {"self", true}};
  }

  // --- handlers ---------------------------------------------------------------------------

  http_response status() {
    auto j = node_json();
    j["node"] = node();
    j["clustered"] = static_cast<bool>(ctx->cluster);
    j["stats"] = stats_json();
    return json_response(200, j);
  }

  http_response nodes() {
    auto view = cluster_view();
    if (!view) {
      return json_response(200, json::array({node_json()}));
    }
    json out = json::array();
    for (auto& m : view->members) {
      json j = m.self ? node_json() : json{{"self", false}};
      j["name"] = m.name;
      j["status"] = m.up ? "running" : "stopped";
      j["address"] = m.address;
      j["incarnation"] = m.incarnation;
      out.push_back(j);
    }
    return json_response(200, out);
  }

  http_response cluster() {
    auto view = cluster_view();
    if (!view) {
      if (ctx->cluster) {
        return error(503, "the cluster layer did not answer");
      }
      return json_response(200, json{{"clustered", false},
                                     {"self", node()},
                                     {"running_nodes", json::array({node()})},
                                     {"stopped_nodes", json::array()},
                                     {"nodes", json::array({json{{"name", node()},
                                                                 {"status", "running"},
                                                                 {"self", true}}})}});
    }
    json running = json::array();
    json stopped = json::array();
    json nodes = json::array();
    for (auto& m : view->members) {
      (m.up ? running : stopped).push_back(m.name);
      nodes.push_back(json{{"name", m.name},
                           {"address", m.address},
                           {"incarnation", m.incarnation},
                           {"status", m.up ? "running" : "stopped"},
                           {"self", m.self}});
    }
    return json_response(200, json{{"clustered", true},
                                   {"self", view->self},
                                   {"running_nodes", running},
                                   {"stopped_nodes", stopped},
                                   {"nodes", nodes},
                                   {"seeds", view->seeds},
                                   {"ready", view->ready},
                                   {"ready_reason", view->ready_reason}});
  }

  http_response cluster_op(const std::string& op, const std::string& body) {
    if (!ctx->cluster) {
      return error(409, "not clustered: clustering is off on this node (set cluster.listen and "
                        "cluster.cookie), so it cannot " + op);
    }
    if (op == "leave") {
      return cluster_admin(cluster::cdepart_atom::value);
    }
    if (op != "join" && op != "remove") {
      return error(404, "no such API endpoint");
    }
    auto j = json::parse(body, nullptr, false);
    if (!j.is_object() || !j.contains("node") || !j["node"].is_string() ||
        j["node"].get<std::string>().empty()) {
      return error(400, op == "join" ? "expected {\"node\": \"host:port\"}"
                                     : "expected {\"node\": \"<node name>\"}");
    }
    auto arg = j["node"].get<std::string>();
    if (op == "join") {
      return cluster_admin(cluster::cjoin_atom::value, arg);
    }
    return cluster_admin(cluster::cremove_atom::value, arg);
  }

  // --- users (the [auth] password_file) and ACL reload -------------------------------------

  /// Re-reads the access files after a change; "" or the errors (the old rules stay).
  std::string reload_access() { return ctx->access ? ctx->access->reload() : std::string(); }

  http_response users(const std::string& method, const std::vector<std::string>& seg,
                      const query_map& q, const std::string& body) {
    const auto& path = ctx->cfg.auth.password_file;
    if (path.empty()) {
      return error(409, "no password file: set [auth] password_file to manage users");
    }
    static std::mutex users_mtx;  // one password file change at a time
    std::lock_guard lock{users_mtx};
    // A configured file that does not exist yet (not in the auth chain, so the node started
    // without it) starts empty; the first user added creates it.
    std::error_code ec;
    auto loaded = std::filesystem::exists(path, ec)
                      ? access::password_file::load(path)
                      : std::variant<access::password_file, std::string>(access::password_file{});
    if (auto* err = std::get_if<std::string>(&loaded)) {
      return error(500, "cannot read the password file: " + *err);
    }
    auto& file = std::get<access::password_file>(loaded);
    auto password_of = [&](std::string& out) -> std::optional<http_response> {
      auto j = json::parse(body, nullptr, false);
      if (!j.is_object() || !j.contains("password") || !j["password"].is_string() ||
          j["password"].get<std::string>().empty()) {
        return error(400, "password (non-empty string) is required");
      }
      out = j["password"].get<std::string>();
      return std::nullopt;
    };
    auto commit = [&](unsigned status, const std::string& user, const char* what) {
      if (auto err = file.save(path); !err.empty()) {
        return error(500, "cannot write the password file: " + err);
      }
      spdlog::info("management: user {} {}", user, what);
      json j{{"username", user}, {"result", what}};
      if (auto err = reload_access(); !err.empty()) {
        j["reload_errors"] = err;
      }
      return json_response(status, j);
    };
    if (seg.size() == 1) {
      if (method == "GET") {
        std::string why;
        auto p = parse_paging(q, why);
        if (!p) {
          return error(400, why);
        }
        json items = json::array();
        for (auto& u : file.users()) {
          items.push_back(json{{"username", u}});
        }
        return json_response(200, paged(items, *p));
      }
      if (method != "POST") {
        auto r = error(405, "method " + method + " not allowed here");
        r.headers.emplace_back("Allow", "GET, POST");
        return r;
      }
      auto j = json::parse(body, nullptr, false);
      if (!j.is_object() || !j.contains("username") || !j["username"].is_string()) {
        return error(400, "expected {\"username\", \"password\"}");
      }
      auto user = j["username"].get<std::string>();
      if (!access::is_valid_username(user)) {
        return error(400, "invalid user name (empty, or contains ':' or control characters)");
      }
      std::string pw;
      if (auto bad = password_of(pw)) {
        return *bad;
      }
      if (file.contains(user)) {
        return error(409, "user " + user + " exists (change its password with PUT)");
      }
      file.set(user, pw);
      return commit(201, user, "added");
    }
    if (seg.size() != 2) {
      return error(404, "no such API endpoint");
    }
    const auto& user = seg[1];
    if (!file.contains(user)) {
      return error(404, "no user " + user + " in the password file");
    }
    if (method == "GET") {
      json j{{"username", user}};
      j["scram"] = file.find(user)->scram.has_value();
      return json_response(200, j);
    }
    if (method == "PUT") {
      std::string pw;
      if (auto bad = password_of(pw)) {
        return *bad;
      }
      file.set(user, pw);
      return commit(200, user, "password changed");
    }
    if (method == "DELETE") {
      file.remove(user);
      return commit(200, user, "deleted");
    }
    auto r = error(405, "method " + method + " not allowed here");
    r.headers.emplace_back("Allow", "GET, PUT, DELETE");
    return r;
  }

  http_response acl_reload() {
    if (!ctx->access) {
      return error(409, "access control is not set up on this node");
    }
    auto err = reload_access();
    if (!err.empty()) {
      spdlog::error("management: access reload failed, previous rules kept: {}", err);
      return error(422, "reload failed, previous rules kept: " + err);
    }
    spdlog::info("management: access files reloaded");
    return json_response(200, json{{"result", "reloaded"},
                                   {"acl_file", ctx->cfg.acl.file},
                                   {"password_file", ctx->cfg.auth.password_file},
                                   {"generation", ctx->access->generation()}});
  }

  http_response clients(const query_map& q) {
    std::string why;
    auto p = parse_paging(q, why);
    if (!p) {
      return error(400, why);
    }
    auto want = [&](const char* key, const std::string& value) {
      auto it = q.find(key);
      return it == q.end() || it->second == value;
    };
    json items = json::array();
    for (auto& c : ctx->clients.snapshot()) {
      if (want("clientid", c.client_id) && want("username", c.username) && want("node", node())) {
        items.push_back(client_json(c));
      }
    }
    // In a cluster, the other members' clients too (unless the node filter names this one).
    json missing = json::array();
    auto only = q.find("node");
    if (ctx->cluster && (only == q.end() || only->second != node())) {
      auto others = other_nodes_clients();
      if (!others) {
        return error(503, "the cluster layer did not answer");
      }
      for (auto& n : others->nodes) {
        for (auto& e : n.clients) {
          if (want("clientid", e.client_id) && want("username", e.username) &&
              want("node", n.node)) {
            items.push_back(client_json(e, n.node));
          }
        }
      }
      for (auto& m : others->missing) {
        missing.push_back(m);
      }
    }
    auto out = paged(items, *p);
    if (!missing.empty()) {
      out["missing_nodes"] = missing;  // members that did not answer: the list lacks theirs
    }
    return json_response(200, out);
  }

  /// A client connected to another cluster member, found (and kicked there when `kick`)
  /// through the cluster; nullopt when the cluster layer did not answer.
  std::optional<cluster::remote_client> other_node_client(const std::string& id, bool kick) {
    std::optional<cluster::remote_client> out;
    caf::scoped_actor self{sys};
    self->request(ctx->cluster, std::chrono::seconds(4), cluster::cclient_atom::value, id, kick)
        .receive([&](cluster::remote_client& r) { out = std::move(r); },
                 [&](caf::error& e) {
                   spdlog::warn("management: cluster client lookup failed: {}", sys.render(e));
                 });
    return out;
  }

  /// A client connected to no node of the cluster (or to this node only, when alone).
  http_response not_connected(const std::string& id) {
    return error(404, "client " + id + " is not connected to " +
                          (ctx->cluster ? "any node of the cluster" : "this node"));
  }

  http_response client(const std::string& id) {
    auto c = ctx->clients.find(id);
    if (!c && ctx->cluster) {
      // On another member: what the listing shows, and which node to ask for its session.
      auto r = other_node_client(id, false);
      if (!r) {
        return error(503, "the node holding client " + id + " did not answer");
      }
      if (r->node.empty()) {
        return not_connected(id);
      }
      return json_response(200, client_json(r->info, r->node));
    }
    if (!c) {
      return not_connected(id);
    }
    auto j = client_json(*c);
    if (auto d = session_of(id)) {
      j["session"] = session_json(*d);
      j["inflight"] = d->inflight;
      j["queue_len"] = d->queued;
      j["subscriptions"] = session_json(*d)["subscriptions"];
    }
    return json_response(200, j);
  }

  http_response kick(const std::string& id) {
    auto c = ctx->clients.find(id);
    if (!c && ctx->cluster) {
      auto r = other_node_client(id, true);
      if (!r) {
        return error(503, "the node holding client " + id + " did not answer");
      }
      if (r->node.empty()) {
        return not_connected(id);
      }
      spdlog::info("management: kicked client {} on node {}", id, r->node);
      return json_response(200, json{{"kicked", id}, {"node", r->node}});
    }
    if (!c) {
      return not_connected(id);
    }
    spdlog::info("management: kicking client {}", id);
    caf::anon_send(c->conn, kick_atom::value);
    return json_response(200, json{{"kicked", id}});
  }

  http_response sessions(const query_map& q) {
    std::string why;
    auto p = parse_paging(q, why);
    if (!p) {
      return error(400, why);
    }
    auto all = list_sessions();
    if (!all) {
      return error(503, "the session manager did not answer");
    }
    std::sort(all->begin(), all->end(), [](auto& a, auto& b) { return a.client_id < b.client_id; });
    auto cid = q.find("clientid");
    std::vector<session_summary> selected;
    for (auto& s : *all) {
      if (cid == q.end() || cid->second == s.client_id) {
        selected.push_back(s);
      }
    }
    json out = json{{"page", p->page}, {"limit", p->limit}, {"total", selected.size()}};
    json items = json::array();
    std::size_t first = (p->page - 1) * p->limit;
    for (std::size_t i = first; i < selected.size() && i < first + p->limit; ++i) {
      auto& s = selected[i];
      if (auto d = session_info(s.session)) {
        auto j = session_json(*d);
        j.erase("subscriptions");
        j["node"] = node();
        items.push_back(j);
      } else {
        // The session ended meanwhile or is busy: list what the manager knows.
        items.push_back(json{{"clientid", s.client_id},
                             {"connected", s.is_connected},
                             {"expiry_interval_ms", s.expiry_ms},
                             {"node", node()}});
      }
    }
    out["items"] = items;
    return json_response(200, out);
  }

  http_response session(const std::string& id) {
    auto d = session_of(id);
    if (!d) {
      return error(404, "no session for client " + id);
    }
    auto j = session_json(*d);
    j["node"] = node();
    return json_response(200, j);
  }

  http_response subscriptions(const query_map& q) {
    std::string why;
    auto p = parse_paging(q, why);
    if (!p) {
      return error(400, why);
    }
    auto all = list_sessions();
    if (!all) {
      return error(503, "the session manager did not answer");
    }
    std::unordered_map<caf::actor_id, std::string> owner;
    for (auto& s : *all) {
      owner.emplace(s.session.id(), s.client_id);
    }
    struct row {
      std::string client_id;
      std::string topic;
      int qos;
    };
    std::vector<row> rows;
    ctx->routes.for_each([&](std::string_view filter, const auto& e) {
      auto it = owner.find(e.sub.id());
      rows.push_back(row{it == owner.end() ? std::string() : it->second, std::string(filter),
                         static_cast<int>(e.opts.max_qos)});
    });
    std::sort(rows.begin(), rows.end(), [](const row& a, const row& b) {
      return std::tie(a.client_id, a.topic) < std::tie(b.client_id, b.topic);
    });
    auto cid = q.find("clientid");
    auto topic = q.find("topic");
    json items = json::array();
    for (auto& r : rows) {
      if ((cid == q.end() || cid->second == r.client_id) &&
          (topic == q.end() || topic->second == r.topic)) {
        items.push_back(
            json{{"clientid", r.client_id}, {"topic", r.topic}, {"qos", r.qos}, {"node", node()}});
      }
    }
    return json_response(200, paged(items, *p));
  }

  http_response client_subscriptions(const std::string& id) {
    auto d = session_of(id);
    if (!d) {
      return error(404, "no session for client " + id);
    }
    json items = json::array();
    for (auto& [filter, q] : d->subscriptions) {
      items.push_back(json{{"clientid", id}, {"topic", filter}, {"qos", q}, {"node", node()}});
    }
    return json_response(200, items);
  }

  http_response routes(const query_map& q) {
    std::string why;
    auto p = parse_paging(q, why);
    if (!p) {
      return error(400, why);
    }
    // This node's filters, and those replicated from the other nodes of the cluster.
    std::map<std::string, std::vector<std::string>> nodes_by_filter;
    if (ctx->remote_routes) {
      nodes_by_filter = ctx->remote_routes();
    }
    ctx->routes.for_each_key([&](std::string_view filter) {
      auto& nodes = nodes_by_filter[std::string(filter)];
      if (std::find(nodes.begin(), nodes.end(), node()) == nodes.end()) {
        nodes.insert(std::upper_bound(nodes.begin(), nodes.end(), node()), node());
      }
    });
    auto topic = q.find("topic");
    json items = json::array();
    for (auto& [f, nodes] : nodes_by_filter) {
      if (topic == q.end() || topic->second == f) {
        items.push_back(json{{"topic", f}, {"nodes", nodes}});
      }
    }
    return json_response(200, paged(items, *p));
  }

  http_response listeners() {
    json items = json::array();
    for (auto& [key, l] : ctx->cfg.listeners) {
      items.push_back(json{{"name", key},
                           {"protocol", "mqtt/" + l.kind},
                           {"bind", l.bind},
                           {"max_connections", l.max_connections},
                           {"current_connections", ctx->stats.connections.load()},
                           {"running", true}});
    }
    items.push_back(json{{"name", "http.management"},
                         {"protocol", ctx->cfg.http.tls_cert.empty() ? "http" : "https"},
                         {"bind", http_endpoint},
                         {"running", true}});
    return json_response(200, items);
  }

  http_response bridges() {
    json items = json::array();
    for (const auto& b : ctx->bridges) {
      items.push_back(json{{"name", b->name},
                           {"address", b->address},
                           {"runs_here", b->runs_here.load()},
                           {"connected", b->connected.load()},
                           {"forwarded_out", b->forwarded_out.load()},
                           {"forwarded_in", b->forwarded_in.load()},
                           {"dropped", b->dropped.load()},
                           {"queued", b->queued.load()},
                           {"inflight", b->inflight.load()},
                           {"connects", b->connects.load()},
                           {"refusals", b->refusals.load()},
                           {"last_refusal_code", b->last_refusal.load()}});
    }
    return json_response(200, items);
  }

  http_response metrics_json() {
    json m = json::object();
    for (auto& [k, v] : emqttd_metrics(*ctx)) {
      m[k] = v;
    }
    return json_response(200, json{{"node", node()}, {"metrics", m}, {"stats", stats_json()}});
  }

  http_response prometheus() {
    http_response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = to_prometheus(collect_families(*ctx, *stats));
    return r;
  }

  http_response publish(const std::string& body) {
    auto j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return error(400, "expected a JSON object {topic, payload, qos, retain}");
    }
    if (!j.contains("topic") || !j["topic"].is_string()) {
      return error(400, "topic (string) is required");
    }
    auto topic = j["topic"].get<std::string>();
    if (!proto::mqtt::is_valid_topic_name(topic)) {
      return error(400, "invalid topic name: " + topic);
    }
    if (topic.compare(0, 5, "$SYS/") == 0 || topic == "$SYS") {
      return error(400, "$SYS topics are reserved for the broker");
    }
    std::string payload;
    if (j.contains("payload")) {
      if (!j["payload"].is_string()) {
        return error(400, "payload must be a string");
      }
      payload = j["payload"].get<std::string>();
    }
    if (j.value("encoding", std::string("plain")) == "base64") {
      auto decoded = base64_decode(payload);
      if (!decoded) {
        return error(400, "payload is not valid base64");
      }
      payload = std::move(*decoded);
    }
    int q = 0;
    if (j.contains("qos")) {
      if (!j["qos"].is_number_integer() || j["qos"].get<int>() < 0 || j["qos"].get<int>() > 2) {
        return error(400, "qos must be 0, 1 or 2");
      }
      q = j["qos"].get<int>();
    }
    bool retain = false;
    if (j.contains("retain")) {
      if (!j["retain"].is_boolean()) {
        return error(400, "retain must be true or false");
      }
      retain = j["retain"].get<bool>();
    }
    auto m = std::make_shared<message>();
    m->topic = topic;
    m->payload = std::move(payload);
    m->q = static_cast<proto::mqtt::qos>(q);
    m->retain = retain;
    m->from = j.value("clientid", std::string("http"));
    m->received_at = std::chrono::steady_clock::now();
    auto n = broker::dispatch(*ctx, m);
    return json_response(200, json{{"topic", topic}, {"delivered_to", n}});
  }

  http_response log_level(const std::string& method, const std::string& body) {
    if (method == "GET") {
      auto sv = spdlog::level::to_string_view(spdlog::get_level());
      std::string lv(sv.data(), sv.size());
      // spdlog calls "warn" "warning"; answer with the name the API accepts.
      if (lv == "warning") {
        lv = "warn";
      }
      return json_response(200, json{{"level", lv}});
    }
    auto j = json::parse(body, nullptr, false);
    static const char* levels[] = {"trace", "debug", "info", "warn", "error", "off"};
    std::string level = j.is_object() ? j.value("level", std::string()) : std::string();
    if (std::find(std::begin(levels), std::end(levels), level) == std::end(levels)) {
      return error(400, "level must be one of trace, debug, info, warn, error, off");
    }
    spdlog::set_level(spdlog::level::from_str(level));
    spdlog::warn("management: log level set to {}", level);
    return json_response(200, json{{"level", level}});
  }

  http_response route(const std::string& method, const std::vector<std::string>& seg,
                      const query_map& q, const std::string& body) {
    // seg: path after /api/v1, split on '/', percent-decoded.
    auto get = method == "GET";
    auto n = seg.size();
    auto is = [&](std::initializer_list<const char*> want) {
      if (want.size() != n) {
        return false;
      }
      std::size_t i = 0;
      for (auto* w : want) {
        if (*w != '*' && seg[i] != w) {
          return false;
        }
        ++i;
      }
      return true;
    };
    auto only = [&](const char* m, auto&& f) -> http_response {
      if (method != m) {
        auto r = error(405, "method " + method + " not allowed here");
        r.headers.emplace_back("Allow", m);
        return r;
      }
      return f();
    };
    if (is({"status"})) {
      return only("GET", [&] { return status(); });
    }
    if (is({"nodes"})) {
      return only("GET", [&] { return nodes(); });
    }
    if (is({"cluster"})) {
      return only("GET", [&] { return cluster(); });
    }
    if (n == 2 && seg[0] == "cluster") {
      return only("POST", [&] { return cluster_op(seg[1], body); });
    }
    if (is({"clients"})) {
      return only("GET", [&] { return clients(q); });
    }
    if (is({"clients", "*"})) {
      if (method == "DELETE") {
        return kick(seg[1]);
      }
      return only("GET", [&] { return client(seg[1]); });
    }
    if (is({"sessions"})) {
      return only("GET", [&] { return sessions(q); });
    }
    if (is({"sessions", "*"})) {
      return only("GET", [&] { return session(seg[1]); });
    }
    if (is({"subscriptions"})) {
      return only("GET", [&] { return subscriptions(q); });
    }
    if (is({"subscriptions", "*"})) {
      return only("GET", [&] { return client_subscriptions(seg[1]); });
    }
    if (is({"routes"})) {
      return only("GET", [&] { return routes(q); });
    }
    if (is({"listeners"})) {
      return only("GET", [&] { return listeners(); });
    }
    if (is({"metrics"})) {
      return only("GET", [&] { return metrics_json(); });
    }
    if (is({"bridges"})) {
      return only("GET", [&] { return bridges(); });
    }
    if (is({"publish"})) {
      return only("POST", [&] { return publish(body); });
    }
    if (is({"log", "level"})) {
      if (get) {
        return log_level(method, body);
      }
      return only("PUT", [&] { return log_level(method, body); });
    }
    if (n >= 1 && seg[0] == "users") {
      return users(method, seg, q, body);
    }
    if (is({"acl", "reload"})) {
      return only("POST", [&] { return acl_reload(); });
    }
    return error(404, "no such API endpoint");
  }
};

api::api(caf::actor_system& sys, broker::context_ptr ctx, std::function<bool()> is_ready,
         std::string http_endpoint)
    : impl_(std::make_unique<impl>(
          impl{sys, std::move(ctx), std::move(is_ready), std::move(http_endpoint)})) {
  impl_->stats = &stats_;
}

api::~api() = default;

http_response api::handle(const http_request& req) {
  auto& m = *impl_;
  auto qpos = req.target.find('?');
  std::string_view path = std::string_view(req.target).substr(0, qpos);
  query_map query;
  if (qpos != std::string::npos) {
    std::string_view qs = std::string_view(req.target).substr(qpos + 1);
    while (!qs.empty()) {
      auto amp = qs.find('&');
      auto part = qs.substr(0, amp);
      auto eq = part.find('=');
      auto k = url_decode(part.substr(0, eq), true);
      auto v = url_decode(eq == std::string_view::npos ? "" : part.substr(eq + 1), true);
      if (!k || !v) {
        return error(400, "malformed query string");
      }
      if (!k->empty()) {
        query[*k] = *v;
      }
      qs = amp == std::string_view::npos ? std::string_view{} : qs.substr(amp + 1);
    }
  }

  // Probes and the dashboard's static files need no credential.
  if (path == "/healthz") {
    return json_response(200, json{{"status", "ok"}});
  }
  if (path == "/readyz") {
    bool ready = m.is_ready() && static_cast<bool>(m.ctx->sessions());
    json j = json::object();
    if (m.ctx->cluster) {
      auto view = m.cluster_view();
      bool joined = view && view->ready;
      j["cluster"] = view ? view->ready_reason : std::string("the cluster layer did not answer");
      ready = ready && joined;
    }
    j["ready"] = ready;
    return json_response(ready ? 200 : 503, j);
  }
  if (req.method == "GET" || req.method == "HEAD") {
    std::string_view file = path == "/" ? std::string_view("/index.html") : path;
    for (auto& a : www_assets()) {
      if (file == a.path) {
        http_response r;
        r.content_type = a.content_type;
        r.body.assign(a.data, a.size);
        r.headers.emplace_back("Cache-Control", "no-cache");
        return r;
      }
    }
  }

  switch (check_authorization(req.authorization, m.ctx->cfg.http)) {
    case auth_result::ok:
      break;
    case auth_result::missing: {
      auto r = error(401, "authentication required (HTTP basic auth or a bearer API key)");
      r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"tern\"");
      return r;
    }
    case auth_result::invalid: {
      auto r = error(401, "invalid credentials");
      r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"tern\"");
      return r;
    }
  }

  if (path == "/metrics") {
    return req.method == "GET" ? m.prometheus() : error(405, "GET only");
  }
  constexpr std::string_view prefix = "/api/v1/";
  if (path.substr(0, prefix.size()) != prefix) {
    return error(404, "not found");
  }
  std::vector<std::string> seg;
  auto rest = path.substr(prefix.size());
  while (!rest.empty()) {
    auto slash = rest.find('/');
    auto s = url_decode(rest.substr(0, slash), false);
    if (!s) {
      return error(400, "malformed path");
    }
    seg.push_back(std::move(*s));
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
  }
  try {
    return m.route(req.method, seg, query, req.body);
  } catch (const std::exception& e) {
    spdlog::error("management API {} {}: {}", req.method, req.target, e.what());
    return error(500, std::string("internal error: ") + e.what());
  }
}

}  // namespace tern::actors::mgmt
