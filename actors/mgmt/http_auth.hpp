// Access to the management API: HTTP basic auth against [http] users, or bearer API keys.
// Pure: no sockets.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "actors/config/config.hpp"

namespace tern::actors::mgmt {

enum class auth_result { ok, missing, invalid };

/// Checks the value of an Authorization header ("" when the request had none).
auth_result check_authorization(std::string_view header, const config::http_config& cfg);

/// Whether the documented default credential (admin:public) is accepted.
bool uses_default_credential(const config::http_config& cfg);

/// RFC 4648 base64 (padding optional); nullopt on a malformed input.
std::optional<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view in);

}  // namespace tern::actors::mgmt
