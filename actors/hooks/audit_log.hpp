// Audit-log hook: appends one line per event (connect, disconnect, subscribe, ...) to a file.
//
// Line format: "<UTC time> <hook point> client=<id> user=<name> peer=<addr> [topic=...]
// [qos=N] [code=N] [reason=...]". Passwords are never written.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "actors/hooks/hooks.hpp"

namespace tern::actors::hooks {

class audit_log;

/// Opens `path` for appending and registers the audit callback on `points` (priority
/// -1000: it sees events after every other callback). Returns an error message, or "" and
/// keeps the log alive through the callbacks it registered.
std::string install_audit_log(registry& r, const std::string& path,
                              const std::vector<point>& points);

/// Formats one audit line (without the newline); exposed for tests.
/// `x`: the fold value, for client.authenticate / client.check_acl (its verdict is logged).
std::string format_audit_line(point p, const args& a, const acc* x = nullptr);

}  // namespace tern::actors::hooks
